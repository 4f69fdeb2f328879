// createBreaker alone, against stub calls, with opossum's real timers and tiny
// settings (README "Resilience: breakers, retries, balancing"):
// connection errors, timeouts and 5xx count as failures, 4xx do not; a 5xx
// still reaches the caller while closed; open fails at once with 503
// CIRCUIT_OPEN and retry-after without calling the service; after
// resetTimeout one trial goes through, and its outcome closes or re-opens.
import t from 'tap'
import { Readable } from 'node:stream'
import { waitFor } from '../helpers/wait.js'
import { createBreaker, type BreakerOptions, type BreakerState, type ServiceBreaker } from '../../src/upstream/breaker.js'
import { GatewayError, type ErrorCode } from '../../src/util/errors.js'
import type { UpstreamCall, UpstreamRequest, UpstreamResponse } from '../../src/upstream/types.js'

type Test = Parameters<Parameters<typeof t.test>[0]>[0]

function response (statusCode: number, text = `answer ${statusCode}`): UpstreamResponse {
  return { statusCode, headers: { 'x-from': 'stub' }, body: Readable.from([Buffer.from(text)]), instance: 'stub' }
}

const req: UpstreamRequest = { method: 'GET', path: '/x', headers: {}, timeout: 1000 }

/** A stub whose behaviour can be changed between calls; counts its calls. */
function stub (initial: number | ErrorCode = 200): { call: UpstreamCall, calls: () => number, set: (b: number | ErrorCode) => void } {
  let behaviour = initial
  let calls = 0
  return {
    call: async () => {
      calls++
      if (typeof behaviour === 'string') throw new GatewayError(behaviour, `stub ${behaviour}`)
      return response(behaviour)
    },
    calls: () => calls,
    set: b => { behaviour = b },
  }
}

function breaker (t: Test, inner: UpstreamCall, opts: Partial<BreakerOptions> = {}): ServiceBreaker & { changes: BreakerState[] } {
  const b = createBreaker('svc', inner, { errorThresholdPercentage: 50, volumeThreshold: 3, resetTimeout: 200, rollingCountTimeout: 10_000, ...opts })
  t.teardown(() => { b.shutdown() })
  const changes: BreakerState[] = []
  b.onChange(s => changes.push(s))
  return Object.assign(b, { changes })
}

async function text (res: UpstreamResponse): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of res.body) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

async function rejection (p: Promise<unknown>): Promise<GatewayError | undefined> {
  try {
    await p
  } catch (err) {
    return err as GatewayError
  }
  return undefined
}

/** Whether the breaker reports the state within 3 s. */
async function until (b: ServiceBreaker, state: BreakerState): Promise<boolean> {
  return await waitFor(() => b.snapshot().state === state, { timeout: 3000 }).then(() => true, () => false)
}

function expectOpenError (t: Test, err: GatewayError | undefined, maxSeconds: number): void {
  t.ok(err instanceof GatewayError, 'a GatewayError')
  t.equal(err?.code, 'CIRCUIT_OPEN')
  t.equal(err?.status, 503)
  const retryAfter = err?.headers?.['retry-after']
  t.match(retryAfter, /^\d+$/, 'retry-after is whole seconds')
  t.ok(Number(retryAfter) >= 1 && Number(retryAfter) <= maxSeconds, `retry-after ${retryAfter} is between 1 and ${maxSeconds}`)
}

t.test('5xx answers open the breaker; while closed the caller still gets them', async t => {
  const s = stub(500)
  const b = breaker(t, s.call)
  for (let i = 1; i <= 3; i++) {
    const res = await b.call(req)
    t.equal(res.statusCode, 500, `call ${i}: the 500 answer itself`)
    t.equal(res.headers['x-from'], 'stub')
    t.equal(await text(res), 'answer 500', `call ${i}: with its body`)
  }
  t.equal(b.snapshot().state, 'open', 'three failures of three calls open it')
  const err = await rejection(b.call(req))
  expectOpenError(t, err, 1)
  await rejection(b.call(req))
  t.equal(s.calls(), 3, 'the open breaker did not call the service')
  t.same(b.changes, ['open'])
  const stats = b.snapshot().stats
  t.equal(stats.rejects, 2, 'both refused calls are counted as rejects')
  t.equal(stats.fires, 5, 'and as calls')
  t.equal(stats.failures, 3)
})

