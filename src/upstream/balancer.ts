import type { UpstreamCall } from './types.js'

/** Spreads calls over instances in turn. */
export function roundRobin (calls: UpstreamCall[]): UpstreamCall {
  if (calls.length === 1) return calls[0]
  let next = 0
  return async (req) => {
    const call = calls[next]
    next = (next + 1) % calls.length
    return await call(req)
  }
}
