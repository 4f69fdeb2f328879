// Success hooks (invalidate, publish) on cached routes, through a real gateway
// to a real upstream, with the memory event sink and each cache store: they
// run once per 2xx answer the upstream gives, whichever path asked for it
// (MISS, BYPASS, HEAD, a stale-while-revalidate refresh, concurrent misses
// coalesced into one call), never for an answer the cache gave (HIT, STALE),
// and never for a non-2xx answer.
import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { buildFromFiles } from '../helpers/gateway.js'
import { upstream, type Upstream } from '../helpers/upstream.js'
import { skipUnlessRedis, REDIS_URL, eventually, uniquePrefix } from '../helpers/redis.js'
import type { MemoryEventSink } from '../../src/events/memory-sink.js'
import type { GatewayEvent } from '../../src/events/sink.js'

await skipUnlessRedis(t)

type Test = Parameters<Parameters<typeof t.test>[0]>[0]
type StoreKind = 'memory' | 'redis'
const STORES: StoreKind[] = ['memory', 'redis']

/** An upstream answering `status` with a body naming the call (n) and path; while `gate` is set, answers wait for it. */
interface Control { up: Upstream, status: number, gate?: Promise<void> }

async function controlled (t: Test): Promise<Control> {
  let n = 0
  const c = { status: 200 } as Control
  c.up = await upstream(t, async (req, res) => {
    const mine = ++n
    if (c.gate !== undefined) await c.gate
    res.writeHead(c.status, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ n: mine, url: req.url }))
  })
  return c
}

function latch (): { wait: Promise<void>, open: () => void } {
  let open: () => void = () => {}
  const wait = new Promise<void>(resolve => { open = resolve })
  return { wait, open }
}

type Route = Record<string, unknown> & { id: string, path: string }

const STREAM = 'report-views'

async function gateway (t: Test, store: StoreKind, upstreamUrl: string, routes: Route[]): Promise<FastifyInstance> {
  const yaml = JSON.stringify({
    ...(store === 'redis' ? { redis: { url: REDIS_URL, keyPrefix: uniquePrefix(t, 'hooks') } } : {}),
    events: { sink: 'memory' },
    // A generous budget: the 50 ms default can be missed on a loaded machine, turning a HIT into a BYPASS.
    cache: { timeout: '2s' },
    policies: { public: { auth: 'none' } },
    services: { backend: { urls: [upstreamUrl], timeout: '2s' } },
    routes: routes.map(r => ({ method: 'GET', policy: 'public', ...r })),
  }, null, 2)
  const app = await buildFromFiles(t, { 'gateway.yaml': yaml })
  await app.ready()
  if (store === 'redis') {
    t.equal((await app.inject({ url: '/readyz' })).json<{ redis: string }>().redis, 'up', 'the gateway is connected to Redis')
  }
  return app
}

/** The events published so far. The memory sink appends synchronously, so a request's own event is there when its answer is. */
function events (app: FastifyInstance): GatewayEvent[] {
  const sink = app.events?.sink as MemoryEventSink | undefined
  if (sink === undefined) throw new Error('the gateway has no event sink')
  return (sink.streams.get(STREAM) ?? []).map(e => e.event)
}

async function request (app: FastifyInstance, method: 'GET' | 'HEAD' | 'POST', url: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method, url, ...(method === 'POST' ? { payload: '{}', headers: { 'content-type': 'application/json' } } : {}) })
}

const reportRoute = (extra: Record<string, unknown> = {}): Route => ({
  id: 'report',
  path: '/api/report',
  method: ['GET', 'POST'],
  proxy: { service: 'backend', path: '/report' },
  cache: { ttl: '1m' },
  publish: { stream: STREAM, type: 'report.viewed' },
  ...extra,
})

