// Rate limits with leased counters (src/pipeline/rate-limit/lease.ts): the counter of
// a key lives in Redis and is shared by every gateway instance; limits under
// 100 per window take one count per request, larger limits let a busy
// instance claim up to 1% of the limit at once and hand the counts out
// locally. What must hold, and what these tests check from the outside
// (statuses, draft-spec headers, upstream hits, the Redis counter, its TTL,
// Redis' own command statistics):
// - never more than `max` requests admitted per window across instances;
// - under 100 per window, exact: each request is one count in Redis;
// - at most one lease (≤ 1% of max) lost per instance near the limit;
// - a new window starts fresh, different keys never share a counter.
import t from 'tap'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { buildFromFiles } from '../../helpers/gateway.js'
import { signHs, now } from '../../helpers/jwt.js'
import { skipUnlessRedis, PrivateRedis, REDIS_URL, eventually, keysUnder, uniquePrefix, withClient } from '../../helpers/redis.js'
import { closedPort, reply, upstream } from '../../helpers/upstream.js'

await skipUnlessRedis(t)

// A subtest (the last overload of t.test takes only the callback).
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const SECRET = 'rate-limit-lease-test-secret-0123456789abcdef'
const bearer = (sub: string): Record<string, string> => ({ authorization: `Bearer ${signHs({ sub, iat: now(), exp: now() + 600 }, SECRET)}` })

/** What every route's upstream answers in this file. */
const answerOk = reply(200, 'text/plain', 'ok')

function gatewayYaml (upstreamUrl: string, redis: { url: string, keyPrefix: string }, routes: string): string {
  return `redis:
  url: ${redis.url}
  keyPrefix: "${redis.keyPrefix}"
auth:
  jwt:
    secret: ${SECRET}
    algorithms: [HS256]
services:
  backend:
    urls: [${upstreamUrl}]
    timeout: 5s
policies:
  public: { auth: none }
  user: { auth: jwt }
routes:
${routes}
`
}

/** Two gateway instances built from the same YAML: two apps, two Redis connections, one key prefix. */
async function twoInstances (t: Test, yaml: string): Promise<[FastifyInstance, FastifyInstance]> {
  const a = await buildFromFiles(t, { 'gateway.yaml': yaml })
  const b = await buildFromFiles(t, { 'gateway.yaml': yaml })
  await a.ready()
  await b.ready()
  return [a, b]
}

function route (id: string, max: number, window: string, opts: { key?: string, policy?: string } = {}): string {
  return `
- id: ${id}
  path: /api/${id}
  policy: ${opts.policy ?? 'public'}
  rateLimit: { max: ${max}, window: ${window}${opts.key !== undefined ? `, key: ${opts.key}` : ''} }
  proxy: { service: backend, path: /${id} }
`
}

/** Request i goes to apps[i % apps.length]; one after the other. */
async function sequential (apps: FastifyInstance[], n: number, opts: InjectOptions): Promise<LightMyRequestResponse[]> {
  const out: LightMyRequestResponse[] = []
  for (let i = 0; i < n; i++) out.push(await apps[i % apps.length].inject(opts))
  return out
}

/** Request i goes to apps[i % apps.length]; `batch` requests in flight at once, batch after batch. */
async function concurrent (apps: FastifyInstance[], n: number, opts: InjectOptions, batch = 100): Promise<LightMyRequestResponse[]> {
  const out: LightMyRequestResponse[] = []
  for (let start = 0; start < n; start += batch) {
    const size = Math.min(batch, n - start)
    out.push(...await Promise.all(Array.from({ length: size }, async (_, j) => await apps[(start + j) % apps.length].inject(opts))))
  }
  return out
}

function countStatuses (responses: LightMyRequestResponse[]): { ok: number, limited: number, other: number[] } {
  const ok = responses.filter(r => r.statusCode === 200).length
  const limited = responses.filter(r => r.statusCode === 429).length
  return { ok, limited, other: responses.map(r => r.statusCode).filter(s => s !== 200 && s !== 429) }
}

