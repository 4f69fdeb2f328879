// The near cache (src/cache/near-store.ts, src/cache/invalidations.ts)
// through real gateways, real upstreams and a real Redis: once Redis tracks
// the cache keys for an instance, a HIT is answered from memory (no GET
// reaches Redis, even while Redis is paused), and `cache.near: false` turns
// that off; any change to an entry in Redis — another instance's write, the
// admin purge, a client's SET/DEL/PEXPIRE/FLUSHALL — evicts it from every
// instance's memory; while the invalidation feed is lost (its connections
// killed, no room for them to come back, Redis down) or refused (no CLIENT
// TRACKING allowed) reads go to Redis, and the near cache comes back with the
// feed; an entry held in memory expires with its ttl.
//
// Which connections belong to which gateway is seen in CLIENT LIST: each
// gateway's Redis URL carries a connectionName (an ioredis URL option), which
// its tracking connections inherit. Command counts (INFO commandstats) are
// only read on a private redis-server, where every command is ours.
import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { Redis } from 'ioredis'
import { buildFromFiles } from '../helpers/gateway.js'
import { closedPort, upstream, type Upstream, type UpstreamHandler } from '../helpers/upstream.js'
import { skipUnlessRedis, eventually, keysUnder, PrivateRedis, REDIS_URL, uniquePrefix, withClient } from '../helpers/redis.js'
import { buildAdminApp } from '../../src/admin/admin-app.js'

await skipUnlessRedis(t)

type Test = Parameters<Parameters<typeof t.test>[0]>[0]

// ---- upstreams ----------------------------------------------------------------

/** What the controlled upstream answers: which call it was (n), so a new answer is told apart from a cached one. */
interface Answer { n: number, url: string }

interface Control { up: Upstream }

async function controlled (t: Test): Promise<Control> {
  let n = 0
  const up = await upstream(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ n: ++n, url: req.url ?? '' } satisfies Answer))
  })
  return { up }
}

/** A users service: GET answers the user with a call counter; a write answers the status asked for in x-want-status. */
function usersService (): UpstreamHandler {
  let n = 0
  return (req, res) => {
    const status = req.method === 'GET' ? 200 : Number(req.headers['x-want-status'] ?? 200)
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ n: ++n, method: req.method, url: req.url }))
  }
}

const getsOf = (up: Upstream): number => up.seen.filter(s => s.method === 'GET').length

// ---- gateways -----------------------------------------------------------------

type Route = Record<string, unknown> & { id: string, path: string }

const proxied = (id: string, path: string, upstreamPath: string, extra: Record<string, unknown> = {}): Route =>
  ({ id, path, proxy: { service: 'backend', path: upstreamPath }, ...extra })

const USER_ROUTES: Route[] = [
  proxied('read-user', '/api/users/:id', '/users/{params.id}', { cache: { ttl: '1m', tags: ['user:{params.id}'] } }),
  proxied('write-user', '/api/users/:id', '/users/{params.id}', { method: ['POST', 'PUT'], invalidates: ['user:{params.id}'] }),
]

const ITEM_ROUTES: Route[] = [proxied('items', '/api/items/:id', '/items/{params.id}', { cache: { ttl: '1m' } })]

interface Setup {
  /** The Redis server (a plain redis:// URL) and the key prefix. */
  redis: { url: string, keyPrefix: string }
  services: Record<string, string>
  routes: Route[]
  /** cache.near; absent: the default (on). */
  near?: boolean
  /** cache.timeout; default a generous 2s (the 50 ms default can be missed on a loaded test machine, turning a HIT into a BYPASS). */
  timeout?: string
}

interface Gateway {
  app: FastifyInstance
  prefix: string
  /** The Redis server, for the test's own clients. */
  redisUrl: string
  /** The name of this gateway's Redis connections (CLIENT LIST name=). */
  name: string
}

let gateways = 0

function gatewayYaml (s: Setup, name: string): string {
  const url = new URL(s.redis.url)
  url.searchParams.set('connectionName', name)
  return JSON.stringify({
    redis: { url: url.toString(), keyPrefix: s.redis.keyPrefix },
    cache: { timeout: s.timeout ?? '2s', ...(s.near !== undefined ? { near: s.near } : {}) },
    policies: { public: { auth: 'none' } },
    services: Object.fromEntries(Object.entries(s.services).map(([name, url]) => [name, { urls: [url], timeout: '2s' }])),
    routes: s.routes.map(r => ({ method: 'GET', policy: 'public', ...r })),
  }, null, 2)
}

async function gateway (t: Test, s: Setup): Promise<Gateway> {
  const name = `portico-near-${process.pid}-${++gateways}`
  const app = await buildFromFiles(t, { 'gateway.yaml': gatewayYaml(s, name) })
  await app.ready()
  await eventually(`${name} is connected to Redis`, async () => await redisState(app) === 'up')
  return { app, prefix: s.redis.keyPrefix, redisUrl: s.redis.url, name }
}

