// CORS at the gateway (src/pipeline/cors.ts), from the outside: preflights
// answered by the gateway (before authentication and the rate limit, never
// reaching an upstream) only for a route at the path that takes the method;
// the policy's headers on every answer — cache HITs and every kind of error —
// and never an upstream's own; hostile origins; per-route false and
// replacement; and the cache never handing one origin's headers to another.
import t from 'tap'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import type { OutgoingHttpHeaders } from 'node:http'
import type { Test } from '../helpers/cli.js'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { buildFromFiles } from '../helpers/gateway.js'
import { upstream, closedPort, type Upstream } from '../helpers/upstream.js'
import { expectProblem } from '../helpers/auth.js'
import { listen, rawRequest } from '../helpers/http.js'
import { now, signHs } from '../helpers/jwt.js'
import { waitFor } from '../helpers/wait.js'
import { routePipeline } from '../../src/gateway/pipeline.js'

const SECRET = 'cors-test-secret-0123456789abcdefgh'
const APP = 'https://app.example.com'
const token = (roles: string[] = []): string => `Bearer ${signHs({ sub: 'alice', roles, exp: now() + 600 }, SECRET)}`

/** An upstream that answers JSON and, like a service doing its own CORS, sends its own access-control-* headers. */
function corsyUpstream (req: IncomingMessage, res: ServerResponse): void {
  if (req.url?.startsWith('/hang') === true) return // never answers: the service timeout fires
  res.writeHead(200, {
    'content-type': 'application/json',
    'access-control-allow-origin': '*',
    'access-control-allow-credentials': 'true',
    'access-control-expose-headers': 'x-secret',
    // (A vary beyond the route's cache.vary would keep the answer out of the cache.)
    ...(req.url?.includes('vary') === true ? { vary: 'accept-encoding' } : {}),
  })
  res.end(JSON.stringify({ url: req.url, method: req.method }))
}

function gatewayYaml (url: string, dead: string): string {
  return `auth:
  jwt: { secret: "${SECRET}", algorithms: [HS256] }
services:
  backend: { urls: ["${url}"], timeout: 300ms }
  dead: { urls: ["${dead}"], timeout: 300ms, breaker: { volumeThreshold: 2, errorThresholdPercentage: 10, resetTimeout: 1m } }
policies:
  public: { auth: none }
  user: { auth: jwt }
  admin: { auth: jwt, roles: [admin] }
cors:
  origins: ["${APP}", "https://*.example.com", "http://localhost:5173"]
  headers: [authorization, content-type]
  exposeHeaders: [x-request-id, x-cache, ratelimit-remaining]
  credentials: true
  maxAge: 10m
routes:
  - { id: items, method: GET, path: /api/items/:id, policy: public, cache: { ttl: 1m }, proxy: { service: backend } }
  - { id: item-write, method: [PUT, DELETE], path: /api/items/:id, policy: user, rateLimit: { max: 2, window: 1m, key: ip }, proxy: { service: backend } }
  - id: things
    method: POST
    path: /api/things
    policy: public
    schema: { body: { type: object, required: [qty], properties: { qty: { type: integer } } } }
    proxy: { service: backend }
  - { id: limited, method: GET, path: /api/limited, policy: public, rateLimit: { max: 1, window: 1m, key: ip }, proxy: { service: backend } }
  - { id: admin, method: GET, path: /api/admin, policy: admin, proxy: { service: backend } }
  - { id: broken, method: GET, path: /api/broken, policy: public, proxy: { service: dead } }
  - { id: hang, method: GET, path: /hang, policy: public, proxy: { service: backend } }
  - { id: private, method: GET, path: /api/private, policy: public, cors: false, proxy: { service: backend } }
  - id: partner
    method: [GET, POST]
    path: /api/partner
    policy: public
    cors: { origins: ["https://partner.test"], exposeHeaders: [x-partner] }
    proxy: { service: backend }
  - { id: opts, method: OPTIONS, path: /api/opts, policy: public, proxy: { service: backend } }
  - { id: files, method: GET, path: "/api/files/*", policy: user, proxy: { service: backend } }
`
}

async function setup (t: Test): Promise<{ up: Upstream, app: FastifyInstance }> {
  const up = await upstream(t, corsyUpstream)
  const dead = `http://127.0.0.1:${await closedPort()}`
  const app = await buildFromFiles(t, { 'gateway.yaml': gatewayYaml(up.url, dead) })
  return { up, app }
}