/** Checks a 429 as the contract describes it (problem+json RATE_LIMITED, retry-after, draft-spec headers). */
function assertLimited (t: Test, res: LightMyRequestResponse, max: number, windowSeconds: number, label = ''): void {
  t.equal(res.statusCode, 429, `${label} status 429`)
  t.match(res.headers['content-type'], /^application\/problem\+json(;|$)/, `${label} problem+json`)
  const body = res.json<Record<string, unknown>>()
  t.equal(body.code, 'RATE_LIMITED', `${label} code RATE_LIMITED`)
  t.equal(body.status, 429, `${label} body status 429`)
  const retryAfter = Number(res.headers['retry-after'])
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= windowSeconds, `${label} retry-after is 1..${windowSeconds} s (got ${String(res.headers['retry-after'])})`)
  t.equal(res.headers['ratelimit-limit'], String(max), `${label} ratelimit-limit ${max}`)
  t.equal(res.headers['ratelimit-remaining'], '0', `${label} ratelimit-remaining 0`)
}

/** Checks every 429 of a batch with a handful of assertions (not one set per response). */
function assertAllLimited (t: Test, responses: LightMyRequestResponse[], max: number, windowSeconds: number): void {
  const limited = responses.filter(r => r.statusCode === 429)
  const bad = limited.filter(r => {
    const retryAfter = Number(r.headers['retry-after'])
    return !/^application\/problem\+json(;|$)/.test(String(r.headers['content-type'])) ||
      r.json<{ code: string }>().code !== 'RATE_LIMITED' ||
      !(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= windowSeconds) ||
      r.headers['ratelimit-limit'] !== String(max) ||
      r.headers['ratelimit-remaining'] !== '0'
  })
  t.equal(bad.length, 0, `every 429 (${limited.length}) is problem+json RATE_LIMITED with retry-after and the limit headers`)
  if (limited.length > 0) assertLimited(t, limited[limited.length - 1], max, windowSeconds, 'last 429:')
}

/** The counter's value (as a number, 0 when absent) and its PTTL (ms). */
async function counter (url: string, key: string): Promise<{ value: number, pttl: number }> {
  return await withClient(url, async c => {
    const [value, pttl] = await Promise.all([c.get(key), c.pttl(key)])
    return { value: Number(value ?? 0), pttl }
  })
}

/** Successful calls per command from INFO commandstats (calls - failed_calls - rejected_calls). */
async function commandCalls (url: string): Promise<Map<string, number>> {
  const info = await withClient(url, async c => await c.info('commandstats'))
  const out = new Map<string, number>()
  for (const line of info.split(/\r?\n/)) {
    const m = /^cmdstat_([^:]+):(.*)$/.exec(line)
    if (m === null) continue
    const fields = new Map(m[2].split(',').map(kv => kv.split('=') as [string, string]))
    const calls = Number(fields.get('calls') ?? 0) - Number(fields.get('failed_calls') ?? 0) - Number(fields.get('rejected_calls') ?? 0)
    out.set(m[1], calls)
  }
  return out
}

/** Script runs (EVAL + EVALSHA) and INCRBYs (one inside each lease script) since `before`. */
function scriptDelta (before: Map<string, number>, after: Map<string, number>): { scripts: number, incrby: number } {
  const d = (name: string): number => (after.get(name) ?? 0) - (before.get(name) ?? 0)
  return { scripts: d('eval') + d('evalsha'), incrby: d('incrby') }
}