async function redisState (app: FastifyInstance): Promise<string> {
  return (await app.inject({ url: '/readyz' })).json<{ redis: string }>().redis
}

async function get (g: Gateway, url: string): Promise<LightMyRequestResponse> {
  return await g.app.inject({ method: 'GET', url })
}

async function write (g: Gateway, url: string, status: number): Promise<LightMyRequestResponse> {
  return await g.app.inject({ method: 'POST', url, payload: '{"name":"x"}', headers: { 'content-type': 'application/json', 'x-want-status': String(status) } })
}

const answer = (res: LightMyRequestResponse): Answer => res.json<Answer>()

/** A 200 with the given x-cache state. */
function expectServed (t: Test, res: LightMyRequestResponse, state: string, label: string): void {
  t.equal(res.statusCode, 200, `${label}: 200`)
  t.equal(res.headers['x-cache'], state, `${label}: x-cache ${state}`)
}

/** Polls with GET until `until` holds; returns that response. Every response on the way must pass `along`. */
async function pollGet (t: Test, g: Gateway, url: string, what: string, until: (r: LightMyRequestResponse) => boolean, opts: { along?: (r: LightMyRequestResponse) => boolean, ms?: number, every?: number } = {}): Promise<{ last: LightMyRequestResponse, before: number }> {
  let last: LightMyRequestResponse | undefined
  let before = 0
  const unexpected: string[] = []
  await eventually(what, async () => {
    last = await get(g, url)
    if (until(last)) return true
    before++
    if (opts.along !== undefined && !opts.along(last)) unexpected.push(`${last.statusCode} ${String(last.headers['x-cache'])} ${last.body}`)
    return false
  }, opts.ms ?? 5000, opts.every ?? 20)
  t.same(unexpected, [], `nothing unexpected while waiting for: ${what}`)
  return { last: last as LightMyRequestResponse, before }
}

const hitWith = (body: string) => (r: LightMyRequestResponse): boolean => r.statusCode === 200 && r.headers['x-cache'] === 'HIT' && r.body === body

// ---- what Redis shows ------------------------------------------------------------

/** A Redis URL (a short-lived client per call), or a client the test holds. */
type Via = string | Redis

async function on<T> (via: Via, fn: (c: Redis) => Promise<T>): Promise<T> {
  return typeof via === 'string' ? await withClient(via, fn) : await fn(via)
}

interface ClientInfo { id: string, name: string, flags: string, sub: number, redir: string }

async function clientList (via: Via): Promise<ClientInfo[]> {
  const text = String(await on(via, async c => await c.client('LIST')))
  return text.split('\n').filter(l => l.trim() !== '').map(line => {
    const f = Object.fromEntries(line.trim().split(' ').map(kv => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]))
    return { id: f.id ?? '', name: f.name ?? '', flags: f.flags ?? '', sub: Number(f.sub ?? 0), redir: f.redir ?? '-1' }
  })
}

/** The gateway's connections that track keys (flag t) for a subscribed connection of the same gateway, and those subscribed connections. */
async function feedClients (g: Gateway, via: Via = g.redisUrl): Promise<{ trackers: ClientInfo[], subs: ClientInfo[], all: ClientInfo[] }> {
  const all = (await clientList(via)).filter(c => c.name === g.name)
  const subs = all.filter(c => c.sub > 0)
  const trackers = all.filter(c => c.flags.includes('t') && subs.some(s => s.id === c.redir))
  return { trackers, subs, all }
}

/**
 * Waits until Redis tracks the gateway's cache keys: one of its connections
 * has tracking on, redirected to one of its subscribed connections (seen on
 * two polls in a row, so the gateway has read the answer to its own command).
 */
async function waitForFeed (t: Test, g: Gateway, label = 'Redis tracks its cache keys', via: Via = g.redisUrl): Promise<void> {
  let seen = 0
  await eventually(`${g.name}: ${label}`, async () => {
    seen = (await feedClients(g, via)).trackers.length === 1 ? seen + 1 : 0
    return seen >= 2
  })
  t.pass(`${label} (CLIENT LIST: a tracking connection redirected to a subscribed one)`)
}

/** GET calls Redis has served since it started (private servers only: nobody else's commands in it). */
async function getCalls (via: Via): Promise<number> {
  const info = await on(via, async c => await c.info('commandstats'))
  const m = /^cmdstat_get:calls=(\d+)/m.exec(info)
  return m === null ? 0 : Number(m[1])
}

/**
 * Private Redis: waits until a HIT on `url` costs Redis no GET (the entry is
 * held in memory), then checks that `n` more HITs with the same body cost none.
 */
