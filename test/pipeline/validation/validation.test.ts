// Request validation (README "Request handling" step 6): routes
// with a `schema` reject bad requests before any upstream call, list the
// failing fields (at most 10, in a small answer, whatever the body), refuse
// bodies that are not JSON, repeat a key or nest too deep, and forward a
// valid body byte for byte.
import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { buildFromFiles, simpleConfig } from '../../helpers/gateway.js'
import { reply, upstream } from '../../helpers/upstream.js'
import { listen, rawRequest } from '../../helpers/http.js'
import type { MemoryEventSink } from '../../../src/events/memory-sink.js'

// A subtest (the last overload of t.test takes only the callback).
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

/** What every route's upstream answers in this file. */
const answerCreated = reply(201, 'application/json', '{"created":true}')

const ROUTES = `
- id: create-order
  method: POST
  path: /api/orders
  policy: public
  schema:
    body:
      type: object
      required: [sku, qty]
      properties:
        sku: { type: string, minLength: 1 }
        qty: { type: integer, minimum: 1 }
        note: { type: string }
  proxy: { service: backend, path: /orders }
- id: search
  method: GET
  path: /api/search
  policy: public
  schema:
    querystring:
      type: object
      required: [q]
      properties:
        q: { type: string, minLength: 1 }
        limit: { type: integer, maximum: 50 }
  proxy: { service: backend, path: /search }
`

interface Problem {
  code: string
  status: number
  detail: string
  requestId: string
  errors?: Array<{ field: string, message: string }>
}

/** Checks the problem+json shape, status and code; returns the body. */
function problem (t: Test, res: LightMyRequestResponse | { statusCode: number, headers: Record<string, unknown>, body: string }, status: number, code: string): Problem {
  t.equal(res.statusCode, status, `status ${status}`)
  t.match(res.headers['content-type'], /^application\/problem\+json(;|$)/, 'problem+json')
  const body = JSON.parse(res.body) as Problem
  t.equal(body.code, code, `code ${code}`)
  t.equal(body.status, status)
  t.equal(body.requestId, res.headers['x-request-id'])
  t.notMatch(res.body, /\bat .*\(.*:\d+:\d+\)|node:internal|\.ts:\d+/, 'no stack trace')
  return body
}

/** The failing fields of a VALIDATION_FAILED answer, sorted; each must come with a message. */
function failingFields (t: Test, body: Problem): string[] {
  t.ok(Array.isArray(body.errors), 'errors is a list')
  const errors = body.errors ?? []
  for (const e of errors) {
    t.type(e.field, 'string')
    t.type(e.message, 'string')
    t.not(e.message, '', `${e.field} has a message`)
  }
  return [...new Set(errors.map(e => e.field))].sort()
}

const JSON_TYPE = { 'content-type': 'application/json' }

t.test('missing required fields: 400 VALIDATION_FAILED naming each of them, nothing reaches the upstream', async t => {
  const up = await upstream(t, answerCreated)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, ROUTES) })
  const res = await app.inject({ method: 'POST', url: '/api/orders', headers: JSON_TYPE, payload: '{}' })
  const body = problem(t, res, 400, 'VALIDATION_FAILED')
  t.same(failingFields(t, body), ['body.qty', 'body.sku'])
  t.ok(body.errors?.every(e => e.message === 'is required'), 'each says it is required')
  t.match(body.detail, /body\.sku/)
  t.match(body.detail, /body\.qty/)
  t.equal(up.hits(), 0)
})

t.test('wrong-typed and missing fields together are all listed at once', async t => {
  const up = await upstream(t, answerCreated)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, ROUTES) })
  const cases: Array<[string, string[]]> = [
    ['{"sku": {"a": 1}, "qty": "many", "note": {"x": 1}}', ['body.note', 'body.qty', 'body.sku']],
    ['{"qty": 1.5}', ['body.qty', 'body.sku']],
    ['{"sku": "", "qty": 0}', ['body.qty', 'body.sku']],
  ]
  for (const [payload, fields] of cases) {
    const res = await app.inject({ method: 'POST', url: '/api/orders', headers: JSON_TYPE, payload })
    const body = problem(t, res, 400, 'VALIDATION_FAILED')
    t.same(failingFields(t, body), fields, payload)
  }
  // A body that is JSON but not an object fails the top-level type.
  const notObject = await app.inject({ method: 'POST', url: '/api/orders', headers: JSON_TYPE, payload: '[1, 2]' })
  problem(t, notObject, 400, 'VALIDATION_FAILED')
  t.equal(up.hits(), 0)
})