t.test('every 5xx counts, not just 500', async t => {
  for (const status of [501, 502, 503, 504, 599]) {
    const s = stub(status)
    const b = breaker(t, s.call, { volumeThreshold: 2 })
    await b.call(req)
    await b.call(req)
    t.equal(b.snapshot().state, 'open', `${status} counts as a failure`)
  }
})

t.test('connection errors and timeouts open it; the caller gets the error itself while closed', async t => {
  for (const code of ['UPSTREAM_ERROR', 'UPSTREAM_TIMEOUT'] as const) {
    const s = stub(code)
    const b = breaker(t, s.call)
    for (let i = 1; i <= 3; i++) {
      const err = await rejection(b.call(req))
      t.equal(err?.code, code, `${code} call ${i}: rethrown`)
    }
    t.equal(b.snapshot().state, 'open')
    expectOpenError(t, await rejection(b.call(req)), 1)
    t.equal(s.calls(), 3, `${code}: not called while open`)
  }
})

t.test('4xx answers never open it', async t => {
  for (const status of [400, 401, 403, 404, 409, 422, 429]) {
    const s = stub(status)
    const b = breaker(t, s.call, { volumeThreshold: 2 })
    for (let i = 0; i < 20; i++) t.equal((await b.call(req)).statusCode, status)
    const snap = b.snapshot()
    t.equal(snap.state, 'closed', `${status} x20: still closed`)
    t.equal(snap.stats.failures, 0)
    t.equal(snap.stats.successes, 20)
    t.equal(s.calls(), 20)
  }
})

t.test('fewer calls than volumeThreshold never open it', async t => {
  const s = stub(500)
  const b = breaker(t, s.call, { volumeThreshold: 4 })
  for (let i = 0; i < 3; i++) await b.call(req)
  t.equal(b.snapshot().state, 'closed', '3 failures of 3 calls, below a volume of 4')
  await b.call(req)
  t.equal(b.snapshot().state, 'open', 'the 4th failure reaches the volume')
})

t.test('it opens only when the failure rate exceeds errorThresholdPercentage', async t => {
  const s = stub(200)
  const b = breaker(t, s.call, { volumeThreshold: 4, errorThresholdPercentage: 50 })
  for (const status of [200, 500, 200, 500]) {
    s.set(status)
    await b.call(req)
  }
  t.equal(b.snapshot().state, 'closed', '2 of 4 failed: 50% is not more than 50%')
  s.set(500)
  await b.call(req)
  t.equal(b.snapshot().state, 'open', '3 of 5 failed: 60%')
})

t.test('after resetTimeout one trial call goes through; success closes the breaker', async t => {
  const s = stub(500)
  // Once healed, the service holds its answer until released, so a second
  // call can be made while the trial is in flight.
  let healed = false
  let release!: () => void
  const held = new Promise<void>(resolve => { release = resolve })
  const b = breaker(t, async r => {
    if (healed) await held
    return await s.call(r)
  })
  for (let i = 0; i < 3; i++) await b.call(req)
  t.equal(b.snapshot().state, 'open')
  expectOpenError(t, await rejection(b.call(req)), 1)
  t.ok(await until(b, 'halfOpen'), 'half-open after resetTimeout')
  t.equal(s.calls(), 3, 'nothing reached the service while open')

  healed = true
  s.set(200)
  const trial = b.call(req)
  const concurrent = await rejection(b.call(req))
  expectOpenError(t, concurrent, 1)
  t.equal(concurrent?.headers?.['retry-after'], '1', 'half-open with a trial in flight: retry in a second')
  release()
  const res = await trial
  t.equal(res.statusCode, 200, 'the trial\'s answer comes back')
  t.equal(await text(res), 'answer 200')
  t.equal(s.calls(), 4, 'only the trial reached the service')
  t.equal(b.snapshot().state, 'closed', 'a successful trial closes the breaker')
  t.same(b.changes, ['open', 'halfOpen', 'closed'])
  for (let i = 0; i < 3; i++) t.equal((await b.call(req)).statusCode, 200, 'calls pass again')
  t.equal(s.calls(), 7)
})

