// The Redis cache store against a real Redis (README "Response cache"): bodies come
// back byte for byte, every entry key carries a PX TTL of its longest window,
// each tag is a set of entry keys that purging removes, and purgeAll touches
// only this store's cache keys — not another prefix's, not the rate limiter's
// under the same prefix.
import t from 'tap'
import { Redis } from 'ioredis'
import { RedisCacheStore } from '../../src/cache/redis-store.js'
import { encodeEntry, type CacheEntry } from '../../src/cache/store.js'
import { skipUnlessRedis, eventually, keysUnder as keysUnderOn, REDIS_URL, uniquePrefix } from '../helpers/redis.js'

await skipUnlessRedis(t)

type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
t.teardown(() => { redis.disconnect() })

const keysUnder = async (prefix: string): Promise<string[]> => await keysUnderOn(REDIS_URL, prefix)

function store (t: Test): { store: RedisCacheStore, prefix: string } {
  const prefix = uniquePrefix(t, 'cache-store')
  return { store: new RedisCacheStore(redis, prefix), prefix }
}

interface EntryOptions {
  body?: Buffer | string
  fresh?: number
  stale?: number
  error?: number
  tags?: string[]
  headers?: CacheEntry['headers']
}

function entry (o: EntryOptions = {}): CacheEntry {
  const now = Date.now()
  const fresh = o.fresh ?? 60_000
  return {
    status: 200,
    headers: o.headers ?? { 'content-type': 'text/plain' },
    body: Buffer.isBuffer(o.body) ? o.body : Buffer.from(o.body ?? 'body'),
    storedAt: now,
    freshUntil: now + fresh,
    staleUntil: now + (o.stale ?? fresh),
    errorUntil: now + (o.error ?? fresh),
    tags: o.tags ?? [],
  }
}

async function present (s: RedisCacheStore, keys: string[]): Promise<string[]> {
  const out: string[] = []
  for (const k of keys) if (await s.get(k) !== undefined) out.push(k)
  return out
}

t.test('get returns what set stored; a binary body with all 256 byte values survives', async t => {
  const { store: s, prefix } = store(t)
  const body = Buffer.alloc(256 * 4)
  for (let i = 0; i < body.length; i++) body[i] = (i * 7) % 256
  // A newline and bytes that are not UTF-8 inside the body: the entry's framing must not care.
  const e = entry({ body, headers: { 'content-type': 'application/octet-stream', link: ['</a>; rel=a', '</b>; rel=b'] }, tags: ['x'] })
  await s.set('k1', e)
  const got = await s.get('k1')
  t.ok(got !== undefined, 'found')
  t.equal(got?.status, 200)
  t.same(got?.headers, { 'content-type': 'application/octet-stream', link: ['</a>; rel=a', '</b>; rel=b'] })
  t.same(got?.tags, ['x'])
  t.equal(got?.storedAt, e.storedAt)
  t.equal(got?.freshUntil, e.freshUntil)
  t.equal(got?.staleUntil, e.staleUntil)
  t.equal(got?.errorUntil, e.errorUntil)
  t.equal(got?.body.length, body.length, 'body length')
  t.ok(got?.body.equals(body), 'body bytes identical')
  t.equal(await s.get('nope'), undefined, 'an unknown key is a miss')
  t.same(await keysUnder(`${prefix}c:`), [`${prefix}c:k1`], 'one entry key, <prefix>c:<key>')
})

t.test('an empty body survives too', async t => {
  const { store: s } = store(t)
  await s.set('empty', entry({ body: Buffer.alloc(0) }))
  const got = await s.get('empty')
  t.ok(got !== undefined)
  t.equal(got?.body.length, 0)
})

t.test('set replaces an entry under the same key', async t => {
  const { store: s } = store(t)
  await s.set('k', entry({ body: 'one' }))
  await s.set('k', entry({ body: 'two' }))
  t.equal((await s.get('k'))?.body.toString(), 'two')
})

t.test('entry keys carry a PX TTL of the longest window', async t => {
  const { store: s, prefix } = store(t)
  await s.set('fresh-only', entry({ fresh: 30_000 }))
  await s.set('error-window', entry({ fresh: 1000, stale: 5000, error: 600_000 }))
  const ttl1 = await redis.pttl(`${prefix}c:fresh-only`)
  t.ok(ttl1 > 25_000 && ttl1 <= 30_000, `fresh-only expires with its ttl (pttl ${ttl1})`)
  const ttl2 = await redis.pttl(`${prefix}c:error-window`)
  t.ok(ttl2 > 590_000 && ttl2 <= 600_000, `kept for the staleIfError window (pttl ${ttl2})`)
})

