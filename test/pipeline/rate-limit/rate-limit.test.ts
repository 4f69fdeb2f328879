// Rate limits (README "Rate limits", "Request handling" step 5): the
// draft-spec headers on every limited response, 429 RATE_LIMITED problem+json
// with retry-after, one counter per route and key, auth before the limit,
// counters shared through a real Redis, and the local fallback while Redis is
// down (with /readyz saying so) until it comes back by itself.
import t from 'tap'
import { createSigner } from 'fast-jwt'
import type { FastifyInstance, LightMyRequestResponse, InjectOptions } from 'fastify'
import { buildFromFiles } from '../../helpers/gateway.js'
import { skipUnlessRedis, PrivateRedis, REDIS_URL, eventually, keysUnder, withClient } from '../../helpers/redis.js'
import { closedPort, reply, upstream } from '../../helpers/upstream.js'
import { join } from 'node:path'
import { pino } from 'pino'
import { ROOT } from '../../helpers/cli.js'
import { loadConfig } from '../../../src/config/index.js'
import { buildGateway } from '../../../src/gateway/app.js'

await skipUnlessRedis(t)

// A subtest (the last overload of t.test takes only the callback).
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const SECRET = 'rate-limit-test-secret-0123456789abcdef'
const sign = createSigner({ key: SECRET, algorithm: 'HS256', expiresIn: 600_000 })

/** What every route's upstream answers in this file. */
const answerOk = reply(200, 'text/plain', 'ok')

let prefixes = 0
/** A Redis key prefix no other test (or parallel test process) uses. */
function uniquePrefix (): string {
  return `test-rl-${process.pid}-${Date.now()}-${++prefixes}:`
}

/** Deletes every key under the prefix when the test ends. */
function cleanRedisAfter (t: Test, prefix: string): void {
  t.teardown(async () => {
    const keys = await keysUnder(REDIS_URL, prefix)
    if (keys.length > 0) await withClient(REDIS_URL, async c => await c.del(...keys))
  })
}

interface GatewayOptions {
  upstreamUrl: string
  routes: string
  policies?: string
  redis?: { url: string, keyPrefix: string }
  jwt?: boolean
}

function gatewayYaml (o: GatewayOptions): string {
  return `${o.redis !== undefined ? `redis:\n  url: ${o.redis.url}\n  keyPrefix: "${o.redis.keyPrefix}"\n` : ''}${o.jwt === true ? `auth:\n  jwt:\n    secret: ${SECRET}\n    algorithms: [HS256]\n` : ''}services:
  backend:
    urls: [${o.upstreamUrl}]
    timeout: 2s
policies:
  public: { auth: none }
${o.policies ?? ''}
routes:
${o.routes}
`
}

async function gateway (t: Test, o: GatewayOptions): Promise<FastifyInstance> {
  return await buildFromFiles(t, { 'gateway.yaml': gatewayYaml(o) })
}

/** Checks a 429 as the contract describes it and returns its body. */
function assertLimited (t: Test, res: LightMyRequestResponse, max: number, windowSeconds: number): Record<string, unknown> {
  t.equal(res.statusCode, 429, 'status 429')
  t.match(res.headers['content-type'], /^application\/problem\+json(;|$)/, 'problem+json')
  const body = res.json<Record<string, unknown>>()
  t.equal(body.code, 'RATE_LIMITED')
  t.equal(body.status, 429)
  t.equal(body.requestId, res.headers['x-request-id'])
  const retryAfter = Number(res.headers['retry-after'])
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= windowSeconds, `retry-after is 1..${windowSeconds} s (got ${String(res.headers['retry-after'])})`)
  t.equal(res.headers['ratelimit-limit'], String(max), 'ratelimit-limit on the 429')
  t.equal(res.headers['ratelimit-remaining'], '0', 'ratelimit-remaining 0 on the 429')
  t.ok(res.headers['ratelimit-reset'] !== undefined, 'ratelimit-reset on the 429')
  return body
}

