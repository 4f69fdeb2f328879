// The configuration after validation and normalization: durations and sizes
// are numbers, defaults are filled in, references are known to resolve.

import type { RouteStageHooks } from './route-hooks.js'
import type { HttpMethod, JwtAlgorithm, RateLimitKey } from './schema.js'
import type { CorsConfig } from './cors.js'
import type { CompressionConfig } from './compression.js'
import type { ActiveHealthOptions, BreakerOptions, PassiveHealthOptions } from './service-options.js'
import type { RouteTarget } from './targets.js'

export type { HttpMethod, JwtAlgorithm, RateLimitKey }
export type { AggregatePartConfig, AggregateTarget, CommandTarget, ProxyTarget, RouteTarget, TargetKind } from './targets.js'

export interface SourceLocation {
  file: string
  line: number
}

export interface ServerConfig {
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
  /** Response compression (src/config/compression.ts); absent: off. */
  compression?: CompressionConfig
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

export interface ApiKeysConfig {
  /** Lower-cased. */
  header: string
  keys: ApiKeyConfig[]
}

export interface AuthConfig {
  jwt?: JwtConfig
  apiKeys?: ApiKeysConfig
}

export interface RateLimitConfig {
  max: number
  window: number
  key: RateLimitKey
}

export type ClaimValue = string | number | boolean

export interface PolicyRules {
  name: string
  roles: string[]
  scopes: string[]
  claims: Record<string, ClaimValue[]>
  forwardAuthorization: boolean
  rateLimit?: RateLimitConfig
}

/**
 * How a policy authenticates, one member per `auth:` value (AUTH_KINDS in
 * schema.ts), each carrying what it verifies with: the gateway's auth
 * section, which validation made sure is set. These hold secrets: the admin
 * view shows a policy's rules and kind only.
 */
export type PolicyAuth =
  | { auth: 'none' }
  | { auth: 'jwt', jwt: JwtConfig }
  | { auth: 'apiKey', apiKeys: ApiKeysConfig }

export type PolicyConfig = PolicyRules & PolicyAuth
export type AuthKind = PolicyAuth['auth']

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
  /** What the route answers with: exactly one target, told apart by `kind`. */
  target: RouteTarget
  cache?: RouteCacheConfig
  /** Tag templates purged after a 2xx answer. */
  invalidates?: string[]
  publish?: PublishConfig
  /** The route's plugins (gateway-wide and its own), compiled; absent when it has none. */
  plugins?: RouteStageHooks
  /** The route's own CORS policy (replacing the gateway's) or false; absent: the gateway's. */
  cors?: CorsConfig | false
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
  /** Gateway-wide CORS; absent: no CORS headers (src/config/cors.ts). */
  cors?: CorsConfig
}
