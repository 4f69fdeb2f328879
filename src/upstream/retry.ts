// Retries, inside the breaker (so the breaker counts one logical call) and
// outside the balancer (so each attempt may go to another instance). Only
// idempotent methods with a replayable body are retried, only after a failure
// that means "the request was not handled" (a connection error, 502, 503),
// with jittered exponential backoff, and never past the call's deadline.

import { GatewayError } from '../util/errors.js'
import type { UpstreamCall, UpstreamRequest } from './types.js'
import { discardBody } from './body.js'

export interface RetryOptions {
  retries: number
  /** First backoff ceiling (ms); doubles per attempt, full jitter. */
  baseDelay?: number
  maxDelay?: number
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])
const RETRY_STATUSES = new Set([502, 503])

export function withRetry (call: UpstreamCall, opts: RetryOptions): UpstreamCall {
  if (opts.retries <= 0) return call
  const base = opts.baseDelay ?? 25
  const max = opts.maxDelay ?? 1000
  return async function retrying (req) {
    if (!canRetry(req)) return await call(req)
    for (let attempt = 0; ; attempt++) {
      const last = attempt >= opts.retries
      let retryable: boolean
      try {
        const res = await call(attemptRequest(req))
        if (last || !RETRY_STATUSES.has(res.statusCode)) return res
        discardBody(res) // the next attempt answers instead
        retryable = true
      } catch (err) {
        retryable = err instanceof GatewayError && err.code === 'UPSTREAM_ERROR'
        if (last || !retryable) throw err
      }
      const delay = Math.random() * Math.min(max, base * 2 ** attempt)
      if (req.deadline !== undefined && Date.now() + delay >= req.deadline) {
        throw new GatewayError('UPSTREAM_TIMEOUT', 'no time left to retry before the deadline')
      }
      await sleep(delay)
    }
  }
}

function canRetry (req: UpstreamRequest): boolean {
  return IDEMPOTENT.has(req.method) && (req.body === undefined || req.body === null || typeof req.body === 'string' || Buffer.isBuffer(req.body))
}

/** Each attempt gets what is left of the deadline, never more than its own timeout. */
function attemptRequest (req: UpstreamRequest): UpstreamRequest {
  if (req.deadline === undefined) return req
  const left = req.deadline - Date.now()
  if (left <= 0) throw new GatewayError('UPSTREAM_TIMEOUT', 'the deadline passed before the call')
  return left < req.timeout ? { ...req, timeout: left } : req
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}
