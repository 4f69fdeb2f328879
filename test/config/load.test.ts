// Loading real files: `${VAR}` substitution end to end and the includes of a
// gateway file (policies/services as a path relative to the
// main file; routes as a directory, a file or an inline list).
import t from 'tap'
import { join } from 'node:path'
import { loadConfig } from '../../src/config/index.js'
import type { GatewayConfig } from '../../src/config/types.js'
import { writeConfigFiles } from '../helpers/gateway.js'

/** Writes the files to a temp dir and loads `main` from it. */
function load (files: Record<string, string>, env: NodeJS.ProcessEnv = {}, main = 'gateway.yaml'): { config: GatewayConfig, dir: string } {
  const dir = writeConfigFiles(files)
  return { config: loadConfig(join(dir, main), env).config, dir }
}

const SERVICES = `services:
  users:
    urls: [http://127.0.0.1:4001]
`
const POLICIES = `policies:
  public: { auth: none }
`

function route (id: string, path: string, service = 'users'): string {
  return `- id: ${id}
  path: ${path}
  policy: public
  proxy: { service: ${service} }
`
}

t.test('env substitution, end to end', async t => {
  const files = {
    'gateway.yaml': `server:
  port: \${PORT_X:-8081}
  host: \${HOST_X:-127.0.0.1}
${SERVICES}${POLICIES}routes:
  - id: quoted
    description: "\${NUMBER_X}"
    path: /quoted
    policy: public
    proxy: { service: users }
  - id: secret
    description: \${SECRET_X}
    path: /secret
    policy: public
    proxy: { service: users }
`,
  }
  const secret = 'p#ss: word # not a comment'

  t.test('an unquoted ${VAR:-8081} with VAR unset becomes the number 8081', async t => {
    const { config } = load(files, { NUMBER_X: '42', SECRET_X: secret })
    t.equal(config.server.port, 8081)
    t.equal(config.server.host, '127.0.0.1')
  })

  t.test('a set variable replaces the default, and is still a number', async t => {
    const { config } = load(files, { PORT_X: '9000', HOST_X: '0.0.0.0', NUMBER_X: '42', SECRET_X: secret })
    t.equal(config.server.port, 9000)
    t.equal(config.server.host, '0.0.0.0')
  })

  t.test('an empty variable takes the :- default', async t => {
    const { config } = load(files, { PORT_X: '', NUMBER_X: '42', SECRET_X: secret })
    t.equal(config.server.port, 8081)
  })

  t.test('a quoted "${VAR}" stays a string even when the value looks like a number', async t => {
    const { config } = load(files, { NUMBER_X: '42', SECRET_X: secret })
    t.equal(config.routes.find(r => r.id === 'quoted')?.description, '42')
  })

  t.test('a value with "#" and ": " stays intact and changes nothing around it', async t => {
    const { config } = load(files, { NUMBER_X: '42', SECRET_X: secret })
    const r = config.routes.find(r => r.id === 'secret')
    t.equal(r?.description, secret)
    t.equal(r?.path, '/secret')
    t.same(config.routes.map(r => r.id), ['quoted', 'secret'])
  })

  t.test('PORT overrides server.port', async t => {
    const { config } = load(files, { PORT: '7070', PORT_X: '9000', NUMBER_X: '42', SECRET_X: secret })
    t.equal(config.server.port, 7070)
  })
})

t.test('policies and services may be files, relative to the main file (not to the cwd)', async t => {
  const { config, dir } = load({
    'conf/gateway.yaml': `policies: ./policies.yaml
services: ./more/services.yaml
routes:
${route('a', '/a', 'orders').replace(/^/gm, '  ')}`,
    'conf/policies.yaml': `public: { auth: none }
internal: { auth: none, description: "\${TEAM_X:-platform} only" }
`,
    'conf/more/services.yaml': `orders:
  urls:
    - \${ORDERS_URL:-http://127.0.0.1:4002}
  timeout: 2s
`,
  }, {}, 'conf/gateway.yaml')
  t.same([...config.policies.keys()], ['public', 'internal'])
  t.same(config.services.get('orders')?.urls, ['http://127.0.0.1:4002'])
  t.equal(config.services.get('orders')?.timeout, 2000)
  t.same(new Set(config.files), new Set([
    join(dir, 'conf/gateway.yaml'),
    join(dir, 'conf/policies.yaml'),
    join(dir, 'conf/more/services.yaml'),
  ]))
})

