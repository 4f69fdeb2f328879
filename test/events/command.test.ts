// `command` routes (README "Events and CQRS"), against a real
// Redis: no upstream call; a valid body is appended to the stream with a
// generated commandId and the client gets 202 {"commandId"} (and `location`
// from statusPath); an invalid one is a 400 and stores nothing; an
// `idempotency-key` repeat answers the first commandId and stores nothing
// new; a command that could not be stored is a 503 EVENTS_UNAVAILABLE, never
// a 202, and leaves its idempotency key free. The memory sink for demos.
import t from 'tap'
import { createServer, connect, type Socket } from 'node:net'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { buildFromFiles } from '../helpers/gateway.js'
import { closedPort, upstream, type Upstream } from '../helpers/upstream.js'
import { skipUnlessRedis, PrivateRedis, REDIS_URL, eventually, keysUnder, uniquePrefix, withClient } from '../helpers/redis.js'
import { EVENT_FIELDS, ISO_TIME, JWT_AUTH_YAML, bearer, readStream, streamLength, uniqueStream } from '../helpers/events.js'
import { expectProblem } from '../helpers/auth.js'
import type { MemoryEventSink } from '../../src/events/memory-sink.js'

await skipUnlessRedis(t)

// A subtest (the last overload of t.test takes only the callback).
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** An upstream that must never be called: the service behind the config's other route. */
interface Gw { upstream: string, stream: string, redis?: { url: string, keyPrefix: string }, events?: string }

/**
 * POST /api/reports: a JWT-protected command route with a body schema and a
 * statusPath; GET /api/reports/:id reads from the backend (the read side).
 */
function gatewayYaml (o: Gw): string {
  return `${o.redis !== undefined ? `redis:\n  url: ${o.redis.url}\n  keyPrefix: "${o.redis.keyPrefix}"\n` : ''}${o.events !== undefined ? `events: ${o.events}\n` : ''}${JWT_AUTH_YAML}services:
  backend:
    urls: [${o.upstream}]
    timeout: 2s
policies:
  user: { auth: jwt }
routes:
  - id: submit-report
    method: POST
    path: /api/reports
    policy: user
    schema:
      body:
        type: object
        required: [title]
        properties:
          title: { type: string, minLength: 1 }
          pages: { type: integer }
    command: { stream: ${o.stream}, type: report.requested, statusPath: "/api/reports/{commandId}" }
  - id: report-status
    method: GET
    path: /api/reports/:id
    policy: user
    proxy: { service: backend, path: "/reports/{params.id}" }
`
}

const BODY = '{ "title" :"Q3 sales",\n  "pages": 12, "note": "zoë \\u00e9" }'

async function submit (app: FastifyInstance, o: { sub?: string, key?: string, body?: string, headers?: InjectOptions['headers'] } = {}) {
  return await app.inject({
    method: 'POST',
    url: '/api/reports',
    headers: {
      authorization: bearer(o.sub ?? 'user-1'),
      'content-type': 'application/json',
      ...(o.key !== undefined ? { 'idempotency-key': o.key } : {}),
      ...o.headers,
    },
    payload: o.body ?? BODY,
  })
}

function commandIdOf (res: { body: string }): string {
  return (JSON.parse(res.body) as { commandId: string }).commandId
}

async function redisGateway (t: Test, name: string, events?: string): Promise<{ app: FastifyInstance, up: Upstream, stream: string, prefix: string }> {
  const up = await upstream(t)
  const stream = uniqueStream(t, name)
  const prefix = uniquePrefix(t, `ev-${name}`)
  const app = await buildFromFiles(t, {
    'gateway.yaml': gatewayYaml({ upstream: up.url, stream, redis: { url: REDIS_URL, keyPrefix: prefix }, ...(events !== undefined ? { events } : {}) }),
  })
  return { app, up, stream, prefix }
}

