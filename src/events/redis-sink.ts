// Events in Redis Streams, idempotency keys as plain keys with a TTL. While
// the gateway's Redis connection says Redis is down, every call fails at
// once (the caller answers or logs it), without asking the client.

import type { Cluster, Redis } from 'ioredis'
import type { RedisHealth } from '../redis.js'
import { eventFields, type EventSink, type GatewayEvent } from './sink.js'

export class RedisEventSink implements EventSink {
  readonly kind = 'redis'
  private readonly client: Redis | Cluster

  constructor (
    private readonly redis: { client: Redis | Cluster } & RedisHealth,
    /** Streams are trimmed to about this many entries (MAXLEN ~). */
    private readonly maxLen: number,
    private readonly keyPrefix: string,
  ) {
    this.client = redis.client
  }

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

  async release (key: string): Promise<void> {
    this.mustBeUp()
    await this.client.del(this.idemKey(key))
  }

  private mustBeUp (): void {
    if (this.redis.state() !== 'up') throw new Error('redis is down')
  }

  private idemKey (key: string): string { return `${this.keyPrefix}idem:${key}` }
}
