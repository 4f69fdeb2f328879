// The configuration after validation and normalization: durations and sizes
// are numbers, defaults are filled in, references are known to resolve.

import type { RouteStageHooks } from './route-hooks.js'
import type { HTTP_METHODS, JWT_ALGORITHMS } from './schema.js'
import type { EdgeServerConfig } from './tls.js'
import type { ActiveHealthOptions, BreakerOptions, PassiveHealthOptions } from './service-options.js'

export type HttpMethod = typeof HTTP_METHODS[number]
export type JwtAlgorithm = typeof JWT_ALGORITHMS[number]

export interface SourceLocation {
  file: string
  line: number
}

/** `tls`, `http2`, `redirectHttpPort`: src/config/tls.ts. */
export interface ServerConfig extends EdgeServerConfig {
  host: string
  port: number
  bodyLimit: number
  trustProxy: boolean | string | number | string[]
  shutdownTimeout: number
  requestTimeout: number
  headersTimeout: number
  keepAliveTimeout: number
  /** Worker processes (node:cluster); "auto" is resolved to the CPU count. */
  workers: number
  /** How request paths are normalised before matching and forwarding (src/pipeline/paths/normalise.ts). */
  paths: PathRules
}

export interface PathRules {
  /** `//` → `/`; false keeps them (and `{params.*}` then refuses an empty segment). */
  mergeSlashes: boolean
  /** `%2F`/`%5C` in the path. */
  escapedSlashes: 'reject' | 'keep'
  /** A raw `\` in the path. */
  backslashes: 'reject' | 'keep'
  /** A `;` in a path segment. */
  pathParameters: 'reject' | 'keep'
  /** Match and forward the path lower-cased. */
  caseInsensitive: boolean
}

export interface AdminConfig {
  host: string
  /** 0: no admin listener. */
  port: number
  /** Empty: no token required (the listener is on loopback by default). */
  token: string
}

export interface RedisConfig {
  /** Empty: no Redis; stores are in memory (one instance only). */
  url: string
  /** Prefix of every key the gateway writes, so several gateways or tests can share one Redis. */
  keyPrefix: string
}

export interface JwtConfig {
  secret?: string
  /** PEM text of the public key (read from the configured file). */
  publicKey?: string
  publicKeyFile?: string
  jwksUrl?: string
  jwksCacheTtl: number
  jwksMinRefetchInterval: number
  algorithms: JwtAlgorithm[]
  issuer?: string[]
  audience?: string[]
  clockTolerance: number
  rolesClaim: string
  /** Refuse tokens without `exp` (a token that never expires cannot be revoked by waiting). */
  requireExp: boolean
}

export interface ApiKeyConfig {
  name: string
  key: string
  roles: string[]
  scopes: string[]
}

export interface AuthConfig {
  jwt?: JwtConfig
  apiKeys?: { header: string, keys: ApiKeyConfig[] }
}

export type RateLimitKey = 'ip' | 'user' | `header:${string}`

export interface RateLimitConfig {
  max: number
  window: number
  key: RateLimitKey
}

export type ClaimValue = string | number | boolean

export interface PolicyConfig {
  name: string
  auth: 'none' | 'jwt' | 'apiKey' | 'mtls'
  /** auth: mtls: the subject CNs allowed (absent: any certificate signed by server.tls.clientCa). */
  subjects?: string[]
  roles: string[]
  scopes: string[]
  claims: Record<string, ClaimValue[]>
  forwardAuthorization: boolean
  rateLimit?: RateLimitConfig
}

export interface ServiceConfig {
  name: string
  urls: string[]
  timeout: number
  retries: number
  breaker: BreakerOptions
  passiveHealth: PassiveHealthOptions
  healthCheck?: ActiveHealthOptions
  /** Most connections kept to each instance. */
  connections: number
  /** Largest upstream body an aggregate part buffers. */
  maxResponseSize: number
}

export interface ProxyTargetConfig {
  service: string
  /** Upstream path template; absent: the incoming path is forwarded unchanged. */
  path?: string
}

