// A service timeout holds to a few ms on proxy routes: the call arms its own
// timer instead of relying on undici's coarse headers/body timers (which
// fired 100 ms timeouts after about a second).
import t from 'tap'
import { request } from 'undici'
import { upstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'
import { buildFromFiles } from '../helpers/gateway.js'
import { listen } from '../helpers/http.js'
import { monitorEventLoopDelay } from 'node:perf_hooks'

/**
 * Runs `fn` and returns how long this process's event loop was held up at
 * worst meanwhile (ms). On a loaded machine (CI runs test files side by
 * side) the process may not be scheduled for a while; such a stall delays
 * any timer, so a bound on a timeout allows for it.
 */
async function withLoopStall<T> (fn: () => Promise<T>): Promise<{ value: T, stall: number }> {
  const h = monitorEventLoopDelay({ resolution: 5 })
  h.enable()
  try {
    const value = await fn()
    return { value, stall: h.max / 1e6 }
  } finally {
    h.disable()
  }
}

for (const [label, ms] of [['100ms', 100], ['250ms', 250], ['1s', 1000]] as const) {
  t.test(`a ${label} service timeout answers 504 UPSTREAM_TIMEOUT at the timeout`, async t => {
    // Never answers: the request reaches it and hangs.
    const up = await upstream(t, () => {})
    const app = await buildFromFiles(t, {
      'gateway.yaml': `services:
  hang:
    urls: [${up.url}]
    timeout: ${label}
    retries: 0
policies:
  public: { auth: none }
routes:
  - id: hang
    path: /hang
    policy: public
    proxy: { service: hang }
`,
    })
    const port = await listen(app)
    const started = performance.now()
    const { value: res, stall } = await withLoopStall(async () => await request(`http://127.0.0.1:${port}/hang`))
    const elapsed = performance.now() - started
    t.equal(res.statusCode, 504)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.match(await res.body.json(), { code: 'UPSTREAM_TIMEOUT', status: 504 })
    t.ok(elapsed >= ms, `not before the timeout (${elapsed.toFixed(0)} ms)`)
    // undici's own timers fired a 100 ms timeout after ~1 s; this allows 100 ms plus any stall of the process.
    t.ok(elapsed < ms + 100 + stall, `within 100 ms of the timeout (${elapsed.toFixed(0)} ms for ${ms} ms, process stalled ${stall.toFixed(0)} ms)`)
    t.equal(up.hits(), 1, 'the upstream got the request')
  })
}

t.test('a timeout that passes while the call waits for a pooled connection is 504 on time too', async t => {
  const up = await upstream(t, () => {})
  const app = await buildFromFiles(t, {
    'gateway.yaml': `services:
  hang:
    urls: [${up.url}]
    timeout: 200ms
    connections: 1
    retries: 0
policies:
  public: { auth: none }
routes:
  - id: hang
    path: /hang
    policy: public
    proxy: { service: hang }
`,
  })
  const port = await listen(app)
  const first = request(`http://127.0.0.1:${port}/hang`)
  await waitFor(() => up.hits() > 0, { interval: 5, message: 'the first call reaches the upstream' })
  // The one connection is busy: this call queues behind it.
  const started = performance.now()
  const { value: res, stall } = await withLoopStall(async () => await request(`http://127.0.0.1:${port}/hang`))
  const elapsed = performance.now() - started
  t.equal(res.statusCode, 504)
  t.match(await res.body.json(), { code: 'UPSTREAM_TIMEOUT' })
  t.ok(elapsed >= 150 && elapsed < 300 + stall, `the queued call timed out on its own clock (${elapsed.toFixed(0)} ms, process stalled ${stall.toFixed(0)} ms)`)
  t.equal((await first).statusCode, 504)
})
