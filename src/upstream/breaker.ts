// One opossum circuit breaker per service, shared by its proxy and aggregate
// calls. Failures are connection errors, timeouts and 5xx answers; 4xx are
// the client's business and count as successes. While open, calls fail at
// once with 503 CIRCUIT_OPEN and a retry-after of the time left; after
// resetTimeout one trial call is let through (half-open).

import CircuitBreaker from 'opossum'
import { GatewayError, stackOff } from '../util/errors.js'
import type { UpstreamCall, UpstreamRequest, UpstreamResponse } from './types.js'
import type { BreakerOptions } from '../config/service-options.js'
import { ClientGone } from '../util/cancellation.js'

export type { BreakerOptions }


export type BreakerState = 'closed' | 'open' | 'halfOpen'

export interface BreakerSnapshot {
  service: string
  state: BreakerState
  /** Seconds until a trial call is let through (open only). */
  retryAfter?: number
  stats: { fires: number, failures: number, successes: number, rejects: number, timeouts: number }
}

/** A 5xx answer: thrown inside the breaker so it counts, unwrapped outside so the client still gets the answer. */
class FailedStatus extends Error {
  constructor (readonly response: UpstreamResponse) {
    // Never shown or logged: no stack needed.
    const limit = stackOff()
    super(`upstream answered ${response.statusCode}`)
    Error.stackTraceLimit = limit
  }
}

function failOn5xx (res: UpstreamResponse): UpstreamResponse {
  if (res.statusCode >= 500) throw new FailedStatus(res)
  return res
}

export interface ServiceBreaker {
  call: UpstreamCall
  snapshot: () => BreakerSnapshot
  /** Subscribe to state changes (logging, metrics). */
  onChange: (listener: (state: BreakerState) => void) => void
  shutdown: () => void
}

export function createBreaker (service: string, inner: UpstreamCall, opts: BreakerOptions): ServiceBreaker {
  const breaker = new CircuitBreaker((req: UpstreamRequest) => inner(req).then(failOn5xx), {
    // Timeouts are the pool's job (undici timers), not a second timer per call.
    timeout: false,
    errorThresholdPercentage: opts.errorThresholdPercentage,
    volumeThreshold: opts.volumeThreshold,
    resetTimeout: opts.resetTimeout,
    rollingCountTimeout: opts.rollingCountTimeout,
    rollingCountBuckets: 10,
    // A call cancelled because its client hung up says nothing about the
    // service (opossum counts a filtered error as a success).
    errorFilter: (err: unknown) => err instanceof ClientGone,
    name: service,
  })
  let openedAt = 0
  const listeners: Array<(state: BreakerState) => void> = []
  const emit = (state: BreakerState): void => { for (const l of listeners) l(state) }
  breaker.on('open', () => { openedAt = Date.now(); emit('open') })
  breaker.on('halfOpen', () => { emit('halfOpen') })
  breaker.on('close', () => { emit('closed') })

  const retryAfter = (): number => Math.max(1, Math.ceil((openedAt + opts.resetTimeout - Date.now()) / 1000))
  const state = (): BreakerState => breaker.opened ? 'open' : breaker.halfOpen ? 'halfOpen' : 'closed'

  const openError = (): GatewayError => {
    const seconds = breaker.halfOpen ? 1 : retryAfter()
    return new GatewayError('CIRCUIT_OPEN', `service "${service}" is failing; calls are paused`, { headers: { 'retry-after': String(seconds) } })
  }
  // Calls refused while open never reach opossum: its refusal path builds an
  // Error with a stack and emits events, the bulk of a fast-fail's cost.
  let refused = 0

  const unwrap = (err: unknown): UpstreamResponse => {
    if (err instanceof FailedStatus) return err.response
    // Half-open with its trial call in flight: opossum refuses the rest.
    if ((err as { code?: string }).code === 'EOPENBREAKER') throw openError()
    throw err
  }

  return {
    call (req) {
      if (breaker.opened) {
        refused++
        return Promise.reject(openError())
      }
      return (breaker.fire(req) as Promise<UpstreamResponse>).catch(unwrap)
    },
    snapshot () {
      const s = breaker.stats
      const st = state()
      return {
        service,
        state: st,
        ...(st === 'open' ? { retryAfter: retryAfter() } : {}),
        stats: { fires: s.fires + refused, failures: s.failures, successes: s.successes, rejects: s.rejects + refused, timeouts: s.timeouts },
      }
    },
    onChange (listener) { listeners.push(listener) },
    shutdown () { breaker.shutdown() },
  }
}
