// The real process: `portico start` as a user runs it. Ready line on stdout,
// graceful SIGTERM (stop accepting, finish in-flight requests, exit 0) and the
// `npm start` demo (README "Quick start", "Logs and shutdown").
import t from 'tap'
import { connect } from 'node:net'
import { request } from 'undici'
import { upstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'
import { buildIfStale, childEnv, freePort, startCli, startConfiguredCli } from '../helpers/cli.js'

t.before(buildIfStale)

/** Tries new connections until one is refused (or gives up); true when refused. */
async function refusesConnections (port: number): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    const refused = await new Promise<boolean>(resolve => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => { socket.destroy(); resolve(false) })
      socket.once('error', err => { resolve((err as NodeJS.ErrnoException).code === 'ECONNREFUSED') })
    })
    if (refused) return true
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  return false
}

t.test('portico start: ready line, then SIGTERM finishes the request in flight and exits 0', async t => {
  const up = await upstream(t, (_req, res) => {
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{"slow":true}')
    }, 800)
  })
  const { port, gw, ready } = await startConfiguredCli(t, port => `server:
  host: 127.0.0.1
  port: ${port}
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
`, childEnv())
  t.match(ready, new RegExp(`^portico listening on http://127\\.0\\.0\\.1:${port} \\(1 routes from .*gateway\\.yaml\\)$`))
  t.equal(gw.lines.filter(l => l.startsWith('portico listening on')).length, 1, 'one ready line')

  const inFlight = request(`http://127.0.0.1:${port}/slow`)
  // The request has reached the slow upstream: it is in flight at the gateway.
  await waitFor(() => up.hits() > 0, { timeout: 10_000, message: 'the request reaches the slow upstream' })

  gw.child.kill('SIGTERM')
  t.ok(await refusesConnections(port), 'new connections are refused after SIGTERM')
  t.notOk(gw.hasExited(), 'refused while the process was still finishing its request')

  const res = await inFlight
  t.equal(res.statusCode, 200, 'the in-flight request completes')
  t.same(await res.body.json(), { slow: true })
  t.same(await gw.exited, { code: 0, signal: null }, 'exit 0 after the drain')
  t.equal(up.hits(), 1)
})

t.test('npm start\'s command serves the demo config and stops on SIGTERM', async t => {
  const port = await freePort()
  const gw = startCli(t, ['start', '--demo'], childEnv({ PORT: String(port) }))
  const ready = await gw.waitForLine(/^portico listening on /)
  t.match(ready, new RegExp(`:${port}[, ].*\\(\\d+ routes from config/gateway\\.yaml\\)$`))

  const res = await request(`http://127.0.0.1:${port}/api/products`)
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  const products = await res.body.json() as Array<{ id: string }>
  t.ok(Array.isArray(products) && products.length > 0, 'a list of products')
  t.match(products[0], { id: String, name: String })

  gw.child.kill('SIGTERM')
  t.same(await gw.exited, { code: 0, signal: null })
})
