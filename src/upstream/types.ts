// The request path to a service is built from stages that share one function
// type (as in KrakenD's Lura): a stage takes a call and returns a call, so
// balancing, breaking, retrying and timing out compose in one written-out
// order (see client.ts) and each can be tested alone against a stub call.

import type { Readable } from 'node:stream'
import type { IncomingHttpHeaders } from 'node:http'
import type { Context } from '@opentelemetry/api'
import type { CancelSignal } from '../util/cancellation.js'

export interface UpstreamRequest {
  method: string
  /** Path and query, already encoded, relative to the service's base URL. */
  path: string
  headers: Record<string, string | string[]>
  body?: Readable | Buffer | string | null
  /** Milliseconds the call may take (see pool.ts: until the headers, or the last byte of a small answer). */
  timeout: number
  /** Absolute time (ms since epoch) after which no attempt may start (aggregate deadline). */
  deadline?: number
  /**
   * Aborts the call (an aggregate whose deadline passed, a client that hung
   * up): an AbortSignal, or the cheaper Cancellation. A call given one and a
   * `deadline` is bounded by its caller: the pool arms no timer of its own.
   */
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

