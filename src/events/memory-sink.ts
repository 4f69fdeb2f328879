// Streams in memory, for demos and tests without Redis: one process only,
// bounded like the Redis streams (oldest entries dropped past maxLen).

import type { EventSink, GatewayEvent } from './sink.js'

export class MemoryEventSink implements EventSink {
  readonly kind = 'memory'
  readonly streams = new Map<string, Array<{ id: string, event: GatewayEvent }>>()
  private readonly claims = new Map<string, { value: string, until: number }>()
  private seq = 0

  constructor (private readonly maxLen: number) {}

  async append (stream: string, event: GatewayEvent): Promise<string> {
    let entries = this.streams.get(stream)
    if (entries === undefined) { entries = []; this.streams.set(stream, entries) }
    const id = `${Date.now()}-${this.seq++}`
    entries.push({ id, event })
    if (entries.length > this.maxLen) entries.splice(0, entries.length - this.maxLen)
    return id
  }

  async claim (key: string, value: string, window: number): Promise<string | undefined> {
    const now = Date.now()
    const held = this.claims.get(key)
    if (held !== undefined && held.until > now) return held.value
    this.claims.set(key, { value, until: now + window })
    return undefined
  }

  async confirm (key: string, value: string, window: number): Promise<void> {
    const held = this.claims.get(key)
    if (held !== undefined && held.until > Date.now()) this.claims.set(key, { value, until: Date.now() + window })
  }

  async release (key: string, value: string): Promise<void> {
    if (this.claims.get(key)?.value === value) this.claims.delete(key)
  }
}