t.test('values of another JSON type are refused, not coerced (the upstream would get the original bytes)', async t => {
  const up = await upstream(t, answerCreated)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, ROUTES) })
  const cases: Array<[string, string[]]> = [
    ['{"sku": 123, "qty": "2"}', ['body.qty', 'body.sku']],
    ['{"sku": ["a"], "qty": true}', ['body.qty', 'body.sku']],
    ['{"sku": "a", "qty": 1, "note": false}', ['body.note']],
  ]
  for (const [payload, fields] of cases) {
    const res = await app.inject({ method: 'POST', url: '/api/orders', headers: JSON_TYPE, payload })
    const body = problem(t, res, 400, 'VALIDATION_FAILED')
    t.same(failingFields(t, body), fields, payload)
  }
  t.equal(up.hits(), 0)
})

t.test('malformed or empty JSON is 400 BAD_REQUEST before the upstream', async t => {
  const up = await upstream(t, answerCreated)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, ROUTES) })
  for (const payload of ['{"sku": "a", "qty": 1', '{sku: "a"}', 'not json', '']) {
    const res = await app.inject({ method: 'POST', url: '/api/orders', headers: JSON_TYPE, payload })
    const body = problem(t, res, 400, 'BAD_REQUEST')
    t.equal(body.errors, undefined, `no field list for ${JSON.stringify(payload)}`)
  }
  t.equal(up.hits(), 0)
})

t.test('a body that is not JSON is 415 UNSUPPORTED_MEDIA_TYPE before the upstream', async t => {
  const up = await upstream(t, answerCreated)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, ROUTES) })
  const valid = '{"sku":"a","qty":1}'
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml', 'multipart/form-data; boundary=x']) {
    const res = await app.inject({ method: 'POST', url: '/api/orders', headers: { 'content-type': type }, payload: valid })
    problem(t, res, 415, 'UNSUPPORTED_MEDIA_TYPE')
  }
  t.equal(up.hits(), 0)
})

t.test('a valid body reaches the upstream byte for byte, for application/json and +json types', async t => {
  const up = await upstream(t, answerCreated)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, ROUTES) })
  // Odd spacing, key order, escapes and non-ASCII: any re-serialization would change these bytes.
  const body = Buffer.from('{ "qty" :2,\n\t"sku":"a\\u00e9\\/b",   "note": "zoë 😀", "extra": [1.50, {"z":1,"a":2}] }\n', 'utf8')
  const types = ['application/json', 'application/json; charset=utf-8', 'application/vnd.x+json', 'application/problem+json']
  for (const type of types) {
    const res = await app.inject({ method: 'POST', url: '/api/orders?src=test', headers: { 'content-type': type }, payload: body })
    t.equal(res.statusCode, 201, `${type}: the upstream's status`)
    t.equal(res.body, '{"created":true}', `${type}: the upstream's body`)
    const seen = up.seen.at(-1)
    t.equal(seen?.method, 'POST')
    t.equal(seen?.url, '/orders?src=test')
    t.equal(seen?.headers['content-type'], type, `${type}: content-type forwarded`)
    t.ok(seen?.body.equals(body), `${type}: body forwarded byte for byte`)
  }
  t.equal(up.hits(), types.length)
})

t.test('a failing querystring schema is 400 VALIDATION_FAILED before the upstream', async t => {
  const up = await upstream(t, answerCreated)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, ROUTES) })
  const missing = problem(t, await app.inject({ url: '/api/search' }), 400, 'VALIDATION_FAILED')
  t.same(failingFields(t, missing), ['querystring.q'])
  const several = problem(t, await app.inject({ url: '/api/search?q=&limit=many' }), 400, 'VALIDATION_FAILED')
  t.same(failingFields(t, several), ['querystring.limit', 'querystring.q'])
  const tooBig = problem(t, await app.inject({ url: '/api/search?q=x&limit=51' }), 400, 'VALIDATION_FAILED')
  t.same(failingFields(t, tooBig), ['querystring.limit'])
  t.equal(up.hits(), 0)

  // Query values are strings on the wire: a numeric one passes, and the query goes upstream unchanged.
  const ok = await app.inject({ url: '/api/search?q=shoes&limit=10' })
  t.equal(ok.statusCode, 201)
  t.equal(up.seen[0].url, '/search?q=shoes&limit=10')
  t.equal(up.hits(), 1)
})

