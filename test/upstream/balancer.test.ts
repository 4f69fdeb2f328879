// createBalancer alone (README "Resilience: breakers, retries, balancing",
// **Load balancing**): round-robin over stub instances; passive health ejects an
// instance that failed `failures` calls in a row for `ejectFor`, then probes
// it with the next call (one more failure ejects it again); connection
// errors, timeouts and 502/503/504 are failures, 500 and 4xx are not; with
// every instance ejected calls still go out. Active health checks probe real
// upstreams.
import t from 'tap'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { createBalancer, type Balancer, type BalancedInstance, type InstanceHealth, type PassiveHealthOptions, type ActiveHealthOptions } from '../../src/upstream/balancer.js'
import { GatewayError, type ErrorCode } from '../../src/util/errors.js'
import type { UpstreamRequest, UpstreamResponse } from '../../src/upstream/types.js'
import { closedPort, upstream, type UpstreamHandler } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'
import { discardBody } from '../../src/upstream/body.js'

type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const req: UpstreamRequest = { method: 'GET', path: '/x', headers: {}, timeout: 1000 }

function response (statusCode: number, instance: string): UpstreamResponse {
  return { statusCode, headers: {}, body: Readable.from([Buffer.from('x')]), instance }
}

type Behaviour = number | ErrorCode

interface StubInstances {
  instances: BalancedInstance[]
  /** Which instance each call went to, in order. */
  log: string[]
  set: (url: string, b: Behaviour) => void
}

/** Stub instances named by their URLs, answering 200 unless told otherwise. */
function stubs (...urls: string[]): StubInstances {
  const log: string[] = []
  const behaviour = new Map<string, Behaviour>(urls.map(u => [u, 200]))
  return {
    log,
    set: (url, b) => { behaviour.set(url, b) },
    instances: urls.map(url => ({
      url,
      call: async () => {
        log.push(url)
        const b = behaviour.get(url) ?? 200
        if (typeof b === 'string') throw new GatewayError(b, `${url}: ${b}`)
        return response(b, url)
      },
    })),
  }
}

function balancer (t: Test, instances: BalancedInstance[], passive: PassiveHealthOptions, active?: ActiveHealthOptions): Balancer {
  const b = createBalancer(instances, passive, active)
  t.teardown(() => { b.close() })
  return b
}

/** Makes n calls one after another, swallowing errors. */
async function calls (b: Balancer, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await b.call(req).then(discardBody, () => {})
}

function healthOf (b: Balancer, url: string): InstanceHealth {
  const h = b.health().find(i => i.url === url)
  if (h === undefined) throw new Error(`no instance ${url}`)
  return h
}

/** Sleeps until the instance's ejection is over (its own ejectedUntil), plus a little. */
async function waitOutEjection (b: Balancer, url: string): Promise<void> {
  const left = healthOf(b, url).ejectedUntil - Date.now()
  if (left > 0) await sleep(left + 5)
}

/** Whether check() holds within 3 s. */
async function poll (check: () => boolean): Promise<boolean> {
  return await waitFor(check, { timeout: 3000 }).then(() => true, () => false)
}

t.test('calls go round-robin over the instances', async t => {
  const s = stubs('a', 'b', 'c')
  const b = balancer(t, s.instances, { failures: 3, ejectFor: 10_000 })
  for (let i = 0; i < 9; i++) {
    const res = await b.call(req)
    t.equal(res.instance, s.log[i], 'the answer of the instance called')
  }
  t.same(s.log, ['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c'])
})

t.test('a single instance gets every call', async t => {
  const s = stubs('only')
  const b = balancer(t, s.instances, { failures: 1, ejectFor: 10_000 })
  s.set('only', 'UPSTREAM_ERROR')
  await calls(b, 3)
  t.same(s.log, ['only', 'only', 'only'], 'called even while ejected')
})