t.test('202 {commandId}, location from statusPath, one entry with the body; the upstream is never called', async t => {
  const { app, up, stream } = await redisGateway(t, 'cmd-one')
  const res = await submit(app, { sub: 'alice' })
  t.equal(res.statusCode, 202)
  t.match(String(res.headers['content-type']), /^application\/json/)
  const body = JSON.parse(res.body) as Record<string, unknown>
  t.same(Object.keys(body), ['commandId'], 'the body is {"commandId"} only')
  const commandId = String(body.commandId)
  t.match(commandId, UUID, 'commandId is a UUID')
  t.equal(res.headers.location, `/api/reports/${commandId}`, 'location from statusPath')
  t.notOk('idempotent-replayed' in res.headers, 'not a replay')

  const entries = await readStream(stream)
  t.equal(entries.length, 1, 'exactly one entry, there when the 202 is')
  const [entry] = entries
  t.same(entry.names, [...EVENT_FIELDS, 'commandId'])
  t.equal(entry.fields.commandId, commandId)
  t.equal(entry.fields.body, BODY, 'the request body, byte for byte')
  t.equal(entry.fields.type, 'report.requested')
  t.equal(entry.fields.route, 'submit-report')
  t.equal(entry.fields.sub, 'alice')
  t.equal(entry.fields.requestId, res.headers['x-request-id'])
  t.match(entry.fields.at, ISO_TIME)

  t.equal(up.hits(), 0, 'no upstream call')
  t.same(app.events?.counters, { published: 0, failed: 0, commands: 1 })

  // The read side is an ordinary proxy route on the same config: the service is real.
  const read = await app.inject({ url: `/api/reports/${commandId}`, headers: { authorization: bearer('alice') } })
  t.equal(read.statusCode, 200)
  t.equal(up.hits(), 1, 'only the read reached the upstream')
})

t.test('each command gets its own commandId and entry, in order', async t => {
  const { app, stream } = await redisGateway(t, 'cmd-many')
  const ids: string[] = []
  for (let i = 1; i <= 4; i++) {
    const res = await submit(app, { body: `{"title":"r${i}"}` })
    t.equal(res.statusCode, 202)
    ids.push(commandIdOf(res))
  }
  t.equal(new Set(ids).size, 4, 'distinct commandIds')
  const entries = await readStream(stream)
  t.same(entries.map(e => e.fields.commandId), ids)
  t.same(entries.map(e => e.fields.body), [1, 2, 3, 4].map(i => `{"title":"r${i}"}`))
})

t.test('an invalid body is a 400 and stores nothing', async t => {
  const { app, up, stream } = await redisGateway(t, 'cmd-invalid')
  const missing = await submit(app, { body: '{"pages": 3}' })
  const body = expectProblem(t, missing, 400, 'VALIDATION_FAILED', 'required field missing')
  t.match(JSON.stringify(body), /title/, 'names the failing field')
  expectProblem(t, await submit(app, { body: '{"title": "", "pages": 3}' }), 400, 'VALIDATION_FAILED', 'empty title')
  expectProblem(t, await submit(app, { body: '{"title": "x", "pages": "many"}' }), 400, 'VALIDATION_FAILED', 'wrong type')
  expectProblem(t, await submit(app, { body: '{"title": ' }), 400, 'BAD_REQUEST', 'malformed JSON')
  const anonymous = await app.inject({ method: 'POST', url: '/api/reports', headers: { 'content-type': 'application/json' }, payload: BODY })
  expectProblem(t, anonymous, 401, 'UNAUTHENTICATED', 'no token')

  t.equal(await streamLength(stream), 0, 'no entry')
  t.equal(up.hits(), 0)
  t.same(app.events?.counters, { published: 0, failed: 0, commands: 0 })
})

t.test('idempotency-key: a repeat answers the first commandId and stores nothing new', async t => {
  const { app, stream, prefix } = await redisGateway(t, 'cmd-idem')
  const first = await submit(app, { key: 'order-2024-0001' })
  t.equal(first.statusCode, 202)
  t.notOk('idempotent-replayed' in first.headers, 'the first is not a replay')
  const id = commandIdOf(first)

  const again = await submit(app, { key: 'order-2024-0001', body: '{"title":"changed my mind"}' })
  t.equal(again.statusCode, 202)
  t.equal(commandIdOf(again), id, 'the same commandId')
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.equal(again.headers.location, `/api/reports/${id}`, 'location points at the first command')
  t.equal(await streamLength(stream), 1, 'still one entry')

  const other = await submit(app, { key: 'order-2024-0002' })
  t.equal(other.statusCode, 202)
  t.notOk('idempotent-replayed' in other.headers)
  t.not(commandIdOf(other), id, 'another key: another command')

  const bob = await submit(app, { key: 'order-2024-0001', sub: 'bob' })
  t.equal(bob.statusCode, 202)
  t.notOk('idempotent-replayed' in bob.headers, 'another user with the same key is not a replay')
  t.not(commandIdOf(bob), id, 'another user: another command')

  const entries = await readStream(stream)
  t.same(entries.map(e => [e.fields.sub, e.fields.commandId]), [['user-1', id], ['user-1', commandIdOf(other)], ['bob', commandIdOf(bob)]])
  t.equal(entries[0].fields.body, BODY, 'the stored body is the first one')
  t.same(app.events?.counters, { published: 0, failed: 0, commands: 3 })
  t.same(await keysUnder(REDIS_URL, prefix), [
    `${prefix}idem:submit-report:bob:order-2024-0001`,
    `${prefix}idem:submit-report:user-1:order-2024-0001`,
    `${prefix}idem:submit-report:user-1:order-2024-0002`,
  ], 'one key per route, user and idempotency key')
  t.equal(await withClient(REDIS_URL, async c => await c.get(`${prefix}idem:submit-report:user-1:order-2024-0001`)), id, 'holding the commandId')
})

