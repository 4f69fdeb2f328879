// The response cache through a real gateway to real upstreams (README
// "Response cache", "Request handling" step 7, the admin purge), with the
// in-memory store and with Redis: MISS/HIT/STALE/BYPASS and `age`, what is
// stored and what never is, per-user and vary keys, never a cached answer for
// a request that fails auth or the rate limit, one upstream call for
// concurrent misses, stale-while-revalidate, stale-if-error (upstream down,
// 5xx, breaker open), aggregates, tag invalidation on every instance, the
// admin purge, a Redis outage, and the `portico check` warning.
import t from 'tap'
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { buildFromFiles, writeConfigFiles } from '../helpers/gateway.js'
import { closedPort, upstream, type Upstream, type UpstreamHandler } from '../helpers/upstream.js'
import { expectProblem } from '../helpers/auth.js'
import { now, signHs } from '../helpers/jwt.js'
import { skipUnlessRedis, eventually, keysUnder, PrivateRedis, REDIS_URL, uniquePrefix, withClient } from '../helpers/redis.js'
import { buildAdminApp } from '../../src/admin/admin-app.js'
import { loadConfig } from '../../src/config/index.js'

await skipUnlessRedis(t)

type Test = Parameters<Parameters<typeof t.test>[0]>[0]
type StoreKind = 'memory' | 'redis'
const STORES: StoreKind[] = ['memory', 'redis']

const SECRET = 'cache-test-secret-0123456789abcdef'

function token (sub: string, roles: string[] = []): string {
  return signHs({ sub, roles, iat: now(), exp: now() + 600 }, SECRET)
}
const bearer = (sub: string, roles: string[] = []): Record<string, string> => ({ authorization: `Bearer ${token(sub, roles)}` })

// ---- upstreams ----------------------------------------------------------------

/** What the controlled upstream answers; a test changes it between requests. */
interface Control {
  up: Upstream
  status: number
  headers: Record<string, string>
  /** Part of every body, so a refreshed answer is told apart from a cached one. */
  version: string
  /** While set, answers wait for it (a latch the test opens). */
  gate?: Promise<void>
}

/** The body the controlled upstream sends: which call it was (n) and what it saw. */
interface Answer { v: string, n: number, method: string, url: string, sub: string | null, lang: string | null }

async function controlled (t: Test, init: Partial<Pick<Control, 'status' | 'headers' | 'version'>> = {}): Promise<Control> {
  let n = 0
  const c = { status: 200, headers: {}, version: 'v1', ...init } as Control
  c.up = await upstream(t, async (req, res) => {
    const answer: Answer = {
      v: '', n: ++n, method: req.method ?? '', url: req.url ?? '',
      sub: (req.headers['x-auth-sub'] as string | undefined) ?? null,
      lang: (req.headers['accept-language'] as string | undefined) ?? null,
    }
    if (c.gate !== undefined) await c.gate
    answer.v = c.version
    res.writeHead(c.status, { 'content-type': 'application/json', 'x-upstream': 'yes', ...c.headers })
    res.end(JSON.stringify(answer))
  })
  return c
}

function latch (): { wait: Promise<void>, open: () => void } {
  let open: () => void = () => {}
  const wait = new Promise<void>(resolve => { open = resolve })
  return { wait, open }
}

// ---- gateways -----------------------------------------------------------------

type Route = Record<string, unknown> & { id: string, path: string }

interface Setup {
  store: StoreKind
  /** A URL, or a full service block. */
  services: Record<string, string | Record<string, unknown>>
  routes: Route[]
  /** Redis URL and key prefix; default: REDIS_URL and a fresh prefix cleaned after the test. */
  redis?: { url: string, keyPrefix: string }
  /** cache.near; absent: the default (on). The near cache itself: test/cache/near-cache.test.ts. */
  near?: boolean
}

interface Gateway {
  app: FastifyInstance
  store: StoreKind
  /** The Redis key prefix (redis store only). */
  prefix: string
  redisUrl: string
}

function gatewayYaml (s: Setup, redis: { url: string, keyPrefix: string } | undefined): string {
  return JSON.stringify({
    ...(redis !== undefined ? { redis } : {}),
    // A generous budget: the 50 ms default can be missed on a loaded test machine, turning a HIT into a BYPASS.
    cache: { timeout: '2s', ...(s.near !== undefined ? { near: s.near } : {}) },
    auth: { jwt: { secret: SECRET, algorithms: ['HS256'] } },
    policies: { public: { auth: 'none' }, user: { auth: 'jwt' }, admin: { auth: 'jwt', roles: ['admin'] } },
    services: Object.fromEntries(Object.entries(s.services).map(([name, v]) => [name, typeof v === 'string' ? { urls: [v], timeout: '2s' } : v])),
    routes: s.routes.map(r => ({ method: 'GET', policy: 'public', ...r })),
  }, null, 2)
}

async function gateway (t: Test, s: Setup): Promise<Gateway> {
  const redis = s.store === 'redis' ? (s.redis ?? { url: REDIS_URL, keyPrefix: uniquePrefix(t, 'cache') }) : undefined
  const app = await buildFromFiles(t, { 'gateway.yaml': gatewayYaml(s, redis) })
  await app.ready()
  if (redis !== undefined) t.equal(await redisState(app), 'up', 'the gateway is connected to Redis')
  return { app, store: s.store, prefix: redis?.keyPrefix ?? '', redisUrl: redis?.url ?? '' }
}

async function redisState (app: FastifyInstance): Promise<string> {
  return (await app.inject({ url: '/readyz' })).json<{ redis: string }>().redis
}

/** The cache entry keys in Redis for this gateway (redis store). */
async function entryKeys (g: Gateway): Promise<string[]> {
  return await keysUnder(g.redisUrl, `${g.prefix}c:`)
}

async function get (g: Gateway, url: string, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return await g.app.inject({ method: 'GET', url, headers })
}

const answer = (res: LightMyRequestResponse): Answer => res.json<Answer>()

/** A 200 with the given x-cache state. */
function expectServed (t: Test, res: LightMyRequestResponse, state: string, label: string): void {
  t.equal(res.statusCode, 200, `${label}: 200`)
  t.equal(res.headers['x-cache'], state, `${label}: x-cache ${state}`)
}

