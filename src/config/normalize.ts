// A validated raw config (schema.ts's Static types) becomes the GatewayConfig
// the gateway runs with (types.ts): durations and sizes are numbers, every
// absent key takes its default (defaults.ts), a route's target and a policy's
// auth are discriminated unions. Only called once every check passed.

import { availableParallelism } from 'node:os'
import { dirname, resolve } from 'node:path'
import type { SourceMap } from './load.js'
import type { RawConfig, RawPolicy, RawRateLimit, RawRoute, RawServer, RawService } from './schema.js'
import type {
  AuthConfig, ClaimValue, GatewayConfig, JwtConfig, PolicyAuth, PolicyConfig, RateLimitConfig, RouteCacheConfig, RouteConfig, ServerConfig, ServiceConfig,
} from './types.js'
import { DEFAULTS, defaultCacheScope, eventSinkOf, routeMethods } from './defaults.js'
import { normalizeTarget } from './targets.js'
import { parseDuration, parseSize } from './units.js'
import { normalizeGatewayCors, normalizeRouteCors } from './cors.js'
import { normalizeCompression } from './compression.js'

export interface NormalizeContext {
  map: SourceMap
  /** The main config file, absolute (files it names are relative to it). */
  file: string
  env: NodeJS.ProcessEnv
  /** PEM text the checks read, by absolute file name. */
  publicKeys: Map<string, string>
}

/**
 * The GatewayConfig. A section in its own module adds one line here (or in
 * normalizeServer / normalizeRoute for a key of theirs), e.g.
 * `...(raw.cors !== undefined ? { cors: normalizeCors(raw.cors) } : {}),` in the object returned.
 */
export function normalize (raw: RawConfig, ctx: NormalizeContext): GatewayConfig {
  const { map, file, publicKeys } = ctx
  const server = normalizeServer(raw.server ?? {}, ctx)
  const auth = normalizeAuth(raw, file, publicKeys)
  const policies = new Map<string, PolicyConfig>()
  for (const [name, p] of Object.entries(raw.policies ?? {})) policies.set(name, normalizePolicy(name, p, auth))
  const services = new Map<string, ServiceConfig>()
  for (const [name, svc] of Object.entries(raw.services)) services.set(name, normalizeService(name, svc))
  const serviceTimeout = (service: string): number => services.get(service)?.timeout ?? DEFAULTS.service.timeout
  const routes = raw.routes.map((r, i) => normalizeRoute(r, map.locate(['routes', i]), policies, serviceTimeout))
  const redis = { url: raw.redis?.url ?? DEFAULTS.redis.url, keyPrefix: raw.redis?.keyPrefix ?? DEFAULTS.redis.keyPrefix }
  const admin = { host: raw.admin?.host ?? DEFAULTS.admin.host, port: raw.admin?.port ?? DEFAULTS.admin.port, token: raw.admin?.token ?? DEFAULTS.admin.token }
  const files = map.files()
  if (auth.jwt?.publicKeyFile !== undefined) files.push(auth.jwt.publicKeyFile)
  const cache = {
    maxEntries: raw.cache?.maxEntries ?? DEFAULTS.cache.maxEntries,
    maxBytes: parseSize(raw.cache?.maxBytes) ?? DEFAULTS.cache.maxBytes,
    timeout: parseDuration(raw.cache?.timeout) ?? DEFAULTS.cache.timeout,
    near: raw.cache?.near ?? DEFAULTS.cache.near,
  }
  const e = raw.events ?? {}
  const sink = eventSinkOf(e.sink, redis.url)
  const events = {
    ...(sink !== undefined ? { sink } : {}),
    maxLen: e.maxLen ?? DEFAULTS.events.maxLen,
    idempotencyWindow: parseDuration(e.idempotencyWindow) ?? DEFAULTS.events.idempotencyWindow,
    publishRetries: e.publishRetries ?? DEFAULTS.events.publishRetries,
  }
  const tracing = { otlpUrl: raw.tracing?.otlpUrl ?? DEFAULTS.tracing.otlpUrl, serviceName: raw.tracing?.serviceName ?? DEFAULTS.tracing.serviceName }
  return { file, files, server, admin, redis, cache, events, tracing, auth, policies, services, routes, ...normalizeGatewayCors(raw) }
}

