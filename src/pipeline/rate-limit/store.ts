// The rate-limit store: counters in Redis so every gateway instance shares
// them (claimed in leases for busy keys: rate-limit-lease.ts), with a local
// in-memory store standing in while Redis is unreachable.
// The switch is per call, on the Redis connection's health (redis.ts): no
// request waits for Redis to come back, and the shared counters are used
// again as soon as the connection is ready. Leases do not outlive an outage.

import type { RedisConnection } from '../../redis/connection.js'
// @fastify/rate-limit ships these stores as plain CommonJS modules.
import LocalStoreModule from '@fastify/rate-limit/store/LocalStore.js'
import { LeasedCounters } from './lease.js'

type IncrCallback = (err: Error | null, res?: { current: number, ttl: number }) => void

interface Store {
  incr: (key: string, cb: IncrCallback, timeWindow: number, max: number) => void
  child: (routeOptions: RouteStoreOptions) => Store
}

interface RouteStoreOptions {
  continueExceeding?: boolean
  exponentialBackoff?: boolean
  /** Set by src/pipeline/rate-limit/stage.ts rateLimitStage. */
  routeId?: string
  routeInfo: { method: string | string[], url: string, config?: { routeId?: string } }
}

type StoreCtor = new (...args: unknown[]) => Store
const LocalStore = LocalStoreModule as unknown as StoreCtor

/**
 * A store class for @fastify/rate-limit bound to one Redis connection and key
 * prefix, and `close` to stop following the connection's health (when the app
 * that uses it closes: the connection outlives a reload).
 */
export function fallbackStoreClass (redis: RedisConnection, prefix: string): { Store: new (opts: unknown) => Store, close: () => void } {
  const children = new Map<string, Store>()
  const leases = new Set<LeasedCounters>()
  const leased = (keyPrefix: string): LeasedCounters => {
    const counters = new LeasedCounters(redis.client, keyPrefix)
    leases.add(counters)
    return counters
  }
  const close = redis.onStateChange(state => {
    if (state === 'down') for (const counters of leases) counters.forget()
  })
  class FallbackStore implements Store {
    constructor (
      _opts: unknown,
      private readonly shared: Pick<Store, 'incr'> = leased(prefix),
      private readonly local: Store = new LocalStore(false, false, 10_000),
    ) {}

    incr (key: string, cb: IncrCallback, timeWindow: number, max: number): void {
      if (redis.state() !== 'up') {
        this.local.incr(key, cb, timeWindow, max)
        return
      }
      this.shared.incr(key, (err, res) => {
        if (err === null) { cb(null, res); return }
        this.local.incr(key, cb, timeWindow, max)
      }, timeWindow, max)
    }

    child (routeOptions: RouteStoreOptions): Store {
      // One counter per config route id (not per method/URL), as the contract says: a
      // route mounted on more than one path (mount-routes.ts) shares its fallback counters too.
      const id = routeIdOf(routeOptions)
      let store = children.get(id)
      if (store === undefined) {
        store = new FallbackStore(undefined, leased(`${prefix}${id}:`), new LocalStore(false, false, 10_000))
        children.set(id, store)
      }
      return store
    }
  }
  return { Store: FallbackStore, close }
}

function routeIdOf (routeOptions: RouteStoreOptions): string {
  return routeOptions.routeId ?? routeOptions.routeInfo.config?.routeId ?? `${String(routeOptions.routeInfo.method)}${routeOptions.routeInfo.url}`
}

/**
 * The in-memory store (no Redis): @fastify/rate-limit's own, with one
 * counter set per config route id, so a route mounted on more than one path
 * (mount-routes.ts) counts all of them against one limit.
 */
export function localStoreClass (): new (opts: unknown) => Store {
  const children = new Map<string, Store>()
  return class RouteLocalStore implements Store {
    private readonly local: Store = new LocalStore(false, false, 10_000)
    incr (key: string, cb: IncrCallback, timeWindow: number, max: number): void { this.local.incr(key, cb, timeWindow, max) }
    child (routeOptions: RouteStoreOptions): Store {
      const id = routeIdOf(routeOptions)
      let store = children.get(id)
      if (store === undefined) { store = new RouteLocalStore(); children.set(id, store) }
      return store
    }
  }
}