async function expectNearHits (t: Test, g: Gateway, url: string, body: string, n = 10): Promise<void> {
  const unexpected: string[] = []
  await eventually(`a HIT on ${url} is answered from memory`, async () => {
    const before = await getCalls(g.redisUrl)
    const res = await get(g, url)
    if (!hitWith(body)(res)) { unexpected.push(`${res.statusCode} ${String(res.headers['x-cache'])} ${res.body}`); return false }
    return await getCalls(g.redisUrl) === before
  })
  t.same(unexpected, [], `${url}: only HITs with the same body on the way`)
  const before = await getCalls(g.redisUrl)
  for (let i = 1; i <= n; i++) {
    const res = await get(g, url)
    if (!hitWith(body)(res)) expectServed(t, res, 'HIT', `${url} near HIT #${i}`)
  }
  t.equal(await getCalls(g.redisUrl), before, `${url}: ${n} HITs, not one GET reached Redis`)
}

/** Private Redis: each of `n` HITs on `url` is one GET (nothing is answered from memory). */
async function expectRedisHits (t: Test, via: Via, g: Gateway, url: string, body: string, n = 10): Promise<void> {
  const before = await getCalls(via)
  for (let i = 1; i <= n; i++) {
    const res = await get(g, url)
    if (!hitWith(body)(res)) expectServed(t, res, 'HIT', `${url} HIT from Redis #${i}`)
  }
  t.equal(await getCalls(via), before + n, `${url}: ${n} HITs, ${n} GETs`)
}

/** Replaces the body of a stored entry in Redis (the value is a JSON line, then the body), keeping its TTL. */
async function overwriteBody (via: Via, key: string, body: string): Promise<void> {
  await on(via, async c => {
    const value = await c.getBuffer(key)
    if (value === null) throw new Error(`${key} is not in Redis`)
    const header = value.subarray(0, value.indexOf(10) + 1)
    if (await c.set(key, Buffer.concat([header, Buffer.from(body)]), 'KEEPTTL') !== 'OK') throw new Error(`SET ${key} failed`)
  })
}

/** The one cache entry key under the gateway's prefix. */
async function onlyEntryKey (t: Test, g: Gateway): Promise<string> {
  const keys = await keysUnder(g.redisUrl, `${g.prefix}c:`)
  t.equal(keys.length, 1, 'one entry in Redis')
  return keys[0]
}

// ---- the near cache is used --------------------------------------------------------

t.test('near cache: once Redis tracks the cache keys, a HIT costs Redis no GET; with cache.near false every HIT is one GET', async t => {
  const server = await PrivateRedis.started(t, await closedPort())
  const c = await controlled(t)
  const near = await gateway(t, { redis: { url: server.url, keyPrefix: 'test-near-on:' }, services: { backend: c.up.url }, routes: ITEM_ROUTES })
  await waitForFeed(t, near)

  const miss = await get(near, '/api/items/1')
  expectServed(t, miss, 'MISS', 'near: first')
  expectServed(t, await get(near, '/api/items/1'), 'HIT', 'near: second')
  await expectNearHits(t, near, '/api/items/1', miss.body, 20)
  t.equal(c.up.hits(), 1, 'near: the upstream was called once')

  const direct = await gateway(t, { redis: { url: server.url, keyPrefix: 'test-near-off:' }, services: { backend: c.up.url }, routes: ITEM_ROUTES, near: false })
  t.same((await feedClients(direct)).trackers, [], 'near off: no tracking connection in Redis')
  const first = await get(direct, '/api/items/1')
  expectServed(t, first, 'MISS', 'near off: first')
  const before = await getCalls(server.url)
  for (let i = 1; i <= 20; i++) {
    const res = await get(direct, '/api/items/1')
    expectServed(t, res, 'HIT', `near off: HIT #${i}`)
    t.equal(res.body, first.body)
  }
  t.equal(await getCalls(server.url), before + 20, 'near off: 20 HITs, 20 GETs')
  t.equal(c.up.hits(), 2)
})

t.test('near cache: while Redis is paused a near-cached entry is still a HIT and the upstream is not called; with cache.near false it is a BYPASS from the upstream', async t => {
  const server = await PrivateRedis.started(t, await closedPort())
  const c = await controlled(t)
  const near = await gateway(t, { redis: { url: server.url, keyPrefix: 'test-near-on:' }, services: { backend: c.up.url }, routes: ITEM_ROUTES })
  // A budget well under the 1 s pause (Redis's GET cannot answer within it either way).
  const direct = await gateway(t, { redis: { url: server.url, keyPrefix: 'test-near-off:' }, services: { backend: c.up.url }, routes: ITEM_ROUTES, near: false, timeout: '300ms' })
  await waitForFeed(t, near)

  const nearMiss = await get(near, '/api/items/1')
  expectServed(t, nearMiss, 'MISS', 'near: first')
  await expectNearHits(t, near, '/api/items/1', nearMiss.body, 3)
  const directMiss = await get(direct, '/api/items/1')
  expectServed(t, directMiss, 'MISS', 'near off: first')
  expectServed(t, await get(direct, '/api/items/1'), 'HIT', 'near off: second')
  t.equal(c.up.hits(), 2)

  t.equal(await withClient(server.url, async r => await r.call('CLIENT', 'PAUSE', '1000', 'ALL')), 'OK', 'Redis paused for 1 s')
  const paused = await get(near, '/api/items/1')
  expectServed(t, paused, 'HIT', 'near, Redis paused')
  t.equal(paused.body, nearMiss.body, 'near, Redis paused: the cached body')
  t.equal(c.up.hits(), 2, 'near, Redis paused: the upstream was not called')

  const bypass = await get(direct, '/api/items/1')
  expectServed(t, bypass, 'BYPASS', 'near off, Redis paused (the same moment: Redis did not answer)')
  t.equal(answer(bypass).n, 3, 'near off, Redis paused: served by the upstream')
  t.equal(c.up.hits(), 3)

  // The pause ends by itself; the gateway without a near cache uses Redis again.
  const back = await pollGet(t, direct, '/api/items/1', 'near off: the entry is a HIT again after the pause', r => r.headers['x-cache'] === 'HIT', {
    along: r => r.statusCode === 200 && r.headers['x-cache'] === 'BYPASS',
    every: 50,
  })
  t.equal(back.last.body, directMiss.body, 'near off: the entry stored before the pause')
  expectServed(t, await get(near, '/api/items/1'), 'HIT', 'near, after the pause')
})

