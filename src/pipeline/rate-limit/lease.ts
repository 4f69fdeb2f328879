// Shared rate-limit counters with leases: the counter lives in Redis (one
// per key and window, as @fastify/rate-limit's own Redis store keeps it), but
// an instance that sees a key busy claims several counts at once (INCRBY n)
// and hands them out locally, one per request, without a round trip each.
//
// The limit is never exceeded across instances: every request admitted is a
// count Redis handed out, so at most `max` are admitted per window. The price
// is that counts claimed and not used by the window's end are lost, so near
// the limit an instance may refuse up to one lease early. Leases stay small
// for that reason: one count for limits under 100 per window (every request
// is exact, one round trip each), and for larger limits at most 1% of the
// limit, growing only while a key is used faster than a lease lasts (100 ms).

import type { Redis, Cluster } from 'ioredis'

export type IncrCallback = (err: Error | null, res?: { current: number, ttl: number }) => void

/** INCRBY, and the window's expiry when the key is new; the count after and the window's time left. */
const LEASE_LUA = `
local current = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {current, ttl}
`

/** How long a lease should last at a key's current pace; faster use grows the next lease. */
const LEASE_TARGET_MS = 100
/** Most keys with local lease state (the busiest are the ones that matter). */
const MAX_KEYS = 10_000

interface LeaseState {
  /** The count just before this lease's first one. */
  base: number
  leased: number
  used: number
  /** Epoch ms when the Redis window (and with it this lease) ends. */
  resetAt: number
  /** Size of the next lease. */
  size: number
  leasedAt: number
  /** Requests waiting for a lease in flight (one claim per key at a time). */
  waiting: Array<{ cb: IncrCallback, timeWindow: number, max: number }> | undefined
}

type LeaseCommand = (key: string, count: number, windowMs: number, cb: (err: Error | null, res?: [number, number]) => void) => void

export class LeasedCounters {
  private readonly state = new Map<string, LeaseState>()
  private readonly lease: LeaseCommand

  constructor (redis: Redis | Cluster, private readonly prefix: string) {
    const r = redis as (Redis | Cluster) & { porticoRateLease?: LeaseCommand }
    if (r.porticoRateLease === undefined) r.defineCommand('porticoRateLease', { numberOfKeys: 1, lua: LEASE_LUA })
    this.lease = (key, count, windowMs, cb) => { (r.porticoRateLease as LeaseCommand)(key, count, windowMs, cb) }
  }

  /**
   * Drops every lease (Redis went down): what Redis holds after an outage is
   * unknown (a restarted Redis has no counters), so counts claimed before it
   * are not handed out after it; the next request claims anew.
   */
  forget (): void {
    this.state.clear()
  }

  incr (key: string, cb: IncrCallback, timeWindow: number, max: number): void {
    const s = this.state.get(key)
    const now = Date.now()
    if (s !== undefined) {
      if (s.used < s.leased && s.resetAt > now) {
        s.used++
        cb(null, { current: s.base + s.used, ttl: s.resetAt - now })
        return
      }
      if (s.waiting !== undefined) { s.waiting.push({ cb, timeWindow, max }); return }
    }
    this.claim(key, s, { cb, timeWindow, max }, now)
  }

  private claim (key: string, prev: LeaseState | undefined, first: { cb: IncrCallback, timeWindow: number, max: number }, now: number): void {
    const size = nextSize(prev, first.max, now)
    const s: LeaseState = prev ?? { base: 0, leased: 0, used: 0, resetAt: 0, size, leasedAt: now, waiting: undefined }
    s.size = size
    s.waiting = [first]
    if (prev === undefined) this.remember(key, s)
    // The window is taken to end `ttl` after the claim was sent, never later
    // than Redis ends it: no count of an old window is used in the next one.
    const sent = Date.now()
    this.lease(this.prefix + key, size, first.timeWindow, (err, res) => {
      const waiting = s.waiting ?? []
      s.waiting = undefined
      if (err !== null || res === undefined) {
        for (const w of waiting) w.cb(err ?? new Error('no answer from Redis'))
        return
      }
      const [current, ttl] = res
      const at = Date.now()
      s.base = current - size
      s.leased = size
      s.used = 0
      s.leasedAt = at
      s.resetAt = sent + Number(ttl)
      for (let i = 0; i < waiting.length; i++) {
        if (s.used < s.leased) {
          s.used++
          waiting[i].cb(null, { current: s.base + s.used, ttl: s.resetAt - at })
        } else {
          // This lease is spent: the rest wait for the next one.
          const rest = waiting.slice(i + 1)
          this.claim(key, s, waiting[i], at)
          ;(s.waiting as LeaseState['waiting'])?.push(...rest)
          return
        }
      }
    })
  }

  private remember (key: string, s: LeaseState): void {
    this.state.set(key, s)
    if (this.state.size > MAX_KEYS) {
      // Oldest first; a key forgotten mid-lease just claims again (its unused counts are lost).
      const oldest = this.state.keys().next().value as string
      if (this.state.get(oldest)?.waiting === undefined) this.state.delete(oldest)
    }
  }
}

/** One count under a limit of 100; above, double while a lease lasts under LEASE_TARGET_MS, never past 1% of the limit. */
function nextSize (prev: LeaseState | undefined, max: number, now: number): number {
  const cap = Math.max(1, Math.floor(max / 100))
  if (cap === 1 || prev === undefined) return 1
  const lasted = now - prev.leasedAt
  // A new window, or a lease not used up: start small again.
  if (prev.resetAt <= now || prev.used < prev.leased) return Math.min(cap, Math.max(1, Math.ceil(prev.size / 2)))
  return lasted < LEASE_TARGET_MS ? Math.min(cap, prev.size * 2) : Math.max(1, Math.ceil(prev.size / 2))
}
