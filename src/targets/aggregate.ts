// Aggregate routes: every part is called at once; the answer is one JSON
// object with a key per part. A part's outcome is a value (ok or failed with
// a reason), never an exception, and one merge step decides the response:
// an optional part that failed yields its fallback and is named in
// x-gateway-degraded; a required part that failed fails the request with its
// code and `part`. Each part has a deadline (its timeout), so the whole
// aggregate's is the longest part timeout; what has not arrived by its
// deadline counts as timed out.

import type { FastifyRequest } from 'fastify'
import type { Context } from '@opentelemetry/api'
import { GatewayError } from '../util/errors.js'
import type { FillContext, PathFiller, ValueFiller } from '../util/template.js'
import type { ServiceClient } from '../upstream/client.js'
import type { UpstreamResponse } from '../upstream/types.js'
import { CLIENT_GONE, Cancellation, type CancelSignal } from '../util/cancellation.js'
import type { AnswerHeaders, BufferedAnswer, Target } from './target.js'
import { discardBody, readBody } from '../upstream/body.js'
import { isJsonText } from '../pipeline/validation/json-check.js'
import { headerSafe, partRequestHeaders, type ForwardOptions } from './forward-headers.js'
import { fillContext } from './fill-context.js'

export interface AggregatePart {
  name: string
  client: ServiceClient
  fillPath: PathFiller
  query: Array<[string, ValueFiller]>
  headers: Array<[string, ValueFiller]>
  timeout: number
  optional: boolean
  /** The fallback, already serialized (default null). */
  fallbackJson: string
  pick?: string[]
}

export type PartResult = { ok: true, json: string } | { ok: false, error: GatewayError }

export interface AggregatePlan {
  parts: AggregatePart[]
  forward: ForwardOptions
}

/** An aggregate's answer is made here, whole, so no stage ever needs to read it past a limit. */
const MADE_HERE = { name: 'aggregate', maxResponseSize: Number.POSITIVE_INFINITY }

/** The aggregate target: the parts called in parallel, merged into one answer (throws for a failed required part). */
export function createAggregateTarget (plan: AggregatePlan): Target {
  return { limit: MADE_HERE, cacheable: true, call: aggregateCall(plan) }
}

function aggregateCall (plan: AggregatePlan): (request: FastifyRequest, clientGone?: CancelSignal) => Promise<BufferedAnswer> {
  const { parts, forward } = plan
  const keys = parts.map(p => JSON.stringify(p.name))

  return async function produceAggregate (request, clientGone) {
    const ctx = fillContext(request)
    const base = partRequestHeaders(request, forward)
    const start = Date.now()
    const run = new PartsRun(parts.length)
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]
      callPart(part, ctx, base, start + part.timeout, run.cancellation, request.traceContext)
        .then(result => { run.settle(i, result) }, (err: unknown) => { run.settle(i, failed(err)) })
    }
    run.arm(parts, start)
    // The parts are reads: a client that hangs up cancels them all.
    if (clientGone === undefined) return merge(parts, keys, await run.done)
    clientGone.addEventListener('abort', run, { once: true })
    try {
      const results = await run.done
      // Nobody waits for the merge; the parts' failures were the cancellation, not the services.
      if (clientGone.aborted) throw CLIENT_GONE
      return merge(parts, keys, results)
    } finally {
      clientGone.removeEventListener('abort', run)
    }
  }
}

/**
 * One aggregate request's parts in flight. Each part has a deadline (its
 * timeout, covering retries and a body that keeps trickling in); one timer,
 * armed for the earliest deadline still pending, times out whatever has not
 * answered by its own, and parts still running when the last one settles
 * are cancelled.
 */
class PartsRun {
  readonly cancellation = new Cancellation()
  readonly done: Promise<PartResult[]>
  private readonly results: Array<PartResult | undefined>
  private pending: number
  private finish!: (results: PartResult[]) => void
  private timer: NodeJS.Timeout | undefined
  private parts: AggregatePart[] = []
  private start = 0

  constructor (count: number) {
    this.results = new Array<PartResult | undefined>(count)
    this.pending = count
    this.done = new Promise(resolve => { this.finish = resolve })
  }

  settle (i: number, result: PartResult): void {
    if (this.results[i] !== undefined) return // already timed out
    this.results[i] = result
    if (--this.pending === 0) this.close()
  }