// ---- invalidation ------------------------------------------------------------------

t.test('near cache, two instances: a 2xx write on one evicts the entry from the other\'s memory; its next read is a MISS with the new answer', async t => {
  const up = await upstream(t, usersService())
  const shared = { url: REDIS_URL, keyPrefix: uniquePrefix(t, 'near') }
  const a = await gateway(t, { redis: shared, services: { backend: up.url }, routes: USER_ROUTES })
  const b = await gateway(t, { redis: shared, services: { backend: up.url }, routes: USER_ROUTES })
  await waitForFeed(t, a, 'A: Redis tracks its cache keys')
  await waitForFeed(t, b, 'B: Redis tracks its cache keys')

  const read = await get(a, '/api/users/7')
  expectServed(t, read, 'MISS', 'A reads')
  for (const i of [1, 2, 3]) {
    const res = await get(a, '/api/users/7')
    expectServed(t, res, 'HIT', `A reads again #${i}`)
    t.equal(res.body, read.body)
    const fromB = await get(b, '/api/users/7')
    expectServed(t, fromB, 'HIT', `B reads A's entry #${i}`)
    t.equal(fromB.body, read.body)
  }
  t.equal(getsOf(up), 1, 'one upstream GET so far')

  t.equal((await write(b, '/api/users/7', 422)).statusCode, 422)
  const afterFailed = await get(a, '/api/users/7')
  expectServed(t, afterFailed, 'HIT', 'A after B\'s failed write')
  t.equal(afterFailed.body, read.body)

  t.equal((await write(b, '/api/users/7', 200)).statusCode, 200, 'B writes')
  const { last: fresh } = await pollGet(t, a, '/api/users/7', 'A\'s read is a MISS after B\'s write', r => r.headers['x-cache'] === 'MISS', {
    along: hitWith(read.body),
  })
  expectServed(t, fresh, 'MISS', 'A after B\'s write: the read model is asked again')
  t.not(fresh.body, read.body, 'the new answer')
  t.equal(getsOf(up), 2, 'exactly one more upstream GET')

  const again = await get(a, '/api/users/7')
  expectServed(t, again, 'HIT', 'A reads the new entry')
  t.equal(again.body, fresh.body)
  // B dropped its own copy when it wrote.
  const fromB = await get(b, '/api/users/7')
  expectServed(t, fromB, 'HIT', 'B reads the new entry')
  t.equal(fromB.body, fresh.body)
  t.equal(getsOf(up), 2, 'still two upstream GETs')
})

t.test('near cache: an entry changed in Redis by another client (SET, DEL, PEXPIRE, FLUSHALL) is evicted from memory', async t => {
  const server = await PrivateRedis.started(t, await closedPort())
  const c = await controlled(t)
  const g = await gateway(t, { redis: { url: server.url, keyPrefix: 'test-near-direct:' }, services: { backend: c.up.url }, routes: ITEM_ROUTES })
  await waitForFeed(t, g)
  const path = '/api/items/1'

  const miss = await get(g, path)
  expectServed(t, miss, 'MISS', 'first')
  await expectNearHits(t, g, path, miss.body, 3)
  const key = await onlyEntryKey(t, g)
  t.ok(key.startsWith('test-near-direct:c:'), `the entry key ${key}`)

  // SET: the next reads serve what Redis now holds, without the upstream.
  const edited = JSON.stringify({ edited: true })
  await overwriteBody(server.url, key, edited)
  const { last: overwritten } = await pollGet(t, g, path, 'the overwritten entry is served', hitWith(edited), { along: hitWith(miss.body) })
  expectServed(t, overwritten, 'HIT', 'after SET')
  await expectNearHits(t, g, path, edited, 3)
  t.equal(c.up.hits(), 1, 'after SET: no upstream call')

  // DEL: a MISS, from the upstream.
  t.equal(await withClient(server.url, async r => await r.del(key)), 1, 'DEL')
  const { last: afterDel } = await pollGet(t, g, path, 'a MISS after DEL', r => r.headers['x-cache'] === 'MISS', { along: hitWith(edited) })
  t.equal(answer(afterDel).n, 2, 'after DEL: fetched again')
  t.equal(c.up.hits(), 2)
  await expectNearHits(t, g, path, afterDel.body, 3)

  // PEXPIRE: changing the TTL is a change too (and the entry is soon gone).
  t.equal(await withClient(server.url, async r => await r.pexpire(key, 1)), 1, 'PEXPIRE 1')
  const { last: afterExpire } = await pollGet(t, g, path, 'a MISS after PEXPIRE', r => r.headers['x-cache'] === 'MISS', { along: hitWith(afterDel.body) })
  t.equal(answer(afterExpire).n, 3, 'after PEXPIRE: fetched again')
  await expectNearHits(t, g, path, afterExpire.body, 3)

  // FLUSHALL: everything is gone.
  t.equal(await withClient(server.url, async r => await r.flushall()), 'OK', 'FLUSHALL')
  const { last: afterFlush } = await pollGet(t, g, path, 'a MISS after FLUSHALL', r => r.headers['x-cache'] === 'MISS', { along: hitWith(afterExpire.body) })
  t.equal(answer(afterFlush).n, 4, 'after FLUSHALL: fetched again')
  t.equal(c.up.hits(), 4)
  await expectNearHits(t, g, path, afterFlush.body, 3)
})

