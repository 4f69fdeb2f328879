// Every kind of config error, as `portico check` prints it:
// `FILE:LINE: path.to.field: what is wrong`, one line per problem. The YAML is
// written out in full so each expected line number can be counted by eye.
import t from 'tap'
import { join } from 'node:path'
import { loadConfig } from '../../src/config/index.js'
import { ConfigError, formatProblem } from '../../src/config/problems.js'
import { writeConfigFiles } from '../helpers/gateway.js'

/**
 * Loads `gateway.yaml` from the files and returns every problem, formatted.
 * Temp dirs are outside the cwd, so FILE is the absolute path.
 */
function problemsOf (files: Record<string, string>, env: NodeJS.ProcessEnv = {}): { lines: string[], dir: string, file: string } {
  const dir = writeConfigFiles(files)
  const file = join(dir, 'gateway.yaml')
  try {
    loadConfig(file, env)
  } catch (err) {
    if (err instanceof ConfigError) return { lines: err.problems.map(formatProblem), dir, file }
    throw err
  }
  return { lines: [], dir, file }
}

const DURATION_HINT = 'must be a duration such as 500ms, 2s, 1m, 1h or a number of milliseconds'
const SIZE_HINT = 'must be a size such as 64kb, 1mb or a number of bytes'

// Lines 1–11; tests that need something else write their own.
const BASE = `services:
  users:
    urls: [http://127.0.0.1:4001]
policies:
  public: { auth: none }
routes:
  - id: a
    method: GET
    path: /a
    policy: public
    proxy: { service: users }
`

t.test('the base config used below is valid', async t => {
  t.same(problemsOf({ 'gateway.yaml': BASE }).lines, [])
})

t.test('invalid YAML: the line of the syntax error', async t => {
  const { lines, file } = problemsOf({
    'gateway.yaml': `services:
  users:
    urls: [http://127.0.0.1:4001]
   timeout: 2s
routes: []
`,
  })
  t.same(lines, [`${file}:4: (top level): invalid YAML: All mapping items must start at the same column`])
})

t.test('invalid YAML: a key given twice', async t => {
  const { lines, file } = problemsOf({
    'gateway.yaml': `services:
  users:
    urls: [http://127.0.0.1:4001]
routes: []
services: {}
`,
  })
  t.same(lines, [`${file}:5: (top level): invalid YAML: Map keys must be unique`])
})

t.test('unknown top-level key, reported on the key\'s line even when its value is a block', async t => {
  const { lines, file } = problemsOf({
    'gateway.yaml': `services:
  users:
    urls: [http://127.0.0.1:4001]
logging:
  level: debug
routes: []
`,
  })
  t.same(lines, [`${file}:4: logging: unknown key`])
})

t.test('unknown top-level key close to a known one gets a hint', async t => {
  const { lines, file } = problemsOf({
    'gateway.yaml': `sevrer:
  port: 8080
services:
  users:
    urls: [http://127.0.0.1:4001]
routes: []
`,
  })
  t.same(lines, [`${file}:1: sevrer: unknown key (did you mean "server"?)`])
})

t.test('unknown nested key, with a "did you mean" hint', async t => {
  const { lines, file } = problemsOf({
    'gateway.yaml': `services:
  users:
    urls: [http://127.0.0.1:4001]
    timout: 2s
routes: []
`,
  })
  t.same(lines, [`${file}:4: services.users.timout: unknown key (did you mean "timeout"?)`])
})

t.test('missing required field: reported where its parent starts', async t => {
  const { lines, file } = problemsOf({
    'gateway.yaml': `services:
  users:
    urls: [http://127.0.0.1:4001]
  orders:
    timeout: 2s
policies:
  public: { auth: none }
routes:
  - id: a
    path: /a
    proxy: { service: users }
`,
  })
  t.same(lines.sort(), [
    `${file}:4: services.orders.urls: is required`,
    `${file}:9: routes[0].policy: is required`,
  ])
})

