import type { Cluster, Redis } from 'ioredis'
import { eventFields, type EventSink, type GatewayEvent } from './sink.js'

export class RedisEventSink implements EventSink {
  readonly kind = 'redis'

  constructor (
    private readonly client: Redis | Cluster,
    /** Streams are trimmed to about this many entries (MAXLEN ~). */
    private readonly maxLen: number,
    private readonly keyPrefix: string,
  ) {}

  async append (stream: string, event: GatewayEvent): Promise<string> {
    const id = await this.client.xadd(stream, 'MAXLEN', '~', this.maxLen, '*', ...eventFields(event))
    if (id === null) throw new Error(`XADD to ${stream} returned no id`)
    return id
  }

  async claim (key: string, value: string, window: number): Promise<string | undefined> {
    const k = this.idemKey(key)
    for (;;) {
      if (await this.client.set(k, value, 'PX', window, 'NX') === 'OK') return undefined
      const held = await this.client.get(k)
      // Expired between the two calls: claim it again rather than report it as ours.
      if (held !== null) return held
    }
  }

  async confirm (key: string, value: string, window: number): Promise<void> {
    await this.client.set(this.idemKey(key), value, 'PX', window, 'XX')
  }

  async release (key: string): Promise<void> {
    await this.client.del(this.idemKey(key))
  }

  private idemKey (key: string): string { return `${this.keyPrefix}idem:${key}` }
}