t.test('max 10 across two instances, sequential: exactly 10 served, remaining counts down across both, each request one count in Redis', async t => {
  const prefix = uniquePrefix(t, 'rl-lease')
  const up = await upstream(t, answerOk)
  const apps = await twoInstances(t, gatewayYaml(up.url, { url: REDIS_URL, keyPrefix: prefix }, route('small', 10, '1m', { key: 'user', policy: 'user' })))
  const res = await sequential(apps, 30, { url: '/api/small', headers: bearer('alice') })

  t.same(res.slice(0, 10).map(r => r.statusCode), Array(10).fill(200), 'the first 10 (5 on each instance) are served')
  t.same(res.slice(0, 10).map(r => r.headers['ratelimit-remaining']), ['9', '8', '7', '6', '5', '4', '3', '2', '1', '0'],
    'ratelimit-remaining counts down by one per request whichever instance answers')
  t.same(res.slice(10).map(r => r.statusCode), Array(20).fill(429), 'the other 20 are refused')
  assertAllLimited(t, res, 10, 60)
  t.equal(up.hits(), 10, 'the upstream saw exactly the 10 served requests')

  const key = `${prefix}rl:small:u:alice`
  t.same(await keysUnder(REDIS_URL, prefix), [key], 'one counter, named by prefix, route id and subject')
  const { value, pttl } = await counter(REDIS_URL, key)
  t.equal(value, 30, 'every request (served or refused) is one count in Redis')
  t.ok(pttl > 0 && pttl <= 60_000, `the counter expires with the window (pttl ${pttl})`)
})

t.test('max 10 across two instances, concurrent burst: exactly 10 served, each with its own count', async t => {
  const prefix = uniquePrefix(t, 'rl-lease')
  const up = await upstream(t, answerOk)
  const apps = await twoInstances(t, gatewayYaml(up.url, { url: REDIS_URL, keyPrefix: prefix }, route('burst', 10, '1m', { key: 'ip' })))
  const res = await concurrent(apps, 30, { url: '/api/burst', remoteAddress: '10.1.2.3' }, 30)

  const { ok, limited, other } = countStatuses(res)
  t.same(other, [], 'only 200 or 429')
  t.equal(ok, 10, 'exactly 10 served')
  t.equal(limited, 20, 'exactly 20 refused')
  assertAllLimited(t, res, 10, 60)
  const remaining = res.filter(r => r.statusCode === 200).map(r => Number(r.headers['ratelimit-remaining'])).sort((x, y) => x - y)
  t.same(remaining, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'each served request got a distinct count (remaining 9..0, once each)')
  t.equal(up.hits(), 10, 'the upstream saw exactly 10')

  const key = `${prefix}rl:burst:ip:10.1.2.3`
  const { value, pttl } = await counter(REDIS_URL, key)
  t.equal(value, 30, 'every request is one count in Redis')
  t.ok(pttl > 0 && pttl <= 60_000, `the counter expires with the window (pttl ${pttl})`)
})

t.test('private Redis: max 1000 leases counts (fewer script calls than requests) and never admits more than 1000; max 10 is one script call per request', async t => {
  const redis = await PrivateRedis.started(t, await closedPort())
  const prefix = uniquePrefix(t, 'rl-lease')
  const up = await upstream(t, answerOk)
  const apps = await twoInstances(t, gatewayYaml(up.url, { url: redis.url, keyPrefix: prefix }, route('big', 1000, '1m') + route('tiny', 10, '1m')))

  // Large limit: 3000 requests, 100 at a time, alternating between the instances.
  const before = await commandCalls(redis.url)
  const big = await concurrent(apps, 3000, { url: '/api/big' })
  const afterBig = await commandCalls(redis.url)
  const { ok, limited, other } = countStatuses(big)
  t.same(other, [], 'only 200 or 429')
  t.equal(ok + limited, 3000)
  t.ok(ok <= 1000, `never more than max admitted (${ok} served)`)
  t.ok(ok >= 1000 - 2 * 10, `at most one lease (1% = 10) lost per instance (${ok} served)`)
  t.equal(up.hits(), ok, 'the upstream saw exactly the served requests')
  assertAllLimited(t, big, 1000, 60)

  const bigKey = `${prefix}rl:big:ip:127.0.0.1`
  const bigCounter = await counter(redis.url, bigKey)
  t.ok(bigCounter.value >= ok, `the Redis counter (${bigCounter.value}) is at least the served count (${ok})`)
  // Every request takes a count (refused ones too); what is claimed and not yet handed out is at most one lease per instance.
  t.ok(bigCounter.value >= 3000 && bigCounter.value <= 3000 + 2 * 10,
    `the counter is the requests plus at most one unused lease (≤ 10) per instance (got ${bigCounter.value})`)
  t.ok(bigCounter.pttl > 0 && bigCounter.pttl <= 60_000, `the counter expires with the window (pttl ${bigCounter.pttl})`)

  const bigCalls = scriptDelta(before, afterBig)
  t.ok(bigCalls.scripts > 0, `the lease script ran (${bigCalls.scripts} times)`)
  t.ok(bigCalls.scripts < 3000 / 2, `leases: far fewer script calls (${bigCalls.scripts}) than requests (3000)`)
  t.ok(bigCalls.scripts >= 3000 / 10, `no lease larger than 1% of max: at least 300 script calls for 3000 counts (got ${bigCalls.scripts})`)
  t.equal(bigCalls.incrby, bigCalls.scripts, 'one INCRBY per script call')

  // Small limit: every request is its own script call, even in a concurrent burst.
  const tiny = await concurrent(apps, 30, { url: '/api/tiny' }, 30)
  const afterTiny = await commandCalls(redis.url)
  const tinyStatuses = countStatuses(tiny)
  t.equal(tinyStatuses.ok, 10, 'max 10: exactly 10 served')
  t.equal(tinyStatuses.limited, 20, 'max 10: exactly 20 refused')
  const tinyCalls = scriptDelta(afterBig, afterTiny)
  t.equal(tinyCalls.scripts, 30, 'max 10: exactly one script call per request')
  t.equal(tinyCalls.incrby, 30, 'max 10: one INCRBY per request')
  t.equal((await counter(redis.url, `${prefix}rl:tiny:ip:127.0.0.1`)).value, 30, 'max 10: the counter is the number of requests')
  t.equal(up.hits(), ok + 10)
})