t.test('bad duration', async t => {
  const { lines, file } = problemsOf({
    'gateway.yaml': `services:
  users:
    urls: [http://127.0.0.1:4001]
    timeout: 2 weeks
routes: []
`,
  })
  t.same(lines, [`${file}:4: services.users.timeout: ${DURATION_HINT}`])
})

t.test('bad size', async t => {
  const { lines, file } = problemsOf({
    'gateway.yaml': `server:
  bodyLimit: 1 ton
services:
  users:
    urls: [http://127.0.0.1:4001]
routes: []
`,
  })
  t.same(lines, [`${file}:2: server.bodyLimit: ${SIZE_HINT}`])
})

t.test('wrong type', async t => {
  const { lines, file } = problemsOf({
    'gateway.yaml': `server:
  host: 0.0.0.0
  port: eighty
services:
  users:
    urls: [http://127.0.0.1:4001]
routes: []
`,
  })
  t.same(lines, [`${file}:3: server.port: must be integer`])
})

t.test('bad enum value', async t => {
  const { lines, file } = problemsOf({
    'gateway.yaml': BASE.replace('public: { auth: none }', 'public: { auth: magic }'),
  })
  t.same(lines, [`${file}:5: policies.public.auth: must be one of: none, jwt, apiKey`])
})

t.test('bad HTTP method', async t => {
  const { lines, file } = problemsOf({ 'gateway.yaml': BASE.replace('method: GET', 'method: FETCH') })
  t.same(lines, [`${file}:8: routes[0].method: must be an HTTP method (GET, POST, …) or a list of them`])
})

t.test('unknown policy, with the known ones listed', async t => {
  const { lines, file } = problemsOf({ 'gateway.yaml': BASE.replace('policy: public', 'policy: admin') })
  t.same(lines, [`${file}:10: routes[0].policy: unknown policy "admin" (known: public)`])
})

t.test('a route with no target, or with several: reported on the route\'s line', async t => {
  const none = problemsOf({ 'gateway.yaml': BASE.replace('    proxy: { service: users }\n', '') })
  t.same(none.lines, [`${none.file}:7: routes[0]: needs a target: proxy or aggregate or command`])
  const several = problemsOf({ 'gateway.yaml': BASE + '    aggregate: { u: { service: users, path: /u } }\n' })
  t.same(several.lines, [`${several.file}:7: routes[0]: has several targets (proxy, aggregate); a route has exactly one`])
  const three = problemsOf({ 'gateway.yaml': 'events: { sink: memory }\n' + BASE + '    aggregate: { u: { service: users, path: /u } }\n    command: { stream: s }\n' })
  t.ok(three.lines.includes(`${three.file}:8: routes[0]: has several targets (proxy, aggregate, command); a route has exactly one`), three.lines.join('\n'))
})

t.test('a policy whose auth has no section to verify with', async t => {
  const { lines, file } = problemsOf({ 'gateway.yaml': BASE.replace('  public: { auth: none }\n', '  public: { auth: none }\n  user: { auth: jwt }\n  partners: { auth: apiKey, claims: { tenant: acme } }\n  open: { auth: none, roles: [admin] }\n') })
  t.same(lines, [
    `${file}:6: policies.user.auth: auth: jwt needs auth.jwt in the gateway config`,
    `${file}:7: policies.partners.auth: auth: apiKey needs auth.apiKeys in the gateway config`,
    `${file}:7: policies.partners.claims: API keys carry no claims; use roles or scopes`,
    `${file}:8: policies.open.roles: has no effect with auth: none`,
  ])
})

t.test('unknown service, with the known ones listed', async t => {
  const { lines, file } = problemsOf({ 'gateway.yaml': BASE.replace('service: users', 'service: orders') })
  t.same(lines, [`${file}:11: routes[0].proxy.service: unknown service "orders" (known: users)`])
})

t.test('duplicate route id: reported at the second, naming where the first is', async t => {
  const { lines, file } = problemsOf({
    'gateway.yaml': BASE + `  - id: a
    method: GET
    path: /b
    policy: public
    proxy: { service: users }
`,
  })
  t.same(lines, [`${file}:12: routes[1].id: duplicate route id "a" (first defined at ${file}:7)`])
})

