// Rate limiting with @fastify/rate-limit: counters in Redis when configured
// (shared by all instances, local fallback while Redis is down), in memory
// otherwise. The plugin is registered for its store and its `rateLimit`
// decorator only (no route gets a hook from it); rateLimitStage builds each
// route's hook, which src/gateway/pipeline.ts places in preParsing, i.e.
// after authentication (a `user` key needs the identity) and before the body
// is read.

import { createHash } from 'node:crypto'
import fp from 'fastify-plugin'
import rateLimit, { type FastifyRateLimitStoreCtor, type RateLimitOptions } from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest, preParsingAsyncHookHandler } from 'fastify'
import { GatewayError } from '../../util/errors.js'
import type { RedisConnection } from '../../redis/connection.js'
import { fallbackStoreClass, localStoreClass } from './store.js'
import type { RateLimitConfig } from '../../config/types.js'

export interface PorticoRateLimitOptions {
  redis?: RedisConnection
  keyPrefix: string
}

/** Longest the gateway waits at start for its first Redis connection attempt to succeed or fail. */
const REDIS_STARTUP_WAIT = 2000

export default fp<PorticoRateLimitOptions>(async function rateLimitPlugin (app, opts) {
  const redis = opts.redis
  let store: unknown = localStoreClass()
  if (redis !== undefined) {
    // Serve no request before Redis has answered (or refused): otherwise a freshly started
    // instance counts its first requests locally, unshared with the other instances.
    app.addHook('onReady', async () => { await redis.settled(REDIS_STARTUP_WAIT) })
    const fallback = fallbackStoreClass(redis, `${opts.keyPrefix}rl:`)
    app.addHook('onClose', async () => { fallback.close() })
    store = fallback.Store
  }
  await app.register(rateLimit, {
    global: false,
    enableDraftSpec: true,
    store: store as FastifyRateLimitStoreCtor,
    errorResponseBuilder: (_request, ctx) => new GatewayError('RATE_LIMITED', `rate limit of ${ctx.max} requests exceeded, retry in ${ctx.after}`),
  })
}, { name: 'portico-rate-limit' })

/**
 * A route's rate-limit hook, built once per route from the registered plugin's
 * `rateLimit` decorator. `routeId` names the route's counters in the store
 * (src/pipeline/rate-limit/store.ts), so every path a route is mounted on shares them.
 */
export function rateLimitStage (app: FastifyInstance, routeId: string, limit: RateLimitConfig): preParsingAsyncHookHandler {
  // The decorator's hook reads only (request, reply): it runs as well in preParsing as in
  // preHandler, and resolves to undefined, which keeps the payload stream as it is.
  return app.rateLimit({ max: limit.max, timeWindow: limit.window, keyGenerator: keyGenerator(limit.key), routeId } as RateLimitOptions) as unknown as preParsingAsyncHookHandler
}

function keyGenerator (key: RateLimitConfig['key']): (req: FastifyRequest) => string {
  // The authenticated identity: a JWT's sub, or an API key's name (never the key itself).
  if (key === 'user') return (req) => req.auth !== undefined ? `u:${req.auth.sub}` : `ip:${req.ip}`
  if (key.startsWith('header:')) {
    const name = key.slice('header:'.length).toLowerCase()
    return (req) => {
      const v = req.headers[name]
      return typeof v === 'string' && v !== '' ? `h:${hashedValue(v)}` : `ip:${req.ip}`
    }
  }
  return (req) => `ip:${req.ip}`
}

/**
 * A header used as a limit key is often a credential (an API key): the
 * counter is named by a digest of it (SHA-256, the first 128 bits in
 * base64url), never by the value, so Redis and anything that lists its keys
 * never hold the credential. Every instance computes the same digest, so the
 * counters stay shared. The digests of recent values are remembered (a
 * bounded map, oldest out first), which costs a map lookup per request
 * instead of a hash.
 */
const recentDigests = new Map<string, string>()
const REMEMBER = 10_000
const REMEMBER_UP_TO = 512

export function hashedValue (value: string): string {
  let digest = recentDigests.get(value)
  if (digest !== undefined) return digest
  digest = createHash('sha256').update(value).digest('base64url').slice(0, 22)
  if (value.length <= REMEMBER_UP_TO) {
    if (recentDigests.size >= REMEMBER) recentDigests.delete(recentDigests.keys().next().value as string)
    recentDigests.set(value, digest)
  }
  return digest
}