/** Polls with GET until `until` holds; returns that response. Every response on the way must pass `along`. */
async function pollGet (t: Test, g: Gateway, url: string, what: string, until: (r: LightMyRequestResponse) => boolean, opts: { headers?: Record<string, string>, along?: (r: LightMyRequestResponse) => boolean, ms?: number, every?: number } = {}): Promise<LightMyRequestResponse> {
  let last: LightMyRequestResponse | undefined
  const unexpected: string[] = []
  await eventually(what, async () => {
    last = await get(g, url, opts.headers)
    if (until(last)) return true
    if (opts.along !== undefined && !opts.along(last)) unexpected.push(`${last.statusCode} ${String(last.headers['x-cache'])}`)
    return false
  }, opts.ms ?? 5000, opts.every ?? 20)
  t.same(unexpected, [], `nothing unexpected while waiting for: ${what}`)
  return last as LightMyRequestResponse
}

const proxied = (id: string, path: string, upstreamPath: string, extra: Record<string, unknown> = {}): Route =>
  ({ id, path, proxy: { service: 'backend', path: upstreamPath }, ...extra })

/** A users service: GET answers the user with a call counter; a write answers the status asked for in x-want-status. */
function usersService (): UpstreamHandler {
  let n = 0
  return (req, res) => {
    const status = req.method === 'GET' ? 200 : Number(req.headers['x-want-status'] ?? 200)
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ n: ++n, method: req.method, url: req.url }))
  }
}

const USER_ROUTES: Route[] = [
  proxied('read-user', '/api/users/:id', '/users/{params.id}', { cache: { ttl: '1m', tags: ['user:{params.id}'] } }),
  proxied('write-user', '/api/users/:id', '/users/{params.id}', { method: ['POST', 'PUT'], invalidates: ['user:{params.id}'] }),
]

async function write (g: Gateway, url: string, status: number): Promise<LightMyRequestResponse> {
  return await g.app.inject({ method: 'POST', url, payload: '{"name":"x"}', headers: { 'content-type': 'application/json', 'x-want-status': String(status) } })
}

async function tagMembers (g: Gateway, tag: string): Promise<string[]> {
  return await withClient(g.redisUrl, async r => await r.smembers(`${g.prefix}t:${tag}`))
}

// ---- the cases, for each store -------------------------------------------------