/** Checks a served request of a limited route: 200 with the limit headers. */
function assertAllowed (t: Test, res: LightMyRequestResponse, max: number, remaining: number, windowSeconds: number, label = ''): void {
  t.equal(res.statusCode, 200, `${label} status 200`)
  t.equal(res.headers['ratelimit-limit'], String(max), `${label} ratelimit-limit ${max}`)
  t.equal(res.headers['ratelimit-remaining'], String(remaining), `${label} ratelimit-remaining ${remaining}`)
  const reset = Number(res.headers['ratelimit-reset'])
  t.ok(Number.isInteger(reset) && reset >= 1 && reset <= windowSeconds, `${label} ratelimit-reset is 1..${windowSeconds} s (got ${String(res.headers['ratelimit-reset'])})`)
}

async function hit (app: FastifyInstance, url: string, opts: Omit<InjectOptions, 'url'> = {}): Promise<LightMyRequestResponse> {
  return await app.inject({ ...opts, url })
}

async function readyRedis (app: FastifyInstance): Promise<string> {
  const res = await app.inject({ url: '/readyz' })
  return res.json<{ redis: string }>().redis
}

const LIMITED = `
- id: limited
  method: [GET, POST]
  path: /api/limited
  policy: public
  rateLimit: { max: 3, window: 1m }
  proxy: { service: backend, path: /x }
`

t.test('in memory: responses carry the limit headers; the request over max is 429 and never reaches the upstream', async t => {
  const up = await upstream(t, answerOk)
  const app = await gateway(t, { upstreamUrl: up.url, routes: LIMITED })
  t.equal(await readyRedis(app), 'not configured')
  for (const remaining of [2, 1, 0]) assertAllowed(t, await hit(app, '/api/limited'), 3, remaining, 60, `remaining ${remaining}:`)
  assertLimited(t, await hit(app, '/api/limited'), 3, 60)
  // A body request over the limit is refused the same way (the limit runs before the body is read).
  const post = await hit(app, '/api/limited', { method: 'POST', headers: { 'content-type': 'application/json' }, payload: '{"a":1}' })
  assertLimited(t, post, 3, 60)
  t.equal(up.hits(), 3, 'only the allowed requests reached the upstream')
})

t.test('a route without rateLimit has no limit headers and no limit', async t => {
  const up = await upstream(t, answerOk)
  const app = await gateway(t, {
    upstreamUrl: up.url,
    routes: `${LIMITED}
- id: free
  path: /api/free
  policy: public
  proxy: { service: backend, path: /x }
`,
  })
  for (let i = 0; i < 5; i++) {
    const res = await hit(app, '/api/free')
    t.equal(res.statusCode, 200)
    t.equal(res.headers['ratelimit-limit'], undefined, 'no ratelimit-limit')
    t.equal(res.headers['ratelimit-remaining'], undefined, 'no ratelimit-remaining')
  }
  t.equal(up.hits(), 5)
})

t.test('a policy rateLimit applies to its routes, a route rateLimit overrides it, and each route has its own counter', async t => {
  const up = await upstream(t, answerOk)
  const app = await gateway(t, {
    upstreamUrl: up.url,
    policies: '  metered: { auth: none, rateLimit: { max: 2, window: 1m } }\n',
    routes: `
- id: a
  path: /api/a
  policy: metered
  proxy: { service: backend, path: /a }
- id: b
  path: /api/b
  policy: metered
  proxy: { service: backend, path: /b }
- id: own
  path: /api/own
  policy: metered
  rateLimit: { max: 4, window: 30s }
  proxy: { service: backend, path: /own }
`,
  })
  assertAllowed(t, await hit(app, '/api/a'), 2, 1, 60, 'a#1:')
  assertAllowed(t, await hit(app, '/api/a'), 2, 0, 60, 'a#2:')
  assertLimited(t, await hit(app, '/api/a'), 2, 60)
  // Route b has the same policy but its own counter, untouched by a's requests.
  assertAllowed(t, await hit(app, '/api/b'), 2, 1, 60, 'b#1:')
  assertAllowed(t, await hit(app, '/api/b'), 2, 0, 60, 'b#2:')
  assertLimited(t, await hit(app, '/api/b'), 2, 60)
  // The route's own limit replaces the policy's (max and window).
  for (const remaining of [3, 2, 1, 0]) assertAllowed(t, await hit(app, '/api/own'), 4, remaining, 30, `own remaining ${remaining}:`)
  assertLimited(t, await hit(app, '/api/own'), 4, 30)
  t.equal(up.hits(), 2 + 2 + 4)
})