t.test('duplicate method and path', async t => {
  t.test('same path', async t => {
    const { lines, file } = problemsOf({
      'gateway.yaml': BASE + `  - id: b
    method: GET
    path: /a
    policy: public
    proxy: { service: users }
`,
    })
    t.same(lines, [`${file}:14: routes[1].path: GET /a is already taken by another route (routes with the same method and path shape conflict)`])
  })

  t.test('same shape, different param names: /a/:id vs /a/:name', async t => {
    const { lines, file } = problemsOf({
      'gateway.yaml': BASE.replace('path: /a', 'path: /a/:id') + `  - id: b
    method: GET
    path: /a/:name
    policy: public
    proxy: { service: users }
`,
    })
    t.same(lines, [`${file}:14: routes[1].path: GET /a/:name is already taken by another route (routes with the same method and path shape conflict)`])
  })

  t.test('overlapping method lists', async t => {
    const { lines, file } = problemsOf({
      'gateway.yaml': BASE.replace('method: GET', 'method: [GET, POST]') + `  - id: b
    method: [PUT, POST]
    path: /a
    policy: public
    proxy: { service: users }
`,
    })
    t.same(lines, [`${file}:14: routes[1].path: POST /a is already taken by another route (routes with the same method and path shape conflict)`])
  })

  t.test('same path with different methods is fine', async t => {
    const { lines } = problemsOf({
      'gateway.yaml': BASE + `  - id: b
    method: POST
    path: /a
    policy: public
    proxy: { service: users }
`,
    })
    t.same(lines, [])
  })
})

t.test('template with an unknown placeholder source', async t => {
  const { lines, file } = problemsOf({
    'gateway.yaml': BASE.replace('path: /a', 'path: /a/:id').replace('{ service: users }', '{ service: users, path: "/users/{param.id}" }'),
  })
  t.same(lines, [`${file}:11: routes[0].proxy.path: "{param.id}" is not a placeholder; use {params.X}, {query.X}, {headers.X} or {auth.X}`])
})

t.test('template naming a param the route path lacks', async t => {
  const { lines, file } = problemsOf({
    'gateway.yaml': BASE.replace('path: /a', 'path: /a/:id').replace('{ service: users }', '{ service: users, path: "/users/{params.userId}" }'),
  })
  t.same(lines, [`${file}:11: routes[0].proxy.path: {params.userId} is not a parameter of the route path /a/:id`])
})

t.test('{params.*} without a wildcard route', async t => {
  const { lines, file } = problemsOf({
    'gateway.yaml': BASE.replace('path: /a', 'path: /a/:id').replace('{ service: users }', '{ service: users, path: "/files/{params.*}" }'),
  })
  t.same(lines, [`${file}:11: routes[0].proxy.path: {params.*} needs a route path ending in "*"`])
})

t.test('unset env var without a default', async t => {
  const yaml = `server:
  host: \${BIND_HOST_X}
  port: \${PORT_X:-8080}
services:
  users:
    urls: ["http://\${USERS_HOST_X}:4001"]
routes: []
`
  const { lines, file } = problemsOf({ 'gateway.yaml': yaml })
  t.same(lines, [
    `${file}:2: server.host: environment variable BIND_HOST_X is not set (write \${BIND_HOST_X:-default} to allow it to be unset)`,
    `${file}:6: services.users.urls[0]: environment variable USERS_HOST_X is not set (write \${USERS_HOST_X:-default} to allow it to be unset)`,
  ])
  t.same(problemsOf({ 'gateway.yaml': yaml }, { BIND_HOST_X: '127.0.0.1', USERS_HOST_X: 'users' }).lines, [], 'set: no problem')
})

