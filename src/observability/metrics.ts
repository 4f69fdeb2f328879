// Prometheus metrics (prom-client), one registry per gateway instance. Label
// values are bounded: route ids, service names, methods, status classes —
// never raw paths or user data.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export type UpstreamOutcome = 'ok' | '4xx' | '5xx' | 'error' | 'timeout' | 'circuit_open'

export interface GatewayMetrics {
  registry: Registry
  requests: Counter<'route' | 'method' | 'status_class'>
  duration: Histogram<'route'>
  upstream: Histogram<'service' | 'outcome'>
  breakerState: Gauge<'service'>
  breakerTransitions: Counter<'service' | 'state'>
  cache: Counter<'route' | 'result'>
  rateLimited: Counter<'route'>
}

export const BREAKER_STATE_VALUE = { closed: 0, halfOpen: 1, open: 2 } as const

export interface MetricSources {
  redisUp: () => number | undefined
  events: () => { published: number, failed: number, commands: number } | undefined
}

export function createMetrics (sources: MetricSources): GatewayMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'portico_' })
  const m: GatewayMetrics = {
    registry,
    requests: new Counter({ name: 'portico_http_requests_total', help: 'Requests by route, method and status class', labelNames: ['route', 'method', 'status_class'], registers: [registry] }),
    duration: new Histogram({
      name: 'portico_http_request_duration_seconds',
      help: 'Time from request to response, by route',
      labelNames: ['route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    upstream: new Histogram({
      name: 'portico_upstream_request_duration_seconds',
      help: 'Calls to services (after retries), by service and outcome',
      labelNames: ['service', 'outcome'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    breakerState: new Gauge({ name: 'portico_breaker_state', help: 'Circuit breaker state per service: 0 closed, 1 half-open, 2 open', labelNames: ['service'], registers: [registry] }),
    breakerTransitions: new Counter({ name: 'portico_breaker_transitions_total', help: 'Circuit breaker state changes', labelNames: ['service', 'state'], registers: [registry] }),
    cache: new Counter({ name: 'portico_cache_requests_total', help: 'Cached-route lookups by result (hit, miss, stale, bypass)', labelNames: ['route', 'result'], registers: [registry] }),
    rateLimited: new Counter({ name: 'portico_rate_limited_total', help: 'Requests refused by a rate limit', labelNames: ['route'], registers: [registry] }),
  }
  // Kept only by the registry: collect() reads the value at scrape time.
  new Gauge({
    name: 'portico_redis_up',
    help: '1 when Redis answers; 0 when it does not, or none is configured',
    registers: [registry],
    collect () { const v = sources.redisUp(); if (v !== undefined) this.set(v) },
  })
  for (const [name, field] of [['portico_events_published_total', 'published'], ['portico_events_failed_total', 'failed'], ['portico_commands_accepted_total', 'commands']] as const) {
    // Kept only by the registry, like portico_redis_up above.
    new Counter({
      name,
      help: `Events ${field} (publish and command routes)`,
      registers: [registry],
      collect () { const c = sources.events(); if (c !== undefined) { this.reset(); this.inc(c[field]) } },
    })
  }
  return m
}

export function statusClass (status: number): string {
  return `${Math.floor(status / 100)}xx`
}