const preflight = (url: string, method: string, origin: string | undefined = APP, extra: Record<string, string> = {}): InjectOptions => ({
  method: 'OPTIONS',
  url,
  headers: { ...(origin !== undefined ? { origin } : {}), 'access-control-request-method': method, ...extra },
})

function accessControl (res: LightMyRequestResponse): Record<string, unknown> {
  return Object.fromEntries(Object.entries(res.headers).filter(([k]) => k.startsWith('access-control-')))
}

function varyOf (res: LightMyRequestResponse): string[] {
  return String(res.headers.vary ?? '').split(',').map(s => s.trim().toLowerCase()).filter(s => s !== '')
}

t.test('a preflight for a method the route takes: 204 from the gateway, no token, no upstream, no rate-limit count', async t => {
  const { up, app } = await setup(t)
  const res = await app.inject(preflight('/api/items/7', 'PUT', APP, { 'access-control-request-headers': 'authorization, content-type' }))
  t.equal(res.statusCode, 204)
  t.same(accessControl(res), {
    'access-control-allow-origin': APP,
    'access-control-allow-methods': 'PUT',
    'access-control-allow-headers': 'authorization, content-type',
    'access-control-allow-credentials': 'true',
    'access-control-max-age': '600',
  })
  t.same(varyOf(res), ['origin', 'access-control-request-method'])
  t.equal(res.body, '', 'no body')
  t.type(res.headers['x-request-id'], 'string', 'the request id is there as on every answer')
  t.equal(res.headers['ratelimit-remaining'], undefined, 'no rate-limit stage ran')
  for (let i = 0; i < 5; i++) t.equal((await app.inject(preflight('/api/items/7', 'DELETE'))).statusCode, 204)
  t.equal(up.hits(), 0, 'no preflight reached the upstream')
  // The limit (2 per minute) is untouched by six preflights.
  const put = await app.inject({ method: 'PUT', url: '/api/items/7', headers: { origin: APP, authorization: token() } })
  t.equal(put.statusCode, 200)
  t.equal(put.headers['ratelimit-remaining'], '1', 'the first real PUT uses the first count')
  t.equal(up.hits(), 1)
})

t.test('a preflight the gateway says no to: 204 and no access-control-* headers', async t => {
  const { up, app } = await setup(t)
  const cases: Array<[string, InjectOptions]> = [
    ['a method no route at the path takes', preflight('/api/items/7', 'PATCH')],
    ['POST where only GET/PUT/DELETE are', preflight('/api/items/7', 'POST')],
    ['a path no route has', preflight('/nowhere', 'GET')],
    ['an origin not in the list', preflight('/api/items/7', 'PUT', 'https://evil.test')],
    ['a route with cors: false', preflight('/api/private', 'GET')],
    ['a route whose own block does not list the origin', preflight('/api/partner', 'GET')],
    ['a lower-case method token (methods are case-sensitive)', preflight('/api/items/7', 'put')],
    ['two requested methods', preflight('/api/items/7', 'PUT, DELETE')],
  ]
  for (const [label, req] of cases) {
    const res = await app.inject(req)
    t.equal(res.statusCode, 204, `${label}: 204`)
    t.same(accessControl(res), {}, `${label}: no access-control-* headers`)
    t.ok(varyOf(res).includes('origin'), `${label}: vary: origin`)
  }
  t.equal(up.hits(), 0)
})

t.test('a preflight asking for a header not in `headers` gets the configured list only: the browser then refuses', async t => {
  const { app } = await setup(t)
  const res = await app.inject(preflight('/api/items/7', 'PUT', APP, { 'access-control-request-headers': 'authorization, x-evil' }))
  t.equal(res.statusCode, 204)
  t.equal(res.headers['access-control-allow-headers'], 'authorization, content-type', 'x-evil is not allowed')
  const partner = await app.inject(preflight('/api/partner', 'POST', 'https://partner.test', { 'access-control-request-headers': 'content-type' }))
  t.equal(partner.headers['access-control-allow-origin'], 'https://partner.test')
  t.equal(partner.headers['access-control-allow-headers'], undefined, 'the route\'s block lists no headers; nothing inherited from the gateway\'s')
  t.equal(partner.headers['access-control-allow-credentials'], undefined, 'nor credentials')
  t.equal(partner.headers['access-control-max-age'], undefined, 'nor maxAge')
})

