// Publishing after a 2xx answer happens beside the response, never in its
// way: the client's answer is already decided. A failed append is retried a
// bounded number of times with backoff, then counted and logged with the
// event's request id, so nothing is lost silently.

import type { FastifyBaseLogger } from 'fastify'
import type { EventCounters, EventSink, GatewayEvent } from './sink.js'

export class EventPublisher {
  constructor (
    readonly sink: EventSink,
    private readonly log: FastifyBaseLogger,
    private readonly retries = 3,
    private readonly baseDelay = 50,
    /** Shared across reloads, so counts never reset under Prometheus. */
    readonly counters: EventCounters = { published: 0, failed: 0, commands: 0 },
  ) {}

  /** Starts the append (with retries) and returns at once; resolves when it settled, for tests. */
  publish (stream: string, event: GatewayEvent): Promise<void> {
    return this.attempt(stream, event, 0)
  }

  private async attempt (stream: string, event: GatewayEvent, n: number): Promise<void> {
    try {
      await this.sink.append(stream, event)
      this.counters.published++
    } catch (err) {
      if (n < this.retries) {
        await new Promise(resolve => setTimeout(resolve, this.baseDelay * 2 ** n))
        await this.attempt(stream, event, n + 1)
        return
      }
      this.counters.failed++
      this.log.error({ stream, type: event.type, route: event.route, requestId: event.requestId, err: (err as Error).message },
        `event not published after ${this.retries + 1} attempts`)
    }
  }
}