t.test('near cache: the admin purge on one instance evicts the entries from the other instance\'s memory, by tag and all', async t => {
  const up = await upstream(t, usersService())
  const shared = { url: REDIS_URL, keyPrefix: uniquePrefix(t, 'near') }
  const a = await gateway(t, { redis: shared, services: { backend: up.url }, routes: USER_ROUTES })
  const b = await gateway(t, { redis: shared, services: { backend: up.url }, routes: USER_ROUTES })
  const admin = await buildAdminApp(a.app)
  t.teardown(async () => { await admin.close() })
  const purge = async (payload: Record<string, unknown>): Promise<LightMyRequestResponse> => await admin.inject({ method: 'POST', url: '/admin/cache/purge', payload })
  await waitForFeed(t, a, 'A: Redis tracks its cache keys')
  await waitForFeed(t, b, 'B: Redis tracks its cache keys')

  /** The body each user's entry has now. */
  const bodies = new Map<number, string>()
  const body = (id: number): string => bodies.get(id) ?? ''
  /** Both instances read every user (twice: the second answer comes from memory). */
  const readAll = async (label: string): Promise<void> => {
    for (const g of [a, b]) {
      for (const id of [1, 2, 3]) {
        for (const i of [1, 2]) {
          const res = await get(g, `/api/users/${id}`)
          expectServed(t, res, 'HIT', `${label}: ${g === a ? 'A' : 'B'} user ${id} #${i}`)
          t.equal(res.body, body(id))
        }
      }
    }
  }
  for (const id of [1, 2, 3]) {
    const res = await get(a, `/api/users/${id}`)
    expectServed(t, res, 'MISS', `A: user ${id}`)
    bodies.set(id, res.body)
  }
  await readAll('before any purge')
  t.equal(getsOf(up), 3)

  const byTag = await purge({ tags: ['user:1', 'user:2'] })
  t.equal(byTag.statusCode, 200)
  t.same(byTag.json(), { purged: 2 })
  // The purging instance drops its own copies at once; the other learns it from Redis.
  const aOne = await get(a, '/api/users/1')
  expectServed(t, aOne, 'MISS', 'A: user 1 right after its own purge')
  t.not(aOne.body, body(1))
  const { last: bTwo } = await pollGet(t, b, '/api/users/2', 'B: user 2 is a MISS after A\'s purge', r => r.headers['x-cache'] === 'MISS', { along: hitWith(body(2)) })
  t.not(bTwo.body, body(2))
  await pollGet(t, b, '/api/users/1', 'B: user 1 is A\'s new entry', hitWith(aOne.body), { along: hitWith(body(1)) })
  const aTwo = await get(a, '/api/users/2')
  expectServed(t, aTwo, 'HIT', 'A: user 2 is B\'s new entry')
  t.equal(aTwo.body, bTwo.body)
  bodies.set(1, aOne.body)
  bodies.set(2, bTwo.body)
  t.equal(getsOf(up), 5, 'one upstream GET per purged entry')
  await readAll('after the purge by tag (user 3 untouched)')

  const all = await purge({ all: true })
  t.equal(all.statusCode, 200)
  t.same(all.json(), { purged: 3 })
  const aThree = await get(a, '/api/users/3')
  expectServed(t, aThree, 'MISS', 'A: user 3 right after its own purge of all')
  t.not(aThree.body, body(3))
  const { last: bOne } = await pollGet(t, b, '/api/users/1', 'B: user 1 is a MISS after A\'s purge of all', r => r.headers['x-cache'] === 'MISS', { along: hitWith(body(1)) })
  const { last: bTwoAgain } = await pollGet(t, b, '/api/users/2', 'B: user 2 is a MISS after A\'s purge of all', r => r.headers['x-cache'] === 'MISS', { along: hitWith(body(2)) })
  await pollGet(t, b, '/api/users/3', 'B: user 3 is A\'s new entry', hitWith(aThree.body), { along: hitWith(body(3)) })
  bodies.set(1, bOne.body)
  bodies.set(2, bTwoAgain.body)
  bodies.set(3, aThree.body)
  t.equal(new Set(bodies.values()).size, 3)
  t.equal(getsOf(up), 8, 'one upstream GET per purged entry')
  await readAll('after the purge of all')
  t.equal(getsOf(up), 8)
})

