// Retries, load balancing, passive health and circuit breakers as a client
// sees them, through a real gateway with proxy routes to real upstreams
// (README "Resilience: breakers, retries, balancing"), plus the admin
// listener's view of the breakers and its token.
import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { buildFromFiles } from '../helpers/gateway.js'
import { closedPort, upstream, type UpstreamHandler } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'
import { expectProblem } from '../helpers/auth.js'
import { listen, rawRequest } from '../helpers/http.js'
import { buildAdminApp } from '../../src/admin/admin-app.js'

type Test = Parameters<Parameters<typeof t.test>[0]>[0]

function answer (status: number, body: string): UpstreamHandler {
  return (_req, res) => {
    res.writeHead(status, { 'content-type': 'text/plain', 'x-upstream': 'yes' })
    res.end(body)
  }
}

async function deadUrl (): Promise<string> {
  return `http://127.0.0.1:${await closedPort()}`
}

/** A gateway with one service (the given block) behind `GET|POST|PUT|DELETE /r`. */
async function gateway (t: Test, service: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<FastifyInstance> {
  return await buildFromFiles(t, {
    'gateway.yaml': JSON.stringify({
      services: { backend: { timeout: '2s', ...service } },
      policies: { public: { auth: 'none' } },
      routes: [{ id: 'r', method: ['GET', 'POST', 'PUT', 'DELETE'], path: '/r', policy: 'public', proxy: { service: 'backend' } }],
      ...extra,
    }),
  })
}

async function admin (t: Test, app: FastifyInstance): Promise<FastifyInstance> {
  const a = await buildAdminApp(app)
  t.teardown(async () => { await a.close() })
  return a
}

interface BreakerView { service: string, state: string, retryAfter?: number, stats: Record<string, number>, instances: Array<{ url: string, healthy: boolean, consecutiveFailures: number }> }

async function breakers (adminApp: FastifyInstance): Promise<BreakerView[]> {
  const res = await adminApp.inject({ url: '/admin/breakers' })
  if (res.statusCode !== 200) throw new Error(`/admin/breakers answered ${res.statusCode}`)
  return JSON.parse(res.body) as BreakerView[]
}

async function backendBreaker (adminApp: FastifyInstance): Promise<BreakerView> {
  const b = (await breakers(adminApp)).find(x => x.service === 'backend')
  if (b === undefined) throw new Error('no breaker for backend')
  return b
}

/** Whether the admin API shows the backend's breaker in the state within 3 s. */
async function untilState (adminApp: FastifyInstance, state: string): Promise<boolean> {
  return await waitFor(async () => (await backendBreaker(adminApp)).state === state, { timeout: 3000 }).then(() => true, () => false)
}

// ---- retries ---------------------------------------------------------------------------

t.test('retries: a GET that hits a dead instance is retried on the next one', async t => {
  const healthy = await upstream(t, answer(200, 'from healthy'))
  const app = await gateway(t, { urls: [await deadUrl(), healthy.url], retries: 2 })
  const res = await app.inject({ url: '/r' })
  t.equal(res.statusCode, 200, 'the client never sees the connection error')
  t.equal(res.body, 'from healthy')
  t.equal(healthy.hits(), 1, 'the healthy instance answered once')

  const del = await app.inject({ method: 'DELETE', url: '/r' })
  t.equal(del.statusCode, 200, 'DELETE is idempotent: retried too')
})

t.test('retries: a POST is never retried', async t => {
  const healthy = await upstream(t, answer(200, 'from healthy'))
  const app = await gateway(t, { urls: [await deadUrl(), healthy.url], retries: 2 })
  // A real socket: light-my-request rejects inject() when the upstream
  // client destroys the request body stream after a refused connect.
  const port = await listen(app)
  // The first call of a fresh balancer goes to the first instance: the dead one.
  const raw = await rawRequest(port, { method: 'POST', path: '/r', headers: { 'content-type': 'application/json' }, body: Buffer.from('{"a":1}') })
  expectProblem(t, { statusCode: raw.status, headers: raw.headers, body: raw.body.toString('utf8') }, 502, 'UPSTREAM_ERROR')
  t.equal(healthy.hits(), 0, 'not replayed on the healthy instance')
})

t.test('retries: out of attempts the client gets the last 503 unchanged', async t => {
  const busy = await upstream(t, answer(503, 'busy'))
  const app = await gateway(t, { urls: [busy.url], retries: 2, breaker: { volumeThreshold: 100 } })
  const res = await app.inject({ url: '/r' })
  t.equal(res.statusCode, 503)
  t.equal(res.body, 'busy', 'the upstream\'s own answer, not a gateway problem')
  t.equal(res.headers['x-upstream'], 'yes')
  t.equal(busy.hits(), 3, 'one call and two retries')
})

t.test('no upstream answer: 504 UPSTREAM_TIMEOUT on a timeout (not retried), 502 UPSTREAM_ERROR on a reset', async t => {
  const hanging = await upstream(t, () => { /* never answers */ })
  const slow = await gateway(t, { urls: [hanging.url], timeout: '200ms', retries: 2 })
  expectProblem(t, await slow.inject({ url: '/r' }), 504, 'UPSTREAM_TIMEOUT')
  t.equal(hanging.hits(), 1, 'a timed-out GET is not retried')

  const resetting = await upstream(t, req => { req.socket.destroy() })
  const reset = await gateway(t, { urls: [resetting.url] })
  expectProblem(t, await reset.inject({ url: '/r' }), 502, 'UPSTREAM_ERROR')
})

// ---- load balancing and passive health ----------------------------------------------------

t.test('several urls are used round-robin', async t => {
  const order: string[] = []
  const named = (name: string): UpstreamHandler => (_req, res) => { order.push(name); res.writeHead(200); res.end(name) }
  const a = await upstream(t, named('a'))
  const b = await upstream(t, named('b'))
  const c = await upstream(t, named('c'))
  const app = await gateway(t, { urls: [a.url, b.url, c.url] })
  for (let i = 0; i < 9; i++) t.equal((await app.inject({ url: '/r' })).statusCode, 200)
  t.same(order, ['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c'])
  t.same([a.hits(), b.hits(), c.hits()], [3, 3, 3])
})

t.test('a dead instance costs passiveHealth.failures errors, then none', async t => {
  const healthy = await upstream(t, answer(200, 'ok'))
  const app = await gateway(t, {
    urls: [await deadUrl(), healthy.url],
    passiveHealth: { failures: 2, ejectFor: '1m' },
    // The breaker must not be what hides the dead instance.
    breaker: { volumeThreshold: 1000 },
  })
  const statuses: number[] = []
  for (let i = 0; i < 20; i++) statuses.push((await app.inject({ url: '/r' })).statusCode)
  const errors = statuses.map((s, i) => s === 200 ? -1 : i).filter(i => i >= 0)
  t.equal(errors.length, 2, `two client-visible errors: ${statuses.join(',')}`)
  t.ok(errors.every(i => i < 4), 'all of them while the instance was being detected')
  t.ok(statuses.slice(4).every(s => s === 200), 'every request after detection succeeds')
  t.equal(healthy.hits(), 18)
  const adminApp = await admin(t, app)
  const view = await backendBreaker(adminApp)
  t.match(view.instances, [{ healthy: false, consecutiveFailures: 2 }, { url: healthy.url, healthy: true }], 'the admin API shows the ejected instance')
})

t.test('with retries a dead instance costs no errors at all', async t => {
  const healthy = await upstream(t, answer(200, 'ok'))
  const app = await gateway(t, { urls: [await deadUrl(), healthy.url], retries: 1, passiveHealth: { failures: 2, ejectFor: '1m' } })
  for (let i = 0; i < 10; i++) t.equal((await app.inject({ url: '/r' })).statusCode, 200, `request ${i + 1}`)
  t.equal(healthy.hits(), 10)
})

t.test('healthCheck: an instance failing its health path is taken out before any client call fails', async t => {
  const serve = (healthStatus: number): UpstreamHandler => (req, res) => {
    res.writeHead(req.url === '/health' ? healthStatus : 200)
    res.end(req.url === '/health' ? 'health' : 'served')
  }
  const good = await upstream(t, serve(200))
  const sick = await upstream(t, serve(503))
  const app = await gateway(t, { urls: [sick.url, good.url], healthCheck: { path: '/health', interval: '50ms', timeout: '500ms' } })
  const adminApp = await admin(t, app)
  let view = await backendBreaker(adminApp)
  await waitFor(async () => {
    view = await backendBreaker(adminApp)
    return !view.instances[0].healthy
  }, { timeout: 3000, message: 'the probe ejects the sick instance' })
  t.match(view.instances, [{ url: sick.url, healthy: false }, { url: good.url, healthy: true }], 'the probe ejected the sick instance')
  for (let i = 0; i < 6; i++) t.equal((await app.inject({ url: '/r' })).body, 'served')
  t.equal(sick.seen.filter(r => r.url === '/r').length, 0, 'no client request went to the sick instance')
  t.equal(good.seen.filter(r => r.url === '/r').length, 6)
})

// ---- circuit breaker ----------------------------------------------------------------------------

t.test('the breaker opens on 5xx answers, fails fast with 503, and closes after a successful trial', async t => {
  let failing = true
  const up = await upstream(t, (_req, res) => {
    res.writeHead(failing ? 500 : 200, { 'content-type': 'text/plain' })
    res.end(failing ? 'broken' : 'healed')
  })
  const app = await gateway(t, { urls: [up.url], breaker: { volumeThreshold: 4, errorThresholdPercentage: 50, resetTimeout: '200ms' } })
  const adminApp = await admin(t, app)

  for (let i = 0; i < 4; i++) {
    const res = await app.inject({ url: '/r' })
    t.equal(res.statusCode, 500, `call ${i + 1}: the upstream's 500 reaches the client`)
    t.equal(res.body, 'broken')
  }
  t.equal(up.hits(), 4)

  const rejected: LightMyRequestResponse[] = []
  for (let i = 0; i < 3; i++) rejected.push(await app.inject({ url: '/r' }))
  for (const res of rejected) {
    expectProblem(t, res, 503, 'CIRCUIT_OPEN')
    t.match(res.headers['retry-after'], /^[1-9]\d*$/, 'retry-after in whole seconds, at least 1')
  }
  t.equal(up.hits(), 4, 'no call reached the upstream while open')
  const open = await backendBreaker(adminApp)
  t.equal(open.state, 'open', '/admin/breakers shows it open')
  t.ok(open.retryAfter !== undefined && open.retryAfter >= 1)
  t.match(open.stats, { failures: 4, rejects: 3 })

  failing = false
  t.ok(await untilState(adminApp, 'halfOpen'), 'half-open after resetTimeout')
  const trial = await app.inject({ url: '/r' })
  t.equal(trial.statusCode, 200, 'the trial passes')
  t.equal(trial.body, 'healed')
  t.equal(up.hits(), 5)
  t.equal((await backendBreaker(adminApp)).state, 'closed', 'and closes the breaker')
  for (let i = 0; i < 3; i++) t.equal((await app.inject({ url: '/r' })).statusCode, 200)
  t.equal(up.hits(), 8)
})

t.test('a failed trial re-opens the breaker', async t => {
  const up = await upstream(t, answer(502, 'bad gateway upstream'))
  const app = await gateway(t, { urls: [up.url], breaker: { volumeThreshold: 2, resetTimeout: '200ms' } })
  const adminApp = await admin(t, app)
  await app.inject({ url: '/r' })
  await app.inject({ url: '/r' })
  t.equal((await backendBreaker(adminApp)).state, 'open')
  t.ok(await untilState(adminApp, 'halfOpen'))
  const trial = await app.inject({ url: '/r' })
  t.equal(trial.statusCode, 502, 'the trial\'s answer reaches the client')
  t.equal(trial.body, 'bad gateway upstream')
  t.equal((await backendBreaker(adminApp)).state, 'open', 'open again')
  expectProblem(t, await app.inject({ url: '/r' }), 503, 'CIRCUIT_OPEN')
  t.equal(up.hits(), 3)
})

t.test('connection errors open the breaker too', async t => {
  const app = await gateway(t, { urls: [await deadUrl()], breaker: { volumeThreshold: 3, resetTimeout: '10s' } })
  for (let i = 0; i < 3; i++) expectProblem(t, await app.inject({ url: '/r' }), 502, 'UPSTREAM_ERROR', `call ${i + 1}`)
  const res = await app.inject({ url: '/r' })
  expectProblem(t, res, 503, 'CIRCUIT_OPEN')
  const retryAfter = Number(res.headers['retry-after'])
  t.ok(retryAfter >= 1 && retryAfter <= 10, `retry-after ${retryAfter} is at most resetTimeout`)
})

t.test('retries sit inside the breaker: a retried call counts once', async t => {
  const busy = await upstream(t, answer(503, 'busy'))
  const app = await gateway(t, { urls: [busy.url], retries: 2, breaker: { volumeThreshold: 3, resetTimeout: '10s' } })
  const adminApp = await admin(t, app)
  for (let i = 0; i < 2; i++) t.equal((await app.inject({ url: '/r' })).statusCode, 503, `call ${i + 1}: the upstream's 503`)
  t.equal(busy.hits(), 6, 'three attempts per call')
  t.match(await backendBreaker(adminApp), { state: 'closed', stats: { fires: 2, failures: 2 } }, 'two calls, not six, below the volume of 3')
  t.equal((await app.inject({ url: '/r' })).statusCode, 503)
  t.equal(busy.hits(), 9)
  t.equal((await backendBreaker(adminApp)).state, 'open', 'the third call opens it')
  expectProblem(t, await app.inject({ url: '/r' }), 503, 'CIRCUIT_OPEN')
  t.equal(busy.hits(), 9, 'no attempt while open')
})

t.test('a storm of 4xx answers never opens the breaker', async t => {
  let n = 0
  const statuses = [400, 401, 403, 404, 409, 422, 429]
  const up = await upstream(t, (_req, res) => { res.writeHead(statuses[n++ % statuses.length]); res.end('client error') })
  const app = await gateway(t, { urls: [up.url], breaker: { volumeThreshold: 4, errorThresholdPercentage: 50, resetTimeout: '10s' } })
  for (let i = 0; i < 35; i++) {
    const res = await app.inject({ url: '/r' })
    t.equal(res.statusCode, statuses[i % statuses.length], `call ${i + 1} passes through`)
  }
  t.equal(up.hits(), 35, 'every call reached the upstream')
  const adminApp = await admin(t, app)
  t.match(await backendBreaker(adminApp), { state: 'closed', stats: { failures: 0, successes: 35 } })
})

// ---- admin listener ------------------------------------------------------------------------

t.test('admin: /admin/breakers and /admin/routes without a token configured', async t => {
  const up = await upstream(t, answer(200, 'ok'))
  const app = await gateway(t, { urls: [up.url] })
  const adminApp = await admin(t, app)
  const list = await breakers(adminApp)
  t.same(list, [{
    service: 'backend',
    state: 'closed',
    stats: { fires: 0, failures: 0, successes: 0, rejects: 0, timeouts: 0 },
    instances: [{ url: up.url, healthy: true, consecutiveFailures: 0, ejectedUntil: 0 }],
  }])
  const routes = await adminApp.inject({ url: '/admin/routes' })
  t.equal(routes.statusCode, 200)
  t.match(JSON.parse(routes.body), [{ id: 'r', path: '/r', policy: 'public', methods: ['GET', 'POST', 'PUT', 'DELETE', 'HEAD'] }])
})

t.test('admin: with admin.token set, /admin/* needs it as a Bearer token', async t => {
  const up = await upstream(t, answer(200, 'ok'))
  const token = 'admin-token-0123456789'
  const app = await gateway(t, { urls: [up.url] }, { admin: { token } })
  const adminApp = await admin(t, app)
  for (const url of ['/admin/breakers', '/admin/routes']) {
    for (const [label, authorization] of [
      ['no token', undefined],
      ['wrong token', 'Bearer admin-token-0123456788'],
      ['the token without the scheme', token],
      ['another scheme', `Basic ${token}`],
      ['token with a suffix', `Bearer ${token}x`],
    ] as const) {
      const res = await adminApp.inject({ url, headers: authorization !== undefined ? { authorization } : {} })
      expectProblem(t, res, 401, 'UNAUTHENTICATED', `${url}, ${label}`)
      t.match(String(res.headers['www-authenticate']), /^Bearer /, `${url}, ${label}: a Bearer challenge`)
      t.notMatch(res.body, token, `${url}, ${label}: the token is not echoed`)
    }
    const ok = await adminApp.inject({ url, headers: { authorization: `Bearer ${token}` } })
    t.equal(ok.statusCode, 200, `${url} with the token`)
    t.ok(Array.isArray(JSON.parse(ok.body)))
  }
})

t.test('admin: an encoded path cannot get around the token', async t => {
  const up = await upstream(t, answer(200, 'ok'))
  const app = await gateway(t, { urls: [up.url] }, { admin: { token: 'admin-token-0123456789' } })
  const adminApp = await admin(t, app)
  for (const url of ['/%61dmin/breakers', '/%61%64%6d%69%6e/routes', '/admin/%62reakers', '/admin/breakers?x=1']) {
    const res = await adminApp.inject({ url })
    t.not(res.statusCode, 200, `${url} is not served without the token`)
    t.notMatch(res.body, /"service"|"policy"/, `${url}: nothing leaked`)
  }
})