t.test('error inside a routes-directory file: that file and its line', async t => {
  const gateway = `services:
  users:
    urls: [http://127.0.0.1:4001]
policies:
  public: { auth: none }
routes: ./routes
`
  const a = `- id: a
  path: /a
  policy: public
  proxy: { service: users }
`

  t.test('a cross-reference error', async t => {
    const { lines, dir } = problemsOf({
      'gateway.yaml': gateway,
      'routes/a.yaml': a,
      'routes/b.yaml': `# second file
- id: b
  path: /b
  policy: public
  proxy: { service: users }

- id: c
  path: /c
  policy: public
  proxy: { service: nope }
`,
    })
    t.same(lines, [`${join(dir, 'routes/b.yaml')}:10: routes[1].proxy.service: unknown service "nope" (known: users)`])
  })

  t.test('a schema error', async t => {
    const { lines, dir } = problemsOf({
      'gateway.yaml': gateway,
      'routes/a.yaml': a,
      'routes/b.yaml': `# second file
- id: b
  method: FETCH
  path: /b
  policy: public
  proxy: { service: users }
`,
    })
    t.same(lines, [`${join(dir, 'routes/b.yaml')}:3: routes[0].method: must be an HTTP method (GET, POST, …) or a list of them`])
  })

  t.test('invalid YAML', async t => {
    const { lines, dir } = problemsOf({
      'gateway.yaml': gateway,
      'routes/a.yaml': a,
      'routes/b.yaml': `# second file
- id: b
  path: /b
 policy: public
`,
    })
    t.same(lines, [`${join(dir, 'routes/b.yaml')}:4: (top level): invalid YAML: Sequence item without - indicator`])
  })

  t.test('a duplicate id across files names the other file', async t => {
    const { lines, dir } = problemsOf({
      'gateway.yaml': gateway,
      'routes/a.yaml': a,
      'routes/b.yaml': `# second file
- id: a
  path: /b
  policy: public
  proxy: { service: users }
`,
    })
    t.same(lines, [`${join(dir, 'routes/b.yaml')}:2: routes[0].id: duplicate route id "a" (first defined at ${join(dir, 'routes/a.yaml')}:1)`])
  })

  t.test('a file that is not a list', async t => {
    const { lines, dir } = problemsOf({
      'gateway.yaml': gateway,
      'routes/a.yaml': 'id: a\npath: /a\n',
    })
    t.same(lines, [`${join(dir, 'routes/a.yaml')}:1: routes: a routes file must hold a list of routes`])
  })
})

t.test('error inside an included policies file: that file and its line', async t => {
  const { lines, dir } = problemsOf({
    'gateway.yaml': BASE.replace('policies:\n  public: { auth: none }\n', 'policies: ./policies.yaml\n'),
    'policies.yaml': `# security team
public: { auth: none }
other:
  auth: none
  rolez: [admin]
`,
  })
  t.same(lines, [`${join(dir, 'policies.yaml')}:5: policies.other.rolez: unknown key (did you mean "roles"?)`])
})

t.test('missing included file: reported where it is named', async t => {
  t.test('policies', async t => {
    const { lines, file, dir } = problemsOf({
      'gateway.yaml': BASE.replace('policies:\n  public: { auth: none }\n', 'policies: ./policies.yaml\n'),
    })
    t.same(lines, [`${file}:4: policies: file not found: ${join(dir, 'policies.yaml')}`])
  })

  t.test('services', async t => {
    const { lines, file, dir } = problemsOf({
      'gateway.yaml': BASE.replace('services:\n  users:\n    urls: [http://127.0.0.1:4001]\n', 'services: ../services.yaml\n'),
    })
    t.same(lines, [`${file}:1: services: file not found: ${join(dir, '../services.yaml')}`])
  })

  t.test('routes', async t => {
    const { lines, file, dir } = problemsOf({
      'gateway.yaml': `services:
  users:
    urls: [http://127.0.0.1:4001]
routes: ./routes
`,
    })
    t.same(lines, [`${file}:4: routes: file not found: ${join(dir, 'routes')}`])
  })
})

t.test('reserved paths', async t => {
  for (const path of ['/healthz', '/readyz']) {
    const { lines, file } = problemsOf({ 'gateway.yaml': BASE.replace('path: /a', `path: ${path}`) })
    t.same(lines, [`${file}:9: routes[0].path: ${path} is served by the gateway itself`], path)
  }
})