t.test('routes as a directory: every *.yaml in name order, other files ignored', async t => {
  const { config, dir } = load({
    'config/gateway.yaml': `${SERVICES}${POLICIES}routes: ../routes
`,
    // Written out of order on purpose; the directory decides, by name.
    'routes/c-catalog.yaml': route('c1', '/c1') + '\n' + route('c2', '/c2'),
    'routes/a-users.yaml': '# users\n' + route('a1', '/a1'),
    'routes/b-orders.yaml': route('b1', '/b1'),
    // Not route files: if any were read, its content would be a config error.
    'routes/README.md': '# Routes\n\n- not: [a, route\n',
    'routes/notes.txt': 'id: nope\n',
    'routes/b-orders.yaml.bak': route('stale', '/stale'),
  }, {}, 'config/gateway.yaml')
  t.same(config.routes.map(r => r.id), ['a1', 'b1', 'c1', 'c2'])
  t.same(config.routes.map(r => r.source), [
    { file: join(dir, 'routes/a-users.yaml'), line: 2 },
    { file: join(dir, 'routes/b-orders.yaml'), line: 1 },
    { file: join(dir, 'routes/c-catalog.yaml'), line: 1 },
    { file: join(dir, 'routes/c-catalog.yaml'), line: 6 },
  ])
})

t.test('routes in a directory get env substitution too', async t => {
  const { config } = load({
    'gateway.yaml': `${SERVICES}${POLICIES}routes: ./routes
`,
    'routes/a.yaml': `- id: a
  path: \${A_PATH:-/default}
  policy: public
  proxy: { service: users, path: "\${A_UPSTREAM}" }
`,
  }, { A_UPSTREAM: '/upstream/a' })
  t.equal(config.routes[0].path, '/default')
  t.same(config.routes[0].target, { kind: 'proxy', service: 'users', path: '/upstream/a' })
})

t.test('routes as a single file', async t => {
  const { config, dir } = load({
    'gateway.yaml': `${SERVICES}${POLICIES}routes: ./all-routes.yaml
`,
    'all-routes.yaml': route('one', '/one') + route('two', '/two'),
  })
  t.same(config.routes.map(r => [r.id, r.path]), [['one', '/one'], ['two', '/two']])
  t.same(config.routes.map(r => r.source), [
    { file: join(dir, 'all-routes.yaml'), line: 1 },
    { file: join(dir, 'all-routes.yaml'), line: 5 },
  ])
})

t.test('the include path itself may come from the environment', async t => {
  const files = {
    'gateway.yaml': `${SERVICES}${POLICIES}routes: \${ROUTES_X:-./routes}
`,
    'routes/a.yaml': route('from-dir', '/a'),
    'staging.yaml': route('from-file', '/a'),
  }
  t.same(load(files).config.routes.map(r => r.id), ['from-dir'])
  t.same(load(files, { ROUTES_X: './staging.yaml' }).config.routes.map(r => r.id), ['from-file'])
})

t.test('routes inline', async t => {
  const { config, dir } = load({
    'gateway.yaml': `${SERVICES}${POLICIES}routes:
  - id: inline
    method: [GET, POST]
    path: /inline/:id
    policy: public
    proxy: { service: users, path: "/things/{params.id}" }
`,
  })
  t.equal(config.routes.length, 1)
  t.match(config.routes[0], {
    id: 'inline',
    methods: ['GET', 'POST'],
    path: '/inline/:id',
    policy: 'public',
    target: { kind: 'proxy', service: 'users', path: '/things/{params.id}' },
    source: { file: join(dir, 'gateway.yaml'), line: 7 },
  })
})

t.test('normalised: one target per route, each policy with the auth section it verifies with', async t => {
  const { config } = load({
    'gateway.yaml': `auth:
  jwt: { secret: a-secret-of-at-least-32-characters-0 }
  apiKeys: { header: X-Partner-Key, keys: { acme: { key: 0123456789abcdef } } }
services:
  users: { urls: [http://127.0.0.1:4001], timeout: 2s }
  orders: { urls: [http://127.0.0.1:4002] }
policies:
  user: { auth: jwt }
  partners: { auth: apiKey }
routes:
  - id: dash
    path: /dash
    policy: user
    cache: { ttl: 5s }
    aggregate:
      me: { service: users, path: /me, headers: { X-Trace: "{auth.sub}" } }
      orders: { service: orders, path: /orders, timeout: 300ms, optional: true }
  - { id: p, path: /p, policy: partners, proxy: { service: users } }
`,
  })
  const [dash, p] = config.routes
  t.same(dash.target, {
    kind: 'aggregate',
    parts: [
      { name: 'me', service: 'users', path: '/me', query: {}, headers: { 'x-trace': '{auth.sub}' }, timeout: 2000, optional: false, fallback: null },
      { name: 'orders', service: 'orders', path: '/orders', query: {}, headers: {}, timeout: 300, optional: true, fallback: null },
    ],
  }, 'a part without a timeout takes its service\'s')
  t.equal(dash.cache?.scope, 'user', 'an authenticated route caches per user unless it says otherwise')
  t.same(p.target, { kind: 'proxy', service: 'users' }, 'no path: the incoming one is forwarded')
  const user = config.policies.get('user')
  const partners = config.policies.get('partners')
  t.ok(user?.auth === 'jwt' && user.jwt === config.auth.jwt, 'a jwt policy verifies with auth.jwt')
  t.ok(partners?.auth === 'apiKey' && partners.apiKeys === config.auth.apiKeys && partners.apiKeys.header === 'x-partner-key', 'an apiKey policy looks keys up in auth.apiKeys')
})