export interface AggregatePartConfig {
  name: string
  service: string
  path: string
  query: Record<string, string>
  headers: Record<string, string>
  /** The part's own timeout, else its service's. */
  timeout: number
  optional: boolean
  fallback: unknown
  pick?: string[]
}

export interface RouteCacheConfig {
  ttl: number
  scope: 'public' | 'user'
  staleWhileRevalidate: number
  staleIfError: number
  tags: string[]
  /** Lower-cased request header names. */
  vary: string[]
}

export interface CacheSettings {
  /** In-memory store bounds (used when no Redis is configured). */
  maxEntries: number
  maxBytes: number
  /** Budget for one cache store operation before it is skipped. */
  timeout: number
  /** With Redis: keep entries read from it in memory too, evicted by Redis client tracking. */
  near: boolean
}

export interface PublishConfig {
  stream: string
  type: string
  from: 'response' | 'request'
}

export interface CommandConfig {
  stream: string
  type: string
  statusPath?: string
}

export interface EventsConfig {
  /** undefined: no publish/command routes may exist. */
  sink?: 'redis' | 'memory'
  maxLen: number
  idempotencyWindow: number
  publishRetries: number
}

export interface RouteSchema {
  body?: object
  querystring?: object
  params?: object
  headers?: object
}

export interface RouteConfig {
  id: string
  description?: string
  methods: HttpMethod[]
  path: string
  policy: string
  /** The route's own limit, else its policy's. */
  rateLimit?: RateLimitConfig
  schema?: RouteSchema
  proxy?: ProxyTargetConfig
  /** Parts in declaration order. */
  aggregate?: AggregatePartConfig[]
  cache?: RouteCacheConfig
  /** Tag templates purged after a 2xx answer. */
  invalidates?: string[]
  publish?: PublishConfig
  command?: CommandConfig
  /** The route's plugins (gateway-wide and its own), compiled; absent when it has none. */
  plugins?: RouteStageHooks
  source: SourceLocation
}

export interface GatewayConfig {
  /** The main config file, absolute. */
  file: string
  /** Every file the config was read from (main, policies, services, routes). */
  files: string[]
  server: ServerConfig
  admin: AdminConfig
  redis: RedisConfig
  cache: CacheSettings
  events: EventsConfig
  tracing: { otlpUrl: string, serviceName: string }
  auth: AuthConfig
  policies: Map<string, PolicyConfig>
  services: Map<string, ServiceConfig>
  routes: RouteConfig[]
}

export const DEFAULTS = {
  server: {
    host: '0.0.0.0',
    port: 8080,
    bodyLimit: 1024 * 1024,
    trustProxy: false,
    shutdownTimeout: 10_000,
    requestTimeout: 30_000,
    headersTimeout: 10_000,
    // Longer than the 60 s idle timeout of common load balancers, so the
    // gateway never closes a connection the balancer is about to reuse.
    keepAliveTimeout: 72_000,
    workers: 1,
    paths: { mergeSlashes: true, escapedSlashes: 'reject', backslashes: 'reject', pathParameters: 'reject', caseInsensitive: false } as PathRules,
  },
  service: {
    timeout: 10_000,
    retries: 0,
    connections: 128,
    maxResponseSize: 1024 * 1024,
    breaker: { errorThresholdPercentage: 50, volumeThreshold: 5, resetTimeout: 10_000, rollingCountTimeout: 10_000 },
    passiveHealth: { failures: 3, ejectFor: 10_000 },
    healthCheckTimeout: 2_000,
  },
  redis: { keyPrefix: 'portico:' },
  cache: { maxEntries: 10_000, maxBytes: 64 * 1024 * 1024, timeout: 50, near: true },
  events: { maxLen: 100_000, idempotencyWindow: 86_400_000, publishRetries: 3 },
  jwt: {
    algorithms: ['HS256'] as JwtAlgorithm[],
    clockTolerance: 5_000,
    rolesClaim: 'roles',
    jwksCacheTtl: 600_000,
    jwksMinRefetchInterval: 30_000,
    requireExp: true,
  },
  apiKeys: { header: 'x-api-key' },
  rateLimitKey: 'ip' as RateLimitKey,
} as const
