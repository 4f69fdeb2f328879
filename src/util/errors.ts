// The one registry of errors the gateway makes itself. Every code here is part
// of the public contract (README "What the errors look like"): clients switch on `code`, so a
// code never changes meaning; test/errors.test.ts pins this table.

export const ERRORS = {
  BAD_REQUEST: { status: 400, title: 'Bad request' },
  VALIDATION_FAILED: { status: 400, title: 'Request validation failed' },
  UNAUTHENTICATED: { status: 401, title: 'Authentication required' },
  FORBIDDEN: { status: 403, title: 'Forbidden' },
  ROUTE_NOT_FOUND: { status: 404, title: 'No route matches this request' },
  REQUEST_TIMEOUT: { status: 408, title: 'Request not received in time' },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'Request body too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type' },
  RATE_LIMITED: { status: 429, title: 'Too many requests' },
  HEADERS_TOO_LARGE: { status: 431, title: 'Request header fields too large' },
  INTERNAL_ERROR: { status: 500, title: 'Internal gateway error' },
  UPSTREAM_ERROR: { status: 502, title: 'Upstream service failed' },
  CIRCUIT_OPEN: { status: 503, title: 'Upstream service unavailable (circuit open)' },
  EVENTS_UNAVAILABLE: { status: 503, title: 'Event stream unavailable' },
  UPSTREAM_TIMEOUT: { status: 504, title: 'Upstream service timed out' },
} as const

export type ErrorCode = keyof typeof ERRORS

/** Extra members of a problem body, e.g. `part` for aggregates or `errors` for validation. */
export type ProblemExtras = Record<string, unknown>

/**
 * Turns stack capture off for the next Error constructed; returns the limit
 * to restore right after (`Error.stackTraceLimit = limit`). For errors that
 * are outcomes, not bugs: their stack is never read.
 */
export function stackOff (): number {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  return limit
}

/**
 * An error the gateway raises on purpose. `detail` is shown to the client, so
 * it must never carry secrets or internals; `cause` is for logs only.
 */
export class GatewayError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly extras: ProblemExtras | undefined
  /** Response headers that belong to this error (retry-after, www-authenticate). */
  readonly headers: Record<string, string> | undefined

  constructor (code: ErrorCode, detail?: string, opts: { extras?: ProblemExtras, headers?: Record<string, string>, cause?: unknown } = {}) {
    // No stack: these are expected outcomes (an open breaker, a bad token),
    // raised on the hot path, and capturing a stack costs more than the rest
    // of a fast-fail answer. A cause keeps its own stack for the logs.
    const limit = stackOff()
    super(detail ?? ERRORS[code].title, opts.cause === undefined ? undefined : { cause: opts.cause })
    Error.stackTraceLimit = limit
    this.name = 'GatewayError'
    this.code = code
    this.status = ERRORS[code].status
    this.extras = opts.extras
    this.headers = opts.headers
  }
}


export interface ProblemBody {
  type: string
  title: string
  status: number
  detail: string
  code: ErrorCode
  requestId: string
  [extra: string]: unknown
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json'

/** The RFC 9457 body for an error; extras cannot overwrite the standard members. */
export function problemBody (err: GatewayError, requestId: string): ProblemBody {
  return {
    ...err.extras,
    type: problemType(err.code),
    title: ERRORS[err.code].title,
    status: err.status,
    detail: err.message,
    code: err.code,
    requestId,
  }
}

/** A stable identifier per code (not necessarily dereferenceable, as RFC 9457 allows). */
export function problemType (code: ErrorCode): string {
  return PROBLEM_TYPES[code]
}

const PROBLEM_TYPES = Object.fromEntries(Object.keys(ERRORS).map(code => [code, 'https://portico.dev/problems/' + code.toLowerCase().replace(/_/g, '-')])) as Record<ErrorCode, string>
