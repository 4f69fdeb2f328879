// The near cache: entries read from Redis are also kept in this process's
// memory (an LRU bounded like the memory store), so a HIT costs no Redis
// round trip. It is only used while Redis tracks the cache keys for us
// (invalidations.ts): any change to a key, by any instance, evicts it here
// within the time the message takes over loopback or the LAN. A read that
// races a change is not kept: while a key is being read, an invalidation of
// it marks the read, and a marked read is returned but not remembered.

import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { CacheEntry, CacheStore } from './store.js'
import type { MemoryCacheStore } from './memory-store.js'
import type { RedisHealth } from '../redis/connection.js'
import { RedisInvalidations, type InvalidationListener } from './invalidations.js'

export interface NearCacheOptions {
  /** The Redis store this one is in front of. */
  remote: CacheStore
  local: MemoryCacheStore
  /** The gateway's Redis connection: its client (duplicated for the tracking feed) and its health. */
  redis: { client: Redis } & RedisHealth
  /** The prefix of the entry keys in Redis (what tracking watches). */
  keyPrefix: string
  log: FastifyBaseLogger
}

export class NearCacheStore implements CacheStore, InvalidationListener {
  readonly kind = 'redis'
  /** Keys being read from Redis now: how many reads, and whether the key changed meanwhile. */
  private readonly reading = new Map<string, { readers: number, changed: boolean }>()
  /** Bumped by a full flush: reads started before it are not remembered. */
  private epoch = 0
  private readonly remote: CacheStore
  private readonly local: MemoryCacheStore
  private readonly feed: RedisInvalidations

  constructor (opts: NearCacheOptions) {
    this.remote = opts.remote
    this.local = opts.local
    this.feed = new RedisInvalidations(opts.redis.client, opts.redis, opts.keyPrefix, this, opts.log)
  }

  /** Stops the tracking feed (its two connections). */
  async close (): Promise<void> {
    await this.feed.close()
  }

  peek (key: string): CacheEntry | undefined {
    return this.feed.live ? this.local.peek(key) : undefined
  }

  async get (key: string): Promise<CacheEntry | undefined> {
    const near = this.peek(key)
    if (near !== undefined) return near
    if (!this.feed.live) return await this.remote.get(key)
    const epoch = this.epoch
    let read = this.reading.get(key)
    if (read === undefined) { read = { readers: 0, changed: false }; this.reading.set(key, read) }
    read.readers++
    try {
      const entry = await this.remote.get(key)
      if (entry !== undefined && !read.changed && epoch === this.epoch && this.feed.live) this.local.set(key, entry).catch(() => {})
      return entry
    } finally {
      if (--read.readers === 0) this.reading.delete(key)
    }
  }

  async set (key: string, entry: CacheEntry): Promise<void> {
    this.local.drop(key)
    await this.remote.set(key, entry)
  }

  async purgeTags (tags: string[]): Promise<number> {
    await this.local.purgeTags(tags)
    return await this.remote.purgeTags(tags)
  }

  async purgeAll (): Promise<number> {
    await this.local.purgeAll()
    return await this.remote.purgeAll()
  }

  invalidated (keys: string[] | null): void {
    if (keys === null) {
      this.epoch++
      for (const read of this.reading.values()) read.changed = true
      this.local.purgeAll().catch(() => {})
      return
    }
    for (const key of keys) {
      this.local.drop(key)
      const read = this.reading.get(key)
      if (read !== undefined) read.changed = true
    }
  }
}
