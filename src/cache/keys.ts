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
  // The normalised target (src/pipeline/paths/normalise.ts): `/a//b` and `/a/b` (and, with
  // caseInsensitive, `/A/B`) are one path to the router, so they are one entry here.
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
  return hashed(material)
}

/**
 * The same few URLs are asked for over and over: their hashes are
 * remembered (a bounded map, oldest out first; short materials only), which
 * costs a map lookup instead of a SHA-256 per request.
 */
const recent = new Map<string, string>()
const REMEMBER = 10_000
const REMEMBER_UP_TO = 512

function hashed (material: string): string {
  let key = recent.get(material)
  if (key !== undefined) return key
  key = createHash('sha256').update(material).digest('base64url')
  if (material.length <= REMEMBER_UP_TO) {
    if (recent.size >= REMEMBER) recent.delete(recent.keys().next().value as string)
    recent.set(material, key)
  }
  return key
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
 * True when the answer's `Vary` names a request header the key does not cover
 * (or is `*`): the upstream chose this variant for this client's headers (e.g.
 * a gzip body for `accept-encoding: gzip`), so another client must not get it.
 */
export function variesOutsideKey (headers: Record<string, unknown>, vary: readonly string[]): boolean {
  const v = headers.vary
  if (v === undefined) return false
  for (const part of String(v).toLowerCase().split(',')) {
    const name = part.trim()
    if (name !== '' && (name === '*' || !vary.includes(name))) return true
  }
  return false
}

/**
 * How long (ms) an answer may be cached, or 0 when it must not be: only 200s;
 * never with `no-store` or a `set-cookie`, nor with a `Vary` beyond the route's
 * `vary`; `private` only for `scope: user`; an upstream `s-maxage`/`max-age`
 * shorter than the route's ttl wins.
 */
export function freshnessFor (status: number, headers: Record<string, unknown>, scope: CacheScope, ttl: number, vary: readonly string[] = []): number {
  if (status !== 200) return 0
  if (headers['set-cookie'] !== undefined) return 0
  if (variesOutsideKey(headers, vary)) return 0
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

/**
 * Whether an answer may be handed to the other requests that waited for the
 * same key (coalescing): not when the upstream marks it as the asking
 * client's alone (`set-cookie`, `no-store`, `private` with `scope: public`,
 * or a `Vary` beyond the route's `vary`).
 */
export function mayShare (headers: Record<string, unknown>, scope: CacheScope, vary: readonly string[] = []): boolean {
  if (headers['set-cookie'] !== undefined) return false
  if (variesOutsideKey(headers, vary)) return false
  const cc = headers['cache-control']
  if (cc === undefined) return true
  const text = String(cc).toLowerCase()
  if (/(^|[\s,])no-store\b/.test(text)) return false
  return !(scope === 'public' && /(^|[\s,])private\b/.test(text))
}
