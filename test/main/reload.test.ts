// Hot reload with the real process (README "Reloading the config"): SIGHUP and
// --watch swap in a new config; requests in flight finish on the config they
// began with; a keep-alive connection survives the swap; an invalid config is
// logged and the old one keeps serving; unchanged services keep breaker state.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { upstream, type UpstreamHandler } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'
import { writeConfigFiles } from '../helpers/gateway.js'
import { buildIfStale, childEnv, freePort, startCli } from '../helpers/cli.js'

t.before(buildIfStale)

function json (name: string): UpstreamHandler {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ from: name }))
  }
}

function config (port: number, adminPort: number, routes: string, services: string): string {
  return `server: { host: 127.0.0.1, port: ${port}, shutdownTimeout: 5s }
admin: { port: ${adminPort} }
services:
${services}
policies:
  public: { auth: none }
routes:
${routes}
`
}

t.test('SIGHUP: new routes and targets for new requests, in-flight requests finish on the old config, the connection survives', async t => {
  let release: () => void = () => {}
  const slowOld = await upstream(t, (_req, res) => {
    release = () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"from":"old"}') }
  })
  const fresh = await upstream(t, json('new'))
  const [port, adminPort] = [await freePort(), await freePort()]
  const dir = writeConfigFiles({
    'gateway.yaml': config(port, adminPort,
      '  - { id: a, path: /a, policy: public, proxy: { service: one } }\n  - { id: gone, path: /gone, policy: public, proxy: { service: one } }',
      `  one: { urls: [${slowOld.url}], timeout: 5s }`),
  })
  const file = join(dir, 'gateway.yaml')
  const gw = startCli(t, ['start', '--config', file], childEnv())
  await gw.waitForLine(/^portico listening on /)

  const agent = new Agent({ connections: 1, keepAliveTimeout: 30_000 })
  t.teardown(async () => { await agent.close() })
  const inFlight = request(`http://127.0.0.1:${port}/a`, { dispatcher: agent })
  await waitFor(() => slowOld.hits() > 0, { timeout: 10_000, message: 'the request reaches the old upstream' })

  writeFileSync(file, config(port, adminPort,
    '  - { id: a, path: /a, policy: public, proxy: { service: two } }\n  - { id: b, path: /b, policy: public, proxy: { service: two } }',
    `  two: { urls: [${fresh.url}], timeout: 5s }`))
  gw.child.kill('SIGHUP')
  await gw.waitForLine(/config reloaded/)

  const removed = await request(`http://127.0.0.1:${port}/gone`)
  t.equal(removed.statusCode, 404, 'a route the new config removed is gone')
  await removed.body.dump()
  const onNew = await request(`http://127.0.0.1:${port}/b`)
  t.equal(onNew.statusCode, 200, 'a route the new config added')
  t.same(await onNew.body.json(), { from: 'new' })
  release()
  const old = await inFlight
  t.equal(old.statusCode, 200, 'the request in flight finished')
  t.same(await old.body.json(), { from: 'old' }, 'on the config it began with')
  const again = await request(`http://127.0.0.1:${port}/a`, { dispatcher: agent })
  t.same(await again.body.json(), { from: 'new' }, 'the same keep-alive connection now reaches the new target')
  t.equal(slowOld.hits(), 1)
})

t.test('an invalid config is logged line by line and the old one keeps serving', async t => {
  const up = await upstream(t, json('one'))
  const [port, adminPort] = [await freePort(), await freePort()]
  const dir = writeConfigFiles({
    'gateway.yaml': config(port, adminPort, '  - { id: a, path: /a, policy: public, proxy: { service: one } }', `  one: { urls: [${up.url}] }`),
  })
  const file = join(dir, 'gateway.yaml')
  const gw = startCli(t, ['start', '--config', file], childEnv())
  await gw.waitForLine(/^portico listening on /)
  writeFileSync(file, config(port, adminPort, '  - { id: a, path: /a, policy: nobody, proxy: { service: one } }', `  one: { urls: [${up.url}], timeout: soon }`))
  gw.child.kill('SIGHUP')
  const rejected = await gw.waitForLine(/config reload rejected/)
  t.match(rejected, /2 problems/)
  t.ok(gw.lines.some(l => l.includes('gateway.yaml:') && l.includes('routes[0].policy: unknown policy')), 'each problem is logged as FILE:LINE: field: message')
  const res = await request(`http://127.0.0.1:${port}/a`)
  t.equal(res.statusCode, 200, 'still serving the previous config')
  t.same(await res.body.json(), { from: 'one' })
  t.equal(gw.hasExited(), false)
})

t.test('--watch reloads on a file change; an unchanged service keeps its open breaker', async t => {
  const failing = await upstream(t, (_req, res) => { res.writeHead(500); res.end() })
  const other = await upstream(t, json('other'))
  const [port, adminPort] = [await freePort(), await freePort()]
  const services = `  flaky: { urls: [${failing.url}], breaker: { volumeThreshold: 2, errorThresholdPercentage: 10, resetTimeout: 1m } }\n  other: { urls: [${other.url}] }`
  const dir = writeConfigFiles({
    'gateway.yaml': config(port, adminPort, '  - { id: f, path: /f, policy: public, proxy: { service: flaky } }', services),
  })
  const file = join(dir, 'gateway.yaml')
  const gw = startCli(t, ['start', '--watch', '--config', file], childEnv())
  await gw.waitForLine(/^portico listening on /)
  for (let i = 0; i < 3; i++) await (await request(`http://127.0.0.1:${port}/f`)).body.dump()
  const open = await request(`http://127.0.0.1:${port}/f`)
  t.equal(open.statusCode, 503, 'the breaker opened')
  await open.body.dump()
  const hitsWhenOpened = failing.hits()

  writeFileSync(file, config(port, adminPort, '  - { id: f, path: /f, policy: public, proxy: { service: flaky } }\n  - { id: o, path: /o, policy: public, proxy: { service: other } }', services))
  await gw.waitForLine(/config reloaded/)
  const added = await request(`http://127.0.0.1:${port}/o`)
  t.equal(added.statusCode, 200, 'the watched change took effect without a signal')
  await added.body.dump()
  const still = await request(`http://127.0.0.1:${port}/f`)
  t.equal(still.statusCode, 503, 'the unchanged service kept its open breaker')
  await still.body.dump()
  const breakers = await (await request(`http://127.0.0.1:${adminPort}/admin/breakers`)).body.json() as Array<{ service: string, state: string }>
  t.equal(breakers.find(b => b.service === 'flaky')?.state, 'open')
  t.equal(failing.hits(), hitsWhenOpened, 'no call reached the failing service while open, across the reload')
})
