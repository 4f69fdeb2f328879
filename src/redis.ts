// The gateway's one Redis connection (per process), shared by the rate
// limiter and, later, the cache and event sink. It is built to fail fast:
// no offline queue and a short command timeout, so a Redis outage turns into
// an immediate fallback, never into requests hanging on Redis.

import { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'

export type RedisState = 'up' | 'down' | 'not configured'

export interface RedisConnection {
  client: Redis
  state: () => RedisState
  close: () => Promise<void>
  /** Resolves once the first connection attempt succeeded or failed, or after `ms`; then the state. */
  settled: (ms: number) => Promise<RedisState>
}

export interface RedisOptions {
  /** Longest a command may take before the caller falls back (ms). */
  commandTimeout?: number
}

export function connectRedis (url: string, log: FastifyBaseLogger, opts: RedisOptions = {}): RedisConnection {
  let up = false
  let outageLogged = false
  let settle: () => void = () => {}
  const firstAttempt = new Promise<void>(resolve => { settle = resolve })
  const client = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: opts.commandTimeout ?? 250,
    connectTimeout: 2000,
    // Keep trying forever, at most every 2 s: Redis coming back must be noticed by itself.
    retryStrategy: (times) => Math.min(100 * times, 2000),
    lazyConnect: false,
  })
  client.on('ready', () => {
    up = true
    settle()
    if (outageLogged) log.info('redis is back: shared stores in use again')
    outageLogged = false
  })
  const down = (err?: Error): void => {
    up = false
    settle()
    if (!outageLogged) {
      outageLogged = true
      log.warn({ err: err?.message }, 'redis unreachable: falling back to local stores until it returns')
    }
  }
  client.on('error', down)
  client.on('close', () => { down() })
  return {
    client,
    state: () => (up ? 'up' : 'down'),
    close: async () => {
      client.removeAllListeners('close')
      client.disconnect()
    },
    settled: async (ms) => {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([firstAttempt, new Promise<void>(resolve => { timer = setTimeout(resolve, ms) })])
      clearTimeout(timer)
      return up ? 'up' : 'down'
    },
  }
}
