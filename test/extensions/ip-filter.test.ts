// The `ip-filter` plugin through a real gateway: allow/deny CIDR lists (IPv4
// and IPv6) on the client address as server.trustProxy decides it, refused
// with 403 FORBIDDEN problem+json before authentication and before any
// upstream call; bad ranges are FILE:LINE config errors.
import t from 'tap'
import { join } from 'node:path'
import { buildFromFiles, writeConfigFiles } from '../helpers/gateway.js'
import { startUpstream } from '../helpers/upstream.js'
import { expectProblem } from '../helpers/auth.js'
import { loadGatewayConfig } from '../../src/extensions/load-config.js'
import { ConfigError, formatProblem } from '../../src/config/problems.js'

function yaml (url: string, opts: { server?: string, global?: string } = {}): string {
  return `${opts.server ?? ''}
auth:
  jwt: { secret: "a-test-secret-of-at-least-32-characters!" }
services:
  backend: { urls: [${url}], timeout: 2s }
policies:
  public: { auth: none }
  user: { auth: jwt }
${opts.global ?? ''}
routes:
  - id: office
    path: /office
    policy: public
    proxy: { service: backend }
    plugins:
      ip-filter: { allow: [10.0.0.0/8, "2001:db8::/32"], deny: [10.0.0.9/32, "2001:db8:bad::/48"] }
  - id: private
    path: /private
    policy: user
    proxy: { service: backend }
  - id: open
    path: /open
    policy: public
    proxy: { service: backend }
    plugins:
      ip-filter: { deny: [203.0.113.0/24] }
`
}

t.test('allow and deny lists, IPv4 and IPv6; deny wins; refusals reach no upstream', async t => {
  const up = await startUpstream()
  t.teardown(up.close)
  const app = await buildFromFiles(t, { 'gateway.yaml': yaml(up.url) })
  const status = async (remoteAddress: string, url = '/office'): Promise<number> => (await app.inject({ url, remoteAddress })).statusCode
  t.equal(await status('10.1.2.3'), 200, 'in the allow list')
  t.equal(await status('2001:db8::1'), 200, 'IPv6 in the allow list')
  t.equal(await status('::ffff:10.1.2.3'), 200, 'an IPv4-mapped IPv6 address is checked as IPv4')
  const hits = up.hits()
  t.equal(hits, 3)
  for (const address of ['10.0.0.9', '::ffff:10.0.0.9', '192.168.1.1', '2001:db8:bad::1', '::1', '127.0.0.1']) {
    const res = await app.inject({ url: '/office', remoteAddress: address })
    const body = expectProblem(t, res, 403, 'FORBIDDEN', address)
    t.notMatch(String(body.detail), address, `${address}: the detail does not echo the address`)
  }
  t.equal(up.hits(), hits, 'no refused request reached the upstream')
  t.equal(await status('203.0.113.7', '/open'), 403, 'deny-only list refuses its range')
  t.equal(await status('198.51.100.7', '/open'), 200, 'deny-only list lets others through')
})

t.test('a gateway-wide filter runs before authentication, on every route', async t => {
  const up = await startUpstream()
  t.teardown(up.close)
  const app = await buildFromFiles(t, { 'gateway.yaml': yaml(up.url, { global: 'plugins:\n  ip-filter: { deny: [192.0.2.0/24] }' }) })
  // Without a token: 403 from the filter, not 401 from authentication.
  expectProblem(t, await app.inject({ url: '/private', remoteAddress: '192.0.2.10' }), 403, 'FORBIDDEN')
  expectProblem(t, await app.inject({ url: '/private', remoteAddress: '198.51.100.1' }), 401, 'UNAUTHENTICATED')
  // A route's own ip-filter entry replaces the gateway-wide one.
  t.equal((await app.inject({ url: '/office', remoteAddress: '10.1.1.1' })).statusCode, 200)
  t.equal((await app.inject({ url: '/open', remoteAddress: '192.0.2.10' })).statusCode, 200)
  t.equal(up.hits(), 2)
})

