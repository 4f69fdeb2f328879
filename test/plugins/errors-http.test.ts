// Errors the gateway makes itself, as a client sees them over HTTP: RFC 9457
// problem+json with a stable code and the request id (README "What the
// errors look like"),
// plus the request-id rules and the health endpoints.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { buildFromFiles, simpleConfig } from '../helpers/gateway.js'
import { closedPort, echo, upstream } from '../helpers/upstream.js'
import { listen, rawRequest } from '../helpers/http.js'

// A subtest (the last overload of t.test takes only the callback).
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const ROUTES = `
- id: item
  method: [GET, POST, PUT]
  path: /api/items/:id
  policy: public
  proxy: { service: backend, path: "/items/{params.id}" }
`

/** Checks the RFC 9457 shape and returns the body. */
function problem (t: Test, res: { statusCode: number, headers: Record<string, unknown>, body: string }, status: number, code: string): Record<string, unknown> {
  t.equal(res.statusCode, status, `status ${status}`)
  t.match(res.headers['content-type'], /^application\/problem\+json(;|$)/, 'problem+json')
  const body = JSON.parse(res.body) as Record<string, unknown>
  t.same(Object.keys(body).sort(), ['code', 'detail', 'requestId', 'status', 'title', 'type'], 'exactly the problem members')
  t.equal(body.status, status)
  t.equal(body.code, code)
  t.equal(body.type, `https://portico.dev/problems/${code.toLowerCase().replace(/_/g, '-')}`)
  t.type(body.title, 'string')
  t.type(body.detail, 'string')
  t.not(body.detail, '')
  t.equal(body.requestId, res.headers['x-request-id'], 'requestId is the x-request-id header')
  t.notMatch(res.body, /\bat .*\(.*:\d+:\d+\)|node:internal|\.ts:\d+/, 'no stack trace')
  return body
}

function fromRaw (res: { status: number, headers: Record<string, unknown>, body: Buffer }): { statusCode: number, headers: Record<string, unknown>, body: string } {
  return { statusCode: res.status, headers: res.headers, body: res.body.toString('utf8') }
}

t.test('an unknown route is 404 ROUTE_NOT_FOUND', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, ROUTES) })
  for (const [method, url] of [['GET', '/nope'], ['GET', '/api/items'], ['DELETE', '/api/items/1'], ['POST', '/healthz']] as const) {
    const res = await app.inject({ method, url: `${url}?token=secret` })
    const body = problem(t, res, 404, 'ROUTE_NOT_FOUND')
    t.notMatch(String(body.detail), /secret/, 'the query string is not echoed')
  }
  t.equal(up.hits(), 0)
})

t.test('a path that is not valid percent-encoded UTF-8 is 400 BAD_REQUEST problem+json', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, ROUTES) })
  const port = await listen(app)
  // A truncated escape, a non-hex escape, and a lone surrogate (U+D800 as UTF-8 bytes).
  for (const path of ['/api/items/%E0%A4%A', '/api/items/%ZZ', '/api/items/%ED%A0%80']) {
    const res = await rawRequest(port, { path })
    problem(t, fromRaw(res), 400, 'BAD_REQUEST')
  }
  t.equal(up.hits(), 0)
})

t.test('a closed service port is 502 UPSTREAM_ERROR', async t => {
  const port = await closedPort()
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(`http://127.0.0.1:${port}`, ROUTES) })
  const res = await app.inject({ url: '/api/items/1', headers: { 'x-request-id': 'req-502' } })
  const body = problem(t, res, 502, 'UPSTREAM_ERROR')
  t.equal(body.requestId, 'req-502')
  t.notMatch(res.body, new RegExp(`ECONNREFUSED|127\\.0\\.0\\.1|${port}`), 'no internals in the body')
})

t.test('an upstream that destroys the socket is 502 UPSTREAM_ERROR', async t => {
  const up = await upstream(t, req => { req.socket.destroy() })
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, ROUTES) })
  const res = await app.inject({ url: '/api/items/1' })
  problem(t, res, 502, 'UPSTREAM_ERROR')
  t.notMatch(res.body, /UND_ERR|socket|other side closed/i, 'no internals in the body')
  t.equal(up.hits(), 1)
})

t.test('a small answer broken off mid-body is a clean 502 (small bodies are read whole before anything is sent)', async t => {
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' })
    res.write('only part of it')
    setImmediate(() => res.socket?.destroy())
  })
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, ROUTES) })
  problem(t, await app.inject({ url: '/api/items/1' }), 502, 'UPSTREAM_ERROR')
})

t.test('a large streamed answer that dies mid-body does not hang the client', async t => {
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(1024 * 1024) })
    res.write(Buffer.alloc(100 * 1024))
    setImmediate(() => res.socket?.destroy())
  })
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, ROUTES) })
  const port = await listen(app)
  // The status line is already out; the client must see a broken response, not a complete one.
  await t.rejects(rawRequest(port, { path: '/api/items/1' }))
})

t.test('an upstream slower than the service timeout is 504 UPSTREAM_TIMEOUT', async t => {
  const up = await upstream(t, (_req, res) => {
    const timer = setTimeout(() => { res.writeHead(200); res.end('too late') }, 3000)
    res.on('close', () => { clearTimeout(timer) })
  })
  const app = await buildFromFiles(t, {
    'gateway.yaml': `services:
  backend:
    urls: [${up.url}]
    timeout: 200ms
policies:
  public: { auth: none }
routes:
${ROUTES}
`,
  })
  const res = await app.inject({ url: '/api/items/1' })
  problem(t, res, 504, 'UPSTREAM_TIMEOUT')
  t.equal(up.hits(), 1)
})

const LIMITED = simpleConfig('URL', ROUTES, 'server:\n  bodyLimit: 1kb\n')