for (const store of STORES) {
  t.test(`${store}: a GET is a MISS, then a HIT with the same status, body and headers; the upstream is called once`, async t => {
    const c = await controlled(t, { headers: { etag: '"e1"' } })
    const g = await gateway(t, { store, services: { backend: c.up.url }, routes: [proxied('items', '/api/items/:id', '/items/{params.id}', { cache: { ttl: '1m' } })] })

    const miss = await get(g, '/api/items/1')
    expectServed(t, miss, 'MISS', 'first')
    t.equal(miss.headers.age, '0', 'a MISS is age 0')
    t.match(answer(miss), { v: 'v1', n: 1, url: '/items/1' })

    const hit = await get(g, '/api/items/1')
    expectServed(t, hit, 'HIT', 'second')
    t.equal(hit.body, miss.body, 'the same body')
    t.equal(hit.headers['content-type'], miss.headers['content-type'], 'the same content-type')
    t.equal(hit.headers.etag, '"e1"', 'upstream headers kept')
    t.equal(hit.headers['x-upstream'], 'yes')
    t.match(hit.headers.age, /^\d+$/, 'age in whole seconds')
    t.ok(hit.headers['x-request-id'] !== miss.headers['x-request-id'], 'the request id is this request\'s, not the stored one')
    t.equal(c.up.hits(), 1, 'the upstream was called once')

    // The key: reordered query parameters are the same entry; another path is another.
    expectServed(t, await get(g, '/api/items/1?a=1&b=2'), 'MISS', 'with a query')
    const reordered = await get(g, '/api/items/1?b=2&a=1')
    expectServed(t, reordered, 'HIT', 'query reordered')
    t.equal(answer(reordered).url, '/items/1?a=1&b=2')
    expectServed(t, await get(g, '/api/items/2'), 'MISS', 'another path')
    t.equal(c.up.hits(), 3)

    if (store === 'redis') {
      const keys = await entryKeys(g)
      t.equal(keys.length, 3, 'three entries in Redis')
      await withClient(g.redisUrl, async r => {
        for (const k of keys) {
          const ttl = await r.pttl(k)
          t.ok(ttl > 0 && ttl <= 60_000, `${k} expires with the ttl (pttl ${ttl})`)
        }
      })
    }

    // `age` counts the seconds since the answer was stored.
    const older = await pollGet(t, g, '/api/items/1', 'age reaches 1', r => r.headers['x-cache'] === 'HIT' && Number(r.headers.age) >= 1, {
      along: r => r.headers['x-cache'] === 'HIT' && r.body === miss.body,
    })
    t.equal(older.body, miss.body)
    t.equal(c.up.hits(), 3, 'still served from the cache')
  })

  t.test(`${store}: HEAD and POST are never answered from the cache and do not fill it`, async t => {
    const c = await controlled(t)
    const g = await gateway(t, { store, services: { backend: c.up.url }, routes: [proxied('items', '/api/items', '/items', { method: ['GET', 'POST'], cache: { ttl: '1m' } })] })

    const head = await g.app.inject({ method: 'HEAD', url: '/api/items' })
    t.equal(head.statusCode, 200)
    t.not(head.headers['x-cache'], 'HIT')
    t.equal(c.up.seen[0]?.method, 'HEAD', 'forwarded as HEAD')
    expectServed(t, await get(g, '/api/items'), 'MISS', 'GET after a HEAD: the HEAD stored nothing')
    const hit = await get(g, '/api/items')
    expectServed(t, hit, 'HIT', 'GET again')

    const head2 = await g.app.inject({ method: 'HEAD', url: '/api/items' })
    t.equal(head2.statusCode, 200)
    t.not(head2.headers['x-cache'], 'HIT', 'HEAD with an entry present still goes upstream')
    t.equal(c.up.hits(), 3)

    const post = await g.app.inject({ method: 'POST', url: '/api/items', payload: 'new', headers: { 'content-type': 'text/plain' } })
    t.equal(post.statusCode, 200)
    t.not(post.headers['x-cache'], 'HIT')
    t.match(answer(post), { method: 'POST', n: 4 }, 'the POST got the upstream\'s own answer')
    t.equal(c.up.seen[3]?.body.toString(), 'new', 'the POST body reached the upstream')

    const after = await get(g, '/api/items')
    expectServed(t, after, 'HIT', 'GET after the POST')
    t.equal(after.body, hit.body, 'the POST answer was not stored')
    t.equal(c.up.hits(), 4)
  })

  t.test(`${store}: only 200s are stored`, async t => {
    const c = await controlled(t, { status: 404 })
    const g = await gateway(t, { store, services: { backend: c.up.url }, routes: [proxied('items', '/api/items', '/items', { cache: { ttl: '1m' } })] })

    for (const status of [404, 404, 500, 201, 201]) {
      c.status = status
      const res = await get(g, '/api/items')
      t.equal(res.statusCode, status, `the upstream's ${status} is passed on`)
      t.not(res.headers['x-cache'], 'HIT', `a ${status} is not served from the cache`)
    }
    t.equal(c.up.hits(), 5, 'every non-200 was fetched again')
    if (store === 'redis') t.same(await entryKeys(g), [], 'nothing stored in Redis')

    c.status = 200
    expectServed(t, await get(g, '/api/items'), 'MISS', '200')
    expectServed(t, await get(g, '/api/items'), 'HIT', '200 again')
    t.equal(c.up.hits(), 6)
  })

  t.test(`${store}: no-store and set-cookie are never stored; private is stored per user only`, async t => {
    const headersFor: Record<string, Record<string, string>> = {
      '/nostore': { 'cache-control': 'no-store' },
      '/private': { 'cache-control': 'private, max-age=600' },
      '/cookie': { 'set-cookie': 'sid=abc123; HttpOnly' },
    }
    let n = 0
    const up = await upstream(t, (req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', ...headersFor[req.url ?? ''] })
      res.end(JSON.stringify({ n: ++n, sub: req.headers['x-auth-sub'] ?? null }))
    })
    const g = await gateway(t, {
      store,
      services: { backend: up.url },
      routes: [
        proxied('nostore', '/api/nostore', '/nostore', { cache: { ttl: '1m' } }),
        proxied('private-public', '/api/private-public', '/private', { cache: { ttl: '1m', scope: 'public' } }),
        proxied('private-user', '/api/private-user', '/private', { policy: 'user', cache: { ttl: '1m', scope: 'user' } }),
        proxied('cookie', '/api/cookie', '/cookie', { cache: { ttl: '1m' } }),
      ],
    })
    const calls = (path: string): number => up.seen.filter(s => s.url === path).length

    for (const i of [1, 2]) expectServed(t, await get(g, '/api/nostore'), 'MISS', `no-store #${i}`)
    t.equal(calls('/nostore'), 2, 'no-store: fetched every time')

    for (const i of [1, 2]) expectServed(t, await get(g, '/api/private-public'), 'MISS', `private, scope public #${i}`)
    t.equal(calls('/private'), 2, 'private with scope public: fetched every time')

    for (const i of [1, 2]) {
      const res = await get(g, '/api/cookie')
      expectServed(t, res, 'MISS', `set-cookie #${i}`)
      t.equal(res.headers['set-cookie'], 'sid=abc123; HttpOnly', 'the cookie reaches its client')
    }
    t.equal(calls('/cookie'), 2, 'set-cookie: fetched every time')
    if (store === 'redis') t.same(await entryKeys(g), [], 'none of them in Redis')

    const alice = bearer('alice')
    const first = await get(g, '/api/private-user', alice)
    expectServed(t, first, 'MISS', 'private, scope user')
    const second = await get(g, '/api/private-user', alice)
    expectServed(t, second, 'HIT', 'private, scope user, again')
    t.equal(second.body, first.body)
    t.equal(calls('/private'), 3, 'private with scope user: stored')
  })

  t.test(`${store}: an upstream max-age shorter than the ttl is respected`, async t => {
    const c = await controlled(t, { headers: { 'cache-control': 'public, max-age=1' } })
    const g = await gateway(t, { store, services: { backend: c.up.url }, routes: [proxied('items', '/api/items', '/items', { cache: { ttl: '1m' } })] })
    const miss = await get(g, '/api/items')
    expectServed(t, miss, 'MISS', 'first')
    expectServed(t, await get(g, '/api/items'), 'HIT', 'second')
    const again = await pollGet(t, g, '/api/items', 'the entry expires after max-age', r => r.headers['x-cache'] === 'MISS', {
      along: r => r.statusCode === 200 && r.headers['x-cache'] === 'HIT' && r.body === miss.body,
      every: 50,
    })
    expectServed(t, again, 'MISS', 'after max-age')
    t.equal(answer(again).n, 2, 'fetched again')
    t.equal(c.up.hits(), 2)
  })

  t.test(`${store}: scope user keeps one entry per subject`, async t => {
    const c = await controlled(t)
    const g = await gateway(t, { store, services: { backend: c.up.url }, routes: [proxied('me', '/api/me', '/me', { policy: 'user', cache: { ttl: '1m' } })] })
    const alice1 = await get(g, '/api/me', bearer('alice'))
    expectServed(t, alice1, 'MISS', 'alice')
    t.equal(answer(alice1).sub, 'alice')
    const bob1 = await get(g, '/api/me', bearer('bob'))
    expectServed(t, bob1, 'MISS', 'bob: not alice\'s entry')
    t.equal(answer(bob1).sub, 'bob')
    const alice2 = await get(g, '/api/me', bearer('alice'))
    expectServed(t, alice2, 'HIT', 'alice again')
    t.equal(alice2.body, alice1.body, 'alice gets her own answer')
    const bob2 = await get(g, '/api/me', bearer('bob'))
    expectServed(t, bob2, 'HIT', 'bob again')
    t.equal(bob2.body, bob1.body, 'bob gets his own answer')
    t.equal(c.up.hits(), 2)
    if (store === 'redis') t.equal((await entryKeys(g)).length, 2, 'two entries in Redis')
  })

  t.test(`${store}: a vary header's value separates entries`, async t => {
    const c = await controlled(t)
    const g = await gateway(t, { store, services: { backend: c.up.url }, routes: [proxied('items', '/api/items', '/items', { cache: { ttl: '1m', vary: ['Accept-Language'] } })] })
    const en = await get(g, '/api/items', { 'accept-language': 'en' })
    expectServed(t, en, 'MISS', 'en')
    const de = await get(g, '/api/items', { 'accept-language': 'de' })
    expectServed(t, de, 'MISS', 'de')
    t.equal(answer(de).lang, 'de')
    const en2 = await get(g, '/api/items', { 'accept-language': 'en' })
    expectServed(t, en2, 'HIT', 'en again')
    t.equal(answer(en2).lang, 'en')
    const de2 = await get(g, '/api/items', { 'accept-language': 'de' })
    expectServed(t, de2, 'HIT', 'de again')
    t.equal(answer(de2).lang, 'de')
    expectServed(t, await get(g, '/api/items'), 'MISS', 'without the header')
    t.equal(c.up.hits(), 3)
  })

  t.test(`${store}: a request that fails authentication, authorization or the rate limit is never answered from the cache`, async t => {
    const c = await controlled(t)
    const g = await gateway(t, {
      store,
      services: { backend: c.up.url },
      routes: [
        // scope public: the entry does not depend on who asks, so only the pipeline stands between it and anyone.
        proxied('secure', '/api/secure', '/secure', { policy: 'admin', cache: { ttl: '1m', scope: 'public' } }),
        proxied('limited', '/api/limited', '/limited', { rateLimit: { max: 2, window: '1m' }, cache: { ttl: '1m' } }),
      ],
    })
    const admin = bearer('root', ['admin'])
    const miss = await get(g, '/api/secure', admin)
    expectServed(t, miss, 'MISS', 'admin')
    expectServed(t, await get(g, '/api/secure', admin), 'HIT', 'admin again: the entry exists')

    const cases: Array<[string, Record<string, string>, number, string]> = [
      ['no token', {}, 401, 'UNAUTHENTICATED'],
      ['a bad token', { authorization: 'Bearer not.a.token' }, 401, 'UNAUTHENTICATED'],
      ['a token signed with another secret', { authorization: `Bearer ${signHs({ sub: 'mallory', roles: ['admin'], exp: now() + 600 }, 'another-secret-0123456789abcdef0123')}` }, 401, 'UNAUTHENTICATED'],
      ['an expired token', { authorization: `Bearer ${signHs({ sub: 'root', roles: ['admin'], exp: now() - 3600 }, SECRET)}` }, 401, 'UNAUTHENTICATED'],
      ['a token without the role', bearer('eve'), 403, 'FORBIDDEN'],
    ]
    for (const [label, headers, status, code] of cases) {
      const res = await get(g, '/api/secure', headers)
      expectProblem(t, res, status, code, label)
      t.equal(res.headers['x-cache'], undefined, `${label}: no x-cache`)
      t.not(res.body, miss.body, `${label}: not the cached body`)
    }
    t.equal(c.up.seen.filter(s => s.url === '/secure').length, 1)

    expectServed(t, await get(g, '/api/limited'), 'MISS', 'limited #1')
    expectServed(t, await get(g, '/api/limited'), 'HIT', 'limited #2')
    for (const i of [3, 4]) {
      const res = await get(g, '/api/limited')
      expectProblem(t, res, 429, 'RATE_LIMITED', `limited #${i}`)
      t.equal(res.headers['x-cache'], undefined, `limited #${i}: no x-cache`)
    }
    t.equal(c.up.seen.filter(s => s.url === '/limited').length, 1)
  })

  t.test(`${store}: concurrent misses for one key make one upstream call`, async t => {
    const c = await controlled(t)
    const gate = latch()
    c.gate = gate.wait
    const g = await gateway(t, { store, services: { backend: c.up.url }, routes: [proxied('slow', '/api/slow', '/slow', { cache: { ttl: '1m' } })] })

    const pending = Array.from({ length: 50 }, async () => await get(g, '/api/slow'))
    await eventually('the first request reaches the upstream', async () => c.up.hits() >= 1)
    await eventually('the other 49 wait on the call in flight', async () => g.app.cacheLayer.coalesced.waiting === 49)
    gate.open()
    const all = await Promise.all(pending)
    t.equal(c.up.hits(), 1, 'one upstream call for fifty requests')
    for (const [i, res] of all.entries()) {
      t.equal(res.statusCode, 200, `#${i}: 200`)
      t.equal(res.body, all[0].body, `#${i}: the same body`)
      t.equal(res.headers['content-type'], 'application/json', `#${i}: the upstream's content-type`)
      t.not(res.headers['x-cache'], 'HIT', `#${i}: not a HIT`)
    }
    const after = await get(g, '/api/slow')
    expectServed(t, after, 'HIT', 'afterwards')
    t.equal(after.body, all[0].body)
    t.equal(c.up.hits(), 1)
  })

  t.test(`${store}: concurrent misses of different users are not merged`, async t => {
    const c = await controlled(t)
    const gate = latch()
    c.gate = gate.wait
    const g = await gateway(t, { store, services: { backend: c.up.url }, routes: [proxied('me', '/api/me', '/me', { policy: 'user', cache: { ttl: '1m' } })] })
    const subs = ['alice', 'bob', 'alice', 'bob', 'alice', 'bob']
    const pending = subs.map(async sub => await get(g, '/api/me', bearer(sub)))
    await eventually('both users reach the upstream', async () => c.up.hits() >= 2)
    await eventually('the other four wait on their user\'s call', async () => g.app.cacheLayer.coalesced.waiting === 4)
    gate.open()
    const all = await Promise.all(pending)
    t.equal(c.up.hits(), 2, 'one call per user')
    for (const [i, res] of all.entries()) {
      t.equal(res.statusCode, 200)
      t.equal(answer(res).sub, subs[i], `#${i} got ${subs[i]}'s answer`)
    }
  })

  t.test(`${store}: an answer meant for one client (set-cookie, private, no-store) is not handed to concurrent requests`, async t => {
    const headersFor: Record<string, Record<string, string>> = {
      '/cookie': { 'set-cookie': 'sid=SESSION; HttpOnly' },
      '/private': { 'cache-control': 'private' },
      '/nostore': { 'cache-control': 'no-store' },
    }
    const gate = latch()
    let n = 0
    const up = await upstream(t, async (req, res) => {
      const mine = ++n
      await gate.wait
      const headers: Record<string, string> = { 'content-type': 'application/json', ...headersFor[req.url ?? ''] }
      if (headers['set-cookie'] !== undefined) headers['set-cookie'] = headers['set-cookie'].replace('SESSION', `s${mine}`)
      res.writeHead(200, headers)
      res.end(JSON.stringify({ n: mine, cookie: req.headers.cookie ?? null }))
    })
    const g = await gateway(t, {
      store,
      services: { backend: up.url },
      routes: ['cookie', 'private', 'nostore'].map(p => proxied(p, `/api/${p}`, `/${p}`, { cache: { ttl: '1m', scope: 'public' } })),
    })
    const clients = ['c=1', 'c=2', 'c=3']
    const pending = ['cookie', 'private', 'nostore'].flatMap(p => clients.map(async cookie => ({ p, cookie, res: await get(g, `/api/${p}`, { cookie }) })))
    await eventually('each route reaches the upstream', async () => up.hits() >= 3)
    // Two clients per route join its call; the answer then turns out not to be theirs to share.
    await eventually('six requests wait on a call in flight', async () => g.app.cacheLayer.coalesced.waiting === 6)
    gate.open()
    const all = await Promise.all(pending)
    for (const { p, cookie, res } of all) {
      t.equal(res.statusCode, 200, `${p} ${cookie}: 200`)
      t.equal(res.json<{ cookie: string }>().cookie, cookie, `${p} ${cookie}: the answer to this client's own request`)
    }
    const sids = all.filter(a => a.p === 'cookie').map(a => String(a.res.headers['set-cookie']))
    t.equal(new Set(sids).size, 3, `three clients, three sessions (got ${sids.join(' | ')})`)
    t.equal(up.hits(), 9, 'each client\'s request was made')
  })

  t.test(`${store}: an answer that varies on a request header outside the key is neither stored nor shared; with the route's vary it is stored per value`, async t => {
    const up = await upstream(t, async (req, res) => {
      const gzip = String(req.headers['accept-encoding'] ?? '').includes('gzip')
      const body = Buffer.from(JSON.stringify({ url: req.url, gzip }))
      res.writeHead(200, { 'content-type': 'application/json', vary: 'Accept-Encoding', ...(gzip ? { 'content-encoding': 'gzip' } : {}) })
      res.end(gzip ? gzipSync(body) : body)
    })
    const g = await gateway(t, {
      store,
      services: { backend: up.url },
      routes: [
        proxied('plain', '/api/plain', '/plain', { cache: { ttl: '1m' } }),
        proxied('varied', '/api/varied', '/varied', { cache: { ttl: '1m', vary: ['Accept-Encoding'] } }),
      ],
    })
    const decoded = (res: LightMyRequestResponse): { gzip: boolean } =>
      JSON.parse((res.headers['content-encoding'] === 'gzip' ? gunzipSync(res.rawPayload) : res.rawPayload).toString('utf8')) as { gzip: boolean }

    const zipped = await get(g, '/api/plain', { 'accept-encoding': 'gzip' })
    t.equal(zipped.headers['content-encoding'], 'gzip')
    const plain = await get(g, '/api/plain')
    expectServed(t, plain, 'MISS', 'a client that takes no gzip')
    t.equal(plain.headers['content-encoding'], undefined, 'is not sent the gzip variant')
    t.same(decoded(plain), { url: '/plain', gzip: false })
    t.equal(up.hits(), 2)

    expectServed(t, await get(g, '/api/varied', { 'accept-encoding': 'gzip' }), 'MISS', 'varied, gzip')
    expectServed(t, await get(g, '/api/varied'), 'MISS', 'varied, identity')
    const zippedHit = await get(g, '/api/varied', { 'accept-encoding': 'gzip' })
    expectServed(t, zippedHit, 'HIT', 'varied, gzip again')
    t.equal(zippedHit.headers['content-encoding'], 'gzip')
    t.same(decoded(zippedHit), { url: '/varied', gzip: true })
    const plainHit = await get(g, '/api/varied')
    expectServed(t, plainHit, 'HIT', 'varied, identity again')
    t.equal(plainHit.headers['content-encoding'], undefined)
    t.same(decoded(plainHit), { url: '/varied', gzip: false })
    t.equal(up.hits(), 4)
  })

  t.test(`${store}: staleWhileRevalidate serves the old copy at once and refreshes it in the background`, async t => {
    const c = await controlled(t)
    const g = await gateway(t, { store, services: { backend: c.up.url }, routes: [proxied('swr', '/api/swr', '/swr', { cache: { ttl: '200ms', staleWhileRevalidate: '1m' } })] })
    const miss = await get(g, '/api/swr')
    expectServed(t, miss, 'MISS', 'first')
    t.equal(answer(miss).v, 'v1')

    // The refresh will hang until the latch opens: a STALE answer meanwhile proves nobody waits for it.
    c.version = 'v2'
    const gate = latch()
    c.gate = gate.wait
    const stale = await pollGet(t, g, '/api/swr', 'the entry goes stale', r => r.headers['x-cache'] !== 'HIT', {
      along: r => r.statusCode === 200 && r.body === miss.body,
    })
    expectServed(t, stale, 'STALE', 'after the ttl')
    t.equal(stale.body, miss.body, 'the old body')
    await eventually('the background refresh reaches the upstream', async () => c.up.hits() === 2)

    const during = await get(g, '/api/swr')
    expectServed(t, during, 'STALE', 'while the refresh is running')
    t.equal(during.body, miss.body)
    // The refresh in flight holds the key, so a STALE answer meanwhile starts no call of its
    // own (nor joins that one); the count after the refresh landed, below, confirms it.
    t.equal(g.app.cacheLayer.coalesced.waiting, 0, 'no request waits on the refresh')

    gate.open()
    const fresh = await pollGet(t, g, '/api/swr', 'the refreshed copy is served', r => r.headers['x-cache'] === 'HIT', {
      along: r => r.statusCode === 200 && r.headers['x-cache'] === 'STALE' && r.body === miss.body,
    })
    t.equal(answer(fresh).v, 'v2', 'the new body')
    t.equal(answer(fresh).n, 2)
    t.equal(c.up.hits(), 2, 'the refresh was the only other call')
  })

  t.test(`${store}: staleIfError serves the old copy while the upstream is down, and the error after the window`, async t => {
    const c = await controlled(t)
    const g = await gateway(t, {
      store,
      // The breaker stays closed here (its own case is below): the failure seen is the connection's.
      services: { backend: { urls: [c.up.url], timeout: '2s', breaker: { volumeThreshold: 1000 } } },
      routes: [proxied('sie', '/api/sie', '/sie', { cache: { ttl: '200ms', staleIfError: '1500ms' } })],
    })
    const miss = await get(g, '/api/sie')
    expectServed(t, miss, 'MISS', 'first')
    await c.up.close()

    const stale = await pollGet(t, g, '/api/sie', 'the entry goes stale', r => r.headers['x-cache'] !== 'HIT', {
      along: r => r.statusCode === 200 && r.body === miss.body,
    })
    expectServed(t, stale, 'STALE', 'upstream down')
    t.equal(stale.body, miss.body, 'the old body')
    t.equal(stale.headers['content-type'], 'application/json')

    const failed = await pollGet(t, g, '/api/sie', 'the staleIfError window ends', r => r.statusCode !== 200, {
      along: r => r.headers['x-cache'] === 'STALE' && r.body === miss.body,
      every: 50,
    })
    expectProblem(t, failed, 502, 'UPSTREAM_ERROR', 'after the window')
  })

  t.test(`${store}: staleIfError serves the old copy for an upstream 5xx, and the 5xx after the window`, async t => {
    const c = await controlled(t)
    const g = await gateway(t, {
      store,
      services: { backend: { urls: [c.up.url], timeout: '2s', breaker: { volumeThreshold: 1000 } } },
      routes: [proxied('sie', '/api/sie', '/sie', { cache: { ttl: '200ms', staleIfError: '1500ms' } })],
    })
    const miss = await get(g, '/api/sie')
    expectServed(t, miss, 'MISS', 'first')
    c.status = 500
    c.version = 'broken'
    const stale = await pollGet(t, g, '/api/sie', 'the entry goes stale', r => r.headers['x-cache'] !== 'HIT', {
      along: r => r.statusCode === 200 && r.body === miss.body,
    })
    expectServed(t, stale, 'STALE', 'upstream 500')
    t.equal(stale.body, miss.body, 'the old body')
    t.ok(c.up.hits() >= 2, 'the upstream was asked')

    const failed = await pollGet(t, g, '/api/sie', 'the staleIfError window ends', r => r.statusCode !== 200, {
      along: r => r.headers['x-cache'] === 'STALE' && r.body === miss.body,
      every: 50,
    })
    t.equal(failed.statusCode, 500, 'the upstream\'s 500')
    t.equal(answer(failed).v, 'broken', 'with the upstream\'s body')
    t.not(failed.headers['x-cache'], 'STALE')
  })

  t.test(`${store}: staleIfError serves the old copy while the service's breaker is open`, async t => {
    const c = await controlled(t)
    const g = await gateway(t, {
      store,
      services: { backend: { urls: [c.up.url], timeout: '2s', breaker: { volumeThreshold: 2, errorThresholdPercentage: 50, resetTimeout: '1m' } } },
      routes: [
        proxied('cached', '/api/cached', '/cached', { cache: { ttl: '200ms', staleIfError: '1m' } }),
        proxied('raw', '/api/raw', '/raw'),
      ],
    })
    const miss = await get(g, '/api/cached')
    expectServed(t, miss, 'MISS', 'first')

    c.status = 500
    let open: LightMyRequestResponse | undefined
    for (let i = 0; i < 10 && open === undefined; i++) {
      const res = await get(g, '/api/raw')
      if (res.statusCode === 503) open = res
    }
    t.ok(open !== undefined, 'the breaker opened')
    if (open !== undefined) expectProblem(t, open, 503, 'CIRCUIT_OPEN', 'raw route')
    const calls = c.up.hits()

    const stale = await pollGet(t, g, '/api/cached', 'the entry goes stale', r => r.headers['x-cache'] !== 'HIT', {
      along: r => r.statusCode === 200 && r.body === miss.body,
    })
    expectServed(t, stale, 'STALE', 'breaker open')
    t.equal(stale.body, miss.body, 'the old body')
    t.equal(c.up.hits(), calls, 'the open breaker kept the call from the upstream')
  })

  t.test(`${store}: an aggregate is cached when complete, never when degraded`, async t => {
    const profile = await controlled(t, { version: 'profile' })
    const recs = await controlled(t, { version: 'recs', status: 500 })
    const g = await gateway(t, {
      store,
      services: { profile: profile.up.url, recs: recs.up.url },
      routes: [{
        id: 'dash',
        path: '/api/dash',
        aggregate: { profile: { service: 'profile', path: '/p' }, recs: { service: 'recs', path: '/r', optional: true, fallback: [] } },
        cache: { ttl: '1m' },
      }],
    })
    for (const i of [1, 2]) {
      const res = await get(g, '/api/dash')
      t.equal(res.statusCode, 200, `degraded #${i}: 200`)
      t.equal(res.headers['x-gateway-degraded'], 'recs', `degraded #${i}: says so`)
      t.not(res.headers['x-cache'], 'HIT', `degraded #${i}: not from the cache`)
      t.same(res.json<{ recs: unknown }>().recs, [], `degraded #${i}: the fallback`)
    }
    t.equal(profile.up.hits(), 2, 'the degraded answer was not stored: both calls made again')
    t.equal(recs.up.hits(), 2)
    if (store === 'redis') t.same(await entryKeys(g), [], 'nothing in Redis')

    recs.status = 200
    const complete = await get(g, '/api/dash')
    expectServed(t, complete, 'MISS', 'complete')
    t.equal(complete.headers['x-gateway-degraded'], undefined)
    t.match(complete.json(), { profile: { v: 'profile' }, recs: { v: 'recs' } })
    const hit = await get(g, '/api/dash')
    expectServed(t, hit, 'HIT', 'complete again')
    t.equal(hit.body, complete.body)
    t.equal(hit.headers['x-gateway-degraded'], undefined)
    t.equal(profile.up.hits(), 3)
    t.equal(recs.up.hits(), 3)
  })

  t.test(`${store}: a 2xx write purges the tagged entries; a 4xx or 5xx write does not`, async t => {
    const up = await upstream(t, usersService())
    const g = await gateway(t, { store, services: { backend: up.url }, routes: USER_ROUTES })
    const one = await get(g, '/api/users/1')
    expectServed(t, one, 'MISS', 'user 1')
    const two = await get(g, '/api/users/2')
    expectServed(t, two, 'MISS', 'user 2')
    expectServed(t, await get(g, '/api/users/1'), 'HIT', 'user 1 again')
    if (store === 'redis') {
      const members = await tagMembers(g, 'user:1')
      t.equal(members.length, 1, 'the tag set names one entry')
      t.ok((await entryKeys(g)).includes(members[0]), 'an entry key that exists')
    }

    for (const status of [400, 404, 422, 500]) {
      const res = await write(g, '/api/users/1', status)
      t.equal(res.statusCode, status, `the write's ${status} is passed on`)
      const after = await get(g, '/api/users/1')
      expectServed(t, after, 'HIT', `after a ${status} write`)
      t.equal(after.body, one.body, `after a ${status} write: the same entry`)
    }

    t.equal((await write(g, '/api/users/1', 200)).statusCode, 200)
    if (store === 'redis') {
      t.same(await tagMembers(g, 'user:1'), [], 'the tag set is gone from Redis')
      t.equal((await entryKeys(g)).length, 1, 'only user 2\'s entry is left in Redis')
    }
    const fresh = await get(g, '/api/users/1')
    expectServed(t, fresh, 'MISS', 'after a 200 write')
    t.not(fresh.body, one.body)
    expectServed(t, await get(g, '/api/users/2'), 'HIT', 'another user\'s entry stays')

    t.equal((await write(g, '/api/users/2', 204)).statusCode, 204)
    expectServed(t, await get(g, '/api/users/2'), 'MISS', 'after a 204 write')
  })

  t.test(`${store}: the admin purge removes entries by tag or all of them; a bad body is a 400`, async t => {
    const up = await upstream(t, usersService())
    const g = await gateway(t, { store, services: { backend: up.url }, routes: USER_ROUTES })
    const admin = await buildAdminApp(g.app)
    t.teardown(async () => { await admin.close() })
    const purge = async (payload: unknown): Promise<LightMyRequestResponse> =>
      await admin.inject({ method: 'POST', url: '/admin/cache/purge', ...(typeof payload === 'string' ? { payload, headers: { 'content-type': 'application/json' } } : { payload: payload as Record<string, unknown> }) })

    for (const id of [1, 2, 3]) expectServed(t, await get(g, `/api/users/${id}`), 'MISS', `user ${id}`)
    for (const id of [1, 2, 3]) expectServed(t, await get(g, `/api/users/${id}`), 'HIT', `user ${id} again`)

    const byTag = await purge({ tags: ['user:1'] })
    t.equal(byTag.statusCode, 200)
    t.same(byTag.json(), { purged: 1 })
    expectServed(t, await get(g, '/api/users/1'), 'MISS', 'user 1 after its purge')
    expectServed(t, await get(g, '/api/users/2'), 'HIT', 'user 2 untouched')

    const two = await purge({ tags: ['user:2', 'user:3', 'user:404'] })
    t.same(two.json(), { purged: 2 })
    expectServed(t, await get(g, '/api/users/2'), 'MISS', 'user 2 after its purge')
    expectServed(t, await get(g, '/api/users/3'), 'MISS', 'user 3 after its purge')

    const bad: unknown[] = [{}, { tags: [] }, { tags: [''] }, { all: false }, { all: 'yes' }, { tags: ['user:1'], all: true }, '{"tags": [', '[]', 'null']
    for (const payload of bad) {
      const res = await purge(payload)
      t.equal(res.statusCode, 400, `400 for ${JSON.stringify(payload)}`)
      t.match(res.headers['content-type'], /^application\/problem\+json/)
    }
    for (const id of [1, 2, 3]) expectServed(t, await get(g, `/api/users/${id}`), 'HIT', `user ${id}: a bad purge purged nothing`)

    const all = await purge({ all: true })
    t.equal(all.statusCode, 200)
    t.same(all.json(), { purged: 3 })
    if (store === 'redis') t.same(await keysUnder(g.redisUrl, g.prefix).then(keys => keys.filter(k => !k.startsWith(`${g.prefix}rl:`))), [], 'no cache keys left in Redis')
    for (const id of [1, 2, 3]) expectServed(t, await get(g, `/api/users/${id}`), 'MISS', `user ${id} after purging all`)
  })
}

