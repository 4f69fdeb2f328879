// `publish` on proxy routes (README "Events and CQRS"), against a real
// Redis: after a 2xx upstream answer the gateway XADDs one event (type, route,
// sub, requestId, at, body, in that order); never after a non-2xx; the
// client's answer is the upstream's, unchanged; a Redis outage costs the
// client nothing and the lost event is counted and logged; streams stay
// bounded (MAXLEN ~).
import t from 'tap'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import type { FastifyInstance } from 'fastify'
import { buildFromFiles, writeConfigFiles } from '../helpers/gateway.js'
import { closedPort, upstream, type UpstreamHandler } from '../helpers/upstream.js'
import { skipUnlessRedis, PrivateRedis, REDIS_URL, eventually, uniquePrefix } from '../helpers/redis.js'
import { EVENT_FIELDS, ISO_TIME, JWT_AUTH_YAML, bearer, readStream, streamLength, uniqueStream } from '../helpers/events.js'
import { loadConfig } from '../../src/config/index.js'
import { buildGateway } from '../../src/gateway/app.js'

await skipUnlessRedis(t)

/**
 * The upstream's answer: status from `x-want-status` (default 201), a JSON
 * body whose spacing, key order and escapes a parse/re-serialize would change.
 */
const orders: UpstreamHandler = (req, res) => {
  const status = Number(req.headers['x-want-status'] ?? 201)
  const n = String(req.headers['x-order'] ?? '0')
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'x-upstream': 'orders' })
  res.end(answerFor(n, status))
}

function answerFor (n: string, status = 201): string {
  return `{ "orderId": ${n},  "status" : ${status}, "note":"zoë \\u00e9 😀",\n"total": 1.50 }`
}

interface Gw { upstream: string, redisUrl: string, keyPrefix: string, routes: string, events?: string }

function gatewayYaml (o: Gw): string {
  return `redis:
  url: ${o.redisUrl}
  keyPrefix: "${o.keyPrefix}"
${o.events !== undefined ? `events: ${o.events}\n` : ''}${JWT_AUTH_YAML}services:
  backend:
    urls: [${o.upstream}]
    timeout: 2s
policies:
  public: { auth: none }
  user: { auth: jwt }
routes:
${o.routes}`
}

/** A JWT-protected POST /api/orders → backend /orders that publishes `order.created`. */
function createOrderRoute (stream: string, extra = ''): string {
  return `  - id: create-order
    method: POST
    path: /api/orders
    policy: user
    proxy: { service: backend, path: /orders }
    publish: { stream: ${stream}, type: order.created${extra} }
`
}

function eventsOf (app: FastifyInstance): NonNullable<FastifyInstance['events']> {
  const events = app.events
  if (events === undefined) throw new Error('the gateway has no event publisher')
  return events
}

/** Waits until `n` appends have settled (published or given up), so the stream can be read as final. */
async function settled (app: FastifyInstance, n: number): Promise<void> {
  const { counters } = eventsOf(app)
  await eventually(`${n} publishes settled`, async () => counters.published + counters.failed >= n)
}

async function postOrder (app: FastifyInstance, headers: Record<string, string> = {}, payload = '{"sku":"a-1","qty":2}') {
  return await app.inject({
    method: 'POST',
    url: '/api/orders',
    headers: { authorization: bearer('user-42'), 'content-type': 'application/json', ...headers },
    payload,
  })
}