t.test('a content-length over server.bodyLimit is 413 before any upstream call', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': LIMITED.replace('URL', up.url) })
  const res = await app.inject({ method: 'POST', url: '/api/items/1', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ pad: 'x'.repeat(2000) }) })
  problem(t, res, 413, 'PAYLOAD_TOO_LARGE')

  const port = await listen(app)
  const raw = await rawRequest(port, { method: 'PUT', path: '/api/items/1', headers: { 'content-type': 'application/octet-stream' }, body: randomBytes(1025) })
  problem(t, fromRaw(raw), 413, 'PAYLOAD_TOO_LARGE')
  t.equal(up.hits(), 0, 'the upstream was never called')

  // Exactly at the limit is fine, and arrives whole.
  const body = randomBytes(1024)
  const fits = await app.inject({ method: 'PUT', url: '/api/items/1', headers: { 'content-type': 'application/octet-stream' }, payload: body })
  t.equal(fits.statusCode, 200)
  t.equal(up.hits(), 1)
  t.ok(up.seen[0].body.equals(body))
})

t.test('a chunked body that grows over server.bodyLimit is 413', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': LIMITED.replace('URL', up.url) })
  const port = await listen(app)
  const res = await rawRequest(port, {
    method: 'POST',
    path: '/api/items/1',
    headers: { 'content-type': 'application/octet-stream', 'x-request-id': 'chunky' },
    body: [randomBytes(600), randomBytes(600), randomBytes(600)],
  })
  const body = problem(t, fromRaw(res), 413, 'PAYLOAD_TOO_LARGE')
  t.equal(body.requestId, 'chunky')
  t.equal(up.seen.filter(s => s.body.length > 1024).length, 0, 'no upstream received the oversized body')

  // A chunked body within the limit still goes through whole.
  const chunks = [randomBytes(500), randomBytes(500)]
  const small = await rawRequest(port, { method: 'POST', path: '/api/items/1', headers: { 'content-type': 'application/octet-stream' }, body: chunks })
  t.equal(small.status, 200)
  t.ok(up.seen.at(-1)?.body.equals(Buffer.concat(chunks)))
})

t.test('a valid client x-request-id is kept, returned and sent upstream', async t => {
  const up = await upstream(t, echo)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, ROUTES) })
  const valid = ['a', 'abc-123', 'A.b_C-9', '0f8fad5b-d9cb-469f-a165-70867728950e', 'x'.repeat(128)]
  for (const id of valid) {
    const res = await app.inject({ url: '/api/items/1', headers: { 'x-request-id': id } })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['x-request-id'], id, `returned: ${id.slice(0, 20)}`)
    t.equal(up.seen.at(-1)?.headers['x-request-id'], id, 'sent upstream')
  }
  // Errors carry it too.
  const missing = await app.inject({ url: '/missing', headers: { 'x-request-id': 'err-id.1' } })
  t.equal(missing.headers['x-request-id'], 'err-id.1')
  t.equal(missing.json().requestId, 'err-id.1')
})

t.test('an invalid client x-request-id is replaced by a generated one', async t => {
  const up = await upstream(t, echo)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, ROUTES) })
  const invalid = ['x'.repeat(129), 'x'.repeat(1000), 'has space', '', 'a/b', 'a;b', 'zoë', '<script>', 'a,b']
  const generated = new Set<string>()
  for (const id of invalid) {
    const res = await app.inject({ url: '/api/items/1', headers: { 'x-request-id': id } })
    t.equal(res.statusCode, 200)
    const got = res.headers['x-request-id']
    t.type(got, 'string')
    t.not(got, id, `replaced: ${JSON.stringify(id.slice(0, 20))}`)
    t.match(got, /^[A-Za-z0-9._-]{1,128}$/, 'the generated id is itself valid')
    t.equal(up.seen.at(-1)?.headers['x-request-id'], got, 'the generated id is sent upstream')
    generated.add(String(got))
  }
  t.equal(generated.size, invalid.length, 'every generated id is new')

  const port = await listen(app)
  const twice = await rawRequest(port, { path: '/api/items/1', headers: { 'x-request-id': ['one', 'two'] } })
  t.not(twice.headers['x-request-id'], 'one', 'a repeated header is not trusted')
  t.match(twice.headers['x-request-id'], /^[A-Za-z0-9._-]{1,128}$/)

  const failed = await app.inject({ url: '/nope', headers: { 'x-request-id': 'bad id' } })
  const body = problem(t, failed, 404, 'ROUTE_NOT_FOUND')
  t.not(body.requestId, 'bad id')
})

t.test('traceparent and tracestate are forwarded unchanged', async t => {
  const up = await upstream(t, echo)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, ROUTES) })
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
  const res = await app.inject({ url: '/api/items/1', headers: { traceparent, tracestate: 'congo=t61rcWkgMzE' } })
  t.equal(res.statusCode, 200)
  t.equal(up.seen[0].headers.traceparent, traceparent)
  t.equal(up.seen[0].headers.tracestate, 'congo=t61rcWkgMzE')
})

t.test('/healthz and /readyz answer 200 JSON without touching upstreams', async t => {
  const port = await closedPort()
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(`http://127.0.0.1:${port}`, ROUTES) })
  const health = await app.inject({ url: '/healthz' })
  t.equal(health.statusCode, 200)
  t.match(health.headers['content-type'], /^application\/json/)
  t.match(health.json(), { status: 'ok' })
  t.type(health.headers['x-request-id'], 'string')

  const ready = await app.inject({ url: '/readyz' })
  t.equal(ready.statusCode, 200)
  t.match(ready.headers['content-type'], /^application\/json/)
  t.match(ready.json(), { status: 'ready', redis: 'not configured' })
})
