// A plugin loaded from a file the config names (`extensions:`), relative to
// the gateway file: its hooks run at their stages through a real gateway and
// upstream, it cannot forge the gateway's identity or forwarding headers, and
// a missing file, a bad export or a config its schema refuses is a FILE:LINE
// error, through the loader and through the real `portico check`.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { buildFromFiles, writeConfigFiles } from '../helpers/gateway.js'
import { startUpstream } from '../helpers/upstream.js'
import { expectProblem } from '../helpers/auth.js'
import { buildIfStale, CLI, ROOT } from '../helpers/cli.js'
import { loadGatewayConfig } from '../../src/extensions/load-config.js'
import { ConfigError, formatProblem } from '../../src/config/problems.js'

const STAMP = `// A plugin as a platform team would write it: plain JavaScript, no imports.
export default {
  name: 'stamp',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    required: ['value'],
    properties: { value: { type: 'string', minLength: 1 }, refuseWith: { type: 'string' } },
  },
  compile (config, route) {
    if (config.value === 'bad') throw new Error('no bad stamps')
    return {
      onRequest (request) {
        if (config.refuseWith !== undefined && request.headers[config.refuseWith] !== undefined) throw route.refuse('FORBIDDEN', 'stamped out')
      },
      upstreamRequest (request, headers) {
        headers['x-stamp'] = config.value + '@' + route.routeId
        // Attempts on the gateway's own headers: all undone.
        headers['X-Auth-Sub'] = 'forged'
        headers['x-auth-roles'] = 'admin'
        headers['x-forwarded-for'] = '6.6.6.6'
        headers['x-request-id'] = 'forged-id'
      },
      onResponse (request, reply) { reply.header('x-stamped', config.value) },
    }
  },
}
`

const TWO = `export default [
  { name: 'one', configSchema: { type: 'object' }, compile: () => ({ onResponse: (req, reply) => { reply.header('x-one', '1') } }) },
  { name: 'two', configSchema: { type: 'object' }, compile: () => ({ onResponse: (req, reply) => { reply.header('x-two', '2') } }) },
]
`

function yaml (url: string): string {
  return `extensions: [./plugins/stamp.mjs, plugins/two.mjs]
services:
  backend: { urls: [${url}], timeout: 2s }
policies:
  public: { auth: none }
plugins:
  one: {}
routes:
  - id: stamped
    path: /stamped
    policy: public
    proxy: { service: backend }
    plugins:
      stamp: { value: hello, refuseWith: x-no }
      two: {}
`
}

t.test('a plugin from a file: hooks at their stages; the gateway keeps its own headers', async t => {
  const up = await startUpstream()
  t.teardown(up.close)
  const app = await buildFromFiles(t, { 'gateway.yaml': yaml(up.url), 'plugins/stamp.mjs': STAMP, 'plugins/two.mjs': TWO })
  const res = await app.inject({ url: '/stamped', remoteAddress: '10.9.8.7', headers: { 'x-request-id': 'client-id-1' } })
  t.equal(res.statusCode, 200)
  const seen = up.seen[0].headers
  t.equal(seen['x-stamp'], 'hello@stamped', 'upstreamRequest ran with its compiled config and route')
  t.notOk('x-auth-sub' in seen, 'a plugin cannot assert an identity')
  t.notOk('x-auth-roles' in seen)
  t.equal(seen['x-forwarded-for'], '10.9.8.7', 'nor rewrite the forwarding chain')
  t.equal(seen['x-request-id'], res.headers['x-request-id'], 'nor the request id')
  t.equal(res.headers['x-stamped'], 'hello', 'onResponse ran')
  t.equal(res.headers['x-one'], '1', 'gateway-wide plugin from a list export')
  t.equal(res.headers['x-two'], '2', 'route plugin from a list export')

  const refused = await app.inject({ url: '/stamped', headers: { 'x-no': '1' } })
  const body = expectProblem(t, refused, 403, 'FORBIDDEN')
  t.equal(body.detail, 'stamped out')
  t.equal(refused.headers['x-stamped'], 'hello', 'response hooks run on the refusal too')
  t.equal(up.hits(), 1, 'the refusal reached no upstream')
})

t.test('onRequest runs before rate limiting: a refusal uses none of the limit', async t => {
  const up = await startUpstream()
  t.teardown(up.close)
  const app = await buildFromFiles(t, {
    'gateway.yaml': `extensions: [./stamp.mjs]
services:
  backend: { urls: [${up.url}], timeout: 2s }
policies:
  public: { auth: none }
routes:
  - id: limited
    path: /limited
    policy: public
    rateLimit: { max: 1, window: 1m }
    proxy: { service: backend }
    plugins:
      stamp: { value: v, refuseWith: x-no }
`,
    'stamp.mjs': STAMP,
  })
  for (let i = 0; i < 3; i++) expectProblem(t, await app.inject({ url: '/limited', headers: { 'x-no': '1' } }), 403, 'FORBIDDEN', `refusal ${i}`)
  t.equal((await app.inject({ url: '/limited' })).statusCode, 200, 'the one allowed request is still there')
  expectProblem(t, await app.inject({ url: '/limited' }), 429, 'RATE_LIMITED', 'and then the limit holds')
  t.equal(up.hits(), 1)
})

