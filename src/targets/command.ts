// Command routes, the asynchronous write side: no upstream call. The body
// (validated by the route schema before this runs) is appended to a stream
// with a generated commandId, and the client gets 202 {"commandId"}. A
// command that could not be stored is a 503, never a 202; but a 503 may
// also hide a stored command (Redis wrote it, then failed before answering),
// so without a key delivery is at-least-once. With an
// `idempotency-key` header a repeat within the window returns the first
// commandId and stores nothing new. While the first is still being stored
// its key is marked pending: a concurrent repeat waits for the outcome, so
// it never answers 202 for a command that then fails to be stored. The
// append and the key's confirmation are one atomic step where the store
// allows it, so a retry with the same key never stores a second copy.

import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyRequest } from 'fastify'
import { GatewayError } from '../util/errors.js'
import type { EventPublisher } from '../events/publisher.js'
import type { EventSink } from '../events/sink.js'
import { rawBodyOf } from '../pipeline/body.js'
import type { AnswerHeaders, BufferedAnswer, Target } from './target.js'

export interface CommandPlan {
  routeId: string
  stream: string
  type: string
  /** e.g. `/api/reports/{commandId}`: sent as `location`. */
  statusPath?: string
  idempotencyWindow: number
  publisher: EventPublisher
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/
/** Marks a claimed key whose command is not stored yet. */
const PENDING = 'pending:'
/** A pending claim outlives any append; if its instance dies mid-way, the key frees itself after this. */
const PENDING_TTL = 30_000
/** How long a repeat waits for a pending first request before giving up with a 503. */
const PENDING_WAIT = 2_000

/** A command's answer is the gateway's own small acknowledgement. */
const MADE_HERE = { name: 'command', maxResponseSize: Number.POSITIVE_INFINITY }

/** The command target: the body appended to a stream, answered 202 {"commandId"} (never stored by a cache). */
export function createCommandTarget (plan: CommandPlan): Target {
  return { limit: MADE_HERE, cacheable: false, call: commandCall(plan) }
}

function commandCall (plan: CommandPlan): (request: FastifyRequest) => Promise<BufferedAnswer> {
  const { publisher } = plan
  const sink = publisher.sink
  return async function appendCommand (request: FastifyRequest) {
    const commandId = randomUUID()
    const given = request.headers['idempotency-key']
    let claimKey: string | undefined
    if (given !== undefined) {
      if (typeof given !== 'string' || !IDEMPOTENCY_KEY.test(given)) {
        throw new GatewayError('BAD_REQUEST', 'idempotency-key must be 1–200 visible ASCII characters')
      }
      // Per route and per identity: one client's key never collides with another's.
      claimKey = `${plan.routeId}:${request.auth?.sub ?? ''}:${given}`
      const existing = await claimOrWait(sink, claimKey, commandId, Math.min(PENDING_TTL, plan.idempotencyWindow))
      if (existing !== undefined) return accepted(existing, plan.statusPath, true)
    }
    const raw = rawBodyOf(request)
    const event = {
      type: plan.type,
      route: plan.routeId,
      sub: request.auth?.sub ?? '',
      requestId: request.id,
      at: new Date().toISOString(),
      body: raw !== undefined ? raw.toString('utf8') : JSON.stringify(request.body ?? null),
      commandId,
    }
    const atomic = claimKey !== undefined && sink.appendConfirmed !== undefined
    try {
      if (atomic) await sink.appendConfirmed?.(plan.stream, event, claimKey as string, commandId, plan.idempotencyWindow)
      else await sink.append(plan.stream, event)
    } catch (err) {
      // Only while the claim is still our pending one: if the append did
      // happen (its reply was lost), the key already holds the commandId and a
      // retry must get that back.
      if (claimKey !== undefined) await sink.release(claimKey, PENDING + commandId).catch(() => {})
      throw unavailable(err)
    }
    if (claimKey !== undefined && !atomic) {
      // Stored: answer 202 even if the key cannot be confirmed (it frees itself after PENDING_TTL).
      await sink.confirm(claimKey, commandId, plan.idempotencyWindow).catch((err: unknown) => {
        request.log.warn({ err: (err as Error).message }, 'idempotency key not confirmed')
      })
    }
    publisher.counters.commands++
    return accepted(commandId, plan.statusPath, false)
  }
}

/** Claims the key (undefined) or resolves to the stored commandId, waiting while a first request is pending. */
async function claimOrWait (sink: EventSink, key: string, commandId: string, pendingTtl: number): Promise<string | undefined> {
  const until = Date.now() + PENDING_WAIT
  for (;;) {
    let existing: string | undefined
    try {
      existing = await sink.claim(key, PENDING + commandId, pendingTtl)
    } catch (err) {
      throw unavailable(err)
    }
    if (existing === undefined || !existing.startsWith(PENDING)) return existing
    if (Date.now() >= until) {
      throw new GatewayError('EVENTS_UNAVAILABLE', 'an earlier request with this idempotency-key is still being stored; retry later with the same idempotency-key header')
    }
    await sleep(20)
  }
}

function accepted (commandId: string, statusPath: string | undefined, replayed: boolean): BufferedAnswer {
  const headers: AnswerHeaders = { 'content-type': 'application/json; charset=utf-8' }
  if (statusPath !== undefined) headers.location = statusPath.replaceAll('{commandId}', encodeURIComponent(commandId))
  if (replayed) headers['idempotent-replayed'] = 'true'
  return { statusCode: 202, headers, body: Buffer.from(JSON.stringify({ commandId })), cacheable: false }
}

// Delivery is at-least-once without a key: when Redis fails mid-append the
// entry may have been written although its reply never came back, so the
// detail tells the client how to retry without storing the command twice.
const RETRY_ADVICE = 'retry with the same idempotency-key header, which is safe; a retry without one may store the command twice'

function unavailable (cause: unknown): GatewayError {
  return new GatewayError('EVENTS_UNAVAILABLE', `the command could not be confirmed as stored; ${RETRY_ADVICE}`, { cause })
}