t.test('an entry is gone once its retention has passed', async t => {
  const { store: s, prefix } = store(t)
  await s.set('short', entry({ fresh: 100 }))
  t.ok(await s.get('short') !== undefined, 'there at first')
  await eventually('the entry expires', async () => await s.get('short') === undefined)
  t.equal(await redis.exists(`${prefix}c:short`), 0, 'the key is gone from Redis')
})

t.test('an entry with nothing left to keep is not stored', async t => {
  const { store: s, prefix } = store(t)
  await s.set('past', entry({ fresh: -1000, tags: ['t'] }))
  t.equal(await s.get('past'), undefined)
  t.same(await keysUnder(prefix), [], 'no keys written')
})

t.test('a value that is not an entry reads as a miss, not as an error', async t => {
  const { store: s, prefix } = store(t)
  await redis.set(`${prefix}c:garbage`, 'no header line here', 'PX', 60_000)
  await redis.set(`${prefix}c:badjson`, '{not json\nbody', 'PX', 60_000)
  t.equal(await s.get('garbage'), undefined)
  t.equal(await s.get('badjson'), undefined)
})

t.test('each tag is a set of entry keys that lives as long as its longest entry', async t => {
  const { store: s, prefix } = store(t)
  await s.set('a', entry({ fresh: 10_000, tags: ['user:1'] }))
  await s.set('b', entry({ fresh: 60_000, tags: ['user:1', 'team:9'] }))
  await s.set('c', entry({ fresh: 5000, tags: ['user:1'] }))
  t.same((await redis.smembers(`${prefix}t:user:1`)).sort(), [`${prefix}c:a`, `${prefix}c:b`, `${prefix}c:c`])
  t.same(await redis.smembers(`${prefix}t:team:9`), [`${prefix}c:b`])
  const ttl = await redis.pttl(`${prefix}t:user:1`)
  t.ok(ttl > 55_000 && ttl <= 60_000, `a shorter entry added later does not shorten the tag set (pttl ${ttl})`)
  const ttl9 = await redis.pttl(`${prefix}t:team:9`)
  t.ok(ttl9 > 55_000 && ttl9 <= 60_000, `the tag set expires (pttl ${ttl9})`)
})

t.test('purgeTags removes every entry carrying any of the tags, only those, and the tag sets', async t => {
  const { store: s, prefix } = store(t)
  await s.set('a', entry({ tags: ['user:1'] }))
  await s.set('b', entry({ tags: ['user:1', 'team:9'] }))
  await s.set('c', entry({ tags: ['team:9'] }))
  await s.set('d', entry({ tags: ['user:2'] }))
  await s.set('e', entry())
  t.equal(await s.purgeTags(['user:1']), 2, 'two removed')
  t.same(await present(s, ['a', 'b', 'c', 'd', 'e']), ['c', 'd', 'e'])
  t.equal(await redis.exists(`${prefix}t:user:1`), 0, 'the purged tag set is gone')
  t.equal(await s.purgeTags(['team:9', 'user:2']), 2, 'c and d (b is gone already)')
  t.same(await present(s, ['a', 'b', 'c', 'd', 'e']), ['e'])
  t.same(await keysUnder(prefix), [`${prefix}c:e`], 'only the untagged entry is left, no tag sets')
  t.equal(await s.purgeTags(['user:1', 'nobody']), 0, 'nothing left to remove')
})

t.test('purgeAll removes this prefix\'s cache keys and nothing else', async t => {
  const mine = store(t)
  const other = store(t)
  for (const k of ['a', 'b', 'c']) await mine.store.set(k, entry({ tags: ['t'] }))
  await other.store.set('a', entry({ tags: ['t'] }))
  // The rate limiter keeps its counters under the same prefix.
  await redis.set(`${mine.prefix}rl:route:ip:127.0.0.1`, '3', 'PX', 60_000)

  t.equal(await mine.store.purgeAll(), 3, 'three entries removed')
  t.same(await present(mine.store, ['a', 'b', 'c']), [])
  t.same(await keysUnder(mine.prefix), [`${mine.prefix}rl:route:ip:127.0.0.1`], 'entries and tag sets gone; the rate-limit counter stays')
  t.ok(await other.store.get('a') !== undefined, 'another prefix\'s entry stays')
  t.same(await redis.smembers(`${other.prefix}t:t`), [`${other.prefix}c:a`], 'another prefix\'s tag set stays')
})

t.test('purgeAll gets every key however many there are', async t => {
  const { store: s, prefix } = store(t)
  const n = 1200
  const pipeline = redis.pipeline()
  const value = encodeEntry(entry())
  for (let i = 0; i < n; i++) pipeline.set(`${prefix}c:k${i}`, value, 'PX', 60_000)
  await pipeline.exec()
  t.ok(await s.get('k7') !== undefined, 'the written entries read as entries')
  t.equal(await s.purgeAll(), n)
  t.same(await keysUnder(prefix), [])
})
