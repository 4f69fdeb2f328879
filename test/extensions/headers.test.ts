// The `headers` plugin through a real gateway and a real upstream: request
// rules change what the upstream receives (proxy routes and every aggregate
// part), response rules change what the client gets (cache hits and gateway
// errors included); values are templates. The gateway's identity, forwarding
// and connection headers cannot be set by it: such a config is refused with
// FILE:LINE errors.
import t from 'tap'
import type { IncomingHttpHeaders } from 'node:http'
import { join } from 'node:path'
import { buildFromFiles, writeConfigFiles } from '../helpers/gateway.js'
import { startUpstream, type UpstreamHandler } from '../helpers/upstream.js'
import { signHs, now } from '../helpers/jwt.js'
import { loadGatewayConfig } from '../../src/extensions/load-config.js'
import { ConfigError, formatProblem } from '../../src/config/problems.js'

const SECRET = 'a-test-secret-of-at-least-32-characters!'

const upstreamHandler: UpstreamHandler = (req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', server: 'upstream/1.0', 'x-internal-id': 'abc', 'x-keep': 'kept' })
  res.end(JSON.stringify({ headers: req.headers }))
}

function gatewayYaml (url: string): string {
  return `server: { trustProxy: false }
auth:
  jwt: { secret: "${SECRET}" }
services:
  backend: { urls: [${url}], timeout: 2s }
policies:
  public: { auth: none }
  user: { auth: jwt }
plugins:
  headers:
    response: { set: { x-gateway: portico } }
routes:
  - id: item
    path: /items/:id
    policy: user
    proxy: { service: backend }
    plugins:
      headers:
        request:
          set: { x-tenant: "{auth.tenant}", x-item: "item-{params.id}", x-client-copy: "{headers.x-client}" }
          remove: [x-debug]
          rename: { x-old: x-new }
        response:
          set: { cache-control: no-store, x-route: "r-{params.id}" }
          remove: [server]
          rename: { x-internal-id: x-upstream-id }
  - id: parts
    path: /parts/:id
    policy: user
    aggregate:
      a: { service: backend, path: /a }
      b: { service: backend, path: /b }
    plugins:
      headers:
        request: { set: { x-tenant: "{auth.tenant}", x-item: "{params.id}" } }
  - id: plain
    path: /plain
    policy: public
    proxy: { service: backend }
  - id: cached
    path: /cached
    policy: public
    cache: { ttl: 1m }
    proxy: { service: backend }
    plugins:
      headers:
        response: { set: { x-served-by: "gw" } }
`
}

function token (claims: Record<string, unknown>): string {
  return signHs({ sub: 'u1', exp: now() + 600, ...claims }, SECRET)
}

t.test('request and response rules, with templates, on a proxy route', async t => {
  const up = await startUpstream(upstreamHandler)
  t.teardown(up.close)
  const app = await buildFromFiles(t, { 'gateway.yaml': gatewayYaml(up.url) })
  const res = await app.inject({
    url: '/items/42',
    headers: {
      authorization: `Bearer ${token({ tenant: 'acme' })}`,
      'x-client': 'from-client',
      'x-debug': '1',
      'x-old': 'moved',
      // The config sets x-tenant: the client's own value never reaches the upstream.
      'x-tenant': 'evil',
    },
  })
  t.equal(res.statusCode, 200)
  const seen = up.seen[0].headers
  t.equal(seen['x-tenant'], 'acme', 'auth template')
  t.equal(seen['x-item'], 'item-42', 'params template')
  t.equal(seen['x-client-copy'], 'from-client', 'headers template')
  t.notOk('x-debug' in seen, 'removed')
  t.notOk('x-old' in seen, 'renamed away')
  t.equal(seen['x-new'], 'moved', 'renamed to')
  t.equal(seen['x-auth-sub'], 'u1', 'identity still asserted by the gateway')
  t.equal(res.headers['cache-control'], 'no-store')
  t.equal(res.headers['x-route'], 'r-42')
  t.notOk('server' in res.headers, 'response header removed')
  t.notOk('x-internal-id' in res.headers)
  t.equal(res.headers['x-upstream-id'], 'abc', 'response header renamed')
  t.equal(res.headers['x-keep'], 'kept', 'other headers untouched')
  t.notOk('x-gateway' in res.headers, "the route's own headers entry replaces the gateway-wide one")
})