t.test('a read that started before a write does not store its pre-write answer after the write\'s purge', async t => {
  let version = 'before'
  const gate = latch()
  const up = await upstream(t, async (req, res) => {
    if (req.method !== 'GET') { version = 'after'; res.writeHead(200).end('{}'); return }
    const seen = version // the read model answers with what it had when asked
    await gate.wait
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ version: seen }))
  })
  const g = await gateway(t, { store: 'memory', services: { backend: up.url }, routes: USER_ROUTES })
  const slowRead = get(g, '/api/users/1')
  await eventually('the read reaches the upstream', async () => up.hits() === 1)
  t.equal((await write(g, '/api/users/1', 200)).statusCode, 200, 'the write succeeds while the read is in flight')
  gate.open()
  t.same((await slowRead).json(), { version: 'before' })
  const next = await get(g, '/api/users/1')
  t.not(next.headers['x-cache'], 'HIT', 'the next read is not the pre-write answer from the cache')
  t.same(next.json(), { version: 'after' })
})

t.test('the admin purge refuses a body of the wrong type or with unknown fields instead of guessing', async t => {
  const up = await upstream(t, usersService())
  const g = await gateway(t, { store: 'memory', services: { backend: up.url }, routes: USER_ROUTES })
  const admin = await buildAdminApp(g.app)
  t.teardown(async () => { await admin.close() })
  expectServed(t, await get(g, '/api/users/1'), 'MISS', 'user 1')
  for (const payload of [{ tags: 'user:1' }, { tags: [1] }, { tags: ['user:1'], extra: 1 }, { tags: ['user:1'], al: true }]) {
    const res = await admin.inject({ method: 'POST', url: '/admin/cache/purge', payload })
    t.equal(res.statusCode, 400, `400 for ${JSON.stringify(payload)}`)
  }
  expectServed(t, await get(g, '/api/users/1'), 'HIT', 'nothing was purged')
})