function normalizeServer (s: RawServer, { env }: NormalizeContext): ServerConfig {
  const d = DEFAULTS.server
  return {
    host: s.host ?? d.host,
    // checkEnvPort refused anything but a port number.
    port: env.PORT !== undefined && env.PORT !== '' ? Number(env.PORT) : s.port ?? d.port,
    bodyLimit: parseSize(s.bodyLimit) ?? d.bodyLimit,
    trustProxy: s.trustProxy ?? d.trustProxy,
    shutdownTimeout: parseDuration(s.shutdownTimeout) ?? d.shutdownTimeout,
    requestTimeout: parseDuration(s.requestTimeout) ?? d.requestTimeout,
    headersTimeout: parseDuration(s.headersTimeout) ?? d.headersTimeout,
    keepAliveTimeout: parseDuration(s.keepAliveTimeout) ?? d.keepAliveTimeout,
    workers: s.workers === 'auto' ? availableParallelism() : s.workers ?? d.workers,
    paths: { ...d.paths, ...s.paths },
    ...normalizeCompression(s.compression),
  }
}

function normalizeRoute (r: RawRoute, loc: { file: string, line: number }, policies: Map<string, PolicyConfig>, serviceTimeout: (service: string) => number): RouteConfig {
  const rateLimit = normalizeRateLimit(r.rateLimit) ?? policies.get(r.policy)?.rateLimit
  return {
    id: r.id,
    ...(r.description !== undefined ? { description: r.description } : {}),
    methods: routeMethods(r.method),
    path: r.path,
    policy: r.policy,
    ...(rateLimit !== undefined ? { rateLimit } : {}),
    ...(r.schema !== undefined ? { schema: r.schema } : {}),
    target: normalizeTarget(r, { routeId: r.id, serviceTimeout }),
    ...(r.cache !== undefined ? { cache: normalizeCache(r.cache, policies.get(r.policy)?.auth) } : {}),
    ...(r.invalidates !== undefined ? { invalidates: r.invalidates } : {}),
    ...(r.publish !== undefined ? { publish: { stream: r.publish.stream, type: r.publish.type, from: r.publish.from ?? 'response' } } : {}),
    ...normalizeRouteCors(r),
    source: { file: loc.file, line: loc.line },
  }
}

function normalizeCache (c: NonNullable<RawRoute['cache']>, auth: string | undefined): RouteCacheConfig {
  return {
    ttl: parseDuration(c.ttl) ?? 0,
    scope: c.scope ?? defaultCacheScope(auth),
    staleWhileRevalidate: parseDuration(c.staleWhileRevalidate) ?? 0,
    staleIfError: parseDuration(c.staleIfError) ?? 0,
    tags: c.tags ?? [],
    vary: (c.vary ?? []).map(h => h.toLowerCase()),
  }
}

function normalizeService (name: string, svc: RawService): ServiceConfig {
  const d = DEFAULTS.service
  const timeout = parseDuration(svc.timeout) ?? d.timeout
  const b = svc.breaker ?? {}
  const out: ServiceConfig = {
    name,
    urls: svc.urls,
    timeout,
    retries: svc.retries ?? d.retries,
    breaker: {
      errorThresholdPercentage: b.errorThresholdPercentage ?? d.breaker.errorThresholdPercentage,
      volumeThreshold: b.volumeThreshold ?? d.breaker.volumeThreshold,
      resetTimeout: parseDuration(b.resetTimeout) ?? d.breaker.resetTimeout,
      rollingCountTimeout: parseDuration(b.rollingCountTimeout) ?? d.breaker.rollingCountTimeout,
    },
    passiveHealth: {
      failures: svc.passiveHealth?.failures ?? d.passiveHealth.failures,
      ejectFor: parseDuration(svc.passiveHealth?.ejectFor) ?? d.passiveHealth.ejectFor,
    },
    connections: svc.connections ?? d.connections,
    maxResponseSize: parseSize(svc.maxResponseSize) ?? d.maxResponseSize,
  }
  if (svc.healthCheck !== undefined) {
    out.healthCheck = {
      path: svc.healthCheck.path,
      interval: parseDuration(svc.healthCheck.interval) ?? 10_000,
      timeout: parseDuration(svc.healthCheck.timeout) ?? Math.min(d.healthCheckTimeout, timeout),
    }
  }
  return out
}