t.test('idempotency-key: instances sharing Redis answer a repeat with the same command', async t => {
  const up = await upstream(t)
  const stream = uniqueStream(t, 'cmd-shared')
  const redis = { url: REDIS_URL, keyPrefix: uniquePrefix(t, 'ev-cmd-shared') }
  const files = { 'gateway.yaml': gatewayYaml({ upstream: up.url, stream, redis }) }
  const a = await buildFromFiles(t, files)
  const b = await buildFromFiles(t, files)
  const first = await submit(a, { key: 'shared-key' })
  t.equal(first.statusCode, 202)
  const repeat = await submit(b, { key: 'shared-key' })
  t.equal(repeat.statusCode, 202)
  t.equal(repeat.headers['idempotent-replayed'], 'true', 'the other instance knows the key')
  t.equal(commandIdOf(repeat), commandIdOf(first))
  t.equal(await streamLength(stream), 1)
})

t.test('idempotency-key: after the window the key makes a new command', async t => {
  const { app, stream, prefix } = await redisGateway(t, 'cmd-window', '{ idempotencyWindow: 300ms }')
  const first = await submit(app, { key: 'k-1' })
  t.equal(first.statusCode, 202)
  const key = `${prefix}idem:submit-report:user-1:k-1`
  const pttl = await withClient(REDIS_URL, async c => await c.pttl(key))
  t.ok(pttl > 0 && pttl <= 300, `the key expires with the window (PTTL ${pttl})`)
  await eventually('the idempotency key expired', async () => await withClient(REDIS_URL, async c => await c.exists(key)) === 0)
  const later = await submit(app, { key: 'k-1' })
  t.equal(later.statusCode, 202)
  t.notOk('idempotent-replayed' in later.headers)
  t.not(commandIdOf(later), commandIdOf(first))
  t.equal(await streamLength(stream), 2)
})

t.test('idempotency-key: concurrent repeats make one command', async t => {
  const { app, stream } = await redisGateway(t, 'cmd-concurrent')
  const all = await Promise.all(Array.from({ length: 6 }, async () => await submit(app, { key: 'same-time' })))
  t.same(all.map(r => r.statusCode), [202, 202, 202, 202, 202, 202])
  const ids = new Set(all.map(commandIdOf))
  t.equal(ids.size, 1, 'one commandId for all')
  t.equal(all.filter(r => r.headers['idempotent-replayed'] === 'true').length, 5, 'all but one are replays')
  const entries = await readStream(stream)
  t.same(entries.map(e => e.fields.commandId), [...ids], 'one entry, carrying that commandId')
})

t.test('idempotency-key: a concurrent repeat of a command that could not be stored gets no 202', async t => {
  const { app, stream } = await redisGateway(t, 'cmd-concurrent-fail')
  await withClient(REDIS_URL, async c => await c.set(stream, 'not a stream'))
  const [a, b] = await Promise.all([submit(app, { key: 'doomed' }), submit(app, { key: 'doomed' })])
  t.same([a.statusCode, b.statusCode], [503, 503], 'neither is told its command was accepted')
  for (const res of [a, b]) t.notOk('idempotent-replayed' in res.headers, 'no replay header')
  t.equal(await withClient(REDIS_URL, async c => await c.type(stream)), 'string', 'nothing was appended')
})

