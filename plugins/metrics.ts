// Request metrics (one onResponse hook): count and duration per route id,
// cache results from the x-cache header, and rate-limit refusals.

import fp from 'fastify-plugin'
import { statusClass, type GatewayMetrics } from '../src/observability/metrics.js'

interface Inc { inc: () => void }
interface Observe { observe: (v: number) => void }

export default fp<{ metrics: GatewayMetrics }>(async function metricsPlugin (app, { metrics }) {
  // prom-client hashes the label values on every labels() call; the set of
  // (route, method, status) is small, so each child is looked up once.
  const counters = new Map<string, Inc>()
  const durations = new Map<string, Observe>()
  const counter = (route: string, method: string, status: number): Inc => {
    const key = `${route}\0${method}\0${status}`
    let c = counters.get(key)
    if (c === undefined) {
      c = metrics.requests.labels(route, method, statusClass(status))
      counters.set(key, c)
    }
    return c
  }
  const duration = (route: string): Observe => {
    let d = durations.get(route)
    if (d === undefined) {
      d = metrics.duration.labels(route)
      durations.set(route, d)
    }
    return d
  }

  // Callback style: cheaper than an async hook on every request.
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.config.routeId ?? 'unmatched'
    const status = reply.statusCode
    counter(route, request.method, status).inc()
    duration(route).observe(reply.elapsedTime / 1000)
    const cache = reply.getHeader('x-cache')
    if (typeof cache === 'string') metrics.cache.labels(route, cache.toLowerCase()).inc()
    if (status === 429) metrics.rateLimited.labels(route).inc()
    done()
  })
}, { name: 'portico-metrics' })
