// A server span per request (when tracing exports): continued from the
// client's traceparent, named by method and route id, ended with the status.

import fp from 'fastify-plugin'
import type { Context, Span } from '@opentelemetry/api'
import { endSpan, type Tracing } from '../src/observability/tracing.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's trace context: upstream calls become its children. */
    traceContext?: Context
    traceSpan?: Span
  }
}

export default fp<{ tracing: Tracing }>(async function tracingPlugin (app, { tracing }) {
  app.decorateRequest('traceContext', undefined)
  app.decorateRequest('traceSpan', undefined)
  app.addHook('onRequest', async (request) => {
    const route = request.routeOptions.config.routeId ?? 'unmatched'
    const { span, ctx } = tracing.startServerSpan(`${request.method} ${route}`, request.headers, {
      'http.request.method': request.method,
      'http.route': request.routeOptions.url ?? '',
      'portico.route': route,
      'portico.request_id': request.id,
    })
    request.traceSpan = span
    request.traceContext = ctx
  })
  app.addHook('onResponse', async (request, reply) => {
    if (request.traceSpan !== undefined) endSpan(request.traceSpan, reply.statusCode)
  })
}, { name: 'portico-tracing' })