t.test('key: user counts per JWT subject, whatever the client address', async t => {
  const up = await upstream(t, answerOk)
  const app = await gateway(t, {
    upstreamUrl: up.url,
    jwt: true,
    policies: '  user: { auth: jwt }\n',
    routes: `
- id: me
  path: /api/me
  policy: user
  rateLimit: { max: 2, window: 1m, key: user }
  proxy: { service: backend, path: /me }
`,
  })
  const alice = { authorization: `Bearer ${await sign({ sub: 'alice' })}` }
  const bob = { authorization: `Bearer ${await sign({ sub: 'bob' })}` }
  assertAllowed(t, await hit(app, '/api/me', { headers: alice, remoteAddress: '10.0.0.1' }), 2, 1, 60, 'alice#1:')
  // Same subject from another address: same counter.
  assertAllowed(t, await hit(app, '/api/me', { headers: alice, remoteAddress: '10.0.0.2' }), 2, 0, 60, 'alice#2:')
  assertLimited(t, await hit(app, '/api/me', { headers: alice, remoteAddress: '10.0.0.3' }), 2, 60)
  // Another subject from the address alice used first: a fresh counter.
  assertAllowed(t, await hit(app, '/api/me', { headers: bob, remoteAddress: '10.0.0.1' }), 2, 1, 60, 'bob#1:')
  assertAllowed(t, await hit(app, '/api/me', { headers: bob, remoteAddress: '10.0.0.1' }), 2, 0, 60, 'bob#2:')
  assertLimited(t, await hit(app, '/api/me', { headers: bob, remoteAddress: '10.0.0.1' }), 2, 60)
  t.equal(up.hits(), 4)
})

t.test('key: header:x-tenant counts per header value, whatever the client address', async t => {
  const up = await upstream(t, answerOk)
  const app = await gateway(t, {
    upstreamUrl: up.url,
    routes: `
- id: tenant
  path: /api/tenant
  policy: public
  rateLimit: { max: 2, window: 1m, key: "header:x-tenant" }
  proxy: { service: backend, path: /t }
`,
  })
  assertAllowed(t, await hit(app, '/api/tenant', { headers: { 'x-tenant': 'acme' }, remoteAddress: '10.0.0.1' }), 2, 1, 60, 'acme#1:')
  assertAllowed(t, await hit(app, '/api/tenant', { headers: { 'x-tenant': 'acme' }, remoteAddress: '10.0.0.2' }), 2, 0, 60, 'acme#2:')
  assertLimited(t, await hit(app, '/api/tenant', { headers: { 'x-tenant': 'acme' }, remoteAddress: '10.0.0.3' }), 2, 60)
  assertAllowed(t, await hit(app, '/api/tenant', { headers: { 'x-tenant': 'globex' }, remoteAddress: '10.0.0.1' }), 2, 1, 60, 'globex#1:')
  t.equal(up.hits(), 3)
})

