// Proxy routes: one upstream call, the answer passed back unchanged (small
// bodies as the one Buffer the pool read, large ones streamed).

import type { FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify'
import type { Readable } from 'node:stream'
import type { PathFiller } from '../util/template.js'
import type { ServiceClient } from '../upstream/client.js'
import type { UpstreamResponse } from '../upstream/types.js'
import type { ProducedResponse } from './produced.js'
import { discardBody, readBody } from '../upstream/body.js'
import type { BodyLimit, RequestCall } from './request-call.js'
import { copyResponseHeaders, upstreamRequestHeaders, type ForwardOptions } from './forward-headers.js'
import { rawBodyOf } from '../pipeline/body.js'
import { GatewayError } from '../util/errors.js'
import { fillContext } from './fill-context.js'

/**
 * A `.` or `..` segment, also percent-encoded: many upstreams resolve them, which would escape the route's prefix.
 * The path normaliser refuses these before matching already; this stays as a second line in front of the upstream.
 */
const DOT_SEGMENT = /(^|\/)(\.|%2e){1,2}(\/|$)/i

export interface ProxyPlan {
  client: ServiceClient
  /** Upstream path template; undefined forwards the incoming path as normalised before matching (src/pipeline/paths/normalise.ts). */
  fillPath?: PathFiller
  templateHasQuery?: boolean
  forward: ForwardOptions
}

export type { RequestCall }

/** Builds the upstream request from the client's and calls the service. */
export function createProxyCall (plan: ProxyPlan): RequestCall {
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

/** Streams the upstream's answer back unchanged: a small body as the one Buffer the pool read, a large one piped. */
export function createProxyHandler (call: RequestCall): RouteHandlerMethod {
  return async function proxyHandler (request: FastifyRequest, reply: FastifyReply) {
    return sendUpstream(request, reply, await call(request))
  }
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
export function createBufferedProxy (call: RequestCall, service: BodyLimit): (request: FastifyRequest) => Promise<ProducedResponse> {
  const limit = service.maxResponseSize
  return async function produceProxied (request) {
    const res = await call(request)
    return { status: res.statusCode, headers: res.headers as ProducedResponse['headers'], body: await readBody(res, limit, service.name), cacheable: true }
  }
}
