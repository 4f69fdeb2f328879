// Proxy routes: one upstream call, the answer passed back unchanged (small
// bodies as the one Buffer the pool read, large ones streamed).

import type { FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify'
import type { Readable } from 'node:stream'
import type { PathFiller } from '../compile/template.js'
import type { ServiceClient } from '../upstream/client.js'
import type { UpstreamResponse } from '../upstream/types.js'
import type { ProducedResponse } from './produced.js'
import { discardBody, readBody } from '../upstream/body.js'
import type { EventPublisher } from '../events/publisher.js'
import { copyResponseHeaders, upstreamRequestHeaders, type ForwardOptions } from './forward-headers.js'
import { rawBodyOf } from '../compile/body.js'
import { GatewayError } from '../errors.js'
import { fillContext } from './fill-context.js'

/**
 * A `.` or `..` segment, also percent-encoded: many upstreams resolve them, which would escape the route's prefix.
 * The path normaliser refuses these before matching already; this stays as a second line in front of the upstream.
 */
const DOT_SEGMENT = /(^|\/)(\.|%2e){1,2}(\/|$)/i

export interface ProxyPlan {
  client: ServiceClient
  /** Upstream path template; undefined forwards the incoming path as normalised before matching (src/paths/normalise.ts). */
  fillPath?: PathFiller
  templateHasQuery?: boolean
  forward: ForwardOptions
}

/** Builds the upstream request from the client's and calls the service. */
export function createProxyCall (plan: ProxyPlan): (request: FastifyRequest) => Promise<UpstreamResponse> {
  const { client, fillPath, forward } = plan
  // A template that has its own query (`/orders?user={auth.sub}`) gets the client's query appended with `&`.
  const templateHasQuery = plan.templateHasQuery === true
  return async function callUpstream (request) {
    let path = request.url
    if (fillPath !== undefined) {
      const q = path.indexOf('?')
      path = fillPath(fillContext(request)) + (q === -1 ? '' : (templateHasQuery ? '&' : '?') + path.slice(q + 1))
    } else {
      const q = path.indexOf('?')
      if (DOT_SEGMENT.test(q === -1 ? path : path.slice(0, q))) throw new GatewayError('BAD_REQUEST', 'a path segment may not be "." or ".."')
    }
    return await client.call({
      method: request.method,
      path,
      headers: upstreamRequestHeaders(request, forward),
      body: rawBodyOf(request) ?? request.body as Readable | undefined,
      timeout: client.timeout,
      ...(request.traceContext !== undefined ? { trace: request.traceContext } : {}),
    })
  }
}

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

/** Streams the upstream's answer back unchanged (buffered only when it is also the event body). */
export function createProxyHandler (plan: ProxyPlan, hooks: SuccessHooks = {}): RouteHandlerMethod {
  const callUpstream = createProxyCall(plan)
  const { invalidate, publish } = hooks
  return async function proxyHandler (request: FastifyRequest, reply: FastifyReply) {
    const res = await callUpstream(request)
    const ok = res.statusCode >= 200 && res.statusCode < 300
    if (ok && invalidate !== undefined) await invalidate(request)
    if (!ok || publish === undefined) return sendUpstream(request, reply, res)
    if (publish.from === 'request') {
      publishEvent(publish, request, rawBodyOf(request)?.toString('utf8') ?? 'null')
      return sendUpstream(request, reply, res)
    }
    const body = await readBody(res, plan.client.maxResponseSize, plan.client.name)
    reply.code(res.statusCode)
    copyResponseHeaders(res.headers, reply)
    reply.send(body)
    publishEvent(publish, request, asJson(body, res.headers['content-type']))
    return reply
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

/** Sends the upstream's answer: a small body as the one Buffer the pool read, a large one streamed. */
export function sendUpstream (request: FastifyRequest, reply: FastifyReply, res: UpstreamResponse): FastifyReply {
  if (request.method === 'HEAD' || res.statusCode === 204 || res.statusCode === 304) {
    // No body may follow; drain so the pooled connection is free again.
    discardBody(res)
    reply.code(res.statusCode)
    copyResponseHeaders(res.headers, reply)
    return reply.send()
  }
  reply.code(res.statusCode)
  copyResponseHeaders(res.headers, reply)
  return reply.send(res.body)
}

/**
 * For cached routes: the whole answer as bytes, refused past `limit` (a
 * cached route buffers what it may store; it never buffers without bound).
 */
export function createBufferedProxy (plan: ProxyPlan): (request: FastifyRequest) => Promise<ProducedResponse> {
  const callUpstream = createProxyCall(plan)
  const limit = plan.client.maxResponseSize
  return async function produceProxied (request) {
    const res = await callUpstream(request)
    return { status: res.statusCode, headers: res.headers as ProducedResponse['headers'], body: await readBody(res, limit, plan.client.name), cacheable: true }
  }
}