t.test('a 2xx answer is published once: fields in order, body byte-equal, client answer unchanged', async t => {
  const up = await upstream(t, orders)
  const stream = uniqueStream(t, 'pub-one')
  const app = await buildFromFiles(t, {
    'gateway.yaml': gatewayYaml({ upstream: up.url, redisUrl: REDIS_URL, keyPrefix: uniquePrefix(t, 'ev-pub'), routes: createOrderRoute(stream) }),
  })
  const before = Date.now()
  const res = await postOrder(app, { 'x-order': '7' })
  const after = Date.now()

  t.equal(res.statusCode, 201, 'the upstream status')
  t.equal(res.body, answerFor('7'), 'the upstream body, byte for byte')
  t.equal(res.headers['content-type'], 'application/json; charset=utf-8')
  t.equal(res.headers['x-upstream'], 'orders', 'upstream headers pass through')
  t.equal(up.hits(), 1)

  await settled(app, 1)
  const entries = await readStream(stream)
  t.equal(entries.length, 1, 'exactly one entry')
  const [entry] = entries
  t.same(entry.names, EVENT_FIELDS, 'fields type, route, sub, requestId, at, body, in that order')
  t.equal(entry.fields.type, 'order.created')
  t.equal(entry.fields.route, 'create-order')
  t.equal(entry.fields.sub, 'user-42', 'sub from the JWT')
  t.match(String(res.headers['x-request-id']), /^[A-Za-z0-9._-]{1,128}$/)
  t.equal(entry.fields.requestId, res.headers['x-request-id'], 'requestId is the response x-request-id')
  t.match(entry.fields.at, ISO_TIME, 'at is an ISO time')
  const at = Date.parse(entry.fields.at)
  t.ok(at >= before - 1 && at <= after + 1, `at (${entry.fields.at}) is the time of the request`)
  t.equal(entry.fields.body, answerFor('7'), 'body is the upstream answer, byte for byte')
  t.same(eventsOf(app).counters, { published: 1, failed: 0, commands: 0 })
})

t.test('a request id given by the client is the event requestId', async t => {
  const up = await upstream(t, orders)
  const stream = uniqueStream(t, 'pub-reqid')
  const app = await buildFromFiles(t, {
    'gateway.yaml': gatewayYaml({ upstream: up.url, redisUrl: REDIS_URL, keyPrefix: uniquePrefix(t, 'ev-pub'), routes: createOrderRoute(stream) }),
  })
  const res = await postOrder(app, { 'x-request-id': 'client-chosen.id_1' })
  t.equal(res.statusCode, 201)
  t.equal(res.headers['x-request-id'], 'client-chosen.id_1')
  await settled(app, 1)
  const entries = await readStream(stream)
  t.same(entries.map(e => e.fields.requestId), ['client-chosen.id_1'])
})

t.test('several requests: one entry each, in request order', async t => {
  const up = await upstream(t, orders)
  const stream = uniqueStream(t, 'pub-order')
  const app = await buildFromFiles(t, {
    'gateway.yaml': gatewayYaml({ upstream: up.url, redisUrl: REDIS_URL, keyPrefix: uniquePrefix(t, 'ev-pub'), routes: createOrderRoute(stream) }),
  })
  const ids: string[] = []
  for (let i = 1; i <= 6; i++) {
    const res = await postOrder(app, { 'x-order': String(i), authorization: bearer(`user-${i}`) })
    t.equal(res.statusCode, 201, `request ${i}`)
    ids.push(String(res.headers['x-request-id']))
  }
  t.equal(new Set(ids).size, 6, 'six distinct request ids')
  await settled(app, 6)
  const entries = await readStream(stream)
  t.same(entries.map(e => e.fields.requestId), ids, 'entries in request order')
  t.same(entries.map(e => e.fields.sub), [1, 2, 3, 4, 5, 6].map(i => `user-${i}`))
  t.same(entries.map(e => e.fields.body), [1, 2, 3, 4, 5, 6].map(i => answerFor(String(i))))
})