t.test('ratelimit-remaining (draft spec) counts down on one instance, also while leasing; the 429 carries retry-after', async t => {
  const prefix = uniquePrefix(t, 'rl-lease')
  const up = await upstream(t, answerOk)
  const yaml = gatewayYaml(up.url, { url: REDIS_URL, keyPrefix: prefix }, route('five', 5, '30s') + route('large', 1000, '1m'))
  const a = await buildFromFiles(t, { 'gateway.yaml': yaml })

  const five = await sequential([a], 6, { url: '/api/five' })
  t.same(five.slice(0, 5).map(r => r.statusCode), [200, 200, 200, 200, 200])
  t.same(five.slice(0, 5).map(r => r.headers['ratelimit-remaining']), ['4', '3', '2', '1', '0'], 'ratelimit-remaining 4..0')
  t.ok(five.slice(0, 5).every(r => r.headers['ratelimit-limit'] === '5'), 'ratelimit-limit 5 on every response')
  t.ok(five.slice(0, 5).every(r => {
    const reset = Number(r.headers['ratelimit-reset'])
    return Number.isInteger(reset) && reset >= 1 && reset <= 30
  }), 'ratelimit-reset is 1..30 s on every response')
  t.ok(five.every(r => r.headers['x-ratelimit-remaining'] === undefined && r.headers['x-ratelimit-limit'] === undefined),
    'the draft-spec headers replace the x-ratelimit-* ones')
  assertLimited(t, five[5], 5, 30, 'sixth:')

  // With leases (max 1000), sequential requests on one instance still see every count in order.
  const large = await sequential([a], 60, { url: '/api/large' })
  t.ok(large.every(r => r.statusCode === 200), 'all 60 served')
  t.same(large.map(r => r.headers['ratelimit-remaining']), Array.from({ length: 60 }, (_, i) => String(999 - i)),
    'ratelimit-remaining 999..940, one less per request')
  const { value } = await counter(REDIS_URL, `${prefix}rl:large:ip:127.0.0.1`)
  t.ok(value >= 60 && value <= 60 + 10, `the counter holds the 60 counts plus at most one unused lease (got ${value})`)
  t.equal(up.hits(), 5 + 60)
})