function normalizeRateLimit (r: RawRateLimit | undefined): RateLimitConfig | undefined {
  if (r === undefined) return undefined
  return { max: r.max, window: parseDuration(r.window) ?? 60_000, key: r.key ?? DEFAULTS.rateLimit.key }
}

function normalizePolicy (name: string, p: RawPolicy, auth: AuthConfig): PolicyConfig {
  const claims: Record<string, ClaimValue[]> = {}
  for (const [claim, v] of Object.entries(p.claims ?? {})) claims[claim] = Array.isArray(v) ? v : [v]
  const rateLimit = normalizeRateLimit(p.rateLimit)
  return {
    name,
    ...policyAuth(name, p.auth, auth),
    roles: p.roles ?? [],
    scopes: p.scopes ?? [],
    claims,
    forwardAuthorization: p.forwardAuthorization ?? false,
    ...(rateLimit !== undefined ? { rateLimit } : {}),
  }
}

/** The policy's `auth:` with what it verifies with (checkAuth made sure the section it needs is set). */
function policyAuth (name: string, kind: RawPolicy['auth'], auth: AuthConfig): PolicyAuth {
  switch (kind) {
    case 'none': return { auth: kind }
    case 'jwt': if (auth.jwt !== undefined) return { auth: kind, jwt: auth.jwt }; break
    case 'apiKey': if (auth.apiKeys !== undefined) return { auth: kind, apiKeys: auth.apiKeys }; break
  }
  throw new Error(`policy ${name}: auth: ${kind} without its auth section`)
}

function asList (v: string | string[] | undefined): string[] | undefined {
  return v === undefined ? undefined : Array.isArray(v) ? v : [v]
}

function normalizeAuth (raw: RawConfig, file: string, publicKeys: Map<string, string>): AuthConfig {
  const out: AuthConfig = {}
  const j = raw.auth?.jwt
  if (j !== undefined) {
    const d = DEFAULTS.jwt
    const keyFile = j.publicKey !== undefined ? resolve(dirname(file), j.publicKey) : undefined
    const jwt: JwtConfig = {
      algorithms: j.algorithms ?? d.algorithms,
      clockTolerance: parseDuration(j.clockTolerance) ?? d.clockTolerance,
      rolesClaim: j.rolesClaim ?? d.rolesClaim,
      jwksCacheTtl: parseDuration(j.jwksCacheTtl) ?? d.jwksCacheTtl,
      jwksMinRefetchInterval: parseDuration(j.jwksMinRefetchInterval) ?? d.jwksMinRefetchInterval,
      requireExp: j.requireExp ?? d.requireExp,
    }
    if (j.secret !== undefined && j.secret !== '') jwt.secret = j.secret
    if (keyFile !== undefined) { jwt.publicKeyFile = keyFile; jwt.publicKey = publicKeys.get(keyFile) }
    if (j.jwksUrl !== undefined) jwt.jwksUrl = j.jwksUrl
    const issuer = asList(j.issuer)
    if (issuer !== undefined) jwt.issuer = issuer
    const audience = asList(j.audience)
    if (audience !== undefined) jwt.audience = audience
    out.jwt = jwt
  }
  const a = raw.auth?.apiKeys
  if (a !== undefined) {
    out.apiKeys = {
      header: (a.header ?? DEFAULTS.apiKeys.header).toLowerCase(),
      keys: Object.entries(a.keys).map(([name, k]) => ({ name, key: k.key, roles: k.roles ?? [], scopes: k.scopes ?? [] })),
    }
  }
  return out
}
