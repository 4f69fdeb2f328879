// Pins the error registry: codes are a public contract clients switch on,
// so changing one must be a deliberate edit here too.
import t from 'tap'
import { ERRORS, GatewayError, problemBody, problemType } from '../../src/util/errors.js'

t.test('the registry maps each code to its contract status', async t => {
  const statuses = Object.fromEntries(Object.entries(ERRORS).map(([code, e]) => [code, e.status]))
  t.same(statuses, {
    BAD_REQUEST: 400,
    VALIDATION_FAILED: 400,
    UNAUTHENTICATED: 401,
    FORBIDDEN: 403,
    ROUTE_NOT_FOUND: 404,
    REQUEST_TIMEOUT: 408,
    PAYLOAD_TOO_LARGE: 413,
    UNSUPPORTED_MEDIA_TYPE: 415,
    RATE_LIMITED: 429,
    HEADERS_TOO_LARGE: 431,
    INTERNAL_ERROR: 500,
    UPSTREAM_ERROR: 502,
    CIRCUIT_OPEN: 503,
    EVENTS_UNAVAILABLE: 503,
    UPSTREAM_TIMEOUT: 504,
  })
  for (const code of Object.keys(ERRORS)) t.match(code, /^[A-Z]+(_[A-Z]+)*$/, `${code} is upper-snake`)
})

t.test('a problem body has the RFC 9457 members plus code and requestId', async t => {
  const err = new GatewayError('UPSTREAM_TIMEOUT', 'part "orders" timed out', { extras: { part: 'orders' } })
  t.same(problemBody(err, 'req-1'), {
    type: 'https://portico.dev/problems/upstream-timeout',
    title: 'Upstream service timed out',
    status: 504,
    detail: 'part "orders" timed out',
    code: 'UPSTREAM_TIMEOUT',
    requestId: 'req-1',
    part: 'orders',
  })
})

t.test('extras cannot overwrite the standard members', async t => {
  const err = new GatewayError('FORBIDDEN', 'no', { extras: { status: 200, code: 'OK' } })
  const body = problemBody(err, 'r')
  t.equal(body.status, 403)
  t.equal(body.code, 'FORBIDDEN')
})

t.test('types are stable per code', async t => {
  t.equal(problemType('CIRCUIT_OPEN'), 'https://portico.dev/problems/circuit-open')
})
