// One structured log line per request (Fastify's own request logging is off):
// request id (from the logger's bindings), route id, status and duration,
// and the identity's `sub` once a policy authenticated the request (never
// the token or API key itself). The query string is left out: it may carry
// keys or tokens.

import fp from 'fastify-plugin'

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
    const q = request.url.indexOf('?')
    const sub = request.auth?.sub
    request.log.info({
      route: request.routeOptions.config.routeId,
      method: request.method,
      path: q === -1 ? request.url : request.url.slice(0, q),
      ...(sub !== undefined ? { sub } : {}),
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 10) / 10,
    }, 'request')
    done()
  })
}, { name: 'portico-access-log' })