t.test('an instance failing `failures` calls in a row is skipped for ejectFor, then probed', async t => {
  const s = stubs('a', 'b', 'c')
  const b = balancer(t, s.instances, { failures: 2, ejectFor: 500 })
  s.set('b', 'UPSTREAM_ERROR')
  await calls(b, 6)
  t.same(s.log, ['a', 'b', 'c', 'a', 'b', 'c'], 'b failed twice')
  const ejected = healthOf(b, 'b')
  t.equal(ejected.healthy, false, 'b is ejected')
  t.equal(ejected.consecutiveFailures, 2)
  t.ok(ejected.ejectedUntil > Date.now(), 'for a while')

  s.log.length = 0
  await calls(b, 6)
  t.notOk(s.log.includes('b'), `b is skipped: ${s.log.join(',')}`)
  t.same(s.log.filter(u => u === 'a').length, 3, 'a and c share the calls')

  // After ejectFor, the next call that comes to b is the probe; one failure ejects it again.
  await waitOutEjection(b, 'b')
  t.equal(healthOf(b, 'b').healthy, true, 'b is back after ejectFor')
  s.log.length = 0
  await calls(b, 3)
  t.equal(s.log.filter(u => u === 'b').length, 1, `b was probed once in a round: ${s.log.join(',')}`)
  t.equal(healthOf(b, 'b').healthy, false, 'one failed probe ejects it again')
  s.log.length = 0
  await calls(b, 6)
  t.notOk(s.log.includes('b'), 'skipped again')

  // A successful probe puts it back for good.
  s.set('b', 200)
  await waitOutEjection(b, 'b')
  s.log.length = 0
  await calls(b, 9)
  t.equal(s.log.filter(u => u === 'b').length, 3, `b is back in the rotation: ${s.log.join(',')}`)
  t.match(healthOf(b, 'b'), { healthy: true, consecutiveFailures: 0, ejectedUntil: 0 })
})

t.test('timeouts and 502/503/504 answers count as failures', async t => {
  for (const failure of ['UPSTREAM_TIMEOUT', 'UPSTREAM_ERROR', 502, 503, 504] as Behaviour[]) {
    const s = stubs('a', 'b')
    const b = balancer(t, s.instances, { failures: 2, ejectFor: 10_000 })
    s.set('a', failure)
    await calls(b, 4)
    t.equal(healthOf(b, 'a').healthy, false, `${failure}: a is ejected after two`)
    s.log.length = 0
    await calls(b, 4)
    t.same(s.log, ['b', 'b', 'b', 'b'], `${failure}: every call goes to b`)
  }
})

t.test('the failed answer still reaches the caller', async t => {
  const s = stubs('a', 'b')
  const b = balancer(t, s.instances, { failures: 1, ejectFor: 10_000 })
  s.set('a', 503)
  const res = await b.call(req)
  t.equal(res.statusCode, 503)
  t.equal(res.instance, 'a')
  s.set('b', 'UPSTREAM_ERROR')
  await t.rejects(b.call(req), { code: 'UPSTREAM_ERROR' })
})

t.test('500 and 4xx answers do not count against an instance', async t => {
  for (const status of [500, 501, 400, 404, 429]) {
    const s = stubs('a', 'b')
    const b = balancer(t, s.instances, { failures: 1, ejectFor: 10_000 })
    s.set('a', status)
    await calls(b, 10)
    t.match(healthOf(b, 'a'), { healthy: true, consecutiveFailures: 0 }, `${status}: a stays in`)
    t.same(s.log, ['a', 'b', 'a', 'b', 'a', 'b', 'a', 'b', 'a', 'b'], `${status}: still round-robin`)
  }
})

t.test('failures must be in a row: a success in between resets the count', async t => {
  const s = stubs('a', 'b')
  const b = balancer(t, s.instances, { failures: 2, ejectFor: 10_000 })
  s.set('a', 'UPSTREAM_ERROR')
  await calls(b, 2) // a fails once
  t.equal(healthOf(b, 'a').consecutiveFailures, 1)
  s.set('a', 200)
  await calls(b, 2) // a succeeds
  t.equal(healthOf(b, 'a').consecutiveFailures, 0)
  s.set('a', 'UPSTREAM_ERROR')
  await calls(b, 2) // fails once more: 1 in a row, not 2
  t.match(healthOf(b, 'a'), { healthy: true, consecutiveFailures: 1 })
})

t.test('with every instance ejected, calls still go out', async t => {
  const s = stubs('a', 'b')
  const b = balancer(t, s.instances, { failures: 1, ejectFor: 10_000 })
  s.set('a', 'UPSTREAM_ERROR')
  s.set('b', 'UPSTREAM_ERROR')
  await calls(b, 2)
  t.same(b.health().map(h => h.healthy), [false, false], 'both ejected')
  s.log.length = 0
  const err = await b.call(req).then(() => undefined, (e: unknown) => e as GatewayError)
  t.equal(err?.code, 'UPSTREAM_ERROR', 'the instance\'s own error, not a refusal')
  t.equal(s.log.length, 1, 'an instance was called')
  t.equal(s.log[0], 'a', 'the one back soonest')

  s.set('b', 200)
  s.set('a', 200)
  const res = await b.call(req)
  t.equal(res.statusCode, 200, 'a recovered instance answers even while all are ejected')
  t.equal(b.health().filter(h => h.healthy).length, 1, 'and its success puts it back')
})

