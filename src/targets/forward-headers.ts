// Which headers cross the gateway, in each direction. Built once as sets; the
// per-request work is one pass over the incoming headers.

import type { FastifyReply, FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import type { Identity } from '../pipeline/auth/identity.js'
import type { UpstreamHeaders } from '../extensions/plugin.js'

/** RFC 9110 §7.6.1 connection-specific headers, plus ones the gateway sets itself. */
const NOT_FORWARDED_UP = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings', 'expect', 'host',
  'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id',
  // Other spellings of "where the request came from" that upstream frameworks
  // believe (Spring and Express read RFC 7239 Forwarded; nginx setups
  // x-real-ip; Spring rewrites paths from x-forwarded-prefix): the gateway
  // states that in x-forwarded-* alone, so a client's own copies go.
  'forwarded', 'x-real-ip', 'x-forwarded-port', 'x-forwarded-prefix', 'x-forwarded-server',
  'x-original-url', 'x-rewrite-url',
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
  /** Whether the client's own x-forwarded-for chain is extended or a new one started (from `server.trustProxy`). */
  trustProxy: ProxyTrust
  /** A credential header that must not travel upstream (the API-key header of `auth: apiKey` policies). */
  credentialHeader?: string
  /**
   * Sent instead of the client's accept-encoding: `identity` on a cached route
   * while the gateway compresses (src/pipeline/compression.ts), so the cache
   * stores one identity copy rather than one client's gzip variant.
   */
  acceptEncoding?: string
  /** The route's plugins' edits (src/extensions); absent on routes without any, which pay nothing. */
  upstreamRequest?: (request: FastifyRequest, headers: UpstreamHeaders) => void
}

/** Headers the gateway sets or drops itself on the way up: no plugin may change them. */
export function gatewayOwnedUpstream (name: string): boolean {
  return name.startsWith('x-auth-') || NOT_FORWARDED_UP.has(name) || name === 'content-length' || name.includes('_')
}

/** Headers on the way down that frame the response or belong to the connection. */
export function gatewayOwnedDownstream (name: string): boolean {
  return name === 'content-length' || NOT_FORWARDED_DOWN.has(name)
}

/** Runs the plugins' edits, then drops whatever they did to the gateway's own headers (set right after). */
function applyPluginEdits (out: Record<string, string | string[]>, request: FastifyRequest, edit: NonNullable<ForwardOptions['upstreamRequest']>): void {
  edit(request, out)
  for (const name of Object.keys(out)) {
    if (gatewayOwnedUpstream(name.toLowerCase())) delete out[name]
  }
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
    // `x_auth_sub` is `x-auth-sub` to upstreams that map header names to
    // CGI-style variables (HTTP_X_AUTH_SUB): names with `_` are dropped, as nginx does.
    if (name.includes('_')) continue
    if (name === 'authorization' && !opts.forwardAuthorization) continue
    if (name === opts.credentialHeader) continue
    if (listed !== undefined && listed.has(name)) continue
    out[name] = value
  }
  if (opts.acceptEncoding !== undefined) out['accept-encoding'] = opts.acceptEncoding
  if (opts.upstreamRequest !== undefined) applyPluginEdits(out, request, opts.upstreamRequest)
  setForwardingHeaders(out, request, opts.trustProxy)
  return out
}

/**
 * `none`: trustProxy is off; `all`: every peer is a trusted proxy; `by-peer`:
 * addresses or a hop count, so whether the peer is trusted is Fastify's call
 * (the same one behind request.ip, request.host and request.protocol; a hop
 * count alone names no peer, and Fastify trusts none with it).
 */
export type ProxyTrust = 'none' | 'all' | 'by-peer'

export function proxyTrust (setting: boolean | string | number | string[]): ProxyTrust {
  if (setting === true) return 'all'
  // Fastify treats a falsy setting (false, 0, '') as off.
  if (setting === false || setting === 0 || setting === '') return 'none'
  return 'by-peer'
}

/**
 * What ties a request the gateway makes to the client's, the same for every
 * target (a proxied request, each aggregate part): the forwarding chain and
 * host as trustProxy lets them be believed, the request id, the identity.
 */
function setForwardingHeaders (out: Record<string, string | string[]>, request: FastifyRequest, trust: ProxyTrust): void {
  const peer = request.socket.remoteAddress ?? ''
  const chain = request.headers['x-forwarded-for']
  out['x-forwarded-for'] = typeof chain === 'string' && chain.trim() !== '' && believesChain(request, trust) ? `${chain}, ${peer}` : peer
  // Both are trust-aware in Fastify: the client's x-forwarded-proto/-host only when its peer is a trusted proxy.
  out['x-forwarded-proto'] = request.protocol
  const host = request.host
  if (host !== undefined && host !== '') out['x-forwarded-host'] = host
  out['x-request-id'] = request.id
  if (request.auth !== undefined) setIdentityHeaders(out, request.auth)
}

/** The client's x-forwarded-for is believed when its peer is a trusted proxy. */
function believesChain (request: FastifyRequest, trust: ProxyTrust): boolean {
  if (trust === 'none') return false
  if (trust === 'all') return true
  // request.ips is the peer followed by the chain's addresses as far as they are trusted: past the peer only if it is.
  return request.ips !== undefined && request.ips.length > 1
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
  const out: Record<string, string> = { accept: 'application/json' }
  const h = request.headers
  if (typeof h.traceparent === 'string') out.traceparent = h.traceparent
  if (typeof h.tracestate === 'string') out.tracestate = h.tracestate
  if (opts.forwardAuthorization && typeof h.authorization === 'string') out.authorization = h.authorization
  if (opts.upstreamRequest !== undefined) applyPluginEdits(out, request, opts.upstreamRequest)
  setForwardingHeaders(out, request, opts.trustProxy)
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