for (const store of STORES) {
  t.test(`${store}: a cached GET route with publish publishes once per upstream 2xx: MISS, HEAD and BYPASS yes, HIT no`, async t => {
    const c = await controlled(t)
    const app = await gateway(t, store, c.up.url, [reportRoute()])

    const miss = await request(app, 'GET', '/api/report')
    t.equal(miss.statusCode, 200)
    t.equal(miss.headers['x-cache'], 'MISS')
    t.equal(c.up.hits(), 1)
    let published = events(app)
    t.equal(published.length, 1, 'a MISS publishes one event')
    t.equal(published[0].type, 'report.viewed')
    t.equal(published[0].route, 'report')
    t.equal(published[0].body, miss.body, 'its body is the upstream answer')
    t.equal(published[0].requestId, miss.headers['x-request-id'])

    const hit = await request(app, 'GET', '/api/report')
    t.equal(hit.headers['x-cache'], 'HIT')
    t.equal(hit.body, miss.body)
    t.equal(c.up.hits(), 1, 'a HIT makes no upstream call')
    t.equal(events(app).length, 1, 'and publishes nothing')

    const head = await request(app, 'HEAD', '/api/report')
    t.equal(head.statusCode, 200)
    t.equal(head.headers['x-cache'], 'BYPASS', 'HEAD goes to the upstream')
    t.equal(head.body, '')
    t.equal(c.up.hits(), 2)
    published = events(app)
    t.equal(published.length, 2, 'a HEAD answered 2xx publishes one event')
    t.equal(published[1].requestId, head.headers['x-request-id'])

    const post = await request(app, 'POST', '/api/report')
    t.equal(post.headers['x-cache'], 'BYPASS')
    t.equal(c.up.hits(), 3)
    t.equal(events(app).length, 3, 'a non-GET on the cached route publishes one event')

    c.status = 503
    const down = await request(app, 'GET', '/api/report?fresh=1')
    t.equal(down.statusCode, 503, 'the upstream 5xx is passed on')
    t.equal(c.up.hits(), 4)
    t.equal(events(app).length, 3, 'a 5xx MISS publishes nothing')
    const headDown = await request(app, 'HEAD', '/api/report')
    t.equal(headDown.statusCode, 503)
    t.equal(events(app).length, 3, 'a 5xx HEAD publishes nothing')
    c.status = 404
    t.equal((await request(app, 'GET', '/api/report?missing=1')).statusCode, 404)
    t.equal(events(app).length, 3, 'a 4xx publishes nothing')
  })

  t.test(`${store}: concurrent misses coalesced into one upstream call publish one event`, async t => {
    const c = await controlled(t)
    const gate = latch()
    c.gate = gate.wait
    const app = await gateway(t, store, c.up.url, [reportRoute()])
    const pending = Array.from({ length: 10 }, async () => await request(app, 'GET', '/api/report'))
    await eventually('nine requests wait on the first one\'s call', async () => app.cacheLayer.coalesced.waiting === 9)
    gate.open()
    const all = await Promise.all(pending)
    t.same(all.map(r => r.statusCode), Array(10).fill(200))
    t.equal(c.up.hits(), 1, 'one upstream call')
    t.equal(events(app).length, 1, 'one event')
    t.equal(app.cacheLayer.coalesced.waiting, 0, 'nobody waits any more')
  })

  t.test(`${store}: a stale-while-revalidate refresh is an upstream call: it publishes once; the STALE answers do not`, async t => {
    const c = await controlled(t)
    const app = await gateway(t, store, c.up.url, [reportRoute({ cache: { ttl: '200ms', staleWhileRevalidate: '1m' } })])
    const miss = await request(app, 'GET', '/api/report')
    t.equal(miss.headers['x-cache'], 'MISS')
    t.equal(events(app).length, 1)

    // The refresh waits at the upstream until the latch opens, so nothing else can refresh meanwhile.
    const gate = latch()
    c.gate = gate.wait
    let stale: LightMyRequestResponse | undefined
    await eventually('the entry goes stale', async () => {
      stale = await request(app, 'GET', '/api/report')
      return stale.headers['x-cache'] === 'STALE'
    })
    t.equal(stale?.body, miss.body, 'the old copy')
    await eventually('the refresh reaches the upstream', async () => c.up.hits() === 2)
    t.equal((await request(app, 'GET', '/api/report')).headers['x-cache'], 'STALE', 'while the refresh runs')
    t.equal(events(app).length, 1, 'STALE answers publish nothing')

    gate.open()
    await eventually('the refresh publishes', async () => events(app).length === 2)
    t.equal(c.up.hits(), 2)
    t.equal(JSON.parse(events(app)[1].body).n, 2, 'the event carries the refreshed answer')
  })

  t.test(`${store}: invalidates on a cached GET route purges on a MISS, not on a HIT, not on a 5xx`, async t => {
    const c = await controlled(t)
    const app = await gateway(t, store, c.up.url, [
      { id: 'unread', path: '/api/unread', proxy: { service: 'backend', path: '/unread' }, cache: { ttl: '1m', tags: ['unread'] } },
      // Reading the inbox marks its messages read upstream, so the unread count is outdated.
      { id: 'inbox', path: '/api/inbox', proxy: { service: 'backend', path: '/inbox' }, cache: { ttl: '1m' }, invalidates: ['unread'] },
    ])
    const unreadCalls = (): number => c.up.seen.filter(s => s.url === '/unread').length
    t.equal((await request(app, 'GET', '/api/unread')).headers['x-cache'], 'MISS')
    t.equal((await request(app, 'GET', '/api/unread')).headers['x-cache'], 'HIT')

    t.equal((await request(app, 'GET', '/api/inbox')).headers['x-cache'], 'MISS')
    const after = await request(app, 'GET', '/api/unread')
    t.equal(after.headers['x-cache'], 'MISS', 'the inbox MISS purged the unread count')
    t.equal(unreadCalls(), 2)

    t.equal((await request(app, 'GET', '/api/inbox')).headers['x-cache'], 'HIT')
    t.equal((await request(app, 'GET', '/api/unread')).headers['x-cache'], 'HIT', 'an inbox HIT purges nothing')
    t.equal((await request(app, 'HEAD', '/api/inbox')).headers['x-cache'], 'BYPASS')
    t.equal((await request(app, 'GET', '/api/unread')).headers['x-cache'], 'MISS', 'an inbox HEAD answered 2xx purges')
    t.equal(unreadCalls(), 3)

    c.status = 500
    t.equal((await request(app, 'GET', '/api/inbox?page=2')).statusCode, 500)
    c.status = 200
    t.equal((await request(app, 'GET', '/api/unread')).headers['x-cache'], 'HIT', 'a 5xx purges nothing')
    t.equal(unreadCalls(), 3)
  })
}