t.test('several problems are all reported at once', async t => {
  t.test('schema problems', async t => {
    const { lines, file } = problemsOf({
      'gateway.yaml': `server:
  port: eighty
  bodyLimit: lots
  shutdownTmeout: 1s
services:
  users:
    urls: [http://127.0.0.1:4001]
    timeout: soon
policies:
  public: { auth: none }
routes:
  - id: a
    path: /a
    proxy: { service: users }
`,
    })
    t.same(lines.sort(), [
      `${file}:12: routes[0].policy: is required`,
      `${file}:2: server.port: must be integer`,
      `${file}:3: server.bodyLimit: ${SIZE_HINT}`,
      `${file}:4: server.shutdownTmeout: unknown key (did you mean "shutdownTimeout"?)`,
      `${file}:8: services.users.timeout: ${DURATION_HINT}`,
    ])
  })

  t.test('cross-reference problems', async t => {
    const { lines, file } = problemsOf({
      'gateway.yaml': BASE.replace('policy: public', 'policy: admin') + `  - id: a
    path: /b
    policy: public
    proxy: { service: nope }
  - id: c
    path: /healthz
    policy: public
    proxy: { service: users, path: "/x/{params.id}" }
`,
    })
    t.same(lines.sort(), [
      `${file}:10: routes[0].policy: unknown policy "admin" (known: public)`,
      `${file}:12: routes[1].id: duplicate route id "a" (first defined at ${file}:7)`,
      `${file}:15: routes[1].proxy.service: unknown service "nope" (known: users)`,
      `${file}:17: routes[2].path: /healthz is served by the gateway itself`,
      `${file}:19: routes[2].proxy.path: {params.id} is not a parameter of the route path /healthz`,
    ])
  })

  t.test('problems in several files', async t => {
    const { lines, file, dir } = problemsOf({
      'gateway.yaml': `services:
  users:
    urls: [http://127.0.0.1:4001]
    timeout: \${USERS_TIMEOUT_X}
policies: ./policies.yaml
routes: ./routes
`,
      'routes/a.yaml': `- id: a
  path: /a
  policy: public
  proxy: { service: users, path: "\${A_PATH_X}" }
`,
    })
    t.same(lines.sort(), [
      `${file}:4: services.users.timeout: environment variable USERS_TIMEOUT_X is not set (write \${USERS_TIMEOUT_X:-default} to allow it to be unset)`,
      `${file}:5: policies: file not found: ${join(dir, 'policies.yaml')}`,
      `${join(dir, 'routes/a.yaml')}:4: routes[0].proxy.path: environment variable A_PATH_X is not set (write \${A_PATH_X:-default} to allow it to be unset)`,
    ].sort())
  })

  // loadConfig() stops after the first stage that finds anything (loading,
  // then the schema, then cross-references), so fixing a config takes several
  // rounds of `portico check`.
  t.test('an unset env var does not hide schema problems', async t => {
    const { lines, file } = problemsOf({
      'gateway.yaml': BASE.replace('public: { auth: none }', 'public: { auth: none, description: "${TEAM_X}" }')
        .replace('method: GET', 'method: FETCH'),
    })
    t.same(lines.sort(), [
      `${file}:5: policies.public.description: environment variable TEAM_X is not set (write \${TEAM_X:-default} to allow it to be unset)`,
      `${file}:8: routes[0].method: must be an HTTP method (GET, POST, …) or a list of them`,
    ])
  })

  t.test('a schema problem in one place does not hide a cross-reference problem elsewhere', async t => {
    const { lines, file } = problemsOf({
      'gateway.yaml': BASE.replace('    urls: [http://127.0.0.1:4001]\n', '    urls: [http://127.0.0.1:4001]\n    timeout: soon\n')
        .replace('policy: public', 'policy: admin'),
    })
    t.same(lines.sort(), [
      `${file}:11: routes[0].policy: unknown policy "admin" (known: public)`,
      `${file}:4: services.users.timeout: ${DURATION_HINT}`,
    ])
  })
})