// ---- invalidation across instances, Redis outage (Redis only) -----------------

// With the near cache on (the default) another instance learns of a write
// asynchronously, from Redis's invalidation message: that case is in
// test/cache/near-cache.test.ts. Without it, read-after-write is strict.
t.test('redis, near cache off: two instances share entries, and one instance\'s write invalidates the other\'s cached read at once', async t => {
  const up = await upstream(t, usersService())
  const shared = { url: REDIS_URL, keyPrefix: uniquePrefix(t, 'cache') }
  const a = await gateway(t, { store: 'redis', redis: shared, near: false, services: { backend: up.url }, routes: USER_ROUTES })
  const b = await gateway(t, { store: 'redis', redis: shared, near: false, services: { backend: up.url }, routes: USER_ROUTES })

  const read = await get(a, '/api/users/7')
  expectServed(t, read, 'MISS', 'A reads')
  expectServed(t, await get(a, '/api/users/7'), 'HIT', 'A reads again')
  const fromB = await get(b, '/api/users/7')
  expectServed(t, fromB, 'HIT', 'B reads A\'s entry')
  t.equal(fromB.body, read.body)
  t.equal(up.hits(), 1)

  t.equal((await write(b, '/api/users/7', 422)).statusCode, 422)
  expectServed(t, await get(a, '/api/users/7'), 'HIT', 'A after B\'s failed write')

  t.equal((await write(b, '/api/users/7', 200)).statusCode, 200)
  const fresh = await get(a, '/api/users/7')
  expectServed(t, fresh, 'MISS', 'A after B\'s write: the read model is asked again')
  t.not(fresh.body, read.body)
  const fromB2 = await get(b, '/api/users/7')
  expectServed(t, fromB2, 'HIT', 'B reads the new entry')
  t.equal(fromB2.body, fresh.body)
})

