// Probes on the public listener: /healthz says the process is alive; /readyz
// says a config is loaded and lists each dependency's state. Both stay 200
// while the gateway can serve, degraded or not.

import fp from 'fastify-plugin'
import { sendContinue } from '../src/pipeline/expect-continue.js'

export interface HealthOptions {
  routes: number
  /** Each dependency's state, read per call (e.g. redis: up | down | not configured). */
  dependencies: () => Record<string, string>
}

export default fp<HealthOptions>(async function health (app, opts) {
  // The server defers Node's automatic 100 (src/gateway/http-edge.ts): a probe that expects one gets it here.
  app.get('/healthz', { config: { routeId: 'healthz' }, preParsing: [sendContinue] }, async () => ({ status: 'ok' }))
  app.get('/readyz', { config: { routeId: 'readyz' }, preParsing: [sendContinue] }, async () => ({
    status: 'ready',
    routes: opts.routes,
    ...opts.dependencies(),
  }))
}, { name: 'portico-health' })