t.test('key: ip (the default) counts per client address', async t => {
  const up = await upstream(t, answerOk)
  const app = await gateway(t, {
    upstreamUrl: up.url,
    routes: `
- id: by-ip
  path: /api/ip
  policy: public
  rateLimit: { max: 2, window: 1m, key: ip }
  proxy: { service: backend, path: /ip }
- id: default-key
  path: /api/default
  policy: public
  rateLimit: { max: 1, window: 1m }
  proxy: { service: backend, path: /d }
`,
  })
  // Different users (tenants) on one address share the address's counter.
  assertAllowed(t, await hit(app, '/api/ip', { remoteAddress: '10.0.0.1', headers: { 'x-tenant': 'a' } }), 2, 1, 60, '10.0.0.1#1:')
  assertAllowed(t, await hit(app, '/api/ip', { remoteAddress: '10.0.0.1', headers: { 'x-tenant': 'b' } }), 2, 0, 60, '10.0.0.1#2:')
  assertLimited(t, await hit(app, '/api/ip', { remoteAddress: '10.0.0.1' }), 2, 60)
  assertAllowed(t, await hit(app, '/api/ip', { remoteAddress: '10.0.0.2' }), 2, 1, 60, '10.0.0.2#1:')

  assertAllowed(t, await hit(app, '/api/default', { remoteAddress: '10.0.0.1' }), 1, 0, 60, 'default key 10.0.0.1:')
  assertLimited(t, await hit(app, '/api/default', { remoteAddress: '10.0.0.1' }), 1, 60)
  assertAllowed(t, await hit(app, '/api/default', { remoteAddress: '10.0.0.2' }), 1, 0, 60, 'default key 10.0.0.2:')
  t.equal(up.hits(), 3 + 2)
})

t.test('authentication runs before the rate limit: a 401 is not counted', async t => {
  const up = await upstream(t, answerOk)
  const app = await gateway(t, {
    upstreamUrl: up.url,
    jwt: true,
    policies: '  user: { auth: jwt }\n',
    routes: `
- id: me
  path: /api/me
  policy: user
  rateLimit: { max: 2, window: 1m }
  proxy: { service: backend, path: /me }
`,
  })
  const forged = createSigner({ key: 'another-secret-entirely-0123456789abcdef' })
  const refused = [
    {},
    { authorization: 'Bearer not-a-token' },
    { authorization: `Bearer ${await forged({ sub: 'mallory' })}` },
  ]
  for (const headers of [...refused, ...refused]) {
    const res = await hit(app, '/api/me', { headers })
    t.equal(res.statusCode, 401, 'unauthenticated')
    t.equal(res.json<{ code: string }>().code, 'UNAUTHENTICATED')
    t.equal(res.headers['ratelimit-remaining'], undefined, 'no limit headers on a 401: the limit did not run')
  }
  const valid = { authorization: `Bearer ${await sign({ sub: 'alice' })}` }
  assertAllowed(t, await hit(app, '/api/me', { headers: valid }), 2, 1, 60, 'first valid request has the full allowance:')
  t.equal(up.hits(), 1)
})

t.test('Redis: two gateway instances share one counter', async t => {
  const prefix = uniquePrefix()
  cleanRedisAfter(t, prefix)
  const up = await upstream(t, answerOk)
  const options: GatewayOptions = {
    upstreamUrl: up.url,
    redis: { url: REDIS_URL, keyPrefix: prefix },
    routes: `
- id: shared
  path: /api/shared
  policy: public
  rateLimit: { max: 4, window: 1m }
  proxy: { service: backend, path: /s }
`,
  }
  // No waiting for /readyz: a started instance counts in Redis from its first request.
  const a = await gateway(t, options)
  const b = await gateway(t, options)

  assertAllowed(t, await hit(a, '/api/shared'), 4, 3, 60, 'A#1:')
  assertAllowed(t, await hit(a, '/api/shared'), 4, 2, 60, 'A#2:')
  assertAllowed(t, await hit(b, '/api/shared'), 4, 1, 60, 'B#1 sees A\'s requests:')
  assertAllowed(t, await hit(b, '/api/shared'), 4, 0, 60, 'B#2:')
  assertLimited(t, await hit(a, '/api/shared'), 4, 60)
  assertLimited(t, await hit(b, '/api/shared'), 4, 60)
  t.equal(up.hits(), 4)

  const keys = await keysUnder(REDIS_URL, prefix)
  t.equal(keys.length, 1, `one counter under the prefix (${keys.join(', ')})`)
  t.match(keys[0], /^test-rl-.*:rl:shared:.*127\.0\.0\.1$/, 'the key names the prefix, the route id and the client')
  await withClient(REDIS_URL, async c => {
    t.equal(await c.get(keys[0]), '6', 'every request counted in Redis')
    const ttl = await c.pttl(keys[0])
    t.ok(ttl > 0 && ttl <= 60_000, 'the counter expires with the window')
  })
})

