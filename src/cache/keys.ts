// Cache keys and the rules for what may be stored. The key covers route id,
// path, sorted query, the route's `vary` headers and, for `scope: user`, the
// identity, hashed so keys stay short whatever the URL.

import { createHash } from 'node:crypto'
import type { FastifyRequest } from 'fastify'

export type CacheScope = 'public' | 'user'

export interface KeySpec {
  routeId: string
  scope: CacheScope
  vary: string[]
}

export function cacheKey (request: FastifyRequest, spec: KeySpec): string {
  const url = request.url
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  const query = q === -1 ? '' : url.slice(q + 1).split('&').filter(p => p !== '').sort().join('&')
  let material = `${spec.routeId}\n${path}\n${query}`
  for (const name of spec.vary) {
    const v = request.headers[name]
    material += `\n${name}:${v === undefined ? '' : String(v)}`
  }
  if (spec.scope === 'user') material += `\nsub:${request.auth?.sub ?? ''}`
  return createHash('sha256').update(material).digest('base64url')
}

/** Headers that are never stored: per-connection, per-response or per-client. */
const NOT_STORED = new Set([
  'connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authenticate',
  'date', 'age', 'content-length', 'x-request-id', 'set-cookie',
])

export function storableHeaders (headers: Record<string, string | string[] | number | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const name in headers) {
    const v = headers[name]
    if (v === undefined || NOT_STORED.has(name)) continue
    out[name] = typeof v === 'number' ? String(v) : v
  }
  return out
}

/**
 * How long (ms) an answer may be cached, or 0 when it must not be: only 200s;
 * never with `no-store` or a `set-cookie`; `private` only for `scope: user`;
 * an upstream `s-maxage`/`max-age` shorter than the route's ttl wins.
 */
export function freshnessFor (status: number, headers: Record<string, unknown>, scope: CacheScope, ttl: number): number {
  if (status !== 200) return 0
  if (headers['set-cookie'] !== undefined) return 0
  const cc = headers['cache-control']
  if (cc === undefined) return ttl
  const text = String(cc).toLowerCase()
  if (/(^|[\s,])no-store\b/.test(text)) return 0
  if (scope === 'public' && /(^|[\s,])private\b/.test(text)) return 0
  const shared = /(?:^|[\s,])s-maxage\s*=\s*(\d+)/.exec(text)
  const max = shared ?? /(?:^|[\s,])max-age\s*=\s*(\d+)/.exec(text)
  if (max !== null) return Math.min(ttl, Number(max[1]) * 1000)
  return ttl
}