t.test('a template that fills to nothing removes the header, so a client copy never survives', async t => {
  const up = await startUpstream(upstreamHandler)
  t.teardown(up.close)
  const app = await buildFromFiles(t, { 'gateway.yaml': gatewayYaml(up.url) })
  const res = await app.inject({ url: '/items/7', headers: { authorization: `Bearer ${token({})}`, 'x-tenant': 'evil' } })
  t.equal(res.statusCode, 200)
  t.notOk('x-tenant' in up.seen[0].headers)
  t.notOk('x-client-copy' in up.seen[0].headers)
})

t.test('a value that could not travel in a header is percent-encoded, not sent raw', async t => {
  const up = await startUpstream(upstreamHandler)
  t.teardown(up.close)
  const app = await buildFromFiles(t, { 'gateway.yaml': gatewayYaml(up.url) })
  // CR/LF can no longer reach a template through the path: the path itself is refused.
  const crlf = await app.inject({ url: '/items/a%0d%0aset-cookie:%20x', headers: { authorization: `Bearer ${token({ tenant: 'é' })}` } })
  t.equal(crlf.statusCode, 400)
  t.notOk('set-cookie' in crlf.headers)
  t.equal(up.hits(), 0)
  const res = await app.inject({ url: '/items/a%C3%A9:%20x', headers: { authorization: `Bearer ${token({ tenant: 'é' })}` } })
  t.equal(res.statusCode, 200)
  t.equal(up.seen[0].headers['x-item'], 'item-a%C3%A9%3A%20x')
  t.equal(up.seen[0].headers['x-tenant'], '%C3%A9')
  t.notOk('set-cookie' in up.seen[0].headers)
  t.equal(res.headers['x-route'], 'r-a%C3%A9%3A%20x')
  t.notOk('set-cookie' in res.headers)
})

t.test('names Object.prototype also has (constructor) are absent headers, in renames and templates', async t => {
  const up = await startUpstream(upstreamHandler)
  t.teardown(up.close)
  const app = await buildFromFiles(t, {
    'gateway.yaml': `services:
  backend: { urls: [${up.url}], timeout: 2s }
policies:
  public: { auth: none }
routes:
  - id: a
    path: /a
    policy: public
    proxy: { service: backend }
    plugins:
      headers:
        request: { rename: { constructor: x-c, tostring: x-t }, set: { x-tpl: "[{headers.constructor}][{query.constructor}][{headers.__proto__}]" } }
        response: { rename: { constructor: x-c, hasownproperty: x-h } }
`,
  })
  const res = await app.inject({ url: '/a' })
  t.equal(res.statusCode, 200)
  t.notOk('x-c' in up.seen[0].headers)
  t.equal(up.seen[0].headers['x-tpl'], '[][][]', 'templates read own entries only')
  t.notOk('x-c' in res.headers)
  t.notOk('x-h' in res.headers)
  const sent = await app.inject({ url: '/a', headers: { constructor: 'yes' } })
  t.equal(sent.statusCode, 200)
  t.equal(up.seen[1].headers['x-c'], 'yes', 'a header that is there is renamed')
})

t.test('request rules apply to every aggregate part', async t => {
  const up = await startUpstream(upstreamHandler)
  t.teardown(up.close)
  const app = await buildFromFiles(t, { 'gateway.yaml': gatewayYaml(up.url) })
  const res = await app.inject({ url: '/parts/9', headers: { authorization: `Bearer ${token({ tenant: 'acme' })}` } })
  t.equal(res.statusCode, 200)
  t.equal(up.hits(), 2)
  for (const s of up.seen) {
    t.equal(s.headers['x-tenant'], 'acme', `${s.url}: x-tenant`)
    t.equal(s.headers['x-item'], '9', `${s.url}: x-item`)
  }
  const body = res.json<Record<string, { headers: IncomingHttpHeaders }>>()
  t.equal(body.a.headers['x-tenant'], 'acme')
})

