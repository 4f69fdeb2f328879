// What follows a 2xx answer from the upstream: cache invalidation (before the
// answer is sent, so the next read is fresh) and event publishing (beside the
// answer). The hooks wrap the upstream call itself, not one handler, so every
// path that reaches the upstream runs them the same way: the streaming
// handler, a cache MISS or BYPASS, a HEAD, a stale-while-revalidate refresh.
// That makes the rule "once per upstream 2xx": a cache HIT or STALE answer
// made no call and runs none, and concurrent misses coalesced into one call
// run them once.

import type { FastifyRequest } from 'fastify'
import type { EventPublisher } from '../events/publisher.js'
import type { UpstreamResponse } from '../upstream/types.js'
import { discardBody, readBody } from '../upstream/body.js'
import { rawBodyOf } from './body.js'
import type { BodyLimit, RequestCall } from '../targets/request-call.js'

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

export type { BodyLimit }

export function withSuccessHooks (call: RequestCall, hooks: SuccessHooks, service: BodyLimit): RequestCall {
  const { invalidate, publish } = hooks
  if (invalidate === undefined && publish === undefined) return call
  return async function callWithSuccessHooks (request) {
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
    const body = await readBody(res, service.maxResponseSize, service.name)
    const buffered: UpstreamResponse = { ...res, body }
    publishEvent(publish, request, asJson(body, res.headers['content-type']))
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