// ---- the feed lost -----------------------------------------------------------------

t.test('near cache: when its Redis connections for invalidations are killed, a change made meanwhile is seen, and the near cache works again once tracking is back', async t => {
  const server = await PrivateRedis.started(t, await closedPort())
  const c = await controlled(t)
  const g = await gateway(t, { redis: { url: server.url, keyPrefix: 'test-near-lost:' }, services: { backend: c.up.url }, routes: ITEM_ROUTES })
  await waitForFeed(t, g)
  const path = '/api/items/1'
  const miss = await get(g, path)
  expectServed(t, miss, 'MISS', 'first')
  await expectNearHits(t, g, path, miss.body, 3)
  const key = await onlyEntryKey(t, g)

  // The subscriber connection: Redis has nobody to tell about the change below.
  const { subs } = await feedClients(g)
  t.equal(subs.length, 1, 'one subscribed connection')
  const killed = await withClient(server.url, async r => await r.call('CLIENT', 'KILL', 'TYPE', 'pubsub'))
  t.equal(killed, 1, 'CLIENT KILL TYPE pubsub killed it')
  const afterSub = JSON.stringify({ edited: 'while the subscriber was gone' })
  await overwriteBody(server.url, key, afterSub)
  await pollGet(t, g, path, 'the change made while the subscriber was gone is served', hitWith(afterSub), { along: hitWith(miss.body) })
  await waitForFeed(t, g, 'tracking is back after the subscriber was killed')
  const { trackers, subs: newSubs } = await feedClients(g)
  t.not(newSubs[0]?.id, subs[0]?.id, 'a new subscribed connection')
  t.equal(trackers[0]?.redir, newSubs[0]?.id, 'tracking redirects to the new subscriber')
  await expectNearHits(t, g, path, afterSub, 5)
  t.equal(c.up.hits(), 1)

  // The tracking connection: tracking ends with it.
  const tracker = trackers[0]?.id ?? ''
  t.equal(await withClient(server.url, async r => await r.call('CLIENT', 'KILL', 'ID', tracker)), 1, 'CLIENT KILL ID <the tracking connection>')
  const afterTracker = JSON.stringify({ edited: 'while the tracking connection was gone' })
  await overwriteBody(server.url, key, afterTracker)
  await pollGet(t, g, path, 'the change made while the tracking connection was gone is served', hitWith(afterTracker), { along: hitWith(afterSub) })
  await waitForFeed(t, g, 'tracking is back after the tracking connection was killed')
  t.not((await feedClients(g)).trackers[0]?.id, tracker, 'a new tracking connection')
  await expectNearHits(t, g, path, afterTracker, 5)

  // The restored feed delivers: a DEL now is a MISS.
  t.equal(await withClient(server.url, async r => await r.del(key)), 1, 'DEL')
  const { last: afterDel } = await pollGet(t, g, path, 'a MISS after DEL', r => r.headers['x-cache'] === 'MISS', { along: hitWith(afterTracker) })
  t.equal(answer(afterDel).n, 2, 'fetched again')
  t.equal(c.up.hits(), 2)
})

