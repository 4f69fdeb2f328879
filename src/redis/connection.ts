// The gateway's one Redis connection (per process), shared by the rate
// limiter, the cache (and its near cache) and the event sink. It is built to
// fail fast: no offline queue and a short command timeout, so a Redis outage
// turns into an immediate fallback, never into requests hanging on Redis.
//
// It is also the one place that knows whether Redis is up: every store reads
// `state()` or listens to `onStateChange`, none keeps its own guess, so
// /readyz, the cache, the rate limiter and the event sink never disagree.

import { Cluster, Redis, type RedisOptions as IORedisOptions } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'

export type RedisState = 'up' | 'down' | 'not configured'

/** Whether Redis is up, as every store sees it. */
export interface RedisHealth {
  state: () => 'up' | 'down'
  /** Calls `fn` on every change between up and down (not on repeats); returns the unsubscribe. */
  onStateChange: (fn: (state: 'up' | 'down') => void) => () => void
}

export interface RedisConnection extends RedisHealth {
  client: Redis | Cluster
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
  const listeners = new Set<(state: 'up' | 'down') => void>()
  const changed = (now: boolean): void => {
    if (now === up) return
    up = now
    const state = up ? 'up' : 'down'
    for (const fn of [...listeners]) {
      // A store's failing listener must neither stop the others nor escape into ioredis's event handler.
      try { fn(state) } catch (err) { log.error({ err: (err as Error).message }, 'a Redis state listener failed') }
    }
  }
  let settle: () => void = () => {}
  const firstAttempt = new Promise<void>(resolve => { settle = resolve })
  const options: IORedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: opts.commandTimeout ?? 250,
    connectTimeout: 2000,
    // Commands issued in the same tick (many requests' cache reads and
    // rate-limit increments) go out in one write: far fewer syscalls under load.
    enableAutoPipelining: true,
    // Keep trying forever, at most every 2 s: Redis coming back must be noticed by itself.
    retryStrategy: (times) => Math.min(100 * times, 2000),
    lazyConnect: false,
  }
  const target = parseRedisUrl(url)
  const client = target.kind === 'cluster'
    ? new Cluster(target.nodes, {
      enableOfflineQueue: false,
      clusterRetryStrategy: (times) => Math.min(100 * times, 2000),
      redisOptions: { ...options, ...(target.password !== undefined ? { password: target.password } : {}) },
    })
    : target.kind === 'sentinel'
      ? new Redis({ ...options, sentinels: target.nodes, name: target.name, db: target.db, ...(target.password !== undefined ? { password: target.password } : {}) })
      : new Redis(url, options)
  client.on('ready', () => {
    changed(true)
    settle()
    if (outageLogged) log.info('redis is back: shared stores in use again')
    outageLogged = false
  })
  const down = (err?: Error): void => {
    changed(false)
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
    onStateChange: (fn) => {
      listeners.add(fn)
      return () => { listeners.delete(fn) }
    },
    close: async () => {
      client.removeAllListeners('close')
      // Closing is not an outage: nobody is told, the state just reads down from now on.
      listeners.clear()
      client.disconnect()
      changed(false)
    },
    settled: async (ms) => {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([firstAttempt, new Promise<void>(resolve => { timer = setTimeout(resolve, ms) })])
      clearTimeout(timer)
      return up ? 'up' : 'down'
    },
  }
}

export type RedisTarget =
  | { kind: 'single' }
  | { kind: 'cluster', nodes: Array<{ host: string, port: number }>, password?: string }
  | { kind: 'sentinel', nodes: Array<{ host: string, port: number }>, name: string, db: number, password?: string }

/**
 * `redis://` and `rediss://` are one server. Outgrowing one Redis:
 * `redis+cluster://[:password@]host:port,host:port` (Redis Cluster, seed nodes) and
 * `redis+sentinel://[:password@]host:port,host:port/MASTER[/DB]` (Sentinel).
 */
export function parseRedisUrl (url: string): RedisTarget {
  const m = /^redis\+(cluster|sentinel):\/\/(?:(?:[^:@/]*):([^@/]*)@)?([^/]+)(?:\/([^/]+))?(?:\/(\d+))?\/?$/.exec(url)
  if (m === null) return { kind: 'single' }
  const [, kind, password, hosts, name, db] = m
  const defaultPort = kind === 'sentinel' ? 26379 : 6379
  const nodes = hosts.split(',').map(h => {
    const i = h.lastIndexOf(':')
    return i === -1 ? { host: h, port: defaultPort } : { host: h.slice(0, i), port: Number(h.slice(i + 1)) }
  })
  const pw = password !== undefined ? decodeURIComponent(password) : undefined
  if (kind === 'cluster') return { kind, nodes, ...(pw !== undefined ? { password: pw } : {}) }
  return { kind: 'sentinel', nodes, name: name ?? 'mymaster', db: Number(db ?? 0), ...(pw !== undefined ? { password: pw } : {}) }
}