  /** Starts the timer for the earliest deadline of a part still pending. */
  arm (parts: AggregatePart[], start: number): void {
    if (this.pending === 0) return
    this.parts = parts
    this.start = start
    let next = Infinity
    for (let i = 0; i < parts.length; i++) if (this.results[i] === undefined && parts[i].timeout < next) next = parts[i].timeout
    this.timer = setTimeout(() => { this.expire() }, Math.max(0, start + next - Date.now()))
  }

  private expire (): void {
    this.timer = undefined
    const now = Date.now()
    for (let i = 0; i < this.parts.length; i++) {
      const part = this.parts[i]
      if (this.results[i] === undefined && this.start + part.timeout <= now) {
        this.settle(i, { ok: false, error: new GatewayError('UPSTREAM_TIMEOUT', `part "${part.name}" did not answer within ${part.timeout} ms`) })
      }
    }
    if (this.pending > 0) this.arm(this.parts, this.start)
  }

  /** The client hung up: cancel every part still running. */
  handleEvent (): void {
    this.cancellation.abort(CLIENT_GONE)
  }

  private close (): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    // Parts still running past their deadline are cancelled.
    this.cancellation.abort()
    this.finish(this.results as PartResult[])
  }
}

function failed (err: unknown): PartResult {
  return { ok: false, error: err instanceof GatewayError ? err : new GatewayError('UPSTREAM_ERROR', 'the call failed', { cause: err }) }
}

function merge (parts: AggregatePart[], keys: string[], results: PartResult[]): BufferedAnswer {
  let body = '{'
  let degraded = ''
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]
    const r = results[i]
    let json: string
    if (r.ok) json = r.json
    else if (part.optional) {
      json = part.fallbackJson
      degraded += degraded === '' ? part.name : ',' + part.name
    } else {
      throw new GatewayError(r.error.code, `part "${part.name}": ${r.error.message}`, {
        extras: { part: part.name },
        ...(r.error.headers !== undefined ? { headers: r.error.headers } : {}),
      })
    }
    body += (i === 0 ? '' : ',') + keys[i] + ':' + json
  }
  const headers: AnswerHeaders = { 'content-type': 'application/json; charset=utf-8' }
  if (degraded !== '') headers['x-gateway-degraded'] = degraded
  // A degraded answer is never cached: the next request should try the parts again.
  return { statusCode: 200, headers, body: Buffer.from(body + '}'), cacheable: degraded === '' }
}

/** One part's call, reduced to a value: the JSON text to merge, or why it failed. */
async function callPart (part: AggregatePart, ctx: FillContext, base: Record<string, string>, deadline: number, signal: CancelSignal, trace: Context | undefined): Promise<PartResult> {
  let res: UpstreamResponse
  try {
    let path = part.fillPath(ctx)
    if (part.query.length > 0) {
      let qs = ''
      for (const [name, fill] of part.query) qs += (qs === '' ? '' : '&') + encodeURIComponent(name) + '=' + encodeURIComponent(fill(ctx))
      path += (path.includes('?') ? '&' : '?') + qs
    }
    let headers = base
    if (part.headers.length > 0) {
      headers = { ...base }
      for (const [name, fill] of part.headers) headers[name] = headerSafe(fill(ctx))
    }
    res = await part.client.call({ method: 'GET', path, headers, timeout: part.timeout, deadline, signal, ...(trace !== undefined ? { trace } : {}) })
  } catch (err) {
    return failed(err)
  }
  if (res.statusCode < 200 || res.statusCode >= 300) {
    discardBody(res)
    return fail(`service "${part.client.name}" answered ${res.statusCode}`)
  }
  let body: Buffer
  try {
    body = await readBody(res, part.client.maxResponseSize, part.client.name)
  } catch (err) {
    return { ok: false, error: err as GatewayError }
  }
  const notJson = (): PartResult => fail(`service "${part.client.name}" did not answer JSON`)
  // Merged as is: checking the grammar is enough (and cheaper than parsing).
  if (part.pick === undefined) return isJsonText(body) ? { ok: true, json: body.toString('utf8') } : notJson()
  let value: unknown
  try {
    value = JSON.parse(body.toString('utf8'))
  } catch {
    return notJson()
  }
  return { ok: true, json: JSON.stringify(pick(value, part.pick)) }
}

function fail (detail: string): PartResult {
  return { ok: false, error: new GatewayError('UPSTREAM_ERROR', detail) }
}

function pick (value: unknown, fields: string[]): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value
  const out: Record<string, unknown> = {}
  for (const f of fields) if (Object.hasOwn(value, f)) out[f] = (value as Record<string, unknown>)[f]
  return out
}
