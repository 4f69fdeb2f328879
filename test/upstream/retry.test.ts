// withRetry alone, against stub calls (README "Resilience: breakers,
// retries, balancing", **Retries**): only idempotent methods with a replayable body, only
// after a connection error, 502 or 503, at most `retries` more attempts, the
// last 502/503 answer returned when attempts run out, never past a deadline,
// and each attempt's timeout capped at the time left.
import t from 'tap'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { withRetry } from '../../src/upstream/retry.js'
import { GatewayError, type ErrorCode } from '../../src/util/errors.js'
import type { UpstreamCall, UpstreamRequest, UpstreamResponse } from '../../src/upstream/types.js'

function response (statusCode: number, text = `answer ${statusCode}`): UpstreamResponse {
  return { statusCode, headers: {}, body: Readable.from([Buffer.from(text)]), instance: 'stub' }
}

type Step = number | ErrorCode | Error

/**
 * A stub call that plays the given steps in order (a status answers, an error
 * code or Error is thrown; the last step repeats) and records every request.
 */
function scripted (...steps: Step[]): { call: UpstreamCall, seen: UpstreamRequest[], answers: UpstreamResponse[] } {
  const seen: UpstreamRequest[] = []
  const answers: UpstreamResponse[] = []
  const call: UpstreamCall = async req => {
    seen.push(req)
    const step = steps[Math.min(seen.length - 1, steps.length - 1)]
    if (step instanceof Error) throw step
    if (typeof step === 'string') throw new GatewayError(step, `stub ${step}`)
    const res = response(step, `attempt ${seen.length}`)
    answers.push(res)
    return res
  }
  return { call, seen, answers }
}

function get (extra: Partial<UpstreamRequest> = {}): UpstreamRequest {
  return { method: 'GET', path: '/things/1', headers: { 'x-request-id': 'r1' }, timeout: 1000, ...extra }
}

