// CORS for browser clients: a route's policy compiled once at load (an exact
// origin set plus suffix matchers for `https://*.example.com`), the preflight
// answered by the gateway before any route stage runs, and the response stage
// that puts the policy's headers on every answer of a route — errors and cache
// HITs included — and takes any the upstream sent off it.
//
// Not @fastify/cors (11.x), which does not fit in these ways:
// - Its preflight is answered from an `OPTIONS *` route (or its onRequest hook)
//   without looking at which route the requested method would reach: a
//   preflight for DELETE on a GET-only path gets the full allow headers, and a
//   route's own `config.cors` is never consulted for preflights (they arrive on
//   its `OPTIONS *` route, whose config is not the target route's).
// - Per-route options are merged over the global ones; a route's block here
//   replaces the gateway's, nothing inherited.
// - It sets the headers in onRequest: the proxy later copies the upstream's
//   headers onto the reply, so an upstream's `access-control-allow-origin: *`
//   or its own `vary` would overwrite or leak past the gateway's policy.
// - Origins are exact strings (case-sensitive), RegExps or a callback; our
//   wildcard and canonical-origin rules would be a callback anyway.
// - With strictPreflight, an OPTIONS without Origin or
//   Access-Control-Request-Method is answered 400 text/plain, not routed.

import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler, onSendHookHandler } from 'fastify'
import FindMyWay from 'find-my-way'
import type { CorsConfig } from '../config/cors.js'
import type { HttpMethod, RouteConfig } from '../config/types.js'

/** A route's CORS, compiled. `allowedOrigin` is the one per-request step. */
export interface CorsPolicy {
  /** `cors: false`: no access-control-* headers at all on this route's answers. */
  off: boolean
  /** The origin to send back in access-control-allow-origin, or undefined when not allowed. */
  allowedOrigin: (origin: string | string[] | undefined) => string | undefined
  /** `*` listed (never with credentials): `access-control-allow-origin: *`, the same for every origin. */
  anyOrigin: boolean
  credentials: boolean
  /** Header values, joined once. */
  allowHeaders?: string
  exposeHeaders?: string
  maxAge?: string
}

/** Longer than any origin a browser sends (a DNS name is at most 253 characters); longer ones are not even lower-cased. */
const MAX_ORIGIN_LENGTH = 512
/** What may stand where `*` is in `https://*.example.com`: one or more DNS labels. */
const SUBDOMAIN_LABELS = /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/

const NOTHING = (): undefined => undefined

export const CORS_OFF: CorsPolicy = { off: true, allowedOrigin: NOTHING, anyOrigin: false, credentials: false }

const compiled = new WeakMap<CorsConfig, CorsPolicy>()

/** Compiled once per config block: the gateway's block is shared by every route that uses it. */
export function compileCors (config: CorsConfig): CorsPolicy {
  const known = compiled.get(config)
  if (known !== undefined) return known
  const exact = new Set<string>()
  const suffixes: Array<{ scheme: string, suffix: string }> = []
  let anyOrigin = false
  for (const origin of config.origins) {
    if (origin === '*') { anyOrigin = true; continue }
    const star = origin.indexOf('://*.')
    if (star === -1) exact.add(origin)
    // `https://*.example.com:8443` → scheme `https://`, suffix `.example.com:8443`.
    else suffixes.push({ scheme: origin.slice(0, star + 3), suffix: origin.slice(star + 4) })
  }
  const policy: CorsPolicy = {
    off: false,
    anyOrigin,
    allowedOrigin: anyOrigin ? anyOneOrigin : originMatcher(exact, suffixes),
    credentials: config.credentials,
    ...(config.headers.length > 0 ? { allowHeaders: config.headers.join(', ') } : {}),
    ...(config.exposeHeaders.length > 0 ? { exposeHeaders: config.exposeHeaders.join(', ') } : {}),
    ...(config.maxAge !== undefined ? { maxAge: String(Math.floor(config.maxAge / 1000)) } : {}),
  }
  compiled.set(config, policy)
  return policy
}

/**
 * `"*"`: any one origin, answered by name (with `vary: origin`, as for a
 * list), so every answer says which origin may read it. Two Origin headers
 * (joined "a, b") or an oversized one still get nothing.
 */
function anyOneOrigin (header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string' || header.length === 0 || header.length > MAX_ORIGIN_LENGTH || header.includes(',')) return undefined
  return header.toLowerCase()
}

function originMatcher (exact: Set<string>, suffixes: Array<{ scheme: string, suffix: string }>): CorsPolicy['allowedOrigin'] {
  return function allowedOrigin (header) {
    // Two Origin headers arrive joined ("a, b"): no origin has a comma or space, so that matches nothing.
    if (typeof header !== 'string' || header.length === 0 || header.length > MAX_ORIGIN_LENGTH) return undefined
    // Scheme and host are case-insensitive (browsers always send lower case); the answer is the canonical form.
    const origin = header.toLowerCase()
    if (exact.has(origin)) return origin
    for (const { scheme, suffix } of suffixes) {
      if (origin.length > scheme.length + suffix.length && origin.startsWith(scheme) && origin.endsWith(suffix) &&
        SUBDOMAIN_LABELS.test(origin.slice(scheme.length, origin.length - suffix.length))) return origin
    }
    return undefined
  }
}

