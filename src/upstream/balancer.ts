// Round-robin over a service's instances with passive health: an instance
// that fails `failures` calls in a row (connection error, timeout, 502/503/504)
// is skipped for `ejectFor`; after that the next call to it is the probe, and
// one more failure ejects it again at once. If every instance is ejected the
// balancer tries them anyway, rather than failing closed. An optional active
// check probes each instance's health path on an interval.

import { request } from 'undici'
import { GatewayError } from '../errors.js'
import type { UpstreamCall, UpstreamResponse } from './types.js'

export interface PassiveHealthOptions {
  failures: number
  ejectFor: number
}

export const DEFAULT_PASSIVE_HEALTH: PassiveHealthOptions = { failures: 3, ejectFor: 10_000 }

export interface ActiveHealthOptions {
  path: string
  interval: number
  timeout: number
}

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
  const state = instances.map(i => ({ ...i, failures: 0, ejectedUntil: 0 }))
  let next = 0

  const fail = (s: typeof state[number]): void => {
    s.failures++
    if (s.failures >= passive.failures) s.ejectedUntil = Date.now() + passive.ejectFor
  }
  const succeed = (s: typeof state[number]): void => {
    s.failures = 0
    s.ejectedUntil = 0
  }

  function pick (): typeof state[number] {
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
        probe(s.url, active).then(ok => { if (ok) succeed(s); else { s.failures = Math.max(s.failures, passive.failures - 1); fail(s) } }, () => {})
      }
    }, active.interval)
    timer.unref()
  }

  return {
    async call (req) {
      const s = pick()
      let res: UpstreamResponse
      try {
        res = await s.call(req)
      } catch (err) {
        if (err instanceof GatewayError) fail(s)
        throw err
      }
      if (UNHEALTHY_STATUSES.has(res.statusCode)) fail(s)
      else succeed(s)
      return res
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

async function probe (base: string, opts: ActiveHealthOptions): Promise<boolean> {
  try {
    const res = await request(new URL(opts.path, base), { headersTimeout: opts.timeout, bodyTimeout: opts.timeout })
    await res.body.dump()
    return res.statusCode >= 200 && res.statusCode < 300
  } catch {
    return false
  }
}