// Near cache off: the first request after the kill must find Redis gone. With
// it on, an entry held in memory is still served until the gateway has seen
// its connections close (app.inject answers a memory HIT without yielding to
// the event loop): that case, and the near cache's own outage behaviour, are in
// test/cache/near-cache.test.ts.
t.test('redis, near cache off: while Redis is down requests are served (BYPASS) and /readyz stays 200; caching resumes when it returns', async t => {
  const server = await PrivateRedis.started(t, await closedPort())
  const c = await controlled(t)
  const g = await gateway(t, {
    store: 'redis',
    near: false,
    redis: { url: server.url, keyPrefix: 'test-cache-outage:' },
    services: { backend: c.up.url },
    routes: [proxied('items', '/api/items', '/items', { cache: { ttl: '1m' } })],
  })
  expectServed(t, await get(g, '/api/items'), 'MISS', 'with Redis')
  expectServed(t, await get(g, '/api/items'), 'HIT', 'with Redis, again')
  t.equal(c.up.hits(), 1)

  await server.kill()
  for (const i of [1, 2, 3]) {
    const res = await get(g, '/api/items')
    expectServed(t, res, 'BYPASS', `Redis down #${i}`)
    t.equal(answer(res).n, 1 + i, `Redis down #${i}: from the upstream`)
  }
  await eventually('/readyz says redis down', async () => await redisState(g.app) === 'down')
  const ready = await g.app.inject({ url: '/readyz' })
  t.equal(ready.statusCode, 200, '/readyz stays 200')
  t.match(ready.json(), { status: 'ready', redis: 'down' })

  await server.start()
  const resumed = await pollGet(t, g, '/api/items', 'caching resumes', r => r.headers['x-cache'] === 'MISS', {
    along: r => r.statusCode === 200 && r.headers['x-cache'] === 'BYPASS',
    ms: 15_000,
    every: 100,
  })
  expectServed(t, resumed, 'MISS', 'Redis back')
  const hit = await get(g, '/api/items')
  expectServed(t, hit, 'HIT', 'Redis back, again')
  t.equal(hit.body, resumed.body)
  t.equal((await entryKeys(g)).length, 1, 'the entry is in the restarted Redis')
})

