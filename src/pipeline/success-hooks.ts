// What follows a 2xx answer from a target: cache invalidation (before the
// answer is sent, so the next read is fresh) and event publishing (beside the
// answer). The hooks wrap the target's call itself, not one handler, so every
// path that reaches the upstream runs them the same way: the streaming
// handler, a cache MISS or BYPASS, a HEAD, a stale-while-revalidate refresh.
// That makes the rule "once per upstream 2xx": a cache HIT or STALE answer
// made no call and runs none, and concurrent misses coalesced into one call
// run them once.

import type { FastifyRequest } from 'fastify'
import type { EventPublisher } from '../events/publisher.js'
import { discardBody } from '../upstream/body.js'
import { rawBodyOf } from './body.js'
import { bufferAnswer, type Target } from '../targets/target.js'

export interface PublishPlan {
  stream: string
  type: string
  routeId: string
  /** The event body: the upstream's answer (buffered) or the client's request body. */
  from: 'response' | 'request'
  publisher: EventPublisher
}

export interface SuccessHooks {
  /** Runs on a 2xx before the answer is sent (cache invalidation: the next read must be fresh). */
  invalidate?: (request: FastifyRequest) => Promise<void>
  /** Runs on a 2xx beside the answer (event publishing). */
  publish?: PublishPlan
}

/** The target with its success hooks around its call: the same target when it has none. */
export function withSuccessHooks (target: Target, hooks: SuccessHooks): Target {
  const { invalidate, publish } = hooks
  if (invalidate === undefined && publish === undefined) return target
  const call = target.call
  return { ...target, call: callWithSuccessHooks }

  // A client that hangs up does not cancel this call: the write may reach
  // the service anyway, and its outcome must still invalidate and publish.
  async function callWithSuccessHooks (request: FastifyRequest): ReturnType<Target['call']> {
    const res = await call(request)
    if (res.statusCode < 200 || res.statusCode >= 300) return res
    if (invalidate !== undefined) {
      // A streamed answer waits meanwhile; if the invalidation fails, let its connection go.
      try { await invalidate(request) } catch (err) { discardBody(res); throw err }
    }
    if (publish === undefined) return res
    if (publish.from === 'request') {
      publishEvent(publish, request, rawBodyOf(request)?.toString('utf8') ?? 'null')
      return res
    }
    // The answer is the event's body: buffered (within the service's limit), then sent as that Buffer.
    const buffered = await bufferAnswer(res, target.limit)
    publishEvent(publish, request, asJson(buffered.body, res.headers['content-type']))
    return buffered
  }
}

function publishEvent (plan: PublishPlan, request: FastifyRequest, body: string): void {
  void plan.publisher.publish(plan.stream, {
    type: plan.type,
    route: plan.routeId,
    sub: request.auth?.sub ?? '',
    requestId: request.id,
    at: new Date().toISOString(),
    body,
  })
}

/** The event's body field is JSON: a non-JSON answer travels as a JSON string. */
function asJson (body: Buffer, contentType: string | string[] | undefined): string {
  const text = body.toString('utf8')
  if (text === '') return 'null'
  if (typeof contentType === 'string' && /json/i.test(contentType)) {
    try { JSON.parse(text); return text } catch { /* fall through */ }
  }
  return JSON.stringify(text)
}
