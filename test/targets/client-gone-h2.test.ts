// Over HTTP/2 a client hangs up per stream (RST_STREAM), not per connection:
// a reset stream cancels its upstream call at once, while the session and
// its other streams go on.
import t from 'tap'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ServerResponse } from 'node:http'
import { upstream } from '../helpers/upstream.js'
import { buildIfStale, childEnv, freePort, startCli } from '../helpers/cli.js'
import { serverPki } from '../helpers/certs.js'
import { h2, h2session } from '../helpers/https.js'
import { waitFor } from '../helpers/wait.js'

t.before(buildIfStale)

t.test('a reset h2 stream cancels its upstream call; the session serves on', async t => {
  const pki = t.testdir()
  const { ca, server } = serverPki(pki)
  const held: ServerResponse[] = []
  let abandoned = 0
  const up = await upstream(t, (req, res) => {
    if (req.url === '/fast') { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('ok'); return }
    held.push(res)
    res.on('close', () => { if (!res.writableFinished) abandoned++ })
  })
  t.teardown(() => { for (const r of held) if (!r.destroyed) r.destroy() })
  const port = await freePort()
  const dir = join(pki, 'gw')
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'gateway.yaml'), `server:
  host: 127.0.0.1
  port: ${port}
  tls: { cert: ${server.cert}, key: ${server.key} }
  http2: true
services:
  backend: { urls: [${up.url}], timeout: 30s, breaker: { volumeThreshold: 1, errorThresholdPercentage: 1, resetTimeout: 1m } }
policies:
  public: { auth: none }
routes:
  - { id: slow, path: /slow, policy: public, proxy: { service: backend } }
  - { id: fast, path: /fast, policy: public, proxy: { service: backend } }
`)
  const gw = startCli(t, ['start', '--config', join(dir, 'gateway.yaml')], childEnv())
  await gw.waitForLine(/^portico listening on /)
  const session = await h2session(port, { ca: ca.cert })
  t.teardown(() => { session.destroy() })

  for (let i = 1; i <= 3; i++) {
    const stream = session.request({ ':path': '/slow', ':method': 'GET' })
    stream.on('error', () => {})
    await waitFor(() => held.length === i, { timeout: 5000, message: 'the request reached the upstream' })
    stream.close() // RST_STREAM (CANCEL)
    await waitFor(() => abandoned === i, { timeout: 5000, message: `reset ${i}: the upstream call was cancelled long before the 30 s timeout` })
  }
  t.equal(abandoned, 3)
  const res = await h2(session, '/fast')
  t.equal(res.status, 200, 'the same session still serves, and three resets opened no breaker (volumeThreshold 1)')
})