t.test('a non-2xx answer publishes nothing, and reaches the client unchanged', async t => {
  const up = await upstream(t, orders)
  const stream = uniqueStream(t, 'pub-non2xx')
  const app = await buildFromFiles(t, {
    'gateway.yaml': gatewayYaml({ upstream: up.url, redisUrl: REDIS_URL, keyPrefix: uniquePrefix(t, 'ev-pub'), routes: createOrderRoute(stream) }),
  })
  for (const status of [500, 404, 400, 409, 302]) {
    const res = await postOrder(app, { 'x-want-status': String(status), 'x-order': String(status) })
    t.equal(res.statusCode, status, `${status} passed through`)
    t.equal(res.body, answerFor(String(status), status), `${status} body unchanged`)
  }
  // Appends go out in order on one connection: once this 2xx's event is in,
  // an event from any request above would be in too.
  const ok = await postOrder(app, { 'x-order': '1' })
  t.equal(ok.statusCode, 201)
  await settled(app, 1)
  const entries = await readStream(stream)
  t.same(entries.map(e => e.fields.requestId), [ok.headers['x-request-id']], 'only the 2xx was published')
  t.equal(up.hits(), 6)
  t.same(eventsOf(app).counters, { published: 1, failed: 0, commands: 0 })
})

t.test('non-JSON and empty 2xx answers: the event body is still JSON', async t => {
  const up = await upstream(t, (req, res) => {
    if (req.url === '/text') {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end('created "x"')
    } else {
      res.writeHead(204)
      res.end()
    }
  })
  const stream = uniqueStream(t, 'pub-nonjson')
  const routes = `  - id: text
    method: POST
    path: /text
    policy: public
    proxy: { service: backend }
    publish: { stream: ${stream}, type: t.text }
  - id: empty
    method: POST
    path: /empty
    policy: public
    proxy: { service: backend }
    publish: { stream: ${stream}, type: t.empty }
`
  const app = await buildFromFiles(t, {
    'gateway.yaml': gatewayYaml({ upstream: up.url, redisUrl: REDIS_URL, keyPrefix: uniquePrefix(t, 'ev-pub'), routes }),
  })
  const text = await app.inject({ method: 'POST', url: '/text', payload: '' })
  t.equal(text.statusCode, 200)
  t.equal(text.body, 'created "x"')
  t.equal(text.headers['content-type'], 'text/plain')
  await settled(app, 1)
  const empty = await app.inject({ method: 'POST', url: '/empty' })
  t.equal(empty.statusCode, 204)
  t.equal(empty.body, '')
  await settled(app, 2)

  const entries = await readStream(stream)
  t.same(entries.map(e => [e.fields.type, e.fields.body]), [['t.text', JSON.stringify('created "x"')], ['t.empty', 'null']])
  for (const e of entries) t.doesNotThrow(() => JSON.parse(e.fields.body), `${e.fields.type}: body parses as JSON`)
  t.same(entries.map(e => e.fields.sub), ['', ''], 'no identity on a public route: sub is empty')
})

t.test('from: request: the event body is the client request bytes', async t => {
  const up = await upstream(t, orders)
  const stream = uniqueStream(t, 'pub-fromreq')
  const app = await buildFromFiles(t, {
    'gateway.yaml': gatewayYaml({ upstream: up.url, redisUrl: REDIS_URL, keyPrefix: uniquePrefix(t, 'ev-pub'), routes: createOrderRoute(stream, ', from: request') }),
  })
  const sent = '{ "sku" :"a-1",\n  "qty": 2.0, "note": "zoë \\u00e9" }'
  const failed = await postOrder(app, { 'x-want-status': '500' }, '{"sku":"never"}')
  t.equal(failed.statusCode, 500)
  const res = await postOrder(app, { 'x-order': '3' }, sent)
  t.equal(res.statusCode, 201)
  t.equal(res.body, answerFor('3'), 'the client still gets the upstream answer')
  t.equal(up.seen[1].body.toString('utf8'), sent, 'the upstream got the client bytes')
  await settled(app, 1)
  const entries = await readStream(stream)
  t.equal(entries.length, 1, 'one entry: the 500 published nothing')
  t.same(entries[0].names, EVENT_FIELDS)
  t.equal(entries[0].fields.body, sent, 'the request body, byte for byte')
  t.equal(entries[0].fields.requestId, res.headers['x-request-id'])
  t.equal(entries[0].fields.sub, 'user-42')
})

/** Reads /readyz until redis is in the wanted state. */
async function redisState (app: FastifyInstance, want: 'up' | 'down'): Promise<void> {
  await eventually(`redis ${want} in /readyz`, async () => {
    const res = await app.inject({ url: '/readyz' })
    return (JSON.parse(res.body) as { redis?: string }).redis === want
  }, 15_000)
}

