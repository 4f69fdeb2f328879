// The operator's purge (POST /admin/cache/purge) guards reads in flight the
// same way a route's `invalidates` does: a cached GET whose upstream call
// started before the purge is answered, but its answer is not stored, so the
// purge is not undone by an answer from before it. With the memory store and
// with Redis (the near cache on and off), purging by tag and purging all.
import t from 'tap'
import { buildFromFiles } from '../helpers/gateway.js'
import { closedPort, startUpstream, type Upstream } from '../helpers/upstream.js'
import { skipUnlessRedis, REDIS_URL, uniquePrefix } from '../helpers/redis.js'
import { buildAdminApp } from '../../src/admin/admin-app.js'

await skipUnlessRedis(t)

type Test = Parameters<Parameters<typeof t.test>[0]>[0]

/** An upstream that holds every answer until the test releases it; `received` resolves as each request arrives. */
interface HeldUpstream {
  up: Upstream
  /** Resolves when the n-th request (1-based) has reached the upstream. */
  received: (n: number) => Promise<void>
  /** Lets the oldest held answer go out. */
  release: () => void
  /** From now on, answer at once. */
  stopHolding: () => void
}

async function heldUpstream (t: Test): Promise<HeldUpstream> {
  const held: Array<() => void> = []
  let holding = true
  let n = 0
  const waiters = new Map<number, () => void>()
  const up = await startUpstream((_req, res) => {
    const answer = (): void => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ n: mine }))
    }
    const mine = ++n
    if (holding) held.push(answer)
    else answer()
    waiters.get(mine)?.()
  })
  t.teardown(async () => { for (const answer of held.splice(0)) answer(); await up.close() })
  return {
    up,
    received: async (want) => {
      if (n >= want) return
      await new Promise<void>(resolve => { waiters.set(want, resolve) })
    },
    release: () => { held.shift()?.() },
    stopHolding: () => { holding = false; for (const answer of held.splice(0)) answer() },
  }
}

interface Store { name: string, yaml: (t: Test) => Record<string, unknown> }

const STORES: Store[] = [
  { name: 'memory store', yaml: () => ({}) },
  { name: 'Redis, near cache on', yaml: t => ({ redis: { url: REDIS_URL, keyPrefix: uniquePrefix(t, 'purge-race') }, cache: { timeout: '2s' } }) },
  { name: 'Redis, near cache off', yaml: t => ({ redis: { url: REDIS_URL, keyPrefix: uniquePrefix(t, 'purge-race') }, cache: { timeout: '2s', near: false } }) },
]

for (const store of STORES) {
  for (const purge of [{ tags: ['user:7'] }, { all: true }]) {
    t.test(`${store.name}: a read in flight when the operator purges ${JSON.stringify(purge)} is served, not stored`, async t => {
      const h = await heldUpstream(t)
      const app = await buildFromFiles(t, {
        'gateway.yaml': JSON.stringify({
          ...store.yaml(t),
          policies: { public: { auth: 'none' } },
          services: { backend: { urls: [h.up.url], timeout: '5s' } },
          routes: [{ id: 'read-user', method: 'GET', path: '/api/users/:id', policy: 'public', proxy: { service: 'backend', path: '/users/{params.id}' }, cache: { ttl: '1m', tags: ['user:{params.id}'] } }],
        }),
      })
      await app.ready()
      const admin = await buildAdminApp(app)
      t.teardown(async () => { await admin.close() })

      // The read starts; the upstream has it and holds its answer.
      const inFlight = app.inject({ method: 'GET', url: '/api/users/7' })
      await h.received(1)

      // The operator purges while the read waits on the upstream.
      const purged = await admin.inject({ method: 'POST', url: '/admin/cache/purge', payload: purge })
      t.equal(purged.statusCode, 200, 'the purge is answered 200')
      t.equal(purged.json<{ purged: number }>().purged, 0, 'nothing was stored yet')

      // Now the upstream answers: the client gets it, the cache does not keep it.
      h.release()
      const first = await inFlight
      t.equal(first.statusCode, 200)
      t.equal(first.headers['x-cache'], 'MISS', 'the racing read is a MISS')
      t.same(first.json(), { n: 1 }, 'and gets the upstream\'s answer')

      h.stopHolding()
      const next = await app.inject({ method: 'GET', url: '/api/users/7' })
      t.equal(next.headers['x-cache'], 'MISS', 'the next read is a MISS: the pre-purge answer was not stored')
      t.same(next.json(), { n: 2 }, 'it is the upstream\'s second answer')
      t.equal(h.up.hits(), 2, 'the upstream was asked twice')

      // A read that starts after the purge is stored as usual.
      const hit = await app.inject({ method: 'GET', url: '/api/users/7' })
      t.equal(hit.headers['x-cache'], 'HIT', 'the answer of a read after the purge is stored')
      t.same(hit.json(), { n: 2 })
      t.equal(h.up.hits(), 2)
    })
  }
}

t.test('a purge while the store is unreachable is a 500 INTERNAL_ERROR, and the gateway keeps serving', async t => {
  const h = await heldUpstream(t)
  h.stopHolding()
  const app = await buildFromFiles(t, {
    'gateway.yaml': JSON.stringify({
      redis: { url: `redis://127.0.0.1:${await closedPort()}`, keyPrefix: 'purge-race-down:' },
      policies: { public: { auth: 'none' } },
      services: { backend: { urls: [h.up.url], timeout: '5s' } },
      routes: [{ id: 'read-user', method: 'GET', path: '/api/users/:id', policy: 'public', proxy: { service: 'backend', path: '/users/{params.id}' }, cache: { ttl: '1m', tags: ['user:{params.id}'] } }],
    }),
  })
  await app.ready()
  const admin = await buildAdminApp(app)
  t.teardown(async () => { await admin.close() })
  const purged = await admin.inject({ method: 'POST', url: '/admin/cache/purge', payload: { tags: ['user:7'] } })
  t.equal(purged.statusCode, 500)
  t.equal(purged.json<{ code: string }>().code, 'INTERNAL_ERROR')
  const read = await app.inject({ method: 'GET', url: '/api/users/7' })
  t.equal(read.statusCode, 200)
  t.equal(read.headers['x-cache'], 'BYPASS')
})