t.test('preflight paths are matched like routes: params, the /* prefix root, a trailing-slash variant, normalised //', async t => {
  const { up, app } = await setup(t)
  for (const url of ['/api/files/a/b.txt', '/api/files', '/api/limited/', '//api//items//7?x=1']) {
    const method = url.includes('items') ? 'PUT' : 'GET'
    const res = await app.inject(preflight(url, method))
    t.equal(res.headers['access-control-allow-origin'], APP, `${url}: allowed`)
  }
  t.equal(up.hits(), 0)
})

t.test('an OPTIONS that is not a preflight is an ordinary request', async t => {
  const { up, app } = await setup(t)
  expectProblem(t, await app.inject({ method: 'OPTIONS', url: '/api/items/7', headers: { origin: APP } }), 404, 'ROUTE_NOT_FOUND', 'no access-control-request-method: routed, no OPTIONS route there')
  expectProblem(t, await app.inject({ method: 'OPTIONS', url: '/api/items/7', headers: { 'access-control-request-method': 'PUT' } }), 404, 'ROUTE_NOT_FOUND', 'no origin: not a preflight')
  const routed = await app.inject({ method: 'OPTIONS', url: '/api/opts', headers: { origin: APP } })
  t.equal(routed.statusCode, 200, 'an OPTIONS route gets its OPTIONS')
  t.equal(up.hits(), 1, 'proxied to the upstream')
  t.equal(routed.headers['access-control-allow-origin'], APP, 'with the gateway\'s CORS headers')
  const pre = await app.inject(preflight('/api/opts', 'OPTIONS'))
  t.equal(pre.statusCode, 204, 'a real preflight to that route is still the gateway\'s to answer')
  t.equal(up.hits(), 1)
})

t.test('actual answers from an allowed origin carry the policy, errors and cache HITs included', async t => {
  const { app } = await setup(t)
  const expectCors = (res: LightMyRequestResponse, label: string, origin = APP): void => {
    t.equal(res.headers['access-control-allow-origin'], origin, `${label}: allow-origin is the origin`)
    t.equal(res.headers['access-control-allow-credentials'], 'true', `${label}: credentials`)
    t.equal(res.headers['access-control-expose-headers'], 'x-request-id, x-cache, ratelimit-remaining', `${label}: expose-headers`)
    t.ok(varyOf(res).includes('origin'), `${label}: vary: origin`)
    t.equal(res.headers['access-control-allow-methods'], undefined, `${label}: no preflight headers`)
  }
  const o = { origin: APP }
  const miss = await app.inject({ url: '/api/items/1', headers: o })
  t.equal(miss.statusCode, 200)
  t.equal(miss.headers['x-cache'], 'MISS')
  expectCors(miss, '200 MISS')
  const varied = await app.inject({ url: '/api/partner?vary=1', headers: { origin: 'https://partner.test' } })
  t.same(varyOf(varied), ['accept-encoding', 'origin'], 'the upstream\'s vary is kept, origin added')
  const hit = await app.inject({ url: '/api/items/1', headers: o })
  t.equal(hit.headers['x-cache'], 'HIT')
  expectCors(hit, '200 HIT')
  const head = await app.inject({ method: 'HEAD', url: '/api/items/1', headers: o })
  expectCors(head, 'HEAD')

  const unauth = await app.inject({ method: 'PUT', url: '/api/items/1', headers: o })
  expectProblem(t, unauth, 401, 'UNAUTHENTICATED')
  expectCors(unauth, '401')
  const forbidden = await app.inject({ url: '/api/admin', headers: { ...o, authorization: token() } })
  expectProblem(t, forbidden, 403, 'FORBIDDEN')
  expectCors(forbidden, '403')
  const notFound = await app.inject({ url: '/nowhere', headers: o })
  expectProblem(t, notFound, 404, 'ROUTE_NOT_FOUND')
  expectCors(notFound, '404 (the gateway-wide policy)')
  const invalid = await app.inject({ method: 'POST', url: '/api/things', headers: { ...o, 'content-type': 'application/json' }, payload: '{"qty":"x"}' })
  expectProblem(t, invalid, 400, 'VALIDATION_FAILED')
  expectCors(invalid, '400 validation')
  const unsupported = await app.inject({ method: 'POST', url: '/api/things', headers: { ...o, 'content-type': 'text/plain' }, payload: 'x' })
  expectProblem(t, unsupported, 415, 'UNSUPPORTED_MEDIA_TYPE')
  expectCors(unsupported, '415')
  t.equal((await app.inject({ url: '/api/limited', headers: o })).statusCode, 200)
  const limited = await app.inject({ url: '/api/limited', headers: o })
  expectProblem(t, limited, 429, 'RATE_LIMITED')
  expectCors(limited, '429')
  t.type(limited.headers['retry-after'], 'string')
  const bad = await app.inject({ url: '/api/broken', headers: o })
  expectProblem(t, bad, 502, 'UPSTREAM_ERROR')
  expectCors(bad, '502')
  await waitFor(async () => (await app.inject({ url: '/api/broken' })).statusCode === 503, { message: 'the dead service\'s breaker opens' })
  const open = await app.inject({ url: '/api/broken', headers: o })
  expectProblem(t, open, 503, 'CIRCUIT_OPEN')
  expectCors(open, '503')
  const timeout = await app.inject({ url: '/hang', headers: o })
  expectProblem(t, timeout, 504, 'UPSTREAM_TIMEOUT')
  expectCors(timeout, '504')
  const badPath = await app.inject({ url: '/api/items/a%2Fb', headers: o })
  expectProblem(t, badPath, 400, 'BAD_REQUEST')
  expectCors(badPath, '400 refused path')
  const port = await listen(app)
  const tooLarge = await rawRequest(port, { method: 'POST', path: '/api/things', headers: { origin: APP, 'content-type': 'application/json' }, body: Buffer.alloc(2 * 1024 * 1024, 32) })
  t.equal(tooLarge.status, 413)
  t.equal(tooLarge.headers['access-control-allow-origin'], APP, '413: allow-origin')
  const sub = await app.inject({ url: '/api/items/1', headers: { origin: 'https://a.b.example.com' } })
  expectCors(sub, 'a subdomain at depth 2', 'https://a.b.example.com')
})