const BROKEN_FILES: Record<string, string> = {
  'gateway.yaml': `extensions:
  - ./plugins/missing.mjs
  - ./plugins/no-default.mjs
  - ./plugins/not-a-plugin.mjs
  - ./plugins/syntax.mjs
  - ./plugins/clash.mjs
  - ./plugins/stamp.mjs
services:
  backend: { urls: ["http://127.0.0.1:1"] }
policies:
  public: { auth: none }
routes:
  - id: a
    path: /a
    policy: public
    proxy: { service: backend }
    plugins:
      stamp: { valu: x }
  - id: b
    path: /b
    policy: public
    proxy: { service: backend }
    plugins:
      stamp: { value: bad }
      missing: {}
`,
  'plugins/stamp.mjs': STAMP,
  'plugins/no-default.mjs': 'export const plugin = {}\n',
  'plugins/not-a-plugin.mjs': "export default { name: 'half', configSchema: {} }\n",
  'plugins/syntax.mjs': 'export default {\n',
  'plugins/clash.mjs': "export default { name: 'headers', configSchema: {}, compile: () => ({}) }\n",
}

/** The lines for a config in `dir`, with files named as `shown` (relative when the CLI runs in dir). */
function expectedLines (dir: string, shown = (f: string) => join(dir, f)): string[] {
  return [
    `gateway.yaml:2: extensions[0]: file not found: ${shown('plugins/missing.mjs')}`,
    `gateway.yaml:3: extensions[1]: ${shown('plugins/no-default.mjs')} has no default export (export default a plugin, or a list of them)`,
    `gateway.yaml:4: extensions[2]: the default export of ${shown('plugins/not-a-plugin.mjs')} plugin "half" has no compile function`,
    `gateway.yaml:6: extensions[4]: plugin name "headers" is already taken (built in)`,
    'gateway.yaml:18: routes[0].plugins.stamp.value: is required',
    'gateway.yaml:18: routes[0].plugins.stamp.valu: unknown key (did you mean "value"?)',
    'gateway.yaml:24: routes[1].plugins.stamp: plugin "stamp" could not be set up for route b: no bad stamps',
    'gateway.yaml:25: routes[1].plugins.missing: unknown plugin "missing" (known: headers, ip-filter, stamp); an extension failed to load, see above',
  ]
}

t.test('missing files, bad exports and bad plugin configs are located errors', async t => {
  const dir = writeConfigFiles(BROKEN_FILES)
  let lines: string[] = []
  try {
    await loadGatewayConfig(join(dir, 'gateway.yaml'), {})
    t.fail('loaded')
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    lines = err.problems.map(p => formatProblem({ ...p, file: p.file.slice(dir.length + 1) }))
  }
  const syntax = lines.find(l => l.startsWith('gateway.yaml:5: extensions[3]: '))
  t.match(syntax, `${join(dir, 'plugins/syntax.mjs')} could not be loaded: `, 'a module that does not parse')
  t.same(lines.filter(l => l !== syntax).sort(), expectedLines(dir).sort())
})

t.test('portico check prints the same errors and exits 1; a good config exits 0', async t => {
  buildIfStale()
  const bad = writeConfigFiles(BROKEN_FILES)
  const r = spawnSync(process.execPath, [CLI, 'check', '--config', 'gateway.yaml'], { cwd: bad, encoding: 'utf8', timeout: 30_000 })
  t.equal(r.status, 1, r.stderr)
  const lines = r.stdout.split('\n').filter(l => l !== '')
  for (const line of expectedLines(bad, f => f)) t.ok(lines.includes(line), `prints ${line}`)
  t.ok(lines.some(l => l.startsWith('gateway.yaml:5: extensions[3]: ')), 'prints the syntax error line')
  t.notMatch(r.stdout + r.stderr, /^\s+at /m, 'no stack trace')

  const good = writeConfigFiles({ 'gateway.yaml': yaml('http://127.0.0.1:1'), 'plugins/stamp.mjs': STAMP, 'plugins/two.mjs': TWO })
  const ok = spawnSync(process.execPath, [CLI, 'check', '--config', join(good, 'gateway.yaml')], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 })
  t.equal(ok.status, 0, ok.stdout + ok.stderr)
  t.match(ok.stdout, /OK — 1 routes/)
})
