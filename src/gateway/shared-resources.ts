// What outlives one config: the Redis connection, the service clients (their
// pools, breakers and balancer health), the in-memory cache and event stores,
// the metrics registry and event counters. A reload builds a new gateway app
// from these, reusing every service whose settings did not change, so its
// breaker and pool keep their state; the server closes what the new config
// no longer uses once the old app has drained.

import type { FastifyBaseLogger } from 'fastify'
import type { CacheSettings, ServiceConfig } from '../config/types.js'
import { createServiceClient, type ServiceClient } from '../upstream/client.js'
import { connectRedis, type RedisConnection } from '../redis/connection.js'
import { MemoryCacheStore } from '../cache/memory-store.js'
import { NearCacheStore } from '../cache/near-store.js'
import { RedisCacheStore } from '../cache/redis-store.js'
import { Redis } from 'ioredis'
import { MemoryEventSink } from '../events/memory-sink.js'
import type { EventCounters } from '../events/sink.js'
import { BREAKER_STATE_VALUE, createMetrics, type GatewayMetrics } from '../observability/metrics.js'
import { createTracing, type Tracing } from '../observability/tracing.js'

export class SharedResources {
  readonly metrics: GatewayMetrics
  readonly eventCounters: EventCounters = { published: 0, failed: 0, commands: 0 }
  private readonly clients = new Map<string, { fingerprint: string, client: ServiceClient }>()
  private redisConn: { url: string, conn: RedisConnection } | undefined
  private memoryCache: { fingerprint: string, store: MemoryCacheStore } | undefined
  private nearCache: { fingerprint: string, store: NearCacheStore } | undefined
  private memorySink: MemoryEventSink | undefined
  /** Retired resources, closed once no app uses them. */
  private retired: Array<() => Promise<void>> = []

  /** Set once, from the first config's tracing.otlpUrl (a change needs a restart). */
  tracing: Tracing | undefined

  constructor (private readonly log: FastifyBaseLogger) {
    this.metrics = createMetrics({
      redisUp: () => this.redisConn === undefined ? undefined : this.redisConn.conn.state() === 'up' ? 1 : 0,
      events: () => this.eventCounters,
    })
  }

  serviceClient (svc: ServiceConfig): ServiceClient {
    const fingerprint = JSON.stringify(svc)
    const held = this.clients.get(svc.name)
    if (held !== undefined && held.fingerprint === fingerprint) return held.client
    if (held !== undefined) this.retired.push(held.client.close)
    const { metrics, log } = this
    // One histogram child per outcome, looked up once rather than per call.
    const byOutcome = new Map<string, { observe: (v: number) => void }>()
    const client = createServiceClient(svc, (seconds, outcome) => {
      let child = byOutcome.get(outcome)
      if (child === undefined) { child = metrics.upstream.labels(svc.name, outcome); byOutcome.set(outcome, child) }
      child.observe(seconds)
    }, this.tracing)
    metrics.breakerState.labels(svc.name).set(BREAKER_STATE_VALUE.closed)
    client.breaker.onChange(state => {
      metrics.breakerState.labels(svc.name).set(BREAKER_STATE_VALUE[state])
      metrics.breakerTransitions.labels(svc.name, state).inc()
      log[state === 'closed' ? 'info' : 'warn']({ service: svc.name, breaker: state }, `circuit breaker for ${svc.name} is ${state}`)
    })
    this.clients.set(svc.name, { fingerprint, client })
    return client
  }

  redis (url: string): RedisConnection {
    if (this.redisConn?.url === url) return this.redisConn.conn
    if (this.redisConn !== undefined) this.retired.push(this.redisConn.conn.close)
    const conn = connectRedis(url, this.log)
    this.redisConn = { url, conn }
    return conn
  }

  memoryCacheStore (settings: CacheSettings): MemoryCacheStore {
    const fingerprint = `${settings.maxEntries}/${settings.maxBytes}`
    if (this.memoryCache?.fingerprint === fingerprint) return this.memoryCache.store
    const store = new MemoryCacheStore({ maxEntries: settings.maxEntries, maxBytes: settings.maxBytes })
    this.memoryCache = { fingerprint, store }
    return store
  }

  /**
   * The Redis cache store, with the near cache in front when it is on and
   * possible (one Redis or Sentinel; a Cluster has no single tracking feed).
   * Kept across reloads while Redis, prefix and bounds stay the same.
   */
  redisCacheStore (conn: RedisConnection, url: string, keyPrefix: string, settings: CacheSettings): RedisCacheStore | NearCacheStore {
    const remote = new RedisCacheStore(conn.client, keyPrefix)
    if (!settings.near || !(conn.client instanceof Redis)) {
      // A reload that turned it off: its tracking connections go with the old app.
      this.retireNearCache()
      return remote
    }
    const fingerprint = `${url}|${keyPrefix}|${settings.maxEntries}/${settings.maxBytes}`
    if (this.nearCache?.fingerprint === fingerprint) return this.nearCache.store
    this.retireNearCache()
    const local = new MemoryCacheStore({ maxEntries: settings.maxEntries, maxBytes: settings.maxBytes })
    const store = new NearCacheStore({ remote, local, redis: { client: conn.client, state: conn.state, onStateChange: conn.onStateChange }, keyPrefix: `${keyPrefix}c:`, log: this.log })
    this.nearCache = { fingerprint, store }
    return store
  }

  private retireNearCache (): void {
    if (this.nearCache === undefined) return
    this.retired.push(this.nearCache.store.close.bind(this.nearCache.store))
    this.nearCache = undefined
  }

  memoryEventSink (maxLen: number): MemoryEventSink {
    this.memorySink ??= new MemoryEventSink(maxLen)
    return this.memorySink
  }

  /**
   * After a new config took over and the old app drained: close services
   * and connections the new config no longer names.
   */
  async releaseUnused (serviceNames: Set<string>, redisUrl: string): Promise<void> {
    for (const [name, held] of this.clients) {
      if (!serviceNames.has(name)) { this.retired.push(held.client.close); this.clients.delete(name) }
    }
    if (this.redisConn !== undefined && this.redisConn.url !== redisUrl) {
      this.retired.push(this.redisConn.conn.close)
      this.redisConn = undefined
    }
    if (this.nearCache !== undefined && !this.nearCache.fingerprint.startsWith(`${redisUrl}|`)) this.retireNearCache()
    const closing = this.retired
    this.retired = []
    await Promise.all(closing.map(async close => { await close() }))
  }

  /** Starts span export on first use; later configs keep the first exporter. */
  useTracing (otlpUrl: string, serviceName: string): Tracing | undefined {
    if (otlpUrl !== '' && this.tracing === undefined) this.tracing = createTracing(otlpUrl, serviceName)
    return this.tracing
  }

  async closeAll (): Promise<void> {
    await this.releaseUnused(new Set(), '')
    await this.tracing?.shutdown()
  }
}
