// The request path to a service is built from stages that share one function
// type (as in KrakenD's Lura): a stage takes a call and returns a call, so
// balancing, breaking, retrying and timing out compose in one written-out
// order (see client.ts) and each can be tested alone against a stub call.

import type { Readable } from 'node:stream'
import type { IncomingHttpHeaders } from 'node:http'
import type { Context } from '@opentelemetry/api'

export interface UpstreamRequest {
  method: string
  /** Path and query, already encoded, relative to the service's base URL. */
  path: string
  headers: Record<string, string | string[]>
  body?: Readable | Buffer | string | null
  /** Milliseconds until the response headers must have arrived. */
  timeout: number
  /** Absolute time (ms since epoch) after which no attempt may start (aggregate deadline). */
  deadline?: number
  /** Aborts the call (an aggregate whose deadline passed): an AbortSignal, or the cheaper Cancellation. */
  signal?: CancelSignal
  /** The request's trace context, when tracing is on: the call gets a child span. */
  trace?: Context
}

export interface UpstreamResponse {
  statusCode: number
  headers: IncomingHttpHeaders
  /** The whole body when it was small enough to buffer (pool.ts BUFFER_UP_TO), else a stream. */
  body: Buffer | Readable
  /** Which instance (base URL) answered. */
  instance: string
}

export type UpstreamCall = (req: UpstreamRequest) => Promise<UpstreamResponse>

/** The part of AbortSignal a call listens to. */
export interface CancelSignal {
  readonly aborted: boolean
  readonly reason: unknown
  addEventListener: (type: 'abort', listener: EventListenerObject, options?: { once?: boolean }) => void
  removeEventListener: (type: 'abort', listener: EventListenerObject) => void
}

/**
 * A one-shot cancellation with AbortSignal's listening surface. An
 * AbortController per aggregate request (an EventTarget, an Event on abort)
 * cost more than the bookkeeping of all its parts together.
 */
export class Cancellation implements CancelSignal {
  aborted = false
  reason: unknown = undefined
  private listeners: EventListenerObject[] = []

  addEventListener (_type: 'abort', listener: EventListenerObject): void {
    this.listeners.push(listener)
  }

  removeEventListener (_type: 'abort', listener: EventListenerObject): void {
    const i = this.listeners.indexOf(listener)
    if (i !== -1) this.listeners.splice(i, 1)
  }

  abort (reason?: unknown): void {
    if (this.aborted) return
    this.aborted = true
    if (this.listeners.length === 0) return
    // The reason is built only when someone listens: an Error's stack is not free.
    this.reason = reason ?? new Error('cancelled')
    const listeners = this.listeners
    this.listeners = []
    for (const l of listeners) l.handleEvent(ABORT_EVENT)
  }
}

const ABORT_EVENT = new Event('abort')