t.test('Redis down: requests are still served with local limits, /readyz says down, and Redis is used again when it returns', async t => {
  const server = new PrivateRedis(await closedPort())
  const killOnExit = (): void => { void server.kill() }
  process.once('exit', killOnExit)
  t.teardown(async () => { process.off('exit', killOnExit); await server.kill() })
  await server.start()

  const up = await upstream(t, answerOk)
  const prefix = uniquePrefix()
  const app = await gateway(t, {
    upstreamUrl: up.url,
    redis: { url: server.url, keyPrefix: prefix },
    routes: `
- id: fallback
  path: /api/fb
  policy: public
  rateLimit: { max: 3, window: 1m }
  proxy: { service: backend, path: /fb }
`,
  })
  const key = `${prefix}rl:fallback:ip:127.0.0.1`
  const counted = async (): Promise<string | null> => await withClient(server.url, async c => await c.get(key))

  assertAllowed(t, await hit(app, '/api/fb'), 3, 2, 60, 'with redis #1:')
  assertAllowed(t, await hit(app, '/api/fb'), 3, 1, 60, 'with redis #2:')
  t.equal(await counted(), '2', 'counted in Redis')
  t.equal(await readyRedis(app), 'up')

  await server.kill()
  // While Redis is gone nothing fails: each request is served or limited locally.
  const statuses: number[] = []
  for (let i = 0; i < 6; i++) {
    const res = await hit(app, '/api/fb')
    statuses.push(res.statusCode)
    if (res.statusCode === 429) assertLimited(t, res, 3, 60)
  }
  t.same(statuses.filter(s => s >= 500), [], 'never a 5xx while Redis is down')
  t.ok(statuses.every(s => s === 200 || s === 429), `only 200 or 429 (got ${statuses.join(',')})`)
  t.equal(statuses.filter(s => s === 200).length, 3, 'the local counter allows max requests')
  t.equal(statuses.at(-1), 429, 'the limit is still enforced locally')

  await eventually('readyz says redis down', async () => await readyRedis(app) === 'down')
  const ready = await app.inject({ url: '/readyz' })
  t.equal(ready.statusCode, 200, '/readyz stays 200 while degraded')
  t.match(ready.json(), { status: 'ready', redis: 'down' })

  await server.start()
  await eventually('readyz says redis up again', async () => await readyRedis(app) === 'up', 15_000)
  // The local counter is exhausted; a 200 with remaining max-1 can only come from the (new, empty) Redis.
  assertAllowed(t, await hit(app, '/api/fb'), 3, 2, 60, 'after recovery:')
  t.equal(await counted(), '1', 'counted in Redis again')
  t.equal(up.hits(), 2 + 3 + 1)
})

t.test('Redis unreachable at start: the gateway starts and serves with local limits, /readyz says down', async t => {
  const port = await closedPort()
  const up = await upstream(t, answerOk)
  const app = await gateway(t, {
    upstreamUrl: up.url,
    redis: { url: `redis://127.0.0.1:${port}`, keyPrefix: uniquePrefix() },
    routes: `
- id: nostart
  path: /api/ns
  policy: public
  rateLimit: { max: 2, window: 1m }
  proxy: { service: backend, path: /ns }
`,
  })
  assertAllowed(t, await hit(app, '/api/ns'), 2, 1, 60, '#1:')
  assertAllowed(t, await hit(app, '/api/ns'), 2, 0, 60, '#2:')
  assertLimited(t, await hit(app, '/api/ns'), 2, 60)
  const ready = await app.inject({ url: '/readyz' })
  t.equal(ready.statusCode, 200)
  t.match(ready.json(), { status: 'ready', redis: 'down' })
  t.equal(up.hits(), 2)
})

// Credentials in limit keys: a header used as the key is often an API key.

