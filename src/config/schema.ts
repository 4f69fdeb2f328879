// The one schema for the whole configuration (main file plus the files it
// names), written once in TypeBox: ajv validates with it (schema-errors.ts)
// and the raw config types are its `Static`s. It is assembled from named
// parts, one per section; a section with more than a few lines of its own
// (route targets, and whatever a feature adds) lives in its own module and is
// hooked in here by name. `duration` and `size` are custom keywords so their
// errors read like the README rather than like a regular expression.

import {
  Type, Strict, Dict, Enum, Const, AnyObject, Raw, Duration, Size, Name, HeaderName, AbsolutePath, HttpUrl, StringList, Port, type Static,
} from './schema-kit.js'
import { AggregateTargetSchema, CommandTargetSchema, ProxyTargetSchema } from './targets.js'
import { corsSchema, routeCorsSchema, type RawCors } from './cors.js'
import { compressionSchema, type RawCompression } from './compression.js'

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const
export type HttpMethod = typeof HTTP_METHODS[number]

export const JWT_ALGORITHMS = [
  'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA',
] as const
export type JwtAlgorithm = typeof JWT_ALGORITHMS[number]

/** The `auth:` of a policy; each has a PolicyAuth member in types.ts. */
export const AUTH_KINDS = ['none', 'jwt', 'apiKey'] as const

export type RateLimitKey = 'ip' | 'user' | `header:${string}`

const PathRulesSchema = Strict({
  mergeSlashes: Type.Optional(Type.Boolean()),
  escapedSlashes: Type.Optional(Enum(['reject', 'keep'])),
  backslashes: Type.Optional(Enum(['reject', 'keep'])),
  pathParameters: Type.Optional(Enum(['reject', 'keep'])),
  caseInsensitive: Type.Optional(Type.Boolean()),
})

export const ServerSchema = Strict({
  host: Type.Optional(Type.String({ minLength: 1 })),
  port: Type.Optional(Port()),
  bodyLimit: Type.Optional(Size()),
  trustProxy: Type.Optional(Type.Union(
    [Type.Boolean(), Type.String(), Type.Integer({ minimum: 0 }), Type.Array(Type.String())],
    { 'x-message': 'must be true, false, a number of hops, or addresses' },
  )),
  shutdownTimeout: Type.Optional(Duration()),
  requestTimeout: Type.Optional(Duration()),
  headersTimeout: Type.Optional(Duration()),
  keepAliveTimeout: Type.Optional(Duration()),
  workers: Type.Optional(Type.Union(
    [Type.Integer({ minimum: 1, maximum: 256 }), Const('auto')],
    { 'x-message': 'must be a number of worker processes or "auto"' },
  )),
  paths: Type.Optional(PathRulesSchema),
  compression: Type.Optional(Raw<RawCompression>(compressionSchema)),
})

const stringOrList = () => Type.Union([Type.String({ minLength: 1 }), StringList()], { 'x-message': 'must be a string or a list of strings' })

export const RateLimitSchema = Strict({
  max: Type.Integer({ minimum: 1 }),
  window: Duration(),
  key: Type.Optional(Raw<RateLimitKey>({ type: 'string', pattern: '^(ip|user|header:[A-Za-z0-9-]+)$', 'x-message': 'must be ip, user or header:NAME' })),
})

export const AdminSchema = Strict({
  host: Type.Optional(Type.String({ minLength: 1 })),
  port: Type.Optional(Port()),
  token: Type.Optional(Type.String()),
})

export const CacheSettingsSchema = Strict({
  maxEntries: Type.Optional(Type.Integer({ minimum: 1 })),
  maxBytes: Type.Optional(Size()),
  timeout: Type.Optional(Duration()),
  near: Type.Optional(Type.Boolean()),
})

export const EventsSchema = Strict({
  // auto (or empty, for `${EVENTS_SINK:-}`): redis when redis.url is set, else memory.
  sink: Type.Optional(Enum(['redis', 'memory', 'auto', ''], { 'x-message': 'must be redis, memory or auto' })),
  maxLen: Type.Optional(Type.Integer({ minimum: 1 })),
  idempotencyWindow: Type.Optional(Duration()),
  publishRetries: Type.Optional(Type.Integer({ minimum: 0, maximum: 10 })),
})

export const TracingSchema = Strict({
  otlpUrl: Type.Optional(Type.String()),
  serviceName: Type.Optional(Type.String({ minLength: 1 })),
})

export const RedisSchema = Strict({
  url: Type.Optional(Type.String()),
  keyPrefix: Type.Optional(Type.String()),
})

export const JwtSchema = Strict({
  secret: Type.Optional(Type.String()),
  publicKey: Type.Optional(Type.String({ minLength: 1 })),
  jwksUrl: Type.Optional(HttpUrl()),
  jwksCacheTtl: Type.Optional(Duration()),
  jwksMinRefetchInterval: Type.Optional(Duration()),
  algorithms: Type.Optional(Type.Array(Enum(JWT_ALGORITHMS), { minItems: 1 })),
  issuer: Type.Optional(stringOrList()),
  audience: Type.Optional(stringOrList()),
  clockTolerance: Type.Optional(Duration()),
  rolesClaim: Type.Optional(Type.String({ minLength: 1 })),
  requireExp: Type.Optional(Type.Boolean()),
})