t.test('gateway-wide rules reach routes without their own entry, on errors and cache hits too', async t => {
  const up = await startUpstream(upstreamHandler)
  t.teardown(up.close)
  const app = await buildFromFiles(t, { 'gateway.yaml': gatewayYaml(up.url) })
  const plain = await app.inject({ url: '/plain' })
  t.equal(plain.headers['x-gateway'], 'portico')
  // A gateway error on a route with plugins: the response rules still run.
  const refused = await app.inject({ url: '/items/1' })
  t.equal(refused.statusCode, 401)
  t.equal(refused.headers['x-route'], 'r-1')
  const miss = await app.inject({ url: '/cached' })
  const hit = await app.inject({ url: '/cached' })
  t.equal(up.seen.filter(s => s.url === '/cached').length, 1, 'the second answer came from the cache')
  t.equal(miss.headers['x-served-by'], 'gw')
  t.equal(hit.headers['x-served-by'], 'gw')
})

async function problems (files: Record<string, string>): Promise<string[]> {
  const dir = writeConfigFiles(files)
  try {
    await loadGatewayConfig(join(dir, 'gateway.yaml'), {})
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map(p => formatProblem({ ...p, file: p.file.slice(dir.length + 1) }))
    throw err
  }
  return []
}

const BASE = `services:
  backend: { urls: ["http://127.0.0.1:1"] }
policies:
  public: { auth: none }
`

t.test('identity, forwarding and connection headers cannot be changed: located config errors', async t => {
  const found = await problems({
    'gateway.yaml': BASE + `plugins:
  headers:
    request:
      set: { X-Auth-Sub: admin }
routes:
  - id: a
    path: /a/:id
    policy: public
    proxy: { service: backend }
    plugins:
      headers:
        request:
          set:
            x-auth-roles: admin
            x-forwarded-for: 1.2.3.4
            x-fine: "{params.nope}"
          remove: [x-auth-sub]
          rename: { x-role: x-auth-roles, host: x-host }
`,
  })
  t.same(found.sort(), [
    'gateway.yaml:8: plugins.headers.request.set.X-Auth-Sub: "x-auth-sub" is set by the gateway itself (identity, forwarding or connection header); a plugin may not change it',
    'gateway.yaml:18: routes[0].plugins.headers.request.set.x-auth-roles: "x-auth-roles" is set by the gateway itself (identity, forwarding or connection header); a plugin may not change it',
    'gateway.yaml:19: routes[0].plugins.headers.request.set.x-forwarded-for: "x-forwarded-for" is set by the gateway itself (identity, forwarding or connection header); a plugin may not change it',
    'gateway.yaml:20: routes[0].plugins.headers.request.set.x-fine: {params.nope} is not a parameter of the route path /a/:id',
    'gateway.yaml:21: routes[0].plugins.headers.request.remove[0]: "x-auth-sub" is set by the gateway itself (identity, forwarding or connection header); a plugin may not change it',
    'gateway.yaml:22: routes[0].plugins.headers.request.rename.host: "host" is set by the gateway itself (identity, forwarding or connection header); a plugin may not change it',
    'gateway.yaml:22: routes[0].plugins.headers.request.rename.x-role: "x-auth-roles" is set by the gateway itself (identity, forwarding or connection header); a plugin may not change it',
  ].sort())
})

t.test('response rules on framing headers are refused (the schema passing)', async t => {
  const found = await problems({
    'gateway.yaml': BASE + `routes:
  - id: a
    path: /a
    policy: public
    proxy: { service: backend }
    plugins:
      headers:
        response:
          set: { content-length: "0" }
          remove: [connection]
`,
  })
  t.same(found.sort(), [
    'gateway.yaml:13: routes[0].plugins.headers.response.set.content-length: "content-length" is a connection or framing header the gateway controls; a plugin may not change it',
    'gateway.yaml:14: routes[0].plugins.headers.response.remove[0]: "connection" is a connection or framing header the gateway controls; a plugin may not change it',
  ].sort())
})

t.test('bad values and unknown plugin names are located errors', async t => {
  const found = await problems({
    'gateway.yaml': BASE + `routes:
  - id: a
    path: /a
    policy: public
    proxy: { service: backend }
    plugins:
      headers:
        request:
          set: { "bad name": x, x-ok: "{nope.x}" }
          remove: x-debug
        colour: red
      header: {}
`,
  })
  t.same(found.sort(), [
    'gateway.yaml:13: routes[0].plugins.headers.request.set.bad name: must be a header name',
    'gateway.yaml:14: routes[0].plugins.headers.request.remove: must be array',
    'gateway.yaml:15: routes[0].plugins.headers.colour: unknown key',
    'gateway.yaml:16: routes[0].plugins.header: unknown plugin "header" (known: headers, ip-filter)',
  ].sort())
})