t.test('an invalid idempotency-key is a 400 and stores nothing', async t => {
  const { app, stream, prefix } = await redisGateway(t, 'cmd-badkey')
  for (const [label, key] of [['300 characters', 'k'.repeat(300)], ['empty', ''], ['a space', 'two words'], ['non-ASCII', 'clé']] as const) {
    const res = await submit(app, { headers: { 'idempotency-key': key } })
    const body = expectProblem(t, res, 400, 'BAD_REQUEST', label)
    t.match(String(body.detail), /idempotency-key/, `${label}: the detail names the header`)
  }
  const longest = await submit(app, { key: 'k'.repeat(200) })
  t.equal(longest.statusCode, 202, '200 characters is still a valid key')
  t.equal(await streamLength(stream), 1, 'only the valid one stored')
  t.same(await keysUnder(REDIS_URL, prefix), [`${prefix}idem:submit-report:user-1:${'k'.repeat(200)}`])
})

t.test('the stream cannot be written: 503 EVENTS_UNAVAILABLE, and the idempotency key is given back', async t => {
  const { app, stream, prefix } = await redisGateway(t, 'cmd-wrongtype')
  // A string where the stream should be: XADD fails (WRONGTYPE) after the key was claimed.
  await withClient(REDIS_URL, async c => await c.set(stream, 'not a stream'))
  const res = await submit(app, { key: 'retry-me' })
  const body = expectProblem(t, res, 503, 'EVENTS_UNAVAILABLE')
  t.notOk('commandId' in body, 'no commandId for a command that was not stored')
  t.notOk('location' in res.headers)
  t.notMatch(res.body, /WRONGTYPE/, 'the Redis error stays inside')
  t.same(await keysUnder(REDIS_URL, prefix), [], 'the claimed idempotency key was released')
  t.same(app.events?.counters, { published: 0, failed: 0, commands: 0 })

  await withClient(REDIS_URL, async c => await c.del(stream))
  const again = await submit(app, { key: 'retry-me' })
  t.equal(again.statusCode, 202, 'the same key works once the stream can be written')
  t.notOk('idempotent-replayed' in again.headers, 'a new command, not a replay of the failed one')
  const entries = await readStream(stream)
  t.same(entries.map(e => e.fields.commandId), [commandIdOf(again)])
})

t.test('Redis down: 503 EVENTS_UNAVAILABLE; back up: no stray entry and the key works', async t => {
  const up = await upstream(t)
  const redis = await PrivateRedis.started(t, await closedPort())
  const stream = uniqueStream(t, 'cmd-down', redis.url)
  const app = await buildFromFiles(t, {
    'gateway.yaml': gatewayYaml({ upstream: up.url, stream, redis: { url: redis.url, keyPrefix: 'ev-cmd:' } }),
  })
  const readyz = async (want: string): Promise<void> => {
    await eventually(`redis ${want}`, async () => (JSON.parse((await app.inject({ url: '/readyz' })).body) as { redis: string }).redis === want, 15_000)
  }
  await readyz('up')
  const ok = await submit(app, { key: 'before' })
  t.equal(ok.statusCode, 202, 'works while Redis is up')

  await redis.kill()
  for (const key of [undefined, 'during']) {
    const res = await submit(app, { ...(key !== undefined ? { key } : {}) })
    const label = key === undefined ? 'without a key' : 'with a key'
    const body = expectProblem(t, res, 503, 'EVENTS_UNAVAILABLE', label)
    t.equal(body.title, 'Event stream unavailable', `${label}: title`)
    // Without a key delivery is at-least-once: the 503 says how to retry safely.
    t.match(body.detail, /retry with the same idempotency-key header, which is safe/, `${label}: the detail names the safe retry`)
    t.notOk('location' in res.headers, `${label}: no location`)
  }
  t.equal(up.hits(), 0)
  t.same(app.events?.counters, { published: 0, failed: 0, commands: 1 })

  await redis.start()
  await readyz('up')
  t.equal(await streamLength(stream, redis.url), 0, 'nothing from the refused commands')
  const again = await submit(app, { key: 'during' })
  t.equal(again.statusCode, 202, 'the key of a refused command is free')
  t.notOk('idempotent-replayed' in again.headers)
  const entries = await readStream(stream, redis.url)
  t.same(entries.map(e => e.fields.commandId), [commandIdOf(again)])
})

/**
 * A TCP relay to the real Redis that, once armed, holds the first command
 * carrying `marker` (and everything after it) for `holdMs`: Redis then runs
 * it after the gateway gave up waiting, as when a reply is lost in an outage.
 */
