// Request metrics (one onResponse hook): count and duration per route id,
// cache results from the x-cache header, and rate-limit refusals.

import fp from 'fastify-plugin'
import { statusClass, type GatewayMetrics } from '../src/metrics.js'

export default fp<{ metrics: GatewayMetrics }>(async function metricsPlugin (app, { metrics }) {
  // Callback style: cheaper than an async hook on every request.
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.config.routeId ?? 'unmatched'
    const status = reply.statusCode
    metrics.requests.labels(route, request.method, statusClass(status)).inc()
    metrics.duration.labels(route).observe(reply.elapsedTime / 1000)
    const cache = reply.getHeader('x-cache')
    if (typeof cache === 'string') metrics.cache.labels(route, cache.toLowerCase()).inc()
    if (status === 429) metrics.rateLimited.labels(route).inc()
    done()
  })
}, { name: 'portico-metrics' })
