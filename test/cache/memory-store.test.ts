// The in-memory cache store alone (README "Response cache"): bodies come back byte
// for byte, an entry lives as long as its longest window and no longer, the
// LRU is bounded by entries and by bytes and evicts the least recently *used*
// entry (a get counts as a use), and tags purge exactly the entries that
// carry them.
import t from 'tap'
import { eventually } from '../helpers/redis.js'
import { MemoryCacheStore } from '../../src/cache/memory-store.js'
import type { CacheEntry } from '../../src/cache/store.js'

interface EntryOptions {
  body?: Buffer | string
  /** ms from now the entry is fresh / may be served stale / may be served on error. */
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

/** Which of the keys the store still has, in the order given. */
async function present (store: MemoryCacheStore, keys: string[]): Promise<string[]> {
  const out: string[] = []
  for (const k of keys) if (await store.get(k) !== undefined) out.push(k)
  return out
}

/** Bytes the store charges for an entry: its body plus a fixed overhead for the rest. */
const OVERHEAD = 512

const big = (): MemoryCacheStore => new MemoryCacheStore({ maxEntries: 1000, maxBytes: 10 * 1024 * 1024 })

t.test('get returns what set stored: status, headers, tags and every body byte', async t => {
  const store = big()
  const body = Buffer.alloc(512)
  for (let i = 0; i < body.length; i++) body[i] = i % 256
  const e = entry({ body, headers: { 'content-type': 'application/octet-stream', link: ['</a>; rel=a', '</b>; rel=b'] }, tags: ['x', 'y'] })
  await store.set('k', e)
  const got = await store.get('k')
  t.ok(got !== undefined, 'found')
  t.equal(got?.status, 200)
  t.same(got?.headers, { 'content-type': 'application/octet-stream', link: ['</a>; rel=a', '</b>; rel=b'] })
  t.same(got?.tags, ['x', 'y'])
  t.equal(got?.storedAt, e.storedAt)
  t.equal(got?.freshUntil, e.freshUntil)
  t.ok(got?.body.equals(body), 'body bytes identical (all 256 byte values)')
  t.equal(await store.get('other'), undefined, 'an unknown key is a miss')
})

t.test('set replaces an entry under the same key', async t => {
  const store = big()
  await store.set('k', entry({ body: 'one' }))
  await store.set('k', entry({ body: 'two' }))
  t.equal((await store.get('k'))?.body.toString(), 'two')
})

t.test('an entry is kept until its latest window ends, then it is gone', async t => {
  const store = big()
  const stored = Date.now() // before the entry's own clock reading, so the bound below holds
  await store.set('short', entry({ fresh: 60 }))
  // Fresh for a moment but usable on error for a minute: kept for the minute.
  await store.set('error-window', entry({ fresh: 60, error: 60_000 }))
  await store.set('stale-window', entry({ fresh: 60, stale: 60_000 }))
  t.ok(await store.get('short') !== undefined, 'there at first')
  await eventually('the short entry is gone', async () => await store.get('short') === undefined, 5000, 10)
  t.ok(Date.now() - stored >= 60, 'not before its 60 ms retention ended')
  t.ok(await store.get('error-window') !== undefined, 'kept for its staleIfError window')
  t.ok(await store.get('stale-window') !== undefined, 'kept for its staleWhileRevalidate window')
})

t.test('an entry with nothing left to keep is not stored', async t => {
  const store = big()
  await store.set('past', entry({ fresh: -1000 }))
  t.equal(await store.get('past'), undefined)
})

t.test('maxEntries: the least recently used entry is evicted first, and a get counts as a use', async t => {
  const store = new MemoryCacheStore({ maxEntries: 3, maxBytes: 10 * 1024 * 1024 })
  await store.set('a', entry())
  await store.set('b', entry())
  await store.set('c', entry())
  t.ok(await store.get('a') !== undefined, 'a used: now the most recent')
  await store.set('d', entry())
  t.same(await present(store, ['a', 'b', 'c', 'd']), ['a', 'c', 'd'], 'b (least recently used) went, not a (oldest stored)')
  // present() used a, c, d in that order: a is now the least recent.
  await store.set('e', entry())
  t.same(await present(store, ['a', 'b', 'c', 'd', 'e']), ['c', 'd', 'e'])
})

t.test('maxEntries: replacing an entry does not count it twice', async t => {
  const store = new MemoryCacheStore({ maxEntries: 2, maxBytes: 10 * 1024 * 1024 })
  await store.set('a', entry())
  for (let i = 0; i < 5; i++) await store.set('b', entry({ body: `b${i}` }))
  t.same(await present(store, ['a', 'b']), ['a', 'b'])
})

t.test('maxBytes: the least recently used entry is evicted first, and a get counts as a use', async t => {
  const body = Buffer.alloc(1000, 1)
  const store = new MemoryCacheStore({ maxEntries: 1000, maxBytes: 3 * (body.length + OVERHEAD) })
  await store.set('a', entry({ body }))
  await store.set('b', entry({ body }))
  await store.set('c', entry({ body }))
  t.same(await present(store, ['a', 'b', 'c']), ['a', 'b', 'c'], 'three fit')
  await store.get('a')
  await store.set('d', entry({ body }))
  t.same(await present(store, ['a', 'b', 'c', 'd']), ['a', 'c', 'd'], 'b (least recently used) went')
  // One entry twice the size needs two places: the two least recently used go.
  await store.set('e', entry({ body: Buffer.alloc(2 * body.length + OVERHEAD, 2) }))
  t.same(await present(store, ['a', 'c', 'd', 'e']), ['d', 'e'])
})

t.test('maxBytes: an entry larger than the whole store is not stored and evicts nothing', async t => {
  const store = new MemoryCacheStore({ maxEntries: 1000, maxBytes: 4096 })
  await store.set('a', entry({ body: 'small' }))
  await store.set('huge', entry({ body: Buffer.alloc(8192) }))
  t.equal(await store.get('huge'), undefined)
  t.ok(await store.get('a') !== undefined, 'the small entry is still there')
})

t.test('maxBytes: a newer answer too large to keep does not leave the older one behind', async t => {
  const store = new MemoryCacheStore({ maxEntries: 1000, maxBytes: 4096 })
  await store.set('k', entry({ body: 'old answer' }))
  await store.set('k', entry({ body: Buffer.alloc(8192) }))
  t.equal(await store.get('k'), undefined, 'the old answer is not served in place of the new one')
})

t.test('maxBytes: replacing and purging give the bytes back', async t => {
  const body = Buffer.alloc(1000, 1)
  const store = new MemoryCacheStore({ maxEntries: 1000, maxBytes: 2 * (body.length + OVERHEAD) })
  for (let i = 0; i < 10; i++) await store.set('a', entry({ body }))
  await store.set('b', entry({ body, tags: ['t'] }))
  t.same(await present(store, ['a', 'b']), ['a', 'b'], 'ten replacements of a still leave room for b')
  await store.purgeTags(['t'])
  await store.set('c', entry({ body }))
  t.same(await present(store, ['a', 'b', 'c']), ['a', 'c'], 'the purged entry\'s bytes were given back')
  await store.purgeAll()
  await store.set('d', entry({ body }))
  await store.set('e', entry({ body }))
  t.same(await present(store, ['a', 'c', 'd', 'e']), ['d', 'e'], 'after purgeAll the store holds maxBytes again')
})

t.test('purgeTags removes every entry carrying any of the tags, and only those', async t => {
  const store = big()
  await store.set('a', entry({ tags: ['user:1'] }))
  await store.set('b', entry({ tags: ['user:1', 'team:9'] }))
  await store.set('c', entry({ tags: ['team:9'] }))
  await store.set('d', entry({ tags: ['user:2'] }))
  await store.set('e', entry())
  t.equal(await store.purgeTags(['user:1']), 2, 'two removed')
  t.same(await present(store, ['a', 'b', 'c', 'd', 'e']), ['c', 'd', 'e'])
  t.equal(await store.purgeTags(['team:9', 'user:2']), 2, 'c and d (b is gone already)')
  t.same(await present(store, ['a', 'b', 'c', 'd', 'e']), ['e'])
  t.equal(await store.purgeTags(['user:1', 'nobody']), 0, 'nothing left to remove')
  t.equal(await store.purgeTags([]), 0)
})

t.test('purgeTags follows replacements: a tag an entry no longer carries does not remove it', async t => {
  const store = big()
  await store.set('a', entry({ tags: ['old'] }))
  await store.set('a', entry({ tags: ['new'] }))
  t.equal(await store.purgeTags(['old']), 0)
  t.ok(await store.get('a') !== undefined)
  t.equal(await store.purgeTags(['new']), 1)
  t.equal(await store.get('a'), undefined)
  // A tag purged once works again for entries stored afterwards.
  await store.set('b', entry({ tags: ['new'] }))
  t.equal(await store.purgeTags(['new']), 1)
  t.equal(await store.get('b'), undefined)
})

t.test('purgeAll removes everything and the store keeps working', async t => {
  const store = big()
  for (const k of ['a', 'b', 'c']) await store.set(k, entry({ tags: ['t'] }))
  t.equal(await store.purgeAll(), 3)
  t.same(await present(store, ['a', 'b', 'c']), [])
  t.equal(await store.purgeTags(['t']), 0, 'the tag index is empty too')
  await store.set('a', entry({ body: 'again' }))
  t.equal((await store.get('a'))?.body.toString(), 'again')
})
