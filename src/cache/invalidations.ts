// Redis server-assisted client-side caching, broadcast mode: Redis tells us
// whenever any key under the cache's prefix changes (set, deleted, expired,
// evicted, by any client). This is what keeps the near cache honest.
//
// Two extra connections, duplicated from the main one: `sub` receives the
// invalidation messages (SUBSCRIBE __redis__:invalidate) and `tracker` owns
// the tracking (CLIENT TRACKING ON REDIRECT <sub's id> BCAST PREFIX <p>).
// Whenever either connection is lost, tracking is lost with it: the feed goes
// not-live and asks for a full flush, and on reconnect it subscribes and
// re-enables tracking before it is live again. The gateway's Redis connection
// (redis.ts) going down counts as a loss too, and its coming back re-enables
// tracking: the feed is never live while the rest of the gateway takes Redis
// for down. Until then the near cache is skipped and every read goes to Redis.

import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { RedisHealth } from '../redis/connection.js'

const CHANNEL = '__redis__:invalidate'

export interface InvalidationListener {
  /** Keys (without the prefix) that changed; null: anything may have changed. */
  invalidated: (keys: string[] | null) => void
}

export class RedisInvalidations {
  /** Tracking is on for our subscriber connection. */
  private tracking = false
  private readonly sub: Redis
  private readonly tracker: Redis
  private readonly prefixBytes: Buffer
  /** Bumped on every (re)establishment, so an older attempt cannot finish after a newer one. */
  private attempt = 0
  private closed = false
  /** The subscriber connection's id once it has subscribed (per connection: reset on reconnect). */
  private subId: string | undefined
  private readonly unsubscribe: () => void

  constructor (main: Redis, private readonly health: RedisHealth, private readonly prefix: string, private readonly listener: InvalidationListener, private readonly log: FastifyBaseLogger) {
    this.prefixBytes = Buffer.from(prefix)
    const own = { autoResubscribe: false, enableAutoPipelining: false, enableOfflineQueue: false, lazyConnect: true }
    this.sub = main.duplicate(own)
    this.tracker = main.duplicate(own)
    this.sub.on('ready', () => { this.subId = undefined })
    for (const conn of [this.sub, this.tracker]) {
      conn.on('ready', () => { void this.establish() })
      conn.on('close', () => { this.lost() })
      conn.on('error', () => { this.lost() })
    }
    this.sub.on('messageBuffer', (channel: Buffer, message: unknown) => {
      if (channel.toString() === CHANNEL) this.message(message)
    })
    this.unsubscribe = health.onStateChange(state => {
      if (state === 'down') this.lost()
      else void this.establish()
    })
    this.sub.connect().catch(() => {})
    this.tracker.connect().catch(() => {})
  }

  /** True while Redis is up and known to tell us every change. */
  get live (): boolean {
    return this.tracking && this.health.state() === 'up'
  }

  async close (): Promise<void> {
    this.closed = true
    this.tracking = false
    this.unsubscribe()
    this.sub.disconnect()
    this.tracker.disconnect()
  }

  private message (message: unknown): void {
    // A null message means FLUSHDB/FLUSHALL: everything is gone.
    if (!Array.isArray(message)) { this.listener.invalidated(null); return }
    const keys: string[] = []
    for (const raw of message as Buffer[]) {
      if (Buffer.isBuffer(raw) && raw.subarray(0, this.prefixBytes.length).equals(this.prefixBytes)) keys.push(raw.subarray(this.prefixBytes.length).toString())
    }
    if (keys.length > 0) this.listener.invalidated(keys)
  }

  private lost (): void {
    if (this.tracking) this.log.warn('near cache paused: the Redis invalidation feed was lost (reads go to Redis)')
    this.tracking = false
    this.attempt++
    this.listener.invalidated(null)
  }

  private async establish (): Promise<void> {
    if (this.closed || this.sub.status !== 'ready' || this.tracker.status !== 'ready' || this.health.state() !== 'up') return
    const attempt = ++this.attempt
    this.tracking = false
    try {
      if (this.subId === undefined) {
        // CLIENT ID first: a subscribed connection (RESP2) accepts nothing but (UN)SUBSCRIBE.
        const id = String(await this.sub.client('ID'))
        await this.sub.subscribe(CHANNEL)
        this.subId = id
      }
      await this.tracker.call('CLIENT', 'TRACKING', 'OFF')
      await this.tracker.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', this.subId, 'BCAST', 'PREFIX', this.prefix)
      if (attempt !== this.attempt || this.closed) return
      // What happened while nobody was listening is unknown: start empty.
      this.listener.invalidated(null)
      this.tracking = true
      this.log.info('near cache live: Redis tracks the cache keys for this instance')
    } catch (err) {
      if (attempt !== this.attempt) return
      this.log.warn({ err: (err as Error).message }, 'near cache off: Redis client tracking could not be enabled (reads go to Redis)')
    }
  }
}