async function text (res: UpstreamResponse): Promise<string> {
  if (Buffer.isBuffer(res.body)) return res.body.toString('utf8')
  const chunks: Buffer[] = []
  for await (const c of res.body) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

/** Whether the stream was read to its end within a second (a discarded body must be drained). */
async function drained (body: Readable | Buffer): Promise<boolean> {
  if (Buffer.isBuffer(body) || body.readableEnded) return true
  return await Promise.race([
    new Promise<boolean>(resolve => body.once('end', () => { resolve(true) })),
    sleep(1000).then(() => false),
  ])
}

async function rejection (p: Promise<unknown>): Promise<GatewayError | undefined> {
  try {
    await p
  } catch (err) {
    return err as GatewayError
  }
  return undefined
}

t.test('a connection error is retried; the next attempt\'s answer is returned', async t => {
  const stub = scripted('UPSTREAM_ERROR', 'UPSTREAM_ERROR', 200)
  const res = await withRetry(stub.call, { retries: 2 })(get())
  t.equal(res.statusCode, 200)
  t.equal(await text(res), 'attempt 3')
  t.equal(stub.seen.length, 3, 'three attempts')
  for (const req of stub.seen) {
    t.equal(req.method, 'GET')
    t.equal(req.path, '/things/1')
    t.same(req.headers, { 'x-request-id': 'r1' }, 'every attempt is the same request')
  }
})

t.test('connection errors are retried `retries` times, then the last error is thrown', async t => {
  for (const retries of [1, 2, 3]) {
    const stub = scripted('UPSTREAM_ERROR')
    const err = await rejection(withRetry(stub.call, { retries })(get()))
    t.ok(err instanceof GatewayError, `retries ${retries}: a GatewayError`)
    t.equal(err?.code, 'UPSTREAM_ERROR')
    t.equal(stub.seen.length, retries + 1, `retries ${retries}: ${retries + 1} attempts`)
  }
})

t.test('502 and 503 answers are retried and their bodies discarded', async t => {
  const stub = scripted(503, 502, 200)
  const res = await withRetry(stub.call, { retries: 2 })(get())
  t.equal(res.statusCode, 200)
  t.equal(await text(res), 'attempt 3', 'the answer of the attempt that worked')
  t.equal(stub.seen.length, 3)
  t.ok(await drained(stub.answers[0].body), 'the 503 body was drained')
  t.ok(await drained(stub.answers[1].body), 'the 502 body was drained')
})

t.test('out of attempts, the last 502/503 answer is returned, not an error', async t => {
  for (const status of [502, 503]) {
    const stub = scripted(status)
    const res = await withRetry(stub.call, { retries: 2 })(get())
    t.equal(stub.seen.length, 3, `${status}: three attempts`)
    t.equal(res.statusCode, status)
    t.equal(res, stub.answers[2], `${status}: the third answer itself`)
    t.equal(await text(res), 'attempt 3', `${status}: its body is intact`)
  }
})

t.test('500, 504 and 4xx answers are returned at once', async t => {
  for (const status of [500, 504, 400, 404, 409, 429, 200, 201, 204]) {
    const stub = scripted(status, 200)
    const res = await withRetry(stub.call, { retries: 3 })(get())
    t.equal(res.statusCode, status, `${status} returned`)
    t.equal(stub.seen.length, 1, `${status}: one attempt`)
  }
})

t.test('timeouts, open breakers and unknown failures are not retried', async t => {
  for (const failure of ['UPSTREAM_TIMEOUT', 'CIRCUIT_OPEN', 'INTERNAL_ERROR', new Error('boom')] as Step[]) {
    const label = failure instanceof Error ? 'a plain Error' : failure
    const stub = scripted(failure, 200)
    const err = await rejection(withRetry(stub.call, { retries: 3 })(get()))
    t.equal(err, failure instanceof Error ? failure : err, `${label}: rethrown as is`)
    if (typeof failure === 'string') t.equal(err?.code, failure, `${label}: same code`)
    t.equal(stub.seen.length, 1, `${label}: one attempt`)
  }
})

t.test('only idempotent methods are retried', async t => {
  for (const method of ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']) {
    const stub = scripted('UPSTREAM_ERROR', 200)
    const res = await withRetry(stub.call, { retries: 1 })(get({ method }))
    t.equal(res.statusCode, 200, `${method} retried`)
    t.equal(stub.seen.length, 2, `${method}: two attempts`)
  }
  for (const method of ['POST', 'PATCH']) {
    const thrown = scripted('UPSTREAM_ERROR', 200)
    const err = await rejection(withRetry(thrown.call, { retries: 3 })(get({ method, body: Buffer.from('{}') })))
    t.equal(err?.code, 'UPSTREAM_ERROR', `${method}: the connection error comes back`)
    t.equal(thrown.seen.length, 1, `${method}: one attempt after a connection error`)

    const answered = scripted(503, 200)
    const res = await withRetry(answered.call, { retries: 3 })(get({ method }))
    t.equal(res.statusCode, 503, `${method}: the 503 comes back`)
    t.equal(answered.seen.length, 1, `${method}: one attempt after a 503`)
  }
})

t.test('a buffered body is replayed; a streamed body is never retried', async t => {
  const buffer = Buffer.from('{"a":1}')
  const buffered = scripted('UPSTREAM_ERROR', 200)
  await withRetry(buffered.call, { retries: 1 })(get({ method: 'PUT', body: buffer }))
  t.equal(buffered.seen.length, 2)
  t.equal(buffered.seen[1].body, buffer, 'the second attempt sends the same bytes')

  const string = scripted(502, 200)
  const res = await withRetry(string.call, { retries: 1 })(get({ method: 'PUT', body: '{"a":1}' }))
  t.equal(res.statusCode, 200)
  t.equal(string.seen.length, 2, 'a string body is replayable')

  for (const method of ['PUT', 'GET', 'DELETE']) {
    const streamed = scripted('UPSTREAM_ERROR', 200)
    const err = await rejection(withRetry(streamed.call, { retries: 3 })(get({ method, body: Readable.from([Buffer.from('x')]) })))
    t.equal(err?.code, 'UPSTREAM_ERROR', `${method} with a stream body: the error comes back`)
    t.equal(streamed.seen.length, 1, `${method} with a stream body: one attempt`)

    const streamed503 = scripted(503, 200)
    const res503 = await withRetry(streamed503.call, { retries: 3 })(get({ method, body: Readable.from([Buffer.from('x')]) }))
    t.equal(res503.statusCode, 503)
    t.equal(streamed503.seen.length, 1, `${method} with a stream body and a 503: one attempt`)
  }
})

t.test('retries: 0 makes exactly one call', async t => {
  const stub = scripted('UPSTREAM_ERROR', 200)
  const err = await rejection(withRetry(stub.call, { retries: 0 })(get()))
  t.equal(err?.code, 'UPSTREAM_ERROR')
  t.equal(stub.seen.length, 1)
})

t.test('a deadline already passed: UPSTREAM_TIMEOUT without a call', async t => {
  const stub = scripted(200)
  const err = await rejection(withRetry(stub.call, { retries: 2 })(get({ deadline: Date.now() - 1 })))
  t.ok(err instanceof GatewayError)
  t.equal(err?.code, 'UPSTREAM_TIMEOUT')
  t.equal(stub.seen.length, 0, 'the upstream was not called')
})

t.test('no time left before the deadline after a failure: UPSTREAM_TIMEOUT, no further attempt', async t => {
  const deadline = Date.now() + 30
  const seen: UpstreamRequest[] = []
  const slowFailure: UpstreamCall = async req => {
    seen.push(req)
    // Fail only once the deadline has passed, so no retry can fit.
    while (Date.now() <= deadline) await sleep(10)
    throw new GatewayError('UPSTREAM_ERROR', 'refused')
  }
  const err = await rejection(withRetry(slowFailure, { retries: 3 })(get({ deadline })))
  t.ok(err instanceof GatewayError)
  t.equal(err?.code, 'UPSTREAM_TIMEOUT')
  t.equal(seen.length, 1, 'one attempt only')
})

t.test('each attempt\'s timeout is capped at the time left before the deadline', async t => {
  // A far deadline: the attempt keeps its own timeout.
  const far = scripted(200)
  await withRetry(far.call, { retries: 1 })(get({ timeout: 50, deadline: Date.now() + 60_000 }))
  t.equal(far.seen[0].timeout, 50, 'a timeout shorter than the time left is kept')

  // A near deadline: the attempt gets at most what is left.
  const before = Date.now()
  const deadline = before + 300
  const near = scripted(200)
  await withRetry(near.call, { retries: 1 })(get({ timeout: 10_000, deadline }))
  t.ok(near.seen[0].timeout > 0, 'some time is left')
  t.ok(near.seen[0].timeout <= deadline - before, `timeout ${near.seen[0].timeout} is at most the ${deadline - before} ms left`)

  // The second attempt gets only what the first one left over.
  const start = Date.now()
  const deadline2 = start + 2000
  const seen: UpstreamRequest[] = []
  let firstEnded = 0
  const failOnceSlowly: UpstreamCall = async req => {
    seen.push(req)
    if (seen.length === 1) {
      await sleep(100)
      firstEnded = Date.now()
      throw new GatewayError('UPSTREAM_ERROR', 'reset')
    }
    return response(200)
  }
  const res = await withRetry(failOnceSlowly, { retries: 1 })(get({ timeout: 10_000, deadline: deadline2 }))
  t.equal(res.statusCode, 200)
  t.equal(seen.length, 2)
  t.ok(seen[0].timeout <= deadline2 - start, 'first attempt: capped')
  t.ok(seen[1].timeout <= deadline2 - firstEnded, `second attempt: ${seen[1].timeout} ms, at most what was left after the first`)
  t.ok(seen[1].timeout < seen[0].timeout, 'the second attempt has less time than the first')
})

t.test('without a deadline every attempt has the full timeout', async t => {
  const stub = scripted('UPSTREAM_ERROR', 503, 200)
  await withRetry(stub.call, { retries: 2 })(get({ timeout: 1234 }))
  t.same(stub.seen.map(r => r.timeout), [1234, 1234, 1234])
})