t.test('near cache: while the invalidation feed cannot be re-established (Redis refuses new connections) every read goes to Redis, so a change there is seen at once', async t => {
  const server = await PrivateRedis.started(t, await closedPort())
  const c = await controlled(t)
  const g = await gateway(t, { redis: { url: server.url, keyPrefix: 'test-near-refused:' }, services: { backend: c.up.url }, routes: ITEM_ROUTES })
  // The test's own connection, held: new ones are refused below.
  const r = new Redis(server.url, { maxRetriesPerRequest: 1 })
  t.teardown(() => { r.disconnect() })
  await waitForFeed(t, g, 'Redis tracks its cache keys', r)
  const path = '/api/items/1'
  const miss = await get(g, path)
  expectServed(t, miss, 'MISS', 'first')
  await expectNearHits(t, g, path, miss.body, 3)
  const key = await onlyEntryKey(t, g)

  // No room for another connection: the killed subscriber cannot come back.
  const { all } = await feedClients(g, r)
  t.equal(all.length, 3, 'the gateway holds three connections (main, subscriber, tracking)')
  t.equal(await r.config('SET', 'maxclients', String(all.length)), 'OK', 'maxclients: no room for one more')
  t.equal(await r.call('CLIENT', 'KILL', 'TYPE', 'pubsub'), 1, 'CLIENT KILL TYPE pubsub')
  const unexpected: string[] = []
  await eventually('the gateway reads from Redis again', async () => {
    const before = await getCalls(r)
    const res = await get(g, path)
    if (!hitWith(miss.body)(res)) unexpected.push(`${res.statusCode} ${String(res.headers['x-cache'])}`)
    return await getCalls(r) > before
  })
  t.same(unexpected, [], 'HITs with the same body meanwhile')
  await expectRedisHits(t, r, g, path, miss.body, 10)
  t.same((await feedClients(g, r)).subs, [], 'still no subscriber')

  const edited = JSON.stringify({ edited: true })
  await overwriteBody(r, key, edited)
  const overwritten = await get(g, path)
  expectServed(t, overwritten, 'HIT', 'right after SET')
  t.equal(overwritten.body, edited, 'right after SET: what Redis holds now')
  await expectRedisHits(t, r, g, path, edited, 3)
  t.equal(await r.del(key), 1, 'DEL')
  const afterDel = await get(g, path)
  expectServed(t, afterDel, 'MISS', 'right after DEL')
  t.equal(answer(afterDel).n, 2, 'from the upstream')

  t.equal(await r.config('SET', 'maxclients', '10000'), 'OK', 'room again')
  await waitForFeed(t, g, 'tracking is back', r)
  await expectNearHits(t, g, path, afterDel.body, 5)
  t.equal(c.up.hits(), 2)
})

t.test('near cache: when Redis refuses client tracking (ACL), the near cache stays off: every HIT is one GET and a change is seen at once', async t => {
  const server = await PrivateRedis.started(t, await closedPort())
  await withClient(server.url, async r => { t.equal(await r.call('ACL', 'SETUSER', 'default', '-client|tracking'), 'OK', 'CLIENT TRACKING denied') })
  const c = await controlled(t)
  const g = await gateway(t, { redis: { url: server.url, keyPrefix: 'test-near-denied:' }, services: { backend: c.up.url }, routes: ITEM_ROUTES })
  await eventually('the gateway has subscribed for invalidations (its next step, tracking, is refused)', async () => (await feedClients(g)).subs.length === 1)
  const path = '/api/items/1'
  const miss = await get(g, path)
  expectServed(t, miss, 'MISS', 'first')
  await expectRedisHits(t, server.url, g, path, miss.body, 20)
  t.same((await feedClients(g)).trackers, [], 'no tracking connection')

  const key = await onlyEntryKey(t, g)
  const edited = JSON.stringify({ edited: true })
  await overwriteBody(server.url, key, edited)
  const overwritten = await get(g, path)
  expectServed(t, overwritten, 'HIT', 'right after SET')
  t.equal(overwritten.body, edited, 'right after SET: what Redis holds now')
  t.equal(c.up.hits(), 1)
})

t.test('near cache: while Redis is down nothing is served from memory (BYPASS, from the upstream); when it returns caching and the near cache resume', async t => {
  const server = await PrivateRedis.started(t, await closedPort())
  const c = await controlled(t)
  const g = await gateway(t, { redis: { url: server.url, keyPrefix: 'test-near-outage:' }, services: { backend: c.up.url }, routes: ITEM_ROUTES })
  await waitForFeed(t, g)
  const path = '/api/items/1'
  const miss = await get(g, path)
  expectServed(t, miss, 'MISS', 'with Redis')
  await expectNearHits(t, g, path, miss.body, 5)
  t.equal(c.up.hits(), 1)

  await server.kill()
  // The gateway learns that Redis is gone from its connections closing (all of
  // them at once: the main one, which /readyz shows, and the feed's). Until the
  // event loop has turned over those closes nothing tells it: a request served
  // from memory alone (app.inject, no I/O) can run before them.
  await eventually('/readyz says redis down', async () => await redisState(g.app) === 'down')
  for (const i of [1, 2, 3]) {
    const res = await get(g, path)
    expectServed(t, res, 'BYPASS', `Redis down #${i}: not a HIT from memory`)
    t.equal(answer(res).n, 1 + i, `Redis down #${i}: from the upstream`)
  }
  t.equal(c.up.hits(), 4)

  await server.start()
  const { last: resumed } = await pollGet(t, g, path, 'caching resumes', r => r.headers['x-cache'] === 'MISS', {
    along: r => r.statusCode === 200 && r.headers['x-cache'] === 'BYPASS',
    ms: 15_000,
    every: 100,
  })
  expectServed(t, resumed, 'MISS', 'Redis back')
  const hit = await get(g, path)
  expectServed(t, hit, 'HIT', 'Redis back, again')
  t.equal(hit.body, resumed.body)
  await waitForFeed(t, g, 'tracking is back after the restart')
  await expectNearHits(t, g, path, resumed.body, 10)
  t.equal(c.up.hits(), answer(resumed).n, 'no upstream call since')
})

// ---- ttl ---------------------------------------------------------------------------