t.test('a disallowed origin, or none: no access-control-* headers, and never the upstream\'s', async t => {
  const { app } = await setup(t)
  for (const headers of [{ origin: 'https://evil.test' }, {}]) {
    for (const url of ['/api/items/2', '/api/items/2', '/nowhere', '/api/limited']) {
      const res = await app.inject({ url, headers })
      t.same(accessControl(res), {}, `${JSON.stringify(headers)} ${url} (${res.statusCode}): none`)
      t.ok(varyOf(res).includes('origin'), `${url}: vary: origin (a shared cache must not serve it to an allowed origin)`)
    }
  }
})

t.test('the upstream\'s own access-control-* never pass: replaced on allowed origins, removed on cors: false', async t => {
  const { up, app } = await setup(t)
  const res = await app.inject({ url: '/api/items/3', headers: { origin: APP } })
  t.equal(res.headers['access-control-allow-origin'], APP, 'not the upstream\'s "*"')
  t.equal(res.headers['access-control-expose-headers'], 'x-request-id, x-cache, ratelimit-remaining', 'not the upstream\'s x-secret')
  const off = await app.inject({ url: '/api/private', headers: { origin: APP } })
  t.equal(off.statusCode, 200)
  t.equal(up.hits(), 2)
  t.same(accessControl(off), {}, 'cors: false: none at all, the upstream\'s removed too')
  t.notOk(varyOf(off).includes('origin'))
})

t.test('a route\'s own block replaces the gateway\'s', async t => {
  const { app } = await setup(t)
  const partner = await app.inject({ url: '/api/partner', headers: { origin: 'https://partner.test' } })
  t.same(accessControl(partner), { 'access-control-allow-origin': 'https://partner.test', 'access-control-expose-headers': 'x-partner' })
  const gatewayOrigin = await app.inject({ url: '/api/partner', headers: { origin: APP } })
  t.same(accessControl(gatewayOrigin), {}, 'the gateway\'s origins do not apply there')
})

