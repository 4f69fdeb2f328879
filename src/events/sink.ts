// Where `publish` and `command` routes write: an append-only stream per name.
// Redis Streams when configured (XADD with MAXLEN ~, read by any number of
// consumer groups), or memory for demos and tests.

export interface GatewayEvent {
  type: string
  route: string
  sub: string
  requestId: string
  /** ISO time. */
  at: string
  /** JSON text. */
  body: string
  commandId?: string
}

export interface EventSink {
  readonly kind: 'redis' | 'memory'
  /** Appends the event; resolves to the stream entry id. Rejects when the stream cannot be written. */
  append: (stream: string, event: GatewayEvent) => Promise<string>
  /**
   * Claims an idempotency key for `window` ms, storing `value` under it.
   * Resolves to the value already stored under it, or undefined when this
   * call claimed it.
   */
  claim: (key: string, value: string, window: number) => Promise<string | undefined>
  /** Replaces the value of a key this process claimed, held for `window` ms from now (the command was stored). */
  confirm: (key: string, value: string, window: number) => Promise<void>
  /**
   * Appends the event and confirms the claimed key in one atomic step, so a
   * failure leaves either both or neither. Absent where the store cannot
   * (Redis Cluster: the stream and the key live on different nodes).
   */
  appendConfirmed?: (stream: string, event: GatewayEvent, key: string, value: string, window: number) => Promise<string>
  /** Gives a claimed key back if it still holds `value` (the command could not be stored). */
  release: (key: string, value: string) => Promise<void>
}

export interface EventCounters {
  published: number
  failed: number
  commands: number
}

/** Field/value pairs in a fixed order, as stored in a stream entry. */
export function eventFields (event: GatewayEvent): string[] {
  const fields = ['type', event.type, 'route', event.route, 'sub', event.sub, 'requestId', event.requestId, 'at', event.at, 'body', event.body]
  if (event.commandId !== undefined) fields.push('commandId', event.commandId)
  return fields
}
