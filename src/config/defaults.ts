// Every default of the core config, once. Normalization fills absent keys
// from here, the cross-checks reason with the same values, and the code that
// runs with them (upstream pools, the balancer) takes its fallbacks from here
// rather than restating them. A feature's own section may keep its defaults
// next to its schema, in its own module.

import type { HttpMethod, JwtAlgorithm, RateLimitKey } from './schema.js'

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
    paths: { mergeSlashes: true, escapedSlashes: 'reject', backslashes: 'reject', pathParameters: 'reject', caseInsensitive: false },
  },
  service: {
    timeout: 10_000,
    retries: 0,
    connections: 128,
    maxResponseSize: 1024 * 1024,
    breaker: { errorThresholdPercentage: 50, volumeThreshold: 5, resetTimeout: 10_000, rollingCountTimeout: 10_000 },
    passiveHealth: { failures: 3, ejectFor: 10_000 },
    healthCheckTimeout: 2_000,
    /** Not configurable: how long an idle upstream connection is kept. */
    keepAliveTimeout: 30_000,
    /** Not configurable: the most a connect may take (a shorter service timeout wins). */
    connectTimeout: 5_000,
  },
  rateLimit: { key: 'ip' as RateLimitKey },
  admin: { host: '127.0.0.1', port: 0, token: '' },
  redis: { url: '', keyPrefix: 'portico:' },
  cache: { maxEntries: 10_000, maxBytes: 64 * 1024 * 1024, timeout: 50, near: true },
  events: { maxLen: 100_000, idempotencyWindow: 86_400_000, publishRetries: 3 },
  tracing: { otlpUrl: '', serviceName: 'portico' },
  jwt: {
    algorithms: ['HS256'] as JwtAlgorithm[],
    clockTolerance: 5_000,
    rolesClaim: 'roles',
    jwksCacheTtl: 600_000,
    jwksMinRefetchInterval: 30_000,
    requireExp: true,
  },
  apiKeys: { header: 'x-api-key' },
} as const

/** A cached route's scope when it names none: an authenticated route's answers are per user. */
export function defaultCacheScope (auth: string | undefined): 'public' | 'user' {
  return auth === 'none' ? 'public' : 'user'
}

/** A route's methods: GET when it names none, each once. */
export function routeMethods (method: HttpMethod | HttpMethod[] | undefined): HttpMethod[] {
  const m = method ?? 'GET'
  return Array.isArray(m) ? [...new Set(m)] : [m]
}

/**
 * Where publish and command routes write. Absent: Redis when redis.url is
 * set, else nowhere (those routes are then config errors). `auto` or empty
 * (an unset `${EVENTS_SINK:-}`): Redis when redis.url is set, else memory.
 */
export function eventSinkOf (sink: 'redis' | 'memory' | 'auto' | '' | undefined, redisUrl: string): 'redis' | 'memory' | undefined {
  if (sink === 'redis' || sink === 'memory') return sink
  if (redisUrl !== '') return 'redis'
  return sink === undefined ? undefined : 'memory'
}