t.test('a JSON body over server.bodyLimit is 413 PAYLOAD_TOO_LARGE before the upstream', async t => {
  const up = await upstream(t, answerCreated)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, ROUTES, 'server:\n  bodyLimit: 1kb\n') })
  const big = JSON.stringify({ sku: 'a', qty: 1, note: 'x'.repeat(2000) })
  problem(t, await app.inject({ method: 'POST', url: '/api/orders', headers: JSON_TYPE, payload: big }), 413, 'PAYLOAD_TOO_LARGE')

  // Chunked, so no content-length announces the size: still refused once over the limit.
  const port = await listen(app)
  const chunks = [Buffer.from('{"sku":"a","qty":1,"note":"'), Buffer.from('y'.repeat(600)), Buffer.from('y'.repeat(600)), Buffer.from('"}')]
  const raw = await rawRequest(port, { method: 'POST', path: '/api/orders', headers: JSON_TYPE, body: chunks })
  problem(t, { statusCode: raw.status, headers: raw.headers, body: raw.body.toString('utf8') }, 413, 'PAYLOAD_TOO_LARGE')
  t.equal(up.hits(), 0)

  // Just under the limit is fine.
  const small = JSON.stringify({ sku: 'a', qty: 1, note: 'x'.repeat(900) })
  const res = await app.inject({ method: 'POST', url: '/api/orders', headers: JSON_TYPE, payload: small })
  t.equal(res.statusCode, 201)
  t.equal(up.hits(), 1)
})

t.test('the rate limit (step 5) runs before validation (step 6): invalid requests count, and a limited one is 429', async t => {
  const up = await upstream(t, answerCreated)
  const app = await buildFromFiles(t, {
    'gateway.yaml': simpleConfig(up.url, `
- id: limited-order
  method: POST
  path: /api/orders
  policy: public
  rateLimit: { max: 2, window: 1m }
  schema: { body: { type: object, required: [sku] } }
  proxy: { service: backend, path: /orders }
`),
  })
  const bad = await app.inject({ method: 'POST', url: '/api/orders', headers: JSON_TYPE, payload: '{}' })
  problem(t, bad, 400, 'VALIDATION_FAILED')
  t.equal(bad.headers['ratelimit-remaining'], '1', 'the invalid request was counted')
  const good = await app.inject({ method: 'POST', url: '/api/orders', headers: JSON_TYPE, payload: '{"sku":"a"}' })
  t.equal(good.statusCode, 201)
  t.equal(good.headers['ratelimit-remaining'], '0')
  const limited = await app.inject({ method: 'POST', url: '/api/orders', headers: JSON_TYPE, payload: '{}' })
  problem(t, limited, 429, 'RATE_LIMITED')
  t.equal(up.hits(), 1)
})

// Hostile bodies: the work and the answer stay bounded whatever the client sends.

const HOSTILE_ROUTES = `
- id: bulk
  method: POST
  path: /api/bulk
  policy: public
  schema:
    body:
      type: object
      properties:
        items: { type: array, items: { type: integer } }
  proxy: { service: backend, path: /bulk }
- id: closed
  method: POST
  path: /api/closed
  policy: public
  schema:
    body: { type: object, additionalProperties: false, properties: { a: { type: integer } } }
  proxy: { service: backend, path: /closed }
- id: wide
  method: POST
  path: /api/wide
  policy: public
  schema:
    body:
      type: object
      properties: { ${Array.from({ length: 30 }, (_, i) => `f${i}: { type: integer }`).join(', ')} }
  proxy: { service: backend, path: /wide }
- id: ping
  method: GET
  path: /api/ping
  policy: public
  proxy: { service: backend, path: /ping }
`

const HOSTILE_CONFIG = 'server:\n  bodyLimit: 8mb\n'

/** Most errors an answer lists, and a bound on its size that a full list would blow through. */
const MAX_ERRORS = 10
const SMALL_ANSWER = 4096