t.test('hostile origins', async t => {
  const { app } = await setup(t)
  const allowed = async (origin: string): Promise<unknown> => (await app.inject({ url: '/api/items/4', headers: { origin } })).headers['access-control-allow-origin']
  const refused = [
    'null',
    'https://example.com',
    'https://example.com.evil.com',
    'https://evilexample.com',
    'https://app.example.com.',
    'https://app.example.com:8443',
    'http://app.example.com',
    'https://app.example.com/',
    'https://.example.com',
    'https://a..example.com',
    'https://evil.com/.example.com',
    'https://evil.com?.example.com',
    'https://user@app.example.com',
    'https://x.example.com:443',
    'http://localhost:5174',
    'http://localhost',
    `https://${'a'.repeat(600)}.example.com`,
    'https://app.example.com\t',
    '',
  ]
  for (const origin of refused) t.equal(await allowed(origin), undefined, `${JSON.stringify(origin.slice(0, 60))}: refused`)
  t.equal(await allowed('HTTPS://APP.EXAMPLE.COM'), APP, 'upper case: the same origin (scheme and host are case-insensitive), answered in canonical form')
  t.equal(await allowed('https://Deep.Sub.Example.Com'), 'https://deep.sub.example.com')
  t.equal(await allowed(`https://${'a'.repeat(60)}.example.com`), `https://${'a'.repeat(60)}.example.com`, 'a long but real origin')
  t.equal(await allowed('http://localhost:5173'), 'http://localhost:5173')

  // Two Origin headers on the wire (inject cannot send them): Node joins them, and the joined value matches nothing.
  const port = await listen(app)
  const raw = await rawRequest(port, { path: '/api/items/4', headers: { origin: [APP, 'https://evil.test'] } as unknown as OutgoingHttpHeaders })
  t.equal(raw.status, 200)
  t.equal(raw.headers['access-control-allow-origin'], undefined, 'two Origin headers: refused')
  const rawPre = await rawRequest(port, { method: 'OPTIONS', path: '/api/items/4', headers: { origin: [APP, APP], 'access-control-request-method': 'PUT' } as unknown as OutgoingHttpHeaders })
  t.equal(rawPre.status, 204)
  t.equal(rawPre.headers['access-control-allow-origin'], undefined, 'two Origin headers on a preflight: refused')
  const twoMethods = await rawRequest(port, { method: 'OPTIONS', path: '/api/items/4', headers: { origin: APP, 'access-control-request-method': ['PUT', 'DELETE'] } as unknown as OutgoingHttpHeaders })
  t.equal(twoMethods.headers['access-control-allow-origin'], undefined, 'two request-method headers: refused')
})

t.test('the cache never hands one origin\'s CORS headers to another', async t => {
  const { up, app } = await setup(t)
  const a = await app.inject({ url: '/api/items/9', headers: { origin: 'https://a.example.com' } })
  t.equal(a.headers['x-cache'], 'MISS')
  t.equal(a.headers['access-control-allow-origin'], 'https://a.example.com')
  const b = await app.inject({ url: '/api/items/9', headers: { origin: 'https://b.example.com' } })
  t.equal(b.headers['x-cache'], 'HIT')
  t.equal(b.headers['access-control-allow-origin'], 'https://b.example.com', 'the HIT carries the asking origin')
  const evil = await app.inject({ url: '/api/items/9', headers: { origin: 'https://evil.test' } })
  t.equal(evil.headers['x-cache'], 'HIT')
  t.same(accessControl(evil), {}, 'a disallowed origin gets none from the same entry (not even the upstream\'s stored "*")')
  const none = await app.inject({ url: '/api/items/9' })
  t.same(accessControl(none), {})
  t.equal(up.hits(), 1, 'one upstream call for all four')
})

t.test('no cors block anywhere: no hooks, upstream headers unchanged, OPTIONS routed as before', async t => {
  const up = await upstream(t, corsyUpstream)
  const app = await buildFromFiles(t, {
    'gateway.yaml': `services:
  backend: { urls: ["${up.url}"] }
policies:
  public: { auth: none }
routes:
  - { id: items, path: /items, policy: public, proxy: { service: backend } }
`,
  })
  const res = await app.inject({ url: '/items?vary', headers: { origin: APP } })
  t.equal(res.headers['access-control-allow-origin'], '*', 'the upstream\'s own CORS passes, as in Part 1')
  t.same(varyOf(res), ['accept-encoding'])
  expectProblem(t, await app.inject(preflight('/items', 'GET')), 404, 'ROUTE_NOT_FOUND', 'a preflight is an ordinary OPTIONS')
})

