// One structured log line per request (Fastify's own request logging is off):
// request id (from the logger's bindings), route id, status and duration,
// and the identity's `sub` once a policy authenticated the request (never
// the token or API key itself). The query string is left out: it may carry
// keys or tokens.

import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The config route id, for logs and metrics. */
    routeId?: string
  }
}

const QUIETER_THAN_INFO = new Set(['warn', 'error', 'fatal', 'silent'])

export default fp(async function accessLog (app) {
  // Callback style: cheaper than an async hook on every request.
  app.addHook('onResponse', (request, reply, done) => {
    // Below info (LOG_LEVEL=warn) the line is never built.
    if (QUIETER_THAN_INFO.has(request.log.level)) { done(); return }
    logRequest(request, reply.statusCode, reply.elapsedTime)
    done()
  })
  // A client that hung up before its answer gets no onResponse: its line says
  // 499 (client closed request, as nginx logs it), so it is not invisible.
  app.addHook('onRequestAbort', (request, done) => {
    if (!QUIETER_THAN_INFO.has(request.log.level)) logRequest(request, 499, undefined)
    done()
  })
}, { name: 'portico-access-log' })

/** `elapsedMs` is absent for a hang-up: Fastify times the reply, and there was none. */
function logRequest (request: FastifyRequest, status: number, elapsedMs: number | undefined): void {
  const q = request.url.indexOf('?')
  const sub = request.auth?.sub
  request.log.info({
    route: request.routeOptions.config.routeId,
    method: request.method,
    path: q === -1 ? request.url : request.url.slice(0, q),
    ...(sub !== undefined ? { sub } : {}),
    status,
    ...(elapsedMs !== undefined ? { ms: Math.round(elapsedMs * 10) / 10 } : {}),
  }, 'request')
}
