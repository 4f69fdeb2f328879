// A client that hangs up before its answer's headers frees the upstream call
// at once (not when the service answers or its timeout passes), and its
// hang-up never counts against the service: many of them neither open the
// breaker nor get an instance ejected. A route whose answer invalidates or
// publishes is the exception: its call runs to the end, so a write the
// service made still purges the cache.
import t from 'tap'
import { connect } from 'node:net'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { buildFromFiles } from '../helpers/gateway.js'
import { listen, rawRequest } from '../helpers/http.js'
import { upstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

/** An upstream that holds every request until released, and counts those whose connection closed first. */
async function holdingUpstream (t: Parameters<typeof upstream>[0]) {
  const held: Array<{ req: IncomingMessage, res: ServerResponse }> = []
  let abandoned = 0
  let finished = 0
  const up = await upstream(t, (req, res) => {
    if (req.url === '/fast') { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('ok'); return }
    held.push({ req, res })
    res.on('close', () => { if (!res.writableFinished) abandoned++ })
    res.on('finish', () => { finished++ })
  })
  return {
    up,
    held: () => held.length,
    abandoned: () => abandoned,
    finished: () => finished,
    releaseAll: () => { for (const h of held.splice(0)) if (!h.res.destroyed) { h.res.writeHead(204); h.res.end() } },
  }
}

/** Sends a request on a raw socket and closes it without waiting for the answer, once `ready` says so. */
async function hangUp (port: number, head: string, ready: () => boolean): Promise<void> {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await new Promise<void>(resolve => socket.once('connect', resolve))
  socket.write(head)
  await waitFor(ready, { timeout: 5000, message: 'the request reached the upstream' })
  socket.destroy()
}

function config (url: string): string {
  return `services:
  backend:
    urls: [${url}]
    timeout: 30s
    breaker: { volumeThreshold: 2, errorThresholdPercentage: 10, resetTimeout: 1m }
    passiveHealth: { failures: 2, ejectFor: 1m }
policies:
  public: { auth: none }
routes:
  - { id: slow, path: /slow, policy: public, proxy: { service: backend, path: /slow } }
  - { id: fast, path: /fast, policy: public, proxy: { service: backend, path: /fast } }
  - { id: write, method: POST, path: /write, policy: public, invalidates: [things], proxy: { service: backend, path: /write } }
`
}

t.test('a client that hangs up frees its upstream call at once, and counts against nothing', async t => {
  const h = await holdingUpstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': config(h.up.url) })
  t.teardown(h.releaseAll)
  const port = await listen(app)

  for (let i = 1; i <= 5; i++) {
    await hangUp(port, 'GET /slow HTTP/1.1\r\nHost: g\r\n\r\n', () => h.held() === i)
    await waitFor(() => h.abandoned() === i, { timeout: 5000, message: `hang-up ${i}: the upstream call was cancelled long before the 30 s timeout` })
  }
  t.equal(h.abandoned(), 5, 'every upstream call was cancelled')

  // Five hang-ups with volumeThreshold 2 and 10 % errors would have opened the
  // breaker, and two failures in a row would have ejected the one instance.
  const res = await rawRequest(port, { path: '/fast' })
  t.equal(res.status, 200, 'the service is still called: the breaker stayed closed')
})

t.test('a route that invalidates lets its call finish when the client hangs up (the write still purges)', async t => {
  const h = await holdingUpstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': config(h.up.url) })
  const port = await listen(app)

  await hangUp(port, 'POST /write HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}', () => h.held() === 1)
  // A plain route's hang-up after it: once that call is cancelled, the gateway has handled both closes.
  await hangUp(port, 'GET /slow HTTP/1.1\r\nHost: g\r\n\r\n', () => h.held() === 2)
  await waitFor(() => h.abandoned() === 1, { timeout: 5000, message: 'the plain route\'s call was cancelled' })
  h.releaseAll()
  await waitFor(() => h.finished() === 1, { timeout: 5000, message: 'the service answered the write' })
  t.equal(h.abandoned(), 1, 'the write\'s call was not cancelled, only the plain one')
})

t.test('an aggregate whose client hangs up cancels all its parts', async t => {
  const h = await holdingUpstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': config(h.up.url).replace('routes:\n', `routes:
  - id: agg
    path: /agg
    policy: public
    aggregate:
      a: { service: backend, path: /slow }
      b: { service: backend, path: /slow }
      c: { service: backend, path: /slow, optional: true }
`) })
  t.teardown(h.releaseAll)
  const port = await listen(app)
  await hangUp(port, 'GET /agg HTTP/1.1\r\nHost: g\r\n\r\n', () => h.held() === 3)
  await waitFor(() => h.abandoned() === 3, { timeout: 5000, message: 'every part\'s call was cancelled long before the 30 s timeout' })
  t.equal(h.abandoned(), 3)
  const res = await rawRequest(port, { path: '/fast' })
  t.equal(res.status, 200, 'the breaker stayed closed')
})