t.test('near cache: an entry held in memory expires with its ttl: then a MISS (or STALE within staleWhileRevalidate), never a stale HIT', async t => {
  const server = await PrivateRedis.started(t, await closedPort())
  const c = await controlled(t)
  const g = await gateway(t, {
    redis: { url: server.url, keyPrefix: 'test-near-ttl:' },
    services: { backend: c.up.url },
    routes: [
      proxied('items', '/api/items/:id', '/items/{params.id}', { cache: { ttl: '1s' } }),
      // Kept (in Redis and in memory) past their ttl, for their stale windows.
      proxied('sie', '/api/sie', '/sie', { cache: { ttl: '1s', staleIfError: '1m' } }),
      proxied('swr', '/api/swr', '/swr', { cache: { ttl: '1s', staleWhileRevalidate: '1m' } }),
    ],
  })
  await waitForFeed(t, g)
  const first = new Map<string, LightMyRequestResponse>()
  for (const path of ['/api/sie', '/api/swr', '/api/items/1']) {
    const miss = await get(g, path)
    expectServed(t, miss, 'MISS', `${path}: first`)
    first.set(path, miss)
  }
  const body = (path: string): string => first.get(path)?.body ?? ''
  for (const path of ['/api/sie', '/api/swr']) await expectNearHits(t, g, path, body(path), 2)

  const path = '/api/items/1'
  const getsBefore = await getCalls(server.url)
  const { last: again, before: hits } = await pollGet(t, g, path, `${path}: a MISS once the ttl has passed`, r => r.headers['x-cache'] === 'MISS', {
    along: hitWith(body(path)),
  })
  const gets = await getCalls(server.url) - getsBefore
  t.ok(hits >= 2, `${path}: HITs before it expired (${hits})`)
  t.ok(gets < hits + 1, `${path}: some of the ${hits + 1} reads were answered from memory (${gets} GETs)`)
  t.equal(answer(again).url, '/items/1')
  expectServed(t, await get(g, path), 'HIT', `${path}: the new entry`)

  // Past its ttl, an entry kept for staleIfError is not a HIT while the upstream answers.
  const { last: sie } = await pollGet(t, g, '/api/sie', '/api/sie: a MISS once the ttl has passed', r => r.headers['x-cache'] === 'MISS', { along: hitWith(body('/api/sie')) })
  t.not(sie.body, body('/api/sie'), '/api/sie: the upstream\'s new answer')

  // Past its ttl, an entry kept for staleWhileRevalidate is STALE, refreshed in the background, then the new one is a HIT.
  const { last: stale } = await pollGet(t, g, '/api/swr', '/api/swr: not a HIT once the ttl has passed', r => r.headers['x-cache'] !== 'HIT', { along: hitWith(body('/api/swr')) })
  expectServed(t, stale, 'STALE', '/api/swr after the ttl')
  t.equal(stale.body, body('/api/swr'), '/api/swr: the old body, marked STALE')
  const { last: refreshed } = await pollGet(t, g, '/api/swr', '/api/swr: the refreshed entry is a HIT', r => r.headers['x-cache'] === 'HIT', {
    along: r => r.statusCode === 200 && r.headers['x-cache'] === 'STALE' && r.body === body('/api/swr'),
  })
  t.not(refreshed.body, body('/api/swr'), '/api/swr: the refreshed body')
  t.equal(c.up.hits(), 6, 'one more upstream call per route')
})

// ---- reload -------------------------------------------------------------------

t.test('a reload that turns cache.near off closes the tracking connections; turning it on again starts them', async t => {
  const { SharedResources } = await import('../../src/gateway/shared-resources.js')
  const { connectRedis } = await import('../../src/redis/connection.js')
  const pino = (await import('pino')).default
  const log = pino({ level: 'silent' })
  const name = `near-reload-${process.pid}-${Date.now()}`
  const url = new URL(REDIS_URL)
  url.searchParams.set('connectionName', name)
  const shared = new SharedResources(log)
  const conn = connectRedis(url.toString(), log)
  t.teardown(async () => { await shared.closeAll(); await conn.close() })
  const prefix = uniquePrefix(t, 'near-reload')
  const settings = { maxEntries: 100, maxBytes: 1024 * 1024, timeout: 50 }
  const tracking = async (): Promise<number> => (await clientList(REDIS_URL)).filter(c => c.name === name && (c.flags.includes('t') || c.sub > 0)).length

  shared.redisCacheStore(conn, url.toString(), prefix, { ...settings, near: true })
  await eventually('the tracking and subscribed connections are up', async () => await tracking() === 2)

  shared.redisCacheStore(conn, url.toString(), prefix, { ...settings, near: false })
  await shared.releaseUnused(new Set(), url.toString())
  await eventually('both are closed once the old config is released', async () => await tracking() === 0)
  t.pass('near: false leaves no tracking connection behind')

  shared.redisCacheStore(conn, url.toString(), prefix, { ...settings, near: true })
  await eventually('turned on again, the feed comes back', async () => await tracking() === 2)
  t.pass('near: true starts them again')
})