t.test('a failed trial opens the breaker again at once', async t => {
  for (const failure of [503, 'UPSTREAM_ERROR'] as const) {
    const s = stub(500)
    const b = breaker(t, s.call)
    for (let i = 0; i < 3; i++) await b.call(req)
    t.ok(await until(b, 'halfOpen'), `${failure}: half-open`)
    s.set(failure)
    if (typeof failure === 'number') {
      const res = await b.call(req)
      t.equal(res.statusCode, 503, 'the trial\'s 5xx answer reaches the caller')
    } else {
      t.equal((await rejection(b.call(req)))?.code, 'UPSTREAM_ERROR', 'the trial\'s error reaches the caller')
    }
    t.equal(s.calls(), 4, 'the trial was a real call')
    t.equal(b.snapshot().state, 'open', `${failure}: open again`)
    expectOpenError(t, await rejection(b.call(req)), 1)
    t.equal(s.calls(), 4, 'not called while open again')
    t.same(b.changes, ['open', 'halfOpen', 'open'])

    // And it recovers on the next trial.
    s.set(200)
    t.ok(await until(b, 'halfOpen'), 'half-open again after another resetTimeout')
    t.equal((await b.call(req)).statusCode, 200)
    t.equal(b.snapshot().state, 'closed')
  }
})

t.test('a 4xx trial counts as a success and closes it', async t => {
  const s = stub(500)
  const b = breaker(t, s.call)
  for (let i = 0; i < 3; i++) await b.call(req)
  t.ok(await until(b, 'halfOpen'))
  s.set(404)
  t.equal((await b.call(req)).statusCode, 404)
  t.equal(b.snapshot().state, 'closed')
})

t.test('retry-after counts down the seconds until the trial', async t => {
  const s = stub('UPSTREAM_ERROR')
  const b = breaker(t, s.call, { volumeThreshold: 1, resetTimeout: 3000 })
  await rejection(b.call(req))
  t.equal(b.snapshot().state, 'open')
  const err = await rejection(b.call(req))
  expectOpenError(t, err, 3)
  t.ok(Number(err?.headers?.['retry-after']) >= 2, 'about three seconds left, not one')
  const snap = b.snapshot()
  t.ok(snap.retryAfter !== undefined && snap.retryAfter >= 2 && snap.retryAfter <= 3, `snapshot retryAfter ${snap.retryAfter}`)
})

t.test('snapshot() reports the service, state and counts', async t => {
  const s = stub(200)
  const b = breaker(t, s.call, { volumeThreshold: 4 })
  const fresh = b.snapshot()
  t.same(fresh, { service: 'svc', state: 'closed', stats: { fires: 0, failures: 0, successes: 0, rejects: 0, timeouts: 0 } })
  t.equal(fresh.retryAfter, undefined, 'no retryAfter while closed')

  await b.call(req)
  s.set(404)
  await b.call(req)
  s.set(500)
  await b.call(req)
  s.set('UPSTREAM_ERROR')
  await rejection(b.call(req))
  await rejection(b.call(req))
  t.match(b.snapshot(), { service: 'svc', state: 'open', stats: { fires: 5, failures: 3, successes: 2, rejects: 0 } })
  await rejection(b.call(req))
  await rejection(b.call(req))
  const open = b.snapshot()
  t.match(open, { state: 'open', stats: { fires: 7, failures: 3, successes: 2, rejects: 2 } })
  t.equal(open.retryAfter, 1)
  t.equal(s.calls(), 5, 'rejected calls never reached the service')
})

t.test('onChange tells every listener about open, halfOpen and closed', async t => {
  const s = stub(500)
  const b = breaker(t, s.call, { volumeThreshold: 2 })
  const second: BreakerState[] = []
  b.onChange(state => second.push(state))
  await b.call(req)
  t.same(b.changes, [], 'no change while under the volume')
  await b.call(req)
  t.same(b.changes, ['open'])
  t.ok(await until(b, 'halfOpen'))
  t.same(b.changes, ['open', 'halfOpen'])
  s.set(200)
  await b.call(req)
  t.same(b.changes, ['open', 'halfOpen', 'closed'])
  t.same(second, b.changes, 'a second listener got the same changes')
})