t.test('a million wrong items: 400 with at most 10 errors in a small answer, and a request beside it is served', async t => {
  const up = await upstream(t, answerCreated)
  // A generous service timeout: what is checked is the answers, not how fast a loaded machine gives them
  // (how long the capped walk takes is a measurement, never a test assertion).
  const config = simpleConfig(up.url, HOSTILE_ROUTES, HOSTILE_CONFIG).replace('timeout: 1s', 'timeout: 60s')
  const app = await buildFromFiles(t, { 'gateway.yaml': config })
  const port = await listen(app)
  const hostile = Buffer.from(JSON.stringify({ items: Array(1e6).fill('x') }))
  t.ok(hostile.length > 4_000_000, '4 MB of wrong items')

  const [res, innocent] = await Promise.all([
    rawRequest(port, { method: 'POST', path: '/api/bulk', headers: JSON_TYPE, body: hostile }),
    rawRequest(port, { path: '/api/ping' }),
  ])

  const body = problem(t, { statusCode: res.status, headers: res.headers, body: res.body.toString('utf8') }, 400, 'VALIDATION_FAILED')
  // The uncapped list was 92.8 MB for this body.
  t.ok(res.body.length < SMALL_ANSWER, `a small answer (${res.body.length} bytes)`)
  t.ok((body.errors ?? []).length >= 1 && (body.errors ?? []).length <= MAX_ERRORS, `1 to ${MAX_ERRORS} errors`)
  t.match(body.errors?.[0], { field: 'body.items.0' })
  t.equal(innocent.status, 201, 'the request beside it was served')
  t.equal(up.hits(), 1, 'only the innocent request reached the upstream')
})

t.test('80,000 unknown keys on additionalProperties: false: at most 10 errors in a small answer', async t => {
  const up = await upstream(t, answerCreated)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, HOSTILE_ROUTES, HOSTILE_CONFIG) })
  const keys: Record<string, number> = {}
  for (let i = 0; i < 80_000; i++) keys[`k${i}`] = 1
  const res = await app.inject({ method: 'POST', url: '/api/closed', headers: JSON_TYPE, payload: JSON.stringify(keys) })
  const body = problem(t, res, 400, 'VALIDATION_FAILED')
  t.ok(res.body.length < SMALL_ANSWER, `a small answer (${res.body.length} bytes)`)
  t.ok((body.errors ?? []).length <= MAX_ERRORS, `at most ${MAX_ERRORS} errors`)
  t.equal(up.hits(), 0)
})

t.test('a small body failing in 30 fields lists the first 10, and the detail names only those', async t => {
  const up = await upstream(t, answerCreated)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, HOSTILE_ROUTES, HOSTILE_CONFIG) })
  const payload = JSON.stringify(Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`f${i}`, 'not a number'])))
  const body = problem(t, await app.inject({ method: 'POST', url: '/api/wide', headers: JSON_TYPE, payload }), 400, 'VALIDATION_FAILED')
  t.equal(body.errors?.length, MAX_ERRORS, `exactly ${MAX_ERRORS} errors`)
  t.equal(body.detail.split('; ').length, MAX_ERRORS, `the detail lists ${MAX_ERRORS}`)
  t.equal(up.hits(), 0)
})

// Duplicate keys: JSON.parse keeps the last value, the upstream may keep the first.

t.test('a JSON body naming a key twice in one object is 400 VALIDATION_FAILED naming the key, before the upstream', async t => {
  const up = await upstream(t, answerCreated)
  const app = await buildFromFiles(t, {
    'gateway.yaml': simpleConfig(up.url, `
- id: order
  method: POST
  path: /api/orders
  policy: public
  schema:
    body:
      type: object
      properties:
        qty: { type: integer, maximum: 100 }
  proxy: { service: backend, path: /orders }
`),
  })
  const cases: Array<[string, string]> = [
    ['{"qty":1000,"qty":1}', 'body.qty'],
    ['{"qty":1000, "sku":"a",\n "qty" : 1}', 'body.qty'],
    // Escapes are decoded before keys are compared: these are all "qty".
    ['{"qty":1000,"q\\u0074y":1}', 'body.qty'],
    ['{"\\u0071\\u0074\\u0079":1000,"qty":1}', 'body.qty'],
    ['{"q\\"ty":1,"x":"\\"","q\\"ty":2}', 'body.q"ty'],
    ['{"order":{"qty":1000,"qty":1}}', 'body.order.qty'],
    ['{"lines":[{"qty":1},{"qty":1000,"qty":1}]}', 'body.lines.1.qty'],
    ['{"a":[[{"b":{"c":1,"d":2,"c":3}}]]}', 'body.a.0.0.b.c'],
    [`{${Array.from({ length: 50 }, (_, i) => `"k${i}":1`).join(',')},"k7":2}`, 'body.k7'],
    ['[{"qty":1},{"qty":1,"qty":1}]', 'body.1.qty'],
  ]
  for (const [payload, field] of cases) {
    const res = await app.inject({ method: 'POST', url: '/api/orders', headers: JSON_TYPE, payload })
    const body = problem(t, res, 400, 'VALIDATION_FAILED')
    t.same(body.errors, [{ field, message: 'is a duplicate key' }], payload)
    t.equal(body.detail, `${field} is a duplicate key`)
  }
  // A key of 100,000 characters is named, not echoed whole.
  const long = 'k'.repeat(100_000)
  const res = await app.inject({ method: 'POST', url: '/api/orders', headers: JSON_TYPE, payload: `{"${long}":1,"${long}":2}` })
  problem(t, res, 400, 'VALIDATION_FAILED')
  t.ok(res.body.length < SMALL_ANSWER, `a small answer (${res.body.length} bytes)`)
  t.equal(up.hits(), 0, 'nothing reached the upstream')

  // The same key in different objects, and keys that only look alike, are fine and go upstream untouched.
  const legit = [
    '{"qty":1,"order":{"qty":2},"lines":[{"qty":3},{"qty":4}]}',
    '{"qty":1,"Qty":2,"qty ":3,"q\\\\u0074y":4,"x":"\\"qty\\":1"}',
    '{"a\\\\":1,"a":2,"":3,"\\u00e9":4,"e\\u0301":5}',
  ]
  for (const payload of legit) {
    const res = await app.inject({ method: 'POST', url: '/api/orders', headers: JSON_TYPE, payload })
    t.equal(res.statusCode, 201, payload)
    t.equal(up.seen.at(-1)?.body.toString('utf8'), payload, 'forwarded byte for byte')
  }
  t.equal(up.hits(), legit.length)
})