// ---- configuration ----------------------------------------------------------

t.test('portico check: a public cache on a route whose policy forwards authorization is a warning, not an error', async t => {
  const config = (scope: string, forward: boolean): string => JSON.stringify({
    auth: { jwt: { secret: SECRET, algorithms: ['HS256'] } },
    policies: { passthru: { auth: 'jwt', forwardAuthorization: forward } },
    services: { backend: { urls: ['http://127.0.0.1:1'] } },
    routes: [{ id: 'r', path: '/r', policy: 'passthru', cache: { ttl: '1m', scope }, proxy: { service: 'backend' } }],
  }, null, 2)
  const load = (scope: string, forward: boolean): ReturnType<typeof loadConfig> =>
    loadConfig(join(writeConfigFiles({ 'gateway.yaml': config(scope, forward) }), 'gateway.yaml'), {})

  const { config: loaded, warnings } = load('public', true)
  t.equal(loaded.routes.length, 1, 'the config loads')
  const warning = warnings.find(w => w.path === 'routes[0].cache.scope')
  t.ok(warning !== undefined, `a warning on routes[0].cache.scope (got ${JSON.stringify(warnings)})`)
  t.equal(warning?.warning, true, 'flagged as a warning')
  t.match(warning?.message, /authorization/i, 'it says why')
  t.ok(warning !== undefined && warning.line > 1, 'with a line number')

  t.same(load('user', true).warnings.filter(w => w.path.startsWith('routes[0].cache')), [], 'no warning for scope user')
  t.same(load('public', false).warnings.filter(w => w.path.startsWith('routes[0].cache')), [], 'no warning without forwardAuthorization')
})
