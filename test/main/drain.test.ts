// SIGTERM under load on keep-alive connections: every request in flight gets
// its answer with `connection: close`, idle keep-alive connections close at
// once, and the process exits 0 as soon as that is done, long before
// shutdownTimeout. The real CLI, real keep-alive clients.
import t from 'tap'
import { Agent, request, type IncomingMessage } from 'node:http'
import { connect } from 'node:net'
import { upstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'
import { buildIfStale, childEnv, startConfiguredCli } from '../helpers/cli.js'

t.before(buildIfStale)

const CLIENTS = 8

interface Outcome { status: number, connection: string | undefined, body: string }

/** One GET on a keep-alive agent. */
async function get (port: number, agent: Agent, path: string): Promise<Outcome> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res: IncomingMessage) => {
      let body = ''
      res.setEncoding('utf8').on('data', (d: string) => { body += d })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('SIGTERM drains busy keep-alive connections with connection: close and exits 0 at once', async t => {
  let inflight = 0
  const up = await upstream(t, (_req, res) => {
    inflight++
    setTimeout(() => {
      inflight--
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{"ok":true}')
    }, 300)
  })
  const { port, gw } = await startConfiguredCli(t, port => `server:
  host: 127.0.0.1
  port: ${port}
  shutdownTimeout: 8s
services:
  slow:
    urls: [${up.url}]
    timeout: 5s
policies:
  public: { auth: none }
routes:
  - id: slow
    path: /slow
    policy: public
    proxy: { service: slow }
`, childEnv({ LOG_LEVEL: 'error' }))

  // An idle keep-alive connection: one answered request, then nothing.
  const idle = connect(port, '127.0.0.1')
  let idleText = ''
  idle.setEncoding('utf8').on('data', (d: string) => { idleText += d })
  idle.on('error', () => {})
  const idleClosed = new Promise<number>(resolve => idle.on('close', () => { resolve(Date.now()) }))
  idle.write('GET /slow HTTP/1.1\r\nHost: g\r\n\r\n')

  // Busy keep-alive clients: each sends its next request as soon as the last one is answered.
  let signalled = false
  const clients = Array.from({ length: CLIENTS }, async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    const outcomes: Outcome[] = []
    try {
      for (;;) {
        const o = await get(port, agent, '/slow')
        outcomes.push(o)
        // The gateway said goodbye on this connection: a real client would reconnect (and be refused).
        if (o.connection === 'close') break
        if (signalled && outcomes.length > 20) break // without the fix the gateway keeps serving
      }
      return { outcomes, error: undefined }
    } catch (err) {
      return { outcomes, error: err as Error }
    } finally {
      agent.destroy()
    }
  })

  // Every client is on its second round at least: the connections are kept alive and busy.
  await waitFor(() => up.hits() >= CLIENTS * 2 + 1 && inflight === CLIENTS, { timeout: 10_000, interval: 5, message: 'every client on its second round' })
  t.match(idleText, /^HTTP\/1\.1 200 /, 'the idle connection had its answer')
  const sentAt = Date.now()
  signalled = true
  gw.child.kill('SIGTERM')

  const results = await Promise.all(clients)
  const exit = await gw.exited
  const exitedAfter = Date.now() - sentAt

  for (const [i, r] of results.entries()) {
    t.equal(r.error, undefined, `client ${i}: no reset or error`)
    const last = r.outcomes[r.outcomes.length - 1]
    t.match(last, { status: 200, connection: 'close', body: '{"ok":true}' }, `client ${i}: the request in flight at SIGTERM got its 200 with connection: close`)
    t.ok(r.outcomes.slice(0, -1).every(o => o.status === 200 && o.connection === 'keep-alive'), `client ${i}: kept alive before`)
  }
  t.same(exit, { code: 0, signal: null }, 'exit 0')
  t.ok(exitedAfter < 2000, `exited once drained, ${exitedAfter} ms after SIGTERM (shutdownTimeout 8 s)`)
  t.ok((await idleClosed) - sentAt < 1000, 'the idle keep-alive connection was closed at once')
})
