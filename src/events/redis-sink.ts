// Events in Redis Streams, idempotency keys as plain keys with a TTL. While
// the gateway's Redis connection says Redis is down, every call fails at
// once (the caller answers or logs it), without asking the client.

import type { Cluster, Redis } from 'ioredis'
import type { RedisHealth } from '../redis/connection.js'
import { eventFields, type EventSink, type GatewayEvent } from './sink.js'

// XADD and the key's confirmation in one script: if Redis fails mid-way the
// client cannot tell whether the entry was written, and a retry with the same
// idempotency key must then find either the confirmed commandId (written) or
// its own pending claim (not written), never a free key beside a stored entry.
const APPEND_CONFIRMED = `local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 4))
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2], 'XX')
return id`

// Deletes a claim only while it is still this request's pending one.
const RELEASE_IF = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

type ScriptClient = Record<'porticoAppendConfirmed' | 'porticoRelease', (...args: Array<string | number>) => Promise<unknown>>

export class RedisEventSink implements EventSink {
  readonly kind = 'redis'
  readonly appendConfirmed?: EventSink['appendConfirmed']
  private readonly client: Redis | Cluster

  constructor (
    private readonly redis: { client: Redis | Cluster } & RedisHealth,
    /** Streams are trimmed to about this many entries (MAXLEN ~). */
    private readonly maxLen: number,
    private readonly keyPrefix: string,
  ) {
    const client = this.client = redis.client
    client.defineCommand('porticoRelease', { numberOfKeys: 1, lua: RELEASE_IF })
    // In a cluster the stream and the key hash to different slots; a script
    // cannot touch both, so there the two steps stay separate.
    if (!client.isCluster) {
      client.defineCommand('porticoAppendConfirmed', { numberOfKeys: 2, lua: APPEND_CONFIRMED })
      this.appendConfirmed = async (stream, event, key, value, window) => {
        this.mustBeUp()
        const id = await this.scripts.porticoAppendConfirmed(stream, this.idemKey(key), this.maxLen, window, value, ...eventFields(event))
        if (typeof id !== 'string') throw new Error(`XADD to ${stream} returned no id`)
        return id
      }
    }
  }

  private get scripts (): ScriptClient { return this.client as unknown as ScriptClient }

  async append (stream: string, event: GatewayEvent): Promise<string> {
    this.mustBeUp()
    const id = await this.client.xadd(stream, 'MAXLEN', '~', this.maxLen, '*', ...eventFields(event))
    if (id === null) throw new Error(`XADD to ${stream} returned no id`)
    return id
  }

  async claim (key: string, value: string, window: number): Promise<string | undefined> {
    this.mustBeUp()
    const k = this.idemKey(key)
    for (;;) {
      if (await this.client.set(k, value, 'PX', window, 'NX') === 'OK') return undefined
      const held = await this.client.get(k)
      // Expired between the two calls: claim it again rather than report it as ours.
      if (held !== null) return held
    }
  }

  async confirm (key: string, value: string, window: number): Promise<void> {
    this.mustBeUp()
    await this.client.set(this.idemKey(key), value, 'PX', window, 'XX')
  }

  async release (key: string, value: string): Promise<void> {
    this.mustBeUp()
    await this.scripts.porticoRelease(this.idemKey(key), value)
  }

  private mustBeUp (): void {
    if (this.redis.state() !== 'up') throw new Error('redis is down')
  }

  private idemKey (key: string): string { return `${this.keyPrefix}idem:${key}` }
}