t.test('health() lists every instance in order', async t => {
  const s = stubs('http://one', 'http://two')
  const b = balancer(t, s.instances, { failures: 1, ejectFor: 10_000 })
  t.same(b.health(), [
    { url: 'http://one', healthy: true, consecutiveFailures: 0, ejectedUntil: 0 },
    { url: 'http://two', healthy: true, consecutiveFailures: 0, ejectedUntil: 0 },
  ])
  s.set('http://two', 502)
  const before = Date.now()
  await calls(b, 2)
  const [one, two] = b.health()
  t.same(one, { url: 'http://one', healthy: true, consecutiveFailures: 0, ejectedUntil: 0 })
  t.equal(two.healthy, false)
  t.equal(two.consecutiveFailures, 1)
  t.ok(two.ejectedUntil >= before + 10_000 && two.ejectedUntil <= Date.now() + 10_000, 'ejected for ejectFor from the failure')
})

// ---- active health checks against real upstreams --------------------------------

function answering (status: () => number): UpstreamHandler {
  return (_req, res) => {
    res.writeHead(status(), { 'content-type': 'text/plain' })
    res.end('health')
  }
}

/** Instances whose calls are stubs (recorded) but whose URLs are real, for the probes. */
function realUrls (...urls: string[]): StubInstances {
  return stubs(...urls)
}

t.test('active checks eject an instance whose health path fails, and keep the healthy one', async t => {
  const good = await upstream(t, answering(() => 200))
  const bad = await upstream(t, answering(() => 500))
  const s = realUrls(good.url, bad.url)
  const b = balancer(t, s.instances, { failures: 3, ejectFor: 60_000 }, { path: '/health', interval: 50, timeout: 500 })
  t.ok(await poll(() => !healthOf(b, bad.url).healthy), 'the failing instance is ejected without any call')
  t.equal(healthOf(b, good.url).healthy, true, 'the healthy one stays in')
  t.equal(s.log.length, 0, 'no client call was needed')
  t.ok(bad.seen.length >= 1 && bad.seen.every(r => r.method === 'GET' && r.url === '/health'), 'probes are GET /health')
  t.ok(good.seen.length >= 1 && good.seen.every(r => r.url === '/health'))

  await calls(b, 4)
  t.same(s.log, [good.url, good.url, good.url, good.url], 'calls go to the healthy instance only')
})

t.test('active checks eject an unreachable instance and bring a recovered one back', async t => {
  let status = 503
  const flaky = await upstream(t, answering(() => status))
  const good = await upstream(t, answering(() => 200))
  const dead = `http://127.0.0.1:${await closedPort()}`
  const s = realUrls(good.url, flaky.url, dead)
  // ejectFor is long: only a successful probe can bring the instance back this soon.
  const b = balancer(t, s.instances, { failures: 2, ejectFor: 60_000 }, { path: '/health', interval: 50, timeout: 500 })
  t.ok(await poll(() => !healthOf(b, dead).healthy && !healthOf(b, flaky.url).healthy), 'both are ejected')
  t.equal(healthOf(b, good.url).healthy, true)

  status = 200
  t.ok(await poll(() => healthOf(b, flaky.url).healthy), 'a successful probe puts the recovered instance back')
  t.equal(healthOf(b, dead).healthy, false, 'the dead one stays out')
  s.log.length = 0
  await calls(b, 4)
  t.same([...s.log].sort(), [flaky.url, flaky.url, good.url, good.url].sort(), 'calls share the two live instances')
})

t.test('a probe that does not answer within its timeout fails', async t => {
  const hanging = await upstream(t, () => { /* never answers */ })
  const s = realUrls(hanging.url, 'http://other')
  const b = balancer(t, s.instances, { failures: 3, ejectFor: 60_000 }, { path: '/health', interval: 50, timeout: 100 })
  t.ok(await poll(() => !healthOf(b, hanging.url).healthy), 'ejected after a probe timed out')
})

t.test('close() stops the probes', async t => {
  const up = await upstream(t, answering(() => 200))
  const b = createBalancer(realUrls(up.url).instances, { failures: 3, ejectFor: 1000 }, { path: '/health', interval: 20, timeout: 500 })
  t.ok(await poll(() => up.hits() >= 2), 'probing')
  b.close()
  // A probe sent just before close() may still arrive, so wait for the probes
  // to stop (no hit for 5 intervals) rather than guess how long that takes;
  // without close() a probe lands every 20 ms and this never holds.
  let last = { hits: up.hits(), at: Date.now() }
  await waitFor(() => {
    if (up.hits() !== last.hits) last = { hits: up.hits(), at: Date.now() }
    return Date.now() - last.at >= 100
  }, { timeout: 3000, message: 'no probe for 100 ms after close()' })
  // Then 10 more intervals of silence: a window for a probe that must not come.
  const hits = up.hits()
  await sleep(200)
  t.equal(up.hits(), hits, 'no probe after close()')
})