t.test('the client address is what trustProxy believes', async t => {
  const up = await startUpstream()
  t.teardown(up.close)
  const trusting = await buildFromFiles(t, { 'gateway.yaml': yaml(up.url, { server: 'server: { trustProxy: 127.0.0.1 }' }) })
  const plain = await buildFromFiles(t, { 'gateway.yaml': yaml(up.url) })
  const viaProxy = { url: '/open', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': '203.0.113.5' } }
  expectProblem(t, await trusting.inject(viaProxy), 403, 'FORBIDDEN', 'trusted proxy: the forwarded client is filtered')
  t.equal((await plain.inject(viaProxy)).statusCode, 200, 'untrusted peer: its x-forwarded-for is not believed')
  // An untrusted peer cannot talk its way in with x-forwarded-for either.
  const spoof = { url: '/office', remoteAddress: '192.168.1.1', headers: { 'x-forwarded-for': '10.1.2.3' } }
  expectProblem(t, await trusting.inject(spoof), 403, 'FORBIDDEN', 'spoofed chain from an untrusted peer')
  expectProblem(t, await plain.inject(spoof), 403, 'FORBIDDEN', 'spoofed chain, trustProxy off')
  // A proxy that appends a port, or a chain entry that is no address at all,
  // must not slip past a deny list unparsed.
  for (const entry of ['203.0.113.5:80', 'garbage']) {
    const res = await trusting.inject({ url: '/open', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': entry } })
    expectProblem(t, res, 403, 'FORBIDDEN', `forwarded "${entry}"`)
  }
  t.equal((await trusting.inject({ url: '/open', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': '198.51.100.7:8080' } })).statusCode, 200, 'a port on an address outside the list: let through, read without its port')
  t.equal((await trusting.inject({ url: '/office', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': '[2001:db8::1]:443' } })).statusCode, 200, 'a bracketed IPv6 address with a port is read as the address')
  t.equal(up.hits(), 3)
})

t.test('bad ranges are located config errors', async t => {
  const dir = writeConfigFiles({
    'gateway.yaml': `services:
  backend: { urls: ["http://127.0.0.1:1"] }
policies:
  public: { auth: none }
plugins:
  ip-filter:
    deny: [10.0.0.0/33]
routes:
  - id: a
    path: /a
    policy: public
    proxy: { service: backend }
    plugins:
      ip-filter:
        allow:
          - 10.0.0.0/8
          - not-an-ip
          - "::1/129"
          - 010.1.1.1
          - 10.0.0.0/-1
  - id: b
    path: /b
    policy: public
    proxy: { service: backend }
    plugins:
      ip-filter: { allow: [], block: [1.2.3.4] }
`,
  })
  let lines: string[] = []
  try {
    await loadGatewayConfig(join(dir, 'gateway.yaml'), {})
    t.fail('loaded')
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    lines = err.problems.map(p => formatProblem({ ...p, file: 'gateway.yaml' }))
  }
  const hint = 'is not an IPv4 or IPv6 address or CIDR range (e.g. 10.0.0.0/8, 2001:db8::/32)'
  t.same(lines.sort(), [
    `gateway.yaml:7: plugins.ip-filter.deny[0]: "10.0.0.0/33" ${hint}`,
    `gateway.yaml:17: routes[0].plugins.ip-filter.allow[1]: "not-an-ip" ${hint}`,
    `gateway.yaml:18: routes[0].plugins.ip-filter.allow[2]: "::1/129" ${hint}`,
    `gateway.yaml:19: routes[0].plugins.ip-filter.allow[3]: "010.1.1.1" ${hint}`,
    `gateway.yaml:20: routes[0].plugins.ip-filter.allow[4]: "10.0.0.0/-1" ${hint}`,
    'gateway.yaml:26: routes[1].plugins.ip-filter.allow: must NOT have fewer than 1 items',
    'gateway.yaml:26: routes[1].plugins.ip-filter.block: unknown key',
  ].sort())
})