t.test('"*" without credentials: allow-origin "*" for every origin, no vary needed', async t => {
  const up = await upstream(t, corsyUpstream)
  const app = await buildFromFiles(t, {
    'gateway.yaml': `services:
  backend: { urls: ["${up.url}"] }
policies:
  public: { auth: none }
cors: { origins: ["*"], exposeHeaders: [x-request-id] }
routes:
  - { id: items, path: /items, policy: public, proxy: { service: backend } }
`,
  })
  const res = await app.inject({ url: '/items?vary', headers: { origin: 'https://anyone.test' } })
  t.same(accessControl(res), { 'access-control-allow-origin': 'https://anyone.test', 'access-control-expose-headers': 'x-request-id' }, 'the origin by name, not the upstream\'s credentials')
  t.same(varyOf(res), ['accept-encoding', 'origin'])
  const pre = await app.inject(preflight('/items', 'GET', 'null'))
  t.equal(pre.headers['access-control-allow-origin'], 'null', '"*" means any, the null origin too')
  const two = await app.inject({ url: '/items', headers: { origin: 'https://a.test, https://b.test' } })
  t.equal(two.headers['access-control-allow-origin'], undefined, 'two origins joined are none')
  t.equal(pre.headers['access-control-allow-credentials'], undefined)
})

t.test('only routes have CORS: a route\'s own block works without a gateway-wide one; 404s get none', async t => {
  const up = await upstream(t, corsyUpstream)
  const app = await buildFromFiles(t, {
    'gateway.yaml': `services:
  backend: { urls: ["${up.url}"] }
policies:
  public: { auth: none }
routes:
  - { id: items, path: /items, policy: public, cors: { origins: ["${APP}"] }, proxy: { service: backend } }
  - { id: plain, path: /plain, policy: public, proxy: { service: backend } }
`,
  })
  t.equal((await app.inject(preflight('/items', 'GET'))).headers['access-control-allow-origin'], APP)
  const plain = await app.inject(preflight('/plain', 'GET'))
  t.equal(plain.statusCode, 204, 'once CORS is configured anywhere, every preflight is the gateway\'s')
  t.same(accessControl(plain), {})
  t.same(accessControl(await app.inject({ url: '/nowhere', headers: { origin: APP } })), {})
  t.equal((await app.inject({ url: '/plain', headers: { origin: APP } })).headers['access-control-allow-origin'], '*', 'a route without any policy passes its upstream\'s headers')
  t.equal(up.hits(), 1)
})

t.test('a headers plugin cannot set access-control-* past the policy', async t => {
  const up = await upstream(t, corsyUpstream)
  const app = await buildFromFiles(t, {
    'gateway.yaml': `services:
  backend: { urls: ["${up.url}"] }
policies:
  public: { auth: none }
cors: { origins: ["${APP}"] }
routes:
  - id: items
    path: /items
    policy: public
    plugins:
      headers: { response: { set: { access-control-allow-origin: "*", access-control-allow-headers: "*", x-kept: "yes" } } }
    proxy: { service: backend }
`,
  })
  const evil = await app.inject({ url: '/items', headers: { origin: 'https://evil.test' } })
  t.equal(evil.headers['x-kept'], 'yes', 'the plugin ran')
  t.same(accessControl(evil), {}, 'its access-control-* headers were removed')
  const ok = await app.inject({ url: '/items', headers: { origin: APP } })
  t.same(accessControl(ok), { 'access-control-allow-origin': APP })
})

t.test('the CORS stage is the last response hook of a route with a policy, and absent from one without', async t => {
  const { app } = await setup(t)
  const plan = (id: string) => app.routePlans.find(p => p.id === id)!
  t.same(routePipeline(app, plan('items')).onSend.map(h => h.name), ['corsHeaders'])
  t.same(routePipeline(app, plan('private')).onSend.map(h => h.name), ['corsHeaders'], 'cors: false still removes upstream headers')
  t.equal(plan('items').cors, plan('things').cors, 'the gateway block is compiled once and shared')
  t.not(plan('partner').cors, plan('items').cors)
  const bare = await buildFromFiles(t, { 'gateway.yaml': `services:
  backend: { urls: ["http://127.0.0.1:1"] }
policies:
  public: { auth: none }
routes:
  - { id: items, path: /items, policy: public, proxy: { service: backend } }
` })
  t.same(routePipeline(bare, bare.routePlans[0]!).onSend, [], 'no cors anywhere: no stage')
})
