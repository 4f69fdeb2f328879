// What every route target is: one call for a client's request that yields its
// answer as a value (status, headers, a body in hand or still streaming). The
// proxy, aggregate and command targets each build one at config load; the
// stages around a target (the cache, invalidation and publishing) wrap any of
// them the same way, and one function sends whatever the last of them returns.

import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Readable } from 'node:stream'
import { discardBody, readBody } from '../upstream/body.js'
import { CLIENT_GONE, Cancellation, type CancelSignal } from '../util/cancellation.js'
import { copyResponseHeaders } from './forward-headers.js'

export type AnswerHeaders = Record<string, string | string[] | undefined>

/** A target's answer. An upstream's answer (src/upstream/types.ts) is one as it stands: no copy per request. */
export interface TargetAnswer {
  statusCode: number
  headers: AnswerHeaders
  /** The bytes, or a stream still arriving from the upstream (backpressured; destroying it aborts the call). */
  body: Buffer | Readable
  /** False: must not be stored (a degraded aggregate, a command's acknowledgement). Absent: storable. */
  cacheable?: boolean
}

/** An answer read whole, as the cache stores it and an event carries it. */
export interface BufferedAnswer extends TargetAnswer {
  body: Buffer
}

/** The most of an answer a stage may read whole: the service's maxResponseSize, named in the error past it. */
export interface BodyLimit { name: string, maxResponseSize: number }

export interface Target {
  /**
   * One call for a client's request. Throws a GatewayError for what becomes a
   * gateway-made error. `clientGone` fires when the one client waiting for
   * this answer hangs up (absent when several share it: a cache MISS).
   */
  call: (request: FastifyRequest, clientGone?: CancelSignal) => Promise<TargetAnswer>
  /** How much of an answer may be read whole (cache MISS, publishing the answer). */
  limit: BodyLimit
  /** False for targets whose answers are never stored (commands). */
  cacheable: boolean
}

/** Sends an answer: bytes as they are, a stream piped; no body at all for HEAD, 204 and 304. */
export function sendAnswer (request: FastifyRequest, reply: FastifyReply, answer: TargetAnswer): FastifyReply {
  reply.code(answer.statusCode)
  copyResponseHeaders(answer.headers, reply)
  if (request.method === 'HEAD' || answer.statusCode === 204 || answer.statusCode === 304) {
    // No body may follow; drain a streamed one so its pooled connection is free again.
    discardBody(answer)
    return reply.send()
  }
  return reply.send(answer.body)
}

/** The answer with its body read whole, refused past `limit` (a stage that buffers never does so without bound). */
export async function bufferAnswer (answer: TargetAnswer, limit: BodyLimit): Promise<BufferedAnswer> {
  const body = await readBody(answer, limit.maxResponseSize, limit.name)
  if (body === answer.body) return answer as BufferedAnswer
  return { statusCode: answer.statusCode, headers: answer.headers, body, ...(answer.cacheable !== undefined ? { cacheable: answer.cacheable } : {}) }
}

/** A route's handler when no stage buffers the answer: call the target, send what it answered. */
export function targetHandler (target: Target): (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply> {
  const call = target.call
  return async function sendTarget (request, reply) {
    return sendAnswer(request, reply, await callForOne(call, request))
  }
}

const WAITING = Symbol('portico.waitingCall')
type WaitingRequest = FastifyRequest & { [WAITING]?: Cancellation }

/**
 * Calls the target for the one client of `request`. If that client closes
 * its connection before the answer's headers, the call is cancelled (see
 * cancelWhenClientGone): the upstream connection is freed now, not when the
 * service answers or its timeout passes. (Once the answer streams, closing
 * the reply destroys the upstream body, which aborts the transfer too.)
 */
export async function callForOne (call: Target['call'], request: FastifyRequest): Promise<TargetAnswer> {
  const gone = new Cancellation()
  ;(request as WaitingRequest)[WAITING] = gone
  try {
    return await call(request, gone)
  } finally {
    (request as WaitingRequest)[WAITING] = undefined
  }
}

/**
 * The gateway's onRequestAbort hook: Fastify runs it when a client closes
 * its connection before its answer. It rides on the one close listener
 * Fastify already keeps per request (the access log's hook asks for it), so
 * a call costs no listener of its own.
 */
export function cancelWhenClientGone (request: FastifyRequest, done: () => void): void {
  (request as WaitingRequest)[WAITING]?.abort(CLIENT_GONE)
  done()
}