t.test('command routes and publish from: request refuse duplicate keys too, storing and forwarding nothing', async t => {
  const up = await upstream(t, answerCreated)
  const app = await buildFromFiles(t, {
    'gateway.yaml': simpleConfig(up.url, `
- id: submit
  method: POST
  path: /api/commands
  policy: public
  command: { stream: commands, type: thing.requested }
- id: create
  method: POST
  path: /api/created
  policy: public
  proxy: { service: backend, path: /created }
  publish: { stream: created, type: thing.created, from: request }
`, 'events: { sink: memory }\n'),
  })
  for (const url of ['/api/commands', '/api/created']) {
    for (const payload of ['{"qty":1000,"qty":1}', '{"a":{"q\\u0074y":1,"qty":2}}']) {
      const res = await app.inject({ method: 'POST', url, headers: JSON_TYPE, payload })
      problem(t, res, 400, 'VALIDATION_FAILED')
    }
  }
  t.equal(up.hits(), 0, 'nothing forwarded')
  const sink = app.events?.sink as MemoryEventSink
  t.equal(sink.streams.get('commands')?.length ?? 0, 0, 'no command stored')
  t.equal(sink.streams.get('created')?.length ?? 0, 0, 'no event published')

  const ok = await app.inject({ method: 'POST', url: '/api/commands', headers: JSON_TYPE, payload: '{"qty":1,"n":{"qty":2}}' })
  t.equal(ok.statusCode, 202, 'a body without duplicates is accepted')
  t.equal(sink.streams.get('commands')?.[0]?.event.body, '{"qty":1,"n":{"qty":2}}')
})

t.test('a body nested deeper than 1000 levels is 400 BAD_REQUEST before it is parsed; 1000 levels are fine', async t => {
  const up = await upstream(t, answerCreated)
  const app = await buildFromFiles(t, {
    'gateway.yaml': simpleConfig(up.url, `
- id: any-json
  method: POST
  path: /api/any
  policy: public
  schema: { body: {} }
  proxy: { service: backend, path: /any }
`, HOSTILE_CONFIG),
  })
  for (const payload of ['['.repeat(500_000) + ']'.repeat(500_000), '{"a":'.repeat(1001) + '1' + '}'.repeat(1001), '['.repeat(1001)]) {
    const res = await app.inject({ method: 'POST', url: '/api/any', headers: JSON_TYPE, payload })
    const body = problem(t, res, 400, 'BAD_REQUEST')
    t.match(body.detail, /1000 levels/)
  }
  t.equal(up.hits(), 0)
  const fine = '{"a":'.repeat(999) + '[1]' + '}'.repeat(999)
  const res = await app.inject({ method: 'POST', url: '/api/any', headers: JSON_TYPE, payload: fine })
  t.equal(res.statusCode, 201)
  t.equal(up.seen[0]?.body.toString(), fine, 'forwarded byte for byte')
})
