// Rate limiting (pipeline step 5) with @fastify/rate-limit: counters in Redis
// when configured (shared by all instances, local fallback while Redis is
// down), in memory otherwise. Runs in preParsing, i.e. after authentication
// (a `user` key needs the identity) and before the body is read.

import fp from 'fastify-plugin'
import rateLimit, { type FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { FastifyRequest } from 'fastify'
import { GatewayError } from '../src/errors.js'
import type { RedisConnection } from '../src/redis.js'
import { fallbackStoreClass, localStoreClass } from '../src/rate-limit-store.js'
import type { RateLimitConfig } from '../src/config/types.js'

export interface PorticoRateLimitOptions {
  redis?: RedisConnection
  keyPrefix: string
}

/** Longest the gateway waits at start for its first Redis connection attempt to succeed or fail. */
const REDIS_STARTUP_WAIT = 2000

export default fp<PorticoRateLimitOptions>(async function rateLimitPlugin (app, opts) {
  const redis = opts.redis
  if (redis !== undefined) {
    // Serve no request before Redis has answered (or refused): otherwise a freshly started
    // instance counts its first requests locally, unshared with the other instances.
    app.addHook('onReady', async () => { await redis.settled(REDIS_STARTUP_WAIT) })
  }
  await app.register(rateLimit, {
    global: false,
    hook: 'preParsing',
    enableDraftSpec: true,
    store: (opts.redis !== undefined ? fallbackStoreClass(opts.redis, `${opts.keyPrefix}rl:`) : localStoreClass()) as unknown as FastifyRateLimitStoreCtor,
    errorResponseBuilder: (_request, ctx) => new GatewayError('RATE_LIMITED', `rate limit of ${ctx.max} requests exceeded, retry in ${ctx.after}`),
  })
}, { name: 'portico-rate-limit' })

/** The per-route options @fastify/rate-limit reads from `config.rateLimit`, built once per route. */
export function routeRateLimit (limit: RateLimitConfig): { max: number, timeWindow: number, keyGenerator: (req: FastifyRequest) => string } {
  return { max: limit.max, timeWindow: limit.window, keyGenerator: keyGenerator(limit.key) }
}

function keyGenerator (key: RateLimitConfig['key']): (req: FastifyRequest) => string {
  if (key === 'user') return (req) => req.auth !== undefined ? `u:${req.auth.sub}` : `ip:${req.ip}`
  if (key.startsWith('header:')) {
    const name = key.slice('header:'.length).toLowerCase()
    return (req) => {
      const v = req.headers[name]
      return typeof v === 'string' && v !== '' ? `h:${v}` : `ip:${req.ip}`
    }
  }
  return (req) => `ip:${req.ip}`
}
