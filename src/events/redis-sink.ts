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

  async claim (key: string, commandId: string, window: number): Promise<string | undefined> {
    const k = this.idemKey(key)
    const set = await this.client.set(k, commandId, 'PX', window, 'NX')
    if (set === 'OK') return undefined
    return (await this.client.get(k)) ?? undefined
  }

  async release (key: string): Promise<void> {
    await this.client.del(this.idemKey(key))
  }

  private idemKey (key: string): string { return `${this.keyPrefix}idem:${key}` }
}
