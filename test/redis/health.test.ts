// One Redis health signal (src/redis/connection.ts) read by every store: with a private
// redis-server killed under a running gateway, /readyz, the cache (its near
// cache included), the rate limiter and the event sink all take Redis for
// down at once — requests are still served (BYPASS, local rate-limit counts,
// the write answered while its event is lost) — and once /readyz says up
// again, every one of them uses the restarted Redis again by itself.
import t from 'tap'
import { join } from 'node:path'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import pino from 'pino'
import { writeConfigFiles } from '../helpers/gateway.js'
import { loadConfig } from '../../src/config/index.js'
import { buildGateway } from '../../src/gateway/app.js'
import { SharedResources } from '../../src/gateway/shared-resources.js'
import { closedPort, startUpstream } from '../helpers/upstream.js'
import { skipUnlessRedis, eventually, keysUnder, PrivateRedis, withClient } from '../helpers/redis.js'

await skipUnlessRedis(t)

type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const PREFIX = 'test-redis-health:'
const STREAM = 'orders'

/** The gateway, and the resources it shares (its Redis connection: the signal itself). */
async function gateway (t: Test, redisUrl: string, upstreamUrl: string): Promise<{ app: FastifyInstance, shared: SharedResources }> {
  const dir = writeConfigFiles({
    'gateway.yaml': JSON.stringify({
      redis: { url: redisUrl, keyPrefix: PREFIX },
      // A generous budget: a loaded test machine must not turn a HIT into a BYPASS.
      cache: { timeout: '2s' },
      events: { publishRetries: 0 },
      policies: { public: { auth: 'none' } },
      services: { backend: { urls: [upstreamUrl], timeout: '2s' } },
      routes: [
        { id: 'items', method: 'GET', path: '/api/items', policy: 'public', proxy: { service: 'backend', path: '/items' }, cache: { ttl: '1m' } },
        { id: 'limited', method: 'GET', path: '/api/limited', policy: 'public', proxy: { service: 'backend', path: '/limited' }, rateLimit: { max: 100, window: '1m' } },
        // Max 200: a key used fast enough is claimed two counts at a time (a lease, src/pipeline/rate-limit/lease.ts).
        { id: 'busy', method: 'GET', path: '/api/busy', policy: 'public', proxy: { service: 'backend', path: '/busy' }, rateLimit: { max: 200, window: '1m' } },
        { id: 'orders', method: 'POST', path: '/api/orders', policy: 'public', proxy: { service: 'backend', path: '/orders' }, publish: { stream: STREAM, type: 'order.created' } },
      ],
    }),
  })
  const { config } = loadConfig(join(dir, 'gateway.yaml'), {})
  const shared = new SharedResources(pino({ level: 'silent' }))
  const app = await buildGateway(config, { shared })
  t.teardown(async () => { await app.close(); await shared.closeAll() })
  await app.ready()
  return { app, shared }
}

interface Seen { readyz: string, items: LightMyRequestResponse, limited: LightMyRequestResponse, order: LightMyRequestResponse }

/** One request to each consumer, sent together: what the gateway shows at one moment. */
async function snapshot (app: FastifyInstance): Promise<Seen> {
  const [ready, items, limited, order] = await Promise.all([
    app.inject({ url: '/readyz' }),
    app.inject({ url: '/api/items' }),
    app.inject({ url: '/api/limited' }),
    app.inject({ method: 'POST', url: '/api/orders', payload: { sku: 'a-1' } }),
  ])
  return { readyz: ready.json<{ redis: string }>().redis, items, limited, order }
}

const readyz = async (app: FastifyInstance): Promise<string> => (await app.inject({ url: '/readyz' })).json<{ redis: string }>().redis
const limitKey = `${PREFIX}rl:limited:ip:127.0.0.1`
const busyKey = `${PREFIX}rl:busy:ip:127.0.0.1`

function expectLimitHeaders (t: Test, res: LightMyRequestResponse, remaining: number, label: string, max = 100): void {
  t.equal(res.statusCode, 200, `${label}: the rate-limited route answers 200`)
  t.equal(res.headers['ratelimit-limit'], String(max), `${label}: ratelimit-limit`)
  t.equal(res.headers['ratelimit-remaining'], String(remaining), `${label}: ratelimit-remaining ${remaining}`)
}

