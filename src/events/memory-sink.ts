// Streams in memory, for demos and tests without Redis: one process only,
// bounded like the Redis streams (oldest entries dropped past maxLen).

import type { EventSink, GatewayEvent } from './sink.js'

export class MemoryEventSink implements EventSink {
  readonly kind = 'memory'
  readonly streams = new Map<string, Array<{ id: string, event: GatewayEvent }>>()
  private readonly claims = new Map<string, { commandId: string, until: number }>()
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

  async claim (key: string, commandId: string, window: number): Promise<string | undefined> {
    const now = Date.now()
    const held = this.claims.get(key)
    if (held !== undefined && held.until > now) return held.commandId
    this.claims.set(key, { commandId, until: now + window })
    return undefined
  }

  async release (key: string): Promise<void> {
    this.claims.delete(key)
  }
}