t.test('a new window starts fresh (max 3, window 2s): refused until the window ends, then served again', async t => {
  const prefix = uniquePrefix(t, 'rl-lease')
  const up = await upstream(t, answerOk)
  const apps = await twoInstances(t, gatewayYaml(up.url, { url: REDIS_URL, keyPrefix: prefix }, route('short', 3, '2s')))
  const first = await sequential(apps, 4, { url: '/api/short' })
  t.same(first.map(r => r.statusCode), [200, 200, 200, 429])
  assertLimited(t, first[3], 3, 2, 'over the limit:')

  const key = `${prefix}rl:short:ip:127.0.0.1`
  const old = await counter(REDIS_URL, key)
  t.equal(old.value, 4)
  t.ok(old.pttl > 0 && old.pttl <= 2000, `the key's TTL is at most the window (pttl ${old.pttl})`)

  // Poll one request at a time (alternating instances) until one is served: the new window.
  let served: LightMyRequestResponse | undefined
  let polls = 0
  const refused: number[] = []
  await eventually('a request is served again in a new window', async () => {
    const res = await apps[polls++ % 2].inject({ url: '/api/short' })
    if (res.statusCode === 200) { served = res; return true }
    refused.push(res.statusCode)
    return false
  }, 10_000, 50)
  t.ok(refused.every(s => s === 429), `every request before the new window was refused (${refused.length} polls)`)
  t.equal(served?.headers['ratelimit-remaining'], '2', 'the first request of the new window has the full allowance')
  const fresh = await counter(REDIS_URL, key)
  t.ok(fresh.value === 1, `a new counter with one count (got ${fresh.value})`)
  t.ok(fresh.pttl > 0 && fresh.pttl <= 2000, `with a TTL of at most the window (pttl ${fresh.pttl})`)
  // The other instance counts in the same new window.
  const other = await apps[polls % 2].inject({ url: '/api/short' })
  t.equal(other.statusCode, 200)
  t.equal(other.headers['ratelimit-remaining'], '1', 'the other instance sees the new window\'s count')
  t.equal(up.hits(), 3 + 2)
})

t.test('a new window starts fresh with leases (max 200, window 3s, two instances): never more than max in either window', async t => {
  const prefix = uniquePrefix(t, 'rl-lease')
  const up = await upstream(t, answerOk)
  const apps = await twoInstances(t, gatewayYaml(up.url, { url: REDIS_URL, keyPrefix: prefix }, route('leased', 200, '3s')))
  const key = `${prefix}rl:leased:ip:127.0.0.1`

  const burst1 = await concurrent(apps, 400, { url: '/api/leased' })
  const one = countStatuses(burst1)
  t.same(one.other, [], 'only 200 or 429')
  t.ok(one.ok <= 200 && one.ok >= 200 - 2 * 2, `first window: at most max, at most one lease (1% = 2) lost per instance (${one.ok} served)`)
  const c1 = await counter(REDIS_URL, key)
  t.ok(c1.value >= 400 && c1.value <= 400 + 2 * 2, `the counter holds the burst (got ${c1.value})`)
  t.ok(c1.pttl > 0 && c1.pttl <= 3000, `TTL at most the window (pttl ${c1.pttl})`)

  // Poll one request at a time (alternating instances) until one is served: the new window.
  let polls = 0
  let pollServed = 0
  const refused: number[] = []
  await eventually('a request is served again in a new window', async () => {
    const res = await apps[polls++ % 2].inject({ url: '/api/leased' })
    if (res.statusCode === 200) pollServed++
    else refused.push(res.statusCode)
    return res.statusCode === 200
  }, 10_000, 50)
  t.ok(refused.every(s => s === 429), `every request before the new window was refused (${refused.length} polls)`)
  const c2 = await counter(REDIS_URL, key)
  t.ok(c2.value >= 1 && c2.value <= 2, `a new counter: one small lease so far (got ${c2.value})`)
  t.ok(c2.pttl > 0 && c2.pttl <= 3000, `TTL at most the window (pttl ${c2.pttl})`)

  // A second burst in the new window: the counts left over from the first window do not add to it.
  const burst2 = await concurrent(apps, 400, { url: '/api/leased' })
  const two = countStatuses(burst2)
  const c3 = await counter(REDIS_URL, key)
  t.ok(c3.value >= 400, `the second burst fell in the same (new) window (counter ${c3.value})`)
  t.same(two.other, [], 'only 200 or 429')
  t.ok(pollServed + two.ok <= 200, `new window: at most max served (${pollServed} + ${two.ok})`)
  t.ok(pollServed + two.ok >= 200 - 2 * 2, `new window: at most one lease lost per instance (${pollServed} + ${two.ok})`)
  t.equal(up.hits(), one.ok + pollServed + two.ok, 'the upstream saw exactly the served requests')
})

