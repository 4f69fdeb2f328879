// One keep-alive connection pool per service instance, and the call that
// sends a request through it. Transport errors become gateway errors here, at
// the one place that knows undici's error codes.
//
// The call drives undici's dispatcher directly rather than `pool.request()`:
// a small answer (content-length up to BUFFER_UP_TO) is collected into one
// Buffer and handed over whole, so the common 1 KiB JSON answer never builds
// a Readable, its listeners or an async iterator. Larger or unsized answers
// come back as a stream with backpressure, as before.
//
// The handler speaks the onConnect/onHeaders/onData/onComplete/onError
// interface on purpose: it is the one undici 7's core calls, so the handler
// reaches it as is. A handler on the newer controller interface
// (onRequestStart/onResponseStart/...) would be wrapped per dispatch in
// undici's UnwrapHandler + UnwrapController, headers parsed inside the shim.
// undici 8 turns this around (its core calls the controller interface and
// refuses the old one), so a move to 8 means rewriting ResponseHandler;
// package.json pins the undici minor, and test/upstream/pool.test.ts checks
// that undici's request holds this handler unwrapped.

import { Readable } from 'node:stream'
import type { IncomingHttpHeaders } from 'node:http'
import { Pool, util } from 'undici'
import { GatewayError } from '../util/errors.js'
import type { UpstreamCall, UpstreamRequest, UpstreamResponse } from './types.js'
import { ClientGone, type CancelSignal } from '../util/cancellation.js'
import { DEFAULTS } from '../config/defaults.js'

export interface PoolOptions {
  /** Most connections kept to one instance. */
  connections: number
  keepAliveTimeout: number
  connectTimeout: number
}

export const DEFAULT_POOL_OPTIONS: PoolOptions = {
  connections: DEFAULTS.service.connections,
  keepAliveTimeout: DEFAULTS.service.keepAliveTimeout,
  connectTimeout: DEFAULTS.service.connectTimeout,
}

/**
 * Bodies up to this size (by content-length) are read whole: for small
 * answers the stream plumbing costs more than the copy, and a body broken
 * off mid-way is then a clean transport error before anything was sent.
 */
export const BUFFER_UP_TO = 64 * 1024

export interface InstancePool {
  /** The instance's base URL as configured. */
  url: string
  call: UpstreamCall
  close: () => Promise<void>
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT'])

export function createInstancePool (service: string, url: string, options: PoolOptions = DEFAULT_POOL_OPTIONS): InstancePool {
  const base = new URL(url)
  // A base path in the URL (http://host/api) prefixes every upstream path.
  const prefix = base.pathname.replace(/\/+$/, '')
  const pool = new Pool(base.origin, {
    connections: options.connections,
    pipelining: 1,
    keepAliveTimeout: options.keepAliveTimeout,
    connect: { timeout: options.connectTimeout },
  })
  return {
    url,
    call (req) {
      return new Promise<UpstreamResponse>((resolve, reject) => {
        pool.dispatch({
          method: req.method,
          path: prefix + req.path,
          headers: req.headers,
          body: req.body ?? null,
          // The call's own timer (ResponseHandler) bounds the wait for the
          // answer; undici's timers tick at 0.5-1 s and would fire late.
          headersTimeout: 0,
          // Between chunks of a streamed answer, after the deadline is cleared.
          bodyTimeout: req.timeout,
        }, new ResponseHandler(service, url, req, resolve, reject))
      })
    },
    close: async () => { await pool.close() },
  }
}

/** Maps undici/socket failures to the gateway's codes, keeping the cause for logs only. */
export function transportError (err: unknown, service: string): GatewayError | ClientGone {
  if (err instanceof GatewayError || err instanceof ClientGone) return err
  const code = (err as { code?: string }).code ?? ''
  if (TIMEOUT_CODES.has(code)) {
    return new GatewayError('UPSTREAM_TIMEOUT', `service "${service}" did not answer in time`, { cause: err })
  }
  return new GatewayError('UPSTREAM_ERROR', `service "${service}" could not be reached`, { cause: err })
}

type Abort = (reason?: Error) => void

const EMPTY = Buffer.alloc(0)
function ignore (): void {}

function timeUp (handler: ResponseHandler): void {
  handler.onDeadline()
}

/**
 * One call's undici handler (the dispatcher's callback interface). It is
 * also the abort signal's listener (`handleEvent`), so a call needs no
 * closures beyond the promise's own.
 *
 * The call's deadline is one timer, armed at dispatch: it runs while the
 * request waits for a pooled connection, while its body is sent (a client
 * upload that stalls stalls the call) and until the answer's headers, or
 * its last byte for a buffered answer. It aborts the dispatch, which also
 * destroys the request body undici is reading.
 */
class ResponseHandler {
  private abort: Abort | undefined
  private signal: CancelSignal | undefined
  private timer: NodeJS.Timeout | undefined
  /** Why the call was ended before undici offered its abort (queued for a connection). */
  private cancelled: Error | undefined
  private statusCode = 0
  private headers: IncomingHttpHeaders = {}
  /** Buffered mode: the chunks so far. */
  private chunks: Buffer[] | undefined
  /** Streamed mode: the body handed out at the headers. */
  private stream: UpstreamBody | undefined
  private settled = false