t.test('key: header:NAME names its Redis counter by a digest of the value, never the value; values still count apart', async t => {
  const up = await upstream(t, answerOk)
  const prefix = uniquePrefix()
  cleanRedisAfter(t, prefix)
  const app = await gateway(t, {
    upstreamUrl: up.url,
    redis: { url: REDIS_URL, keyPrefix: prefix },
    routes: `
- id: keyed
  path: /api/keyed
  policy: public
  rateLimit: { max: 2, window: 1m, key: "header:X-Api-Key" }
  proxy: { service: backend, path: /k }
`,
  })
  const secret = 'secret-value-123'
  const other = 'other-secret-456'
  // Longer than any remembered digest: hashed anew each time, to the same counter.
  const long = `long-${'L'.repeat(2000)}`
  const as = (value: string): Omit<InjectOptions, 'url'> => ({ headers: { 'x-api-key': value }, remoteAddress: '10.0.0.1' })
  assertAllowed(t, await hit(app, '/api/keyed', as(secret)), 2, 1, 60, 'secret#1:')
  assertAllowed(t, await hit(app, '/api/keyed', as(secret)), 2, 0, 60, 'secret#2:')
  assertLimited(t, await hit(app, '/api/keyed', as(secret)), 2, 60)
  assertAllowed(t, await hit(app, '/api/keyed', as(other)), 2, 1, 60, 'other#1:')
  assertAllowed(t, await hit(app, '/api/keyed', as(long)), 2, 1, 60, 'long#1:')
  assertAllowed(t, await hit(app, '/api/keyed', as(long)), 2, 0, 60, 'long#2:')
  t.equal(up.hits(), 5)

  const keys = await keysUnder(REDIS_URL, prefix)
  t.equal(keys.length, 3, 'one counter per distinct value')
  for (const key of keys) {
    t.match(key, new RegExp(`^${prefix}rl:keyed:h:[A-Za-z0-9_-]{22}$`), 'named by a 22-character digest')
    t.notOk(key.includes(secret) || key.includes(other) || key.includes('LLLL'), `${key} holds no header value`)
  }
})

t.test('the demo partners policy counts per API key name (key: user), and no key value is stored', async t => {
  const prefix = uniquePrefix()
  cleanRedisAfter(t, prefix)
  const { config } = loadConfig(join(ROOT, 'config/gateway.yaml'), { REDIS_URL })
  const lines: string[] = []
  const logger = pino({ level: 'trace' }, { write: (line: string) => { lines.push(line) } })
  const app = await buildGateway({ ...config, redis: { ...config.redis, keyPrefix: prefix } }, { logger })
  t.teardown(async () => { await app.close() })
  const demoKey = 'acme-demo-key-0123456789abcdef'

  // The demo services are not running: the route's answer is a gateway error, but the request was counted.
  const first = await hit(app, '/partner/products', { headers: { 'x-api-key': demoKey } })
  t.equal(first.headers['ratelimit-limit'], '600')
  t.equal(first.headers['ratelimit-remaining'], '599')
  const second = await hit(app, '/partner/products', { headers: { 'x-api-key': demoKey }, remoteAddress: '10.9.9.9' })
  t.equal(second.headers['ratelimit-remaining'], '598', 'the same partner from another address shares the counter')
  const wrong = await hit(app, '/partner/products', { headers: { 'x-api-key': 'not-a-key-0123456789' } })
  t.equal(wrong.statusCode, 401, 'an unknown key is refused before the limit')

  const keys = await keysUnder(REDIS_URL, prefix)
  t.same(keys.filter(k => k.includes(':rl:')), [`${prefix}rl:partner-products:u:partner-acme`], 'one counter, named by the partner')
  for (const key of keys) t.notOk(key.includes('acme-demo-key') || key.includes('not-a-key'), `${key} holds no key value`)
  t.ok(lines.length >= 3, 'the requests were logged')
  t.notOk(lines.some(l => l.includes('acme-demo-key') || l.includes('not-a-key')), 'no log line holds a key value')
})