t.test('Redis down: the client still gets its 2xx; the event is retried, then counted and logged', async t => {
  const up = await upstream(t, orders)
  const redis = await PrivateRedis.started(t, await closedPort())
  const stream = uniqueStream(t, 'pub-down', redis.url)
  const dir = writeConfigFiles({
    'gateway.yaml': gatewayYaml({
      upstream: up.url, redisUrl: redis.url, keyPrefix: 'ev-down:', routes: createOrderRoute(stream), events: '{ publishRetries: 2 }',
    }),
  })
  const logs: Array<Record<string, unknown>> = []
  const sink = new Writable({
    write (chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>)
      cb()
    },
  })
  const app = await buildGateway(loadConfig(join(dir, 'gateway.yaml'), {}).config, { logger: pino({ level: 'info' }, sink) })
  t.teardown(async () => { await app.close() })
  const { counters } = eventsOf(app)
  await redisState(app, 'up')

  const first = await postOrder(app, { 'x-order': '1' })
  t.equal(first.statusCode, 201)
  await settled(app, 1)
  t.equal(counters.published, 1, 'published while Redis is up')
  t.equal(await streamLength(stream, redis.url), 1)

  await redis.kill()
  const res = await postOrder(app, { 'x-order': '2' })
  t.equal(res.statusCode, 201, 'the client answer does not wait for or depend on the event')
  t.equal(res.body, answerFor('2'))
  await eventually('the failed publish counted', async () => counters.failed === 1)
  t.equal(counters.published, 1, 'published did not move')
  const lost = logs.filter(l => typeof l.msg === 'string' && l.msg.startsWith('event not published'))
  t.equal(lost.length, 1, 'one log line for the lost event')
  t.match(lost[0], { level: 50, stream, type: 'order.created', route: 'create-order', requestId: res.headers['x-request-id'], msg: 'event not published after 3 attempts' })

  // Redis comes back by itself: the next event goes through (that server started empty).
  await redis.start()
  await redisState(app, 'up')
  const third = await postOrder(app, { 'x-order': '3' })
  t.equal(third.statusCode, 201)
  await settled(app, 3)
  t.same(counters, { published: 2, failed: 1, commands: 0 })
  const entries = await readStream(stream, redis.url)
  t.same(entries.map(e => e.fields.requestId), [third.headers['x-request-id']])
})

t.test('events.maxLen: the stream is trimmed (MAXLEN ~), the newest entries kept', async t => {
  const up = await upstream(t, orders)
  const stream = uniqueStream(t, 'pub-maxlen')
  const routes = `  - id: bounded
    method: POST
    path: /api/orders
    policy: public
    proxy: { service: backend, path: /orders }
    publish: { stream: ${stream}, type: order.created }
`
  const app = await buildFromFiles(t, {
    'gateway.yaml': gatewayYaml({ upstream: up.url, redisUrl: REDIS_URL, keyPrefix: uniquePrefix(t, 'ev-pub'), routes, events: '{ maxLen: 10 }' }),
  })
  let last = ''
  for (let i = 1; i <= 200; i++) {
    const res = await app.inject({ method: 'POST', url: '/api/orders', headers: { 'x-order': String(i) } })
    if (res.statusCode !== 201) t.fail(`request ${i}: ${res.statusCode}`)
    last = String(res.headers['x-request-id'])
  }
  await settled(app, 200)
  t.same(eventsOf(app).counters, { published: 200, failed: 0, commands: 0 })
  const len = await streamLength(stream)
  t.ok(len < 150, `trimmed: XLEN ${len} of 200 published`)
  t.ok(len >= 10, `never below maxLen: XLEN ${len}`)
  const entries = await readStream(stream)
  t.equal(entries.at(-1)?.fields.requestId, last, 'the newest event is kept')
  t.equal(entries.at(-1)?.fields.body, answerFor('200'))
})