export const ApiKeysSchema = Strict({
  header: Type.Optional(HeaderName()),
  keys: Dict(Strict({
    key: Type.String(),
    roles: Type.Optional(StringList()),
    scopes: Type.Optional(StringList()),
  }), { propertyNames: Name() }),
})

export const AuthSchema = Strict({
  jwt: Type.Optional(JwtSchema),
  apiKeys: Type.Optional(ApiKeysSchema),
})

const claimValue = () => Raw<string | number | boolean>({ type: ['string', 'number', 'boolean'] })

export const PolicySchema = Strict({
  auth: Enum(AUTH_KINDS),
  roles: Type.Optional(StringList()),
  scopes: Type.Optional(StringList()),
  claims: Type.Optional(Dict(Type.Union([claimValue(), Type.Array(claimValue(), { minItems: 1 })], { 'x-message': 'must be a value or a list of values' }))),
  forwardAuthorization: Type.Optional(Type.Boolean()),
  rateLimit: Type.Optional(RateLimitSchema),
  description: Type.Optional(Type.String()),
})

export const ServiceSchema = Strict({
  urls: Type.Array(HttpUrl(), { minItems: 1 }),
  timeout: Type.Optional(Duration()),
  retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 5 })),
  breaker: Type.Optional(Strict({
    errorThresholdPercentage: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 100 })),
    volumeThreshold: Type.Optional(Type.Integer({ minimum: 0 })),
    resetTimeout: Type.Optional(Duration()),
    rollingCountTimeout: Type.Optional(Duration()),
  })),
  passiveHealth: Type.Optional(Strict({
    failures: Type.Optional(Type.Integer({ minimum: 1 })),
    ejectFor: Type.Optional(Duration()),
  })),
  healthCheck: Type.Optional(Strict({
    path: AbsolutePath(),
    interval: Duration(),
    timeout: Type.Optional(Duration()),
  })),
  connections: Type.Optional(Type.Integer({ minimum: 1, maximum: 4096 })),
  maxResponseSize: Type.Optional(Size()),
  description: Type.Optional(Type.String()),
})

const method = () => Enum(HTTP_METHODS, { type: 'string' })

export const RouteCacheSchema = Strict({
  ttl: Duration(),
  scope: Type.Optional(Enum(['public', 'user'])),
  staleWhileRevalidate: Type.Optional(Duration()),
  staleIfError: Type.Optional(Duration()),
  tags: Type.Optional(StringList()),
  vary: Type.Optional(Type.Array(HeaderName())),
})

export const RouteJsonSchemasSchema = Strict({
  body: Type.Optional(AnyObject<object>()),
  querystring: Type.Optional(AnyObject<object>()),
  params: Type.Optional(AnyObject<object>()),
  headers: Type.Optional(AnyObject<object>()),
})

export const RouteConfigSchema = Strict({
  id: Name(),
  description: Type.Optional(Type.String()),
  method: Type.Optional(Type.Union([method(), Type.Array(method(), { minItems: 1 })], { 'x-message': 'must be an HTTP method (GET, POST, …) or a list of them' })),
  path: AbsolutePath(),
  policy: Type.String(),
  rateLimit: Type.Optional(RateLimitSchema),
  cache: Type.Optional(RouteCacheSchema),
  invalidates: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
  publish: Type.Optional(Strict({
    stream: Type.String({ minLength: 1 }),
    type: Type.String({ minLength: 1 }),
    from: Type.Optional(Enum(['response', 'request'])),
  })),
  // The target keys (targets.ts; a route has exactly one) sit among the others where they always have:
  // key order is the order of schema errors and of "did you mean" candidates.
  command: Type.Optional(CommandTargetSchema),
  schema: Type.Optional(RouteJsonSchemasSchema),
  aggregate: Type.Optional(AggregateTargetSchema),
  // Each plugin's own schema checks its entry (src/extensions).
  plugins: Type.Optional(AnyObject()),
  cors: Type.Optional(Raw<RawCors | boolean>(routeCorsSchema)),
  proxy: Type.Optional(ProxyTargetSchema),
})

export const ConfigSchema = Strict({
  server: Type.Optional(ServerSchema),
  admin: Type.Optional(AdminSchema),
  redis: Type.Optional(RedisSchema),
  cache: Type.Optional(CacheSettingsSchema),
  events: Type.Optional(EventsSchema),
  tracing: Type.Optional(TracingSchema),
  auth: Type.Optional(AuthSchema),
  policies: Type.Optional(Dict(PolicySchema, { propertyNames: Name() })),
  services: Dict(ServiceSchema, { propertyNames: Name() }),
  routes: Type.Array(RouteConfigSchema),
  extensions: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
  plugins: Type.Optional(AnyObject()),
  cors: Type.Optional(Raw<RawCors>(corsSchema)),
})

// The config as the schema lets it through, before normalization.
export type RawConfig = Static<typeof ConfigSchema>
export type RawServer = Static<typeof ServerSchema>
export type RawPolicy = Static<typeof PolicySchema>
export type RawService = Static<typeof ServiceSchema>
export type RawRoute = Static<typeof RouteConfigSchema>
export type RawRateLimit = Static<typeof RateLimitSchema>
export type RawRouteJsonSchemas = Static<typeof RouteJsonSchemasSchema>
