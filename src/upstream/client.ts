// The composed call every handler uses to reach a service. The build order is
// written out here, once (as in Lura's proxy factory):
//
//   breaker → retry → balance → instance pool (timeout inside undici)
//
// The breaker is outermost so it counts one logical call however many
// attempts it took, and fails fast before any work while open. Retries sit
// outside the balancer so each attempt can go to another instance.

import type { ServiceConfig } from '../config/types.js'
import { DEFAULTS } from '../config/defaults.js'
import { createInstancePool, type InstancePool } from './pool.js'
import { createBalancer, type Balancer } from './balancer.js'
import { createBreaker, type ServiceBreaker } from './breaker.js'
import { withRetry } from './retry.js'
import type { UpstreamCall } from './types.js'
import { GatewayError } from '../util/errors.js'
import type { UpstreamOutcome } from '../observability/metrics.js'
import { endSpan, type Tracing } from '../observability/tracing.js'

export interface ServiceClient {
  name: string
  /** Default timeout for calls to this service (ms). */
  timeout: number
  /** Largest upstream body an aggregate part buffers (bytes). */
  maxResponseSize: number
  call: UpstreamCall
  breaker: ServiceBreaker
  balancer: Balancer
  close: () => Promise<void>
}

/** Called once per logical call (after retries), for metrics. */
export type CallObserver = (seconds: number, outcome: UpstreamOutcome) => void

export function createServiceClient (service: ServiceConfig, observe?: CallObserver, tracing?: Tracing): ServiceClient {
  const instances: InstancePool[] = service.urls.map(url => createInstancePool(service.name, url, {
    connections: service.connections,
    keepAliveTimeout: DEFAULTS.service.keepAliveTimeout,
    connectTimeout: Math.min(service.timeout, DEFAULTS.service.connectTimeout),
  }))
  const balancer = createBalancer(instances, service.passiveHealth, service.healthCheck)
  const breaker = createBreaker(service.name, withRetry(balancer.call, { retries: service.retries }), service.breaker)
  return {
    name: service.name,
    timeout: service.timeout,
    maxResponseSize: service.maxResponseSize,
    call: traced(observe === undefined ? breaker.call : observed(breaker.call, observe), service.name, tracing),
    breaker,
    balancer,
    close: async () => {
      balancer.close()
      breaker.shutdown()
      await Promise.all(instances.map(i => i.close()))
    },
  }
}

/** A client span around the logical call, its traceparent sent upstream. */
function traced (call: UpstreamCall, service: string, tracing: Tracing | undefined): UpstreamCall {
  if (tracing === undefined) return call
  return async (req) => {
    if (req.trace === undefined) return await call(req)
    const headers = { ...req.headers }
    const span = tracing.startClientSpan(req.trace, `${req.method} ${service}`, headers, { 'peer.service': service, 'http.request.method': req.method, 'url.path': req.path.split('?')[0] })
    try {
      const res = await call({ ...req, headers })
      endSpan(span, res.statusCode)
      return res
    } catch (err) {
      endSpan(span, err instanceof GatewayError ? err.status : undefined, err)
      throw err
    }
  }
}

function observed (call: UpstreamCall, observe: CallObserver): UpstreamCall {
  return (req) => {
    const start = performance.now()
    return call(req).then(res => {
      observe((performance.now() - start) / 1000, res.statusCode >= 500 ? '5xx' : res.statusCode >= 400 ? '4xx' : 'ok')
      return res
    }, (err: unknown) => {
      const code = err instanceof GatewayError ? err.code : ''
      observe((performance.now() - start) / 1000, code === 'UPSTREAM_TIMEOUT' ? 'timeout' : code === 'CIRCUIT_OPEN' ? 'circuit_open' : 'error')
      throw err
    })
  }
}