  constructor (
    private readonly service: string,
    private readonly instance: string,
    req: UpstreamRequest,
    private readonly resolve: (res: UpstreamResponse) => void,
    private readonly reject: (err: GatewayError | ClientGone) => void,
  ) {
    // A call with a deadline (an aggregate part) is bounded by its caller's
    // one deadline timer, which cancels it through the signal; a second timer
    // per part would only repeat it. A call with a signal alone (a proxied
    // call whose client may hang up) keeps its own timer.
    if (req.signal !== undefined) this.signal = req.signal
    if (req.timeout > 0 && (req.deadline === undefined || req.signal === undefined)) this.timer = setTimeout(timeUp, req.timeout, this)
  }

  onConnect (abort: Abort): void {
    this.abort = abort
    if (this.cancelled !== undefined) { abort(this.cancelled); return }
    const signal = this.signal
    if (signal === undefined) return
    if (signal.aborted) abort(signal.reason as Error)
    else signal.addEventListener('abort', this, { once: true })
  }

  /** The call's abort signal fired (an aggregate past its deadline, a client gone). */
  handleEvent (): void {
    this.abort?.(this.signal?.reason as Error)
  }

  /** The call's timeout passed without an answer. */
  onDeadline (): void {
    this.timer = undefined
    const err = new GatewayError('UPSTREAM_TIMEOUT', `service "${this.service}" did not answer in time`)
    if (this.abort !== undefined) { this.abort(err); return }
    // Still waiting for a connection: answer now, abort once undici dispatches it.
    this.cancelled = err
    this.onError(err)
  }

  onHeaders (statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    // An informational answer (103 Early Hints) comes before the real one on
    // the same request; undici reports both here. Answering with it would
    // hand the client a 103 and lose the answer that follows.
    if (statusCode < 200) return true
    this.statusCode = statusCode
    const headers = util.parseHeaders(rawHeaders) as IncomingHttpHeaders
    this.headers = headers
    if (statusCode === 204 || statusCode === 304) {
      // No body follows, whatever content-length says (RFC 9110 allows one on
      // a 304, and undici then reports a length mismatch): answer now.
      this.clearDeadline()
      this.settled = true
      this.resolve({ statusCode, headers, body: EMPTY, instance: this.instance })
      return true
    }
    const length = headers['content-length']
    if (length !== undefined && Number(length) <= BUFFER_UP_TO) {
      this.chunks = []
      return true
    }
    // A streamed answer is handed over now; from here on undici's bodyTimeout
    // bounds each pause between chunks.
    this.clearDeadline()
    const stream = new UpstreamBody(resume, this)
    this.stream = stream
    this.settled = true
    this.resolve({ statusCode, headers, body: stream, instance: this.instance })
    return true
  }

  onData (chunk: Buffer): boolean {
    if (this.settled && this.stream === undefined) return true // a body after 204/304: ignored
    if (this.chunks !== undefined) {
      this.chunks.push(chunk)
      return true
    }
    return this.stream?.push(chunk) ?? true
  }

  onComplete (): void {
    this.release()
    if (this.stream !== undefined) {
      this.stream.push(null)
      return
    }
    if (this.settled) return
    const chunks = this.chunks ?? []
    this.settled = true
    this.resolve({
      statusCode: this.statusCode,
      headers: this.headers,
      body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks),
      instance: this.instance,
    })
  }

  onError (err: Error): void {
    this.release()
    if (!this.settled) {
      this.settled = true
      this.reject(transportError(err, this.service))
    } else {
      this.stream?.destroy(err)
    }
  }

  onUpgrade (): void {
    this.onError(new Error('unexpected protocol upgrade'))
  }

  /** The consumer dropped a streamed body: stop the transfer. */
  cancel (): void {
    this.abort?.(new Error('body discarded'))
  }

  private release (): void {
    this.clearDeadline()
    this.signal?.removeEventListener('abort', this)
  }

  private clearDeadline (): void {
    if (this.timer === undefined) return
    clearTimeout(this.timer)
    this.timer = undefined
  }
}

/**
 * A streamed upstream body: undici pauses while it is full and resumes when
 * read. It holds up to 64 KiB, as undici's own body streams and fs streams
 * do: with Readable's 16 KiB default, a 1 MB answer paused and resumed the
 * upstream socket four times as often, and took 1.5× a plain Fastify proxy's
 * time to pass through (1.2× with 64 KiB; bench compress-1mb).
 */
class UpstreamBody extends Readable {
  private done = false

  constructor (private readonly resumeSource: () => void, private readonly handler: ResponseHandler) {
    super({ highWaterMark: 64 * 1024 })
    // A body nobody reads any more (discarded, or its client gone) may still
    // break off; that must not become an uncaught error. Readers that care
    // (pipe, readBody) add their own listener.
    this.on('error', ignore)
  }

  override _read (): void {
    this.resumeSource()
  }

  override push (chunk: Buffer | null): boolean {
    if (chunk === null) this.done = true
    return super.push(chunk)
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    if (!this.done) this.handler.cancel()
    callback(err)
  }
}