t.test('different keys are independent: one user exhausting the limit leaves another\'s untouched', async t => {
  const prefix = uniquePrefix(t, 'rl-lease')
  const up = await upstream(t, answerOk)
  const apps = await twoInstances(t, gatewayYaml(up.url, { url: REDIS_URL, keyPrefix: prefix },
    route('per-user', 10, '1m', { key: 'user', policy: 'user' }) + route('per-user-big', 300, '1m', { key: 'user', policy: 'user' })))
  const alice = bearer('alice')
  const bob = bearer('bob')

  // Exact limit: alice's 15 (both instances) leave bob all 10.
  const a = await sequential(apps, 15, { url: '/api/per-user', headers: alice })
  t.equal(countStatuses(a).ok, 10, 'alice: 10 served')
  t.equal(a[14].statusCode, 429, 'alice is refused')
  const b = await sequential(apps, 11, { url: '/api/per-user', headers: bob })
  t.same(b.slice(0, 10).map(r => r.headers['ratelimit-remaining']), ['9', '8', '7', '6', '5', '4', '3', '2', '1', '0'], 'bob starts with the full allowance')
  t.same(b.slice(0, 10).map(r => r.statusCode), Array(10).fill(200), 'bob: 10 served')
  assertLimited(t, b[10], 10, 60, 'bob over his limit:')
  const aliceAgain = await apps[0].inject({ url: '/api/per-user', headers: alice })
  t.equal(aliceAgain.statusCode, 429, 'alice is still refused after bob\'s requests')

  // With leases: alice's burst of 600 (max 300) leaves bob's counter empty.
  const burst = await concurrent(apps, 600, { url: '/api/per-user-big', headers: alice })
  const aliceBig = countStatuses(burst)
  t.ok(aliceBig.ok <= 300 && aliceBig.ok >= 300 - 2 * 3, `alice: at most 300 served, at most one lease lost per instance (${aliceBig.ok})`)
  const bobBig = await sequential([apps[0]], 3, { url: '/api/per-user-big', headers: bob })
  t.same(bobBig.map(r => r.statusCode), [200, 200, 200], 'bob is served')
  t.same(bobBig.map(r => r.headers['ratelimit-remaining']), ['299', '298', '297'], 'bob\'s own counter, from the full allowance')
  const bobOther = await apps[1].inject({ url: '/api/per-user-big', headers: bob })
  t.equal(bobOther.statusCode, 200, 'bob is served on the other instance too')
  const bobOtherRemaining = Number(bobOther.headers['ratelimit-remaining'])
  // The other instance's count comes after the first one's claims: 3 used, at most one lease (≤ 3) unused.
  t.ok(bobOtherRemaining <= 296 && bobOtherRemaining >= 296 - 3, `the other instance counts on bob's counter (remaining ${bobOtherRemaining})`)

  t.same(await keysUnder(REDIS_URL, prefix), [
    `${prefix}rl:per-user-big:u:alice`,
    `${prefix}rl:per-user-big:u:bob`,
    `${prefix}rl:per-user:u:alice`,
    `${prefix}rl:per-user:u:bob`,
  ], 'one counter per route and subject')
  t.equal((await counter(REDIS_URL, `${prefix}rl:per-user:u:alice`)).value, 16, 'alice\'s exact counter: one count per request')
  t.equal((await counter(REDIS_URL, `${prefix}rl:per-user:u:bob`)).value, 11, 'bob\'s exact counter: one count per request')
  const bobCount = (await counter(REDIS_URL, `${prefix}rl:per-user-big:u:bob`)).value
  t.ok(bobCount >= 4 && bobCount <= 4 + 2 * 3, `bob's leased counter holds only his 4 requests plus unused lease counts (got ${bobCount})`)
  t.equal(up.hits(), 10 + 10 + aliceBig.ok + 4)
})
