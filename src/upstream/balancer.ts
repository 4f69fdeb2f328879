// Round-robin over a service's instances with passive health: an instance
// that fails `failures` calls in a row (connection error, timeout, 502/503/504)
// is skipped for `ejectFor`; after that the next call to it is the probe, and
// one more failure ejects it again at once. If every instance is ejected the
// balancer tries them anyway, rather than failing closed. An optional active
// check probes each instance's health path on an interval.

import { request } from 'undici'
import { GatewayError } from '../util/errors.js'
import type { UpstreamCall, UpstreamResponse } from './types.js'
import type { ActiveHealthOptions, PassiveHealthOptions } from '../config/service-options.js'
import { DEFAULTS } from '../config/defaults.js'

export type { ActiveHealthOptions, PassiveHealthOptions }

export const DEFAULT_PASSIVE_HEALTH: PassiveHealthOptions = DEFAULTS.service.passiveHealth

export interface BalancedInstance {
  url: string
  call: UpstreamCall
}

export interface InstanceHealth {
  url: string
  healthy: boolean
  consecutiveFailures: number
  /** Epoch ms until which the instance is skipped (0: not ejected). */
  ejectedUntil: number
}

const UNHEALTHY_STATUSES = new Set([502, 503, 504])

export interface Balancer {
  call: UpstreamCall
  health: () => InstanceHealth[]
  close: () => void
}

export function createBalancer (instances: BalancedInstance[], passive: PassiveHealthOptions = DEFAULT_PASSIVE_HEALTH, active?: ActiveHealthOptions): Balancer {
  const state = instances.map(i => new InstanceState(i, passive))
  let next = 0

  function pick (): InstanceState {
    if (state.length === 1) return state[0]
    const now = Date.now()
    for (let i = 0; i < state.length; i++) {
      const s = state[(next + i) % state.length]
      if (s.ejectedUntil <= now) {
        next = (next + i + 1) % state.length
        return s
      }
    }
    // All ejected: the one back soonest is the best bet.
    return state.reduce((a, b) => (b.ejectedUntil < a.ejectedUntil ? b : a))
  }

  let timer: NodeJS.Timeout | undefined
  if (active !== undefined) {
    timer = setInterval(() => {
      for (const s of state) {
        probe(s.url, active).then(ok => { if (ok) s.succeed(); else { s.failures = Math.max(s.failures, passive.failures - 1); s.fail() } }, () => {})
      }
    }, active.interval)
    timer.unref()
  }

  return {
    call (req) {
      const s = pick()
      return s.call(req).then(s.answered, s.failed)
    },
    health: () => state.map(s => ({
      url: s.url,
      healthy: s.ejectedUntil <= Date.now(),
      consecutiveFailures: s.failures,
      ejectedUntil: s.ejectedUntil,
    })),
    close: () => { if (timer !== undefined) clearInterval(timer) },
  }
}

/** One instance's passive health; its outcome callbacks are bound once, not per call. */
class InstanceState {
  readonly url: string
  readonly call: UpstreamCall
  failures = 0
  /** Epoch ms until which the instance is skipped (0: not ejected). */
  ejectedUntil = 0

  constructor (instance: BalancedInstance, private readonly passive: PassiveHealthOptions) {
    this.url = instance.url
    this.call = instance.call
  }

  fail (): void {
    this.failures++
    if (this.failures >= this.passive.failures) this.ejectedUntil = Date.now() + this.passive.ejectFor
  }

  succeed (): void {
    this.failures = 0
    this.ejectedUntil = 0
  }

  readonly answered = (res: UpstreamResponse): UpstreamResponse => {
    if (UNHEALTHY_STATUSES.has(res.statusCode)) this.fail()
    else this.succeed()
    return res
  }

  readonly failed = (err: unknown): never => {
    if (err instanceof GatewayError) this.fail()
    throw err
  }
}

async function probe (base: string, opts: ActiveHealthOptions): Promise<boolean> {
  try {
    const res = await request(new URL(opts.path, base), { headersTimeout: opts.timeout, bodyTimeout: opts.timeout })
    await res.body.dump()
    return res.statusCode >= 200 && res.statusCode < 300
  } catch {
    return false
  }
}