/** The policy a route's answers follow: its own block, `false`, or the gateway's; undefined when there is none. */
export function routeCorsPolicy (route: Pick<RouteConfig, 'cors'>, gateway: CorsConfig | undefined): CorsPolicy | undefined {
  if (route.cors === false) return CORS_OFF
  if (route.cors !== undefined) return compileCors(route.cors)
  return gateway !== undefined ? compileCors(gateway) : undefined
}

// ---- answers -------------------------------------------------------------------

const PREFLIGHT = Symbol('portico.corsPreflight')
type MarkedRequest = FastifyRequest & { [PREFLIGHT]?: true }

/** Adds a token to `vary` unless it is there (or `vary: *`); an upstream's own vary is kept. */
function addVary (reply: FastifyReply, token: string): void {
  const current = reply.getHeader('vary')
  if (current === undefined) { reply.header('vary', token); return }
  const text = Array.isArray(current) ? current.join(', ') : String(current)
  for (const part of text.split(',')) {
    const t = part.trim().toLowerCase()
    if (t === token || t === '*') return
  }
  reply.header('vary', `${text}, ${token}`)
}

/** Whatever access-control-* headers the upstream (or a header plugin) put on the answer: the gateway's policy wins. */
function removeOtherCors (reply: FastifyReply): void {
  for (const name of Object.keys(reply.getHeaders())) {
    if (name.length > 15 && name.startsWith('access-control-')) reply.removeHeader(name)
  }
}

/** The headers of an actual (non-preflight) answer: allow-origin (the origin itself), vary, credentials, expose. */
function applyResponseHeaders (request: FastifyRequest, reply: FastifyReply, policy: CorsPolicy): void {
  removeOtherCors(reply)
  if (policy.off) return
  // Every answer depends on Origin: a shared cache must not hand one origin's answer, or a
  // no-Origin answer, to another.
  addVary(reply, 'origin')
  const allowed = policy.allowedOrigin(request.headers.origin)
  if (allowed === undefined) return
  reply.header('access-control-allow-origin', allowed)
  if (policy.credentials) reply.header('access-control-allow-credentials', 'true')
  if (policy.exposeHeaders !== undefined) reply.header('access-control-expose-headers', policy.exposeHeaders)
}

/**
 * A route's response stage (onSend, after its plugins' response hooks): added
 * per request, after the cache has stored or read its entry, so no entry ever
 * holds one origin's headers.
 */
export function corsResponseStage (policy: CorsPolicy): onSendHookHandler {
  return async function corsHeaders (request, reply, payload) {
    if ((request as MarkedRequest)[PREFLIGHT] !== true) applyResponseHeaders(request, reply, policy)
    return payload
  }
}

export interface CorsMount {
  url: string
  methods: readonly HttpMethod[]
  policy: CorsPolicy | undefined
}

/**
 * Mounts what CORS needs beyond each route's own stage: the preflight answer
 * (gateway-wide onRequest, after request id, framing and request target) and
 * the gateway policy on answers no route gives (404). Nothing at all when no
 * policy exists anywhere. Call before the routes are registered.
 */
export function mountCors (app: FastifyInstance, mounts: CorsMount[], gateway: CorsPolicy | undefined, caseSensitive: boolean): void {
  if (gateway === undefined && mounts.every(m => m.policy === undefined)) return
  // Which route a preflight's requested method would reach, matched like Fastify's own router.
  const router = FindMyWay({ caseSensitive, maxParamLength: 500 })
  for (const m of mounts) {
    for (const method of m.methods) router.on(method, m.url, () => {}, { policy: m.policy })
  }
  app.addHook('onRequest', preflightHook(router))
  if (gateway !== undefined) {
    app.addHook('onSend', async function corsNotFound (request, reply, payload) {
      if (request.is404 && (request as MarkedRequest)[PREFLIGHT] !== true) applyResponseHeaders(request, reply, gateway)
      return payload
    })
  }
}

type PolicyRouter = FindMyWay.Instance<FindMyWay.HTTPVersion.V1>

/**
 * A preflight (OPTIONS with Origin and Access-Control-Request-Method) is
 * answered here with 204, before any route stage (authentication, rate
 * limit) and never forwarded. The access-control-* headers are only there
 * when a route at this path takes the requested method and its policy allows
 * the origin. An OPTIONS that is not a preflight goes on as an ordinary request.
 */
function preflightHook (router: PolicyRouter): onRequestAsyncHookHandler {
  return async function corsPreflight (request, reply) {
    if (request.method !== 'OPTIONS') return
    const method = request.headers['access-control-request-method']
    const origin = request.headers.origin
    if (method === undefined || origin === undefined) return
    ;(request as MarkedRequest)[PREFLIGHT] = true
    reply.header('vary', 'origin, access-control-request-method')
    // A method token is matched as sent (methods are case-sensitive; browsers upper-case the standard ones).
    const found = typeof method === 'string' ? router.find(method as FindMyWay.HTTPMethod, request.url) : null
    const policy = (found?.store as { policy?: CorsPolicy } | undefined)?.policy
    const allowed = policy === undefined ? undefined : policy.allowedOrigin(origin)
    if (policy !== undefined && allowed !== undefined) {
      reply.header('access-control-allow-origin', allowed)
      reply.header('access-control-allow-methods', method)
      if (policy.allowHeaders !== undefined) reply.header('access-control-allow-headers', policy.allowHeaders)
      if (policy.credentials) reply.header('access-control-allow-credentials', 'true')
      if (policy.maxAge !== undefined) reply.header('access-control-max-age', policy.maxAge)
    }
    return reply.code(204).send()
  }
}