async function delayingRelay (t: Test, marker: RegExp, holdMs: number): Promise<{ url: string, arm: () => void, released: Promise<void> }> {
  const target = new URL(REDIS_URL)
  let armed = false
  let release: () => void = () => {}
  const released = new Promise<void>(resolve => { release = resolve })
  const sockets = new Set<Socket>()
  const server = createServer(client => {
    const upstream = connect(Number(target.port || 6379), target.hostname)
    sockets.add(client); sockets.add(upstream)
    let held: Buffer[] | undefined
    upstream.pipe(client)
    client.on('data', (chunk: Buffer) => {
      if (held !== undefined) { held.push(chunk); return }
      if (armed && marker.test(chunk.toString('latin1'))) {
        armed = false
        held = [chunk]
        setTimeout(() => { for (const c of held ?? []) upstream.write(c); held = undefined; release() }, holdMs)
        return
      }
      upstream.write(chunk)
    })
    const end = (): void => { client.destroy(); upstream.destroy() }
    client.on('error', end); upstream.on('error', end); client.on('close', end); upstream.on('close', end)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise(resolve => server.close(resolve))
  })
  const { port } = server.address() as { port: number }
  return { url: `redis://127.0.0.1:${port}`, arm: () => { armed = true }, released }
}

t.test('a 503 whose append Redis ran anyway: the retry with the same key replays it, no second entry', async t => {
  const up = await upstream(t)
  const stream = uniqueStream(t, 'cmd-lost-reply')
  const prefix = uniquePrefix(t, 'ev-cmd-lost-reply')
  // The append (EVALSHA; XADD before the fix) is held past the gateway's Redis command timeout (250 ms).
  const relay = await delayingRelay(t, /\bevalsha\b|\bxadd\b/i, 600)
  const app = await buildFromFiles(t, {
    'gateway.yaml': gatewayYaml({ upstream: up.url, stream, redis: { url: relay.url, keyPrefix: prefix } }),
  })
  await eventually('redis up', async () => (JSON.parse((await app.inject({ url: '/readyz' })).body) as { redis: string }).redis === 'up', 10_000)
  t.equal((await submit(app, { key: 'warm-up' })).statusCode, 202, 'a first command loads the scripts')
  await withClient(REDIS_URL, async c => await c.del(stream))

  relay.arm()
  const lost = await submit(app, { key: 'lost-reply' })
  const body = expectProblem(t, lost, 503, 'EVENTS_UNAVAILABLE', 'the reply did not come in time')
  t.match(body.detail, /idempotency-key/)
  await relay.released
  await eventually('the held append ran', async () => await streamLength(stream) === 1)

  const retry = await submit(app, { key: 'lost-reply' })
  t.equal(retry.statusCode, 202)
  t.equal(retry.headers['idempotent-replayed'], 'true', 'the stored command is replayed')
  const entries = await readStream(stream)
  t.equal(entries.length, 1, 'stored once, although the client saw a 503 and retried')
  t.equal(commandIdOf(retry), entries[0].fields.commandId)
})

t.test('memory sink (events: { sink: memory }, no Redis): 202 and the entry in the sink', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, {
    'gateway.yaml': gatewayYaml({ upstream: up.url, stream: 'reports', events: '{ sink: memory }' }),
  })
  const ready = JSON.parse((await app.inject({ url: '/readyz' })).body) as Record<string, unknown>
  t.match(ready, { redis: 'not configured', events: 'memory' })

  const res = await submit(app, { sub: 'carol', key: 'mem-1' })
  t.equal(res.statusCode, 202)
  const commandId = commandIdOf(res)
  t.match(commandId, UUID)
  t.equal(res.headers.location, `/api/reports/${commandId}`)
  const again = await submit(app, { sub: 'carol', key: 'mem-1' })
  t.equal(commandIdOf(again), commandId, 'idempotency works in memory too')
  t.equal(again.headers['idempotent-replayed'], 'true')
  expectProblem(t, await submit(app, { body: '{}' }), 400, 'VALIDATION_FAILED')

  const sink = app.events?.sink as MemoryEventSink
  t.equal(sink.kind, 'memory')
  const entries = sink.streams.get('reports') ?? []
  t.equal(entries.length, 1, 'one entry')
  t.match(entries[0].event, { type: 'report.requested', route: 'submit-report', sub: 'carol', requestId: res.headers['x-request-id'], body: BODY, commandId })
  t.match(entries[0].event.at, ISO_TIME)
  t.equal(up.hits(), 0)
})