t.test('Redis killed and restarted: every store follows the one signal, together', async t => {
  const server = await PrivateRedis.started(t, await closedPort())
  let n = 0
  const up = await startUpstream((req, res) => {
    res.writeHead(req.method === 'POST' ? 201 : 200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ n: ++n, url: req.url }))
  })
  t.teardown(up.close)
  const hitsOf = (path: string): number => up.seen.filter(s => s.url === path).length
  const { app, shared } = await gateway(t, server.url, up.url)
  // The signal every store reads: each change is reported once (no repeats while Redis stays down).
  const changes: string[] = []
  shared.redis(server.url).onStateChange(state => changes.push(state))
  const events = app.events
  if (events === undefined) throw new Error('the gateway has no event publisher')

  // Redis up: cached, counted in Redis, published to Redis.
  await eventually('/readyz says redis up', async () => await readyz(app) === 'up')
  const before = await snapshot(app)
  t.equal(before.items.headers['x-cache'], 'MISS')
  t.equal((await app.inject({ url: '/api/items' })).headers['x-cache'], 'HIT', 'cached while Redis is up')
  expectLimitHeaders(t, before.limited, 99, 'Redis up')
  t.equal(await withClient(server.url, async c => await c.get(limitKey)), '1', 'the request was counted in Redis')
  t.equal(before.order.statusCode, 201)
  // Two requests in a row: the second claims a lease of two counts and uses one (Redis counts 3).
  t.equal((await app.inject({ url: '/api/busy' })).headers['ratelimit-remaining'], '199')
  t.equal((await app.inject({ url: '/api/busy' })).headers['ratelimit-remaining'], '198')
  const busyBefore = await withClient(server.url, async c => await c.get(busyKey))
  t.ok(busyBefore === '2' || busyBefore === '3', `counted in Redis, a count perhaps claimed ahead (${String(busyBefore)})`)
  await eventually('the first order is published', async () => events.counters.published === 1)
  t.equal(await withClient(server.url, async c => await c.xlen(`${STREAM}`)), 1, 'the event is in the Redis stream')

  t.same(changes, [], 'no change while Redis stayed up')

  await server.kill()
  await eventually('/readyz says redis down', async () => await readyz(app) === 'down')
  t.same(changes, ['down'], 'the connection reported down, once')
  const down = await snapshot(app)
  t.equal(down.readyz, 'down', 'down: /readyz')
  t.equal(down.items.statusCode, 200, 'down: the cached route is served')
  t.equal(down.items.headers['x-cache'], 'BYPASS', 'down: the cache is bypassed (the near cache too: no HIT from memory)')
  t.equal(hitsOf('/items'), 2, 'down: the cached route went to the upstream')
  // A fresh local counter: the 1 counted in Redis is not seen by it.
  expectLimitHeaders(t, down.limited, 99, 'down (local counting)')
  t.equal(down.order.statusCode, 201, 'down: the write is answered')
  await eventually('down: the event is given up at once', async () => events.counters.failed === 1)
  t.equal(events.counters.published, 1)
  const again = await snapshot(app)
  t.equal(again.readyz, 'down')
  t.equal(again.items.headers['x-cache'], 'BYPASS', 'down, again: still BYPASS')
  expectLimitHeaders(t, again.limited, 98, 'down, again (the local counter counts)')

  await server.start()
  await eventually('/readyz says redis up again', async () => await readyz(app) === 'up', 15_000)
  t.same(changes, ['down', 'up'], 'then up, once')
  const back = await snapshot(app)
  t.equal(back.readyz, 'up')
  t.equal(back.items.headers['x-cache'], 'MISS', 'back: the cache is used again (the restarted Redis is empty)')
  t.equal((await app.inject({ url: '/api/items' })).headers['x-cache'], 'HIT', 'back: and stores again')
  t.equal(hitsOf('/items'), 4, 'one upstream call for the MISS, none for the HIT')
  expectLimitHeaders(t, back.limited, 99, 'back: counted in the (new, empty) Redis')
  t.equal(await withClient(server.url, async c => await c.get(limitKey)), '1', 'back: the rate-limit key is in Redis')
  // A count leased from the old Redis is not handed out: the new Redis counts this request.
  const busy = await app.inject({ url: '/api/busy' })
  expectLimitHeaders(t, busy, 199, 'back: a leased route', 200)
  t.equal(await withClient(server.url, async c => await c.get(busyKey)), '1', 'back: the leased route counts in the new Redis, no lease from before the outage used')
  t.equal(back.order.statusCode, 201)
  await eventually('back: the order is published', async () => events.counters.published === 2)
  t.equal(await withClient(server.url, async c => await c.xlen(STREAM)), 1, 'back: the event is in the restarted Redis')
  t.ok((await keysUnder(server.url, `${PREFIX}c:`)).length === 1, 'back: the cache entry is in Redis')
})
