// Which headers cross the gateway, in each direction. Built once as sets; the
// per-request work is one pass over the incoming headers.

import type { FastifyReply, FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import type { Identity } from '../identity.js'

/** RFC 9110 §7.6.1 connection-specific headers, plus ones the gateway sets itself. */
const NOT_FORWARDED_UP = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings', 'expect', 'host',
  'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id',
  // Method overrides: an upstream with override middleware would run the method named here
  // (a DELETE) on a route the gateway matched and authorized as the real one (a GET).
  'x-http-method-override', 'x-http-method', 'x-method-override',
])

const NOT_FORWARDED_DOWN = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings',
  // The gateway's own request id is on the response already (plugins/request-id), matching its logs.
  'x-request-id',
])

export interface ForwardOptions {
  /** Pass the client's `authorization` header on (policy `forwardAuthorization`). */
  forwardAuthorization: boolean
  /** The gateway is behind a trusted proxy: extend its x-forwarded-for chain instead of starting a new one. */
  trustProxy: boolean
  /** A credential header that must not travel upstream (the API-key header of `auth: apiKey` policies). */
  credentialHeader?: string
}

export function upstreamRequestHeaders (request: FastifyRequest, opts: ForwardOptions): Record<string, string | string[]> {
  const incoming = request.headers
  const out: Record<string, string | string[]> = {}
  const listed = connectionListed(incoming.connection)
  for (const name in incoming) {
    const value = incoming[name]
    if (value === undefined || NOT_FORWARDED_UP.has(name)) continue
    // Identity headers are the gateway's alone; a client must never set them.
    if (name.startsWith('x-auth-')) continue
    if (name === 'authorization' && !opts.forwardAuthorization) continue
    if (name === opts.credentialHeader) continue
    if (listed !== undefined && listed.has(name)) continue
    out[name] = value
  }
  const peer = request.socket.remoteAddress ?? ''
  const chain = incoming['x-forwarded-for']
  out['x-forwarded-for'] = opts.trustProxy && chain !== undefined ? `${String(chain)}, ${peer}` : peer
  out['x-forwarded-proto'] = request.protocol
  const host = request.host
  if (host !== undefined && host !== '') out['x-forwarded-host'] = host
  out['x-request-id'] = request.id
  if (request.auth !== undefined) setIdentityHeaders(out, request.auth)
  return out
}

/** The identity as the gateway asserts it upstream; the client's own x-auth-* never get this far. */
function setIdentityHeaders (out: Record<string, string | string[]>, identity: Identity): void {
  out['x-auth-sub'] = headerSafe(identity.sub)
  if (identity.roles.length > 0) out['x-auth-roles'] = headerSafe(identity.roles.join(','))
  if (identity.scopes.length > 0) out['x-auth-scopes'] = headerSafe(identity.scopes.join(' '))
}

const UNSAFE_IN_HEADER = /[^\x20-\x7e]/

/** Claims are data: anything that could not travel in a header is percent-encoded. */
export function headerSafe (value: string): string {
  return UNSAFE_IN_HEADER.test(value) ? encodeURIComponent(value) : value
}

/**
 * Headers for an aggregate part: not the client's headers (each part is a new
 * request the gateway makes), only what ties it to the client's request —
 * request id, trace context, forwarding info, identity — plus the part's own.
 */
export function partRequestHeaders (request: FastifyRequest, opts: ForwardOptions): Record<string, string> {
  const out: Record<string, string> = {
    accept: 'application/json',
    'x-request-id': request.id,
    'x-forwarded-for': request.socket.remoteAddress ?? '',
    'x-forwarded-proto': request.protocol,
  }
  const h = request.headers
  if (typeof h.traceparent === 'string') out.traceparent = h.traceparent
  if (typeof h.tracestate === 'string') out.tracestate = h.tracestate
  if (typeof h.host === 'string') out['x-forwarded-host'] = h.host
  if (opts.forwardAuthorization && typeof h.authorization === 'string') out.authorization = h.authorization
  if (request.auth !== undefined) setIdentityHeaders(out, request.auth)
  return out
}

/** Copies an upstream response's headers to the client, minus connection-specific ones. */
export function copyResponseHeaders (headers: IncomingHttpHeaders, reply: FastifyReply): void {
  const listed = connectionListed(headers.connection)
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || NOT_FORWARDED_DOWN.has(name)) continue
    if (listed !== undefined && listed.has(name)) continue
    reply.header(name, value)
  }
}

/** Headers named in `Connection: a, b` are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionListed (connection: string | string[] | undefined): Set<string> | undefined {
  if (connection === undefined) return undefined
  const text = String(connection).toLowerCase()
  if (text === 'keep-alive' || text === 'close') return undefined
  return new Set(text.split(',').map(s => s.trim()).filter(s => s !== ''))
}
