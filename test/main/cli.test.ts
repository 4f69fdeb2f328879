// The real CLI, as a user runs it (README "Command line"): `node dist/src/main/cli.js`
// in its own process, judged by exit code and output.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadConfig } from '../../src/config/index.js'
import { writeConfigFiles } from '../helpers/gateway.js'
import { buildIfStale } from '../helpers/cli.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CLI = join(ROOT, 'dist/src/main/cli.js')

interface Run { code: number | null, stdout: string, stderr: string, lines: string[] }

/** Runs the CLI; `lines` are the non-empty lines of stdout and stderr together. */
function portico (args: string[], opts: { cwd?: string, env?: NodeJS.ProcessEnv } = {}): Run {
  const env = { ...process.env, ...opts.env }
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k]
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: opts.cwd ?? ROOT, env, encoding: 'utf8', timeout: 30_000 })
  const lines = (r.stdout + '\n' + r.stderr).split('\n').filter(l => l.trim() !== '')
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, lines }
}

/** The environment of a user who has not set PORTICO_CONFIG. */
const NO_CONFIG_ENV = { PORTICO_CONFIG: undefined }

const STACK_LINE = /^\s+at .+\(?.*:\d+:\d+\)?$/

// `npm test` builds first (pretest); run alone, this rebuilds a stale dist.
t.before(buildIfStale)

const VALID = `services:
  users:
    urls: [http://127.0.0.1:4001]
  orders:
    urls: [http://127.0.0.1:4002]
policies:
  public: { auth: none }
  internal: { auth: none }
routes:
  - id: user
    method: GET
    path: /api/users/:id
    policy: public
    proxy: { service: users, path: "/users/{params.id}" }
  - id: orders
    method: [GET, POST]
    path: /api/orders
    policy: internal
    proxy: { service: orders }
`

// Two problems on known lines: 4 (unknown key) and 12 (the second route lacks a policy).
const BROKEN = `services:
  users:
    urls: [http://127.0.0.1:4001]
    timout: 2s
policies:
  public: { auth: none }
routes:
  - id: a
    path: /a
    policy: public
    proxy: { service: users }
  - id: b
    path: /b
    proxy: { service: users }
`

function brokenLines (file: string): string[] {
  return [
    `${file}:4: services.users.timout: unknown key (did you mean "timeout"?)`,
    `${file}:12: routes[1].policy: is required`,
  ].sort()
}

t.test('check on the shipped config: exit 0 and a one-line summary', async t => {
  const r = portico(['check'], { env: NO_CONFIG_ENV })
  t.equal(r.code, 0, r.stdout + r.stderr)
  const { config, warnings } = loadConfig(join(ROOT, 'config/gateway.yaml'))
  const summary = `config/gateway.yaml: OK — ${config.routes.length} routes, ${config.services.size} services, ${config.policies.size} policies`
  // Warnings (if the shipped config ever has any) come before the summary, one line each.
  t.equal(r.lines.length, warnings.length + 1, r.stdout)
  t.match(r.lines[r.lines.length - 1], new RegExp('^' + summary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
  t.equal(r.stderr, '')
})

t.test('check on a valid config prints exactly one line', async t => {
  const dir = writeConfigFiles({ 'gateway.yaml': VALID })
  const r = portico(['check', '--config', join(dir, 'gateway.yaml')])
  t.equal(r.code, 0, r.stdout + r.stderr)
  t.same(r.lines, [`${join(dir, 'gateway.yaml')}: OK — 2 routes, 2 services, 2 policies`])
})

t.test('check on a broken config: exit 1, one FILE:LINE: field: message line per problem, no stack', async t => {
  const dir = writeConfigFiles({ 'broken.yaml': BROKEN })
  const file = join(dir, 'broken.yaml')
  const r = portico(['check', '--config', file])
  t.equal(r.code, 1)
  t.same([...r.lines].sort(), brokenLines(file))
  t.notOk(r.lines.some(l => STACK_LINE.test(l) || /\bError\b/.test(l)), 'no stack trace')
})

t.test('routes on a broken config fails the same way', async t => {
  const dir = writeConfigFiles({ 'broken.yaml': BROKEN })
  const file = join(dir, 'broken.yaml')
  const r = portico(['routes', '--config', file])
  t.equal(r.code, 1)
  t.same([...r.lines].sort(), brokenLines(file))
})

t.test('check on a missing file: exit 1, one located line, no stack', async t => {
  const dir = writeConfigFiles({})
  const file = join(dir, 'nope.yaml')
  const r = portico(['check', '--config', file])
  t.equal(r.code, 1)
  t.equal(r.lines.length, 1, r.stdout + r.stderr)
  t.match(r.lines[0], `${file}:`)
  t.match(r.lines[0], /file not found/)
})

t.test('a config inside the cwd is shown by its relative path', async t => {
  const dir = writeConfigFiles({ 'conf/broken.yaml': BROKEN })
  const r = portico(['check', '--config', 'conf/broken.yaml'], { cwd: dir })
  t.equal(r.code, 1)
  t.same([...r.lines].sort(), brokenLines('conf/broken.yaml'))
})

t.test('a duplicate route id names the first one by the same relative path', async t => {
  const dir = writeConfigFiles({
    'gateway.yaml': `services:
  users:
    urls: [http://127.0.0.1:4001]
policies:
  public: { auth: none }
routes: ./routes
`,
    'routes/a.yaml': '- id: a\n  path: /a\n  policy: public\n  proxy: { service: users }\n',
    'routes/b.yaml': '- id: a\n  path: /b\n  policy: public\n  proxy: { service: users }\n',
  })
  const r = portico(['check', '--config', 'gateway.yaml'], { cwd: dir })
  t.equal(r.code, 1)
  t.same(r.lines, ['routes/b.yaml:1: routes[0].id: duplicate route id "a" (first defined at routes/a.yaml:1)'])
})

t.test('PORTICO_CONFIG is honoured', async t => {
  const good = writeConfigFiles({ 'gateway.yaml': VALID })
  const bad = writeConfigFiles({ 'broken.yaml': BROKEN })

  t.test('by check', async t => {
    const r = portico(['check'], { env: { PORTICO_CONFIG: join(bad, 'broken.yaml') } })
    t.equal(r.code, 1)
    t.same([...r.lines].sort(), brokenLines(join(bad, 'broken.yaml')))
  })

  t.test('by routes', async t => {
    const r = portico(['routes'], { env: { PORTICO_CONFIG: join(good, 'gateway.yaml') } })
    t.equal(r.code, 0, r.stdout + r.stderr)
    t.same(r.lines.slice(1).map(l => l.trim().split(/\s+/).pop()), ['user', 'orders'])
  })

  t.test('relative to the cwd', async t => {
    const r = portico(['check'], { cwd: good, env: { PORTICO_CONFIG: 'gateway.yaml' } })
    t.equal(r.code, 0, r.stdout + r.stderr)
    t.same(r.lines, ['gateway.yaml: OK — 2 routes, 2 services, 2 policies'])
  })

  t.test('--config wins over PORTICO_CONFIG', async t => {
    const r = portico(['check', '--config', join(good, 'gateway.yaml')], { env: { PORTICO_CONFIG: join(bad, 'broken.yaml') } })
    t.equal(r.code, 0, r.stdout + r.stderr)
    t.same(r.lines, [`${join(good, 'gateway.yaml')}: OK — 2 routes, 2 services, 2 policies`])
  })
})

/** Splits a table row at the header's column starts. */
function columns (header: string, row: string): Record<string, string> {
  const names = header.trim().split(/\s+/)
  const starts = names.map(n => header.indexOf(n))
  const out: Record<string, string> = {}
  names.forEach((n, i) => { out[n] = row.slice(starts[i], starts[i + 1]).trim() })
  return out
}

t.test('routes prints a table: method, path, policy, target', async t => {
  const dir = writeConfigFiles({ 'gateway.yaml': VALID })
  const r = portico(['routes', '--config', join(dir, 'gateway.yaml')])
  t.equal(r.code, 0, r.stdout + r.stderr)
  t.equal(r.stderr, '')
  const [header, ...rows] = r.stdout.trimEnd().split('\n')
  t.match(header, /^METHOD\s+PATH\s+POLICY\s+TARGET\b/)
  t.same(rows.map(row => columns(header, row)), [
    { METHOD: 'GET', PATH: '/api/users/:id', POLICY: 'public', TARGET: 'proxy users /users/{params.id}', ID: 'user' },
    { METHOD: 'GET,POST', PATH: '/api/orders', POLICY: 'internal', TARGET: 'proxy orders (same path)', ID: 'orders' },
  ])
})

t.test('routes on the shipped config lists every shipped route', async t => {
  const r = portico(['routes'], { env: NO_CONFIG_ENV })
  t.equal(r.code, 0, r.stdout + r.stderr)
  const [header, ...rows] = r.stdout.trimEnd().split('\n')
  t.match(header, /^METHOD\s+PATH\s+POLICY\s+TARGET\b/)
  const { config } = loadConfig(join(ROOT, 'config/gateway.yaml'))
  t.ok(config.routes.length > 0, 'the demo ships routes')
  const table = rows.map(row => columns(header, row))
  t.equal(table.length, config.routes.length)
  for (const route of config.routes) {
    const row = table.find(c => c.ID === route.id)
    t.match(row, { METHOD: route.methods.join(','), PATH: route.path, POLICY: route.policy }, route.id)
    if (route.target.kind === 'proxy') t.match(row?.TARGET, new RegExp(`^proxy ${route.target.service}\\b`), `${route.id} target`)
  }
  t.match(table.find(c => c.PATH === '/api/users/:id'), { METHOD: 'GET', TARGET: 'proxy users /users/{params.id}' })
})

t.test('--help: exit 0 and usage on stdout', async t => {
  for (const command of ['start', 'check', 'routes', 'token']) {
    for (const flag of ['--help', '-h']) {
      const r = portico([command, flag])
      t.equal(r.code, 0, `${command} ${flag}`)
      t.match(r.stdout, new RegExp(`^Usage: portico ${command}\\b`), `${command} ${flag}`)
    }
  }
  const r = portico(['--help'])
  t.equal(r.code, 0, '--help')
  t.match(r.stdout, /^Usage: portico <command>/)
  for (const command of ['start', 'check', 'routes']) t.match(r.stdout, new RegExp(`^\\s+${command}\\s`, 'm'), `lists ${command}`)
})

t.test('--version and -v print the version from package.json', async t => {
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
  for (const flag of ['--version', '-v']) {
    const r = portico([flag])
    t.equal(r.code, 0, flag)
    t.equal(r.stdout, `${version}\n`, `${flag}: the version alone`)
    t.equal(r.stderr, '')
  }
})

t.test('PORT that is not a port: check and start exit 1 with a line naming PORT at server.port', async t => {
  const file = join(writeConfigFiles({ 'gateway.yaml': `server:\n  port: 8080\n${VALID}` }), 'gateway.yaml')
  for (const port of ['abc', '99999', '65536', '-1', '80.5', '8080 ', '0x50', '1e3']) {
    const r = portico(['check', '--config', file], { env: { PORT: port } })
    t.equal(r.code, 1, `PORT=${JSON.stringify(port)}: exit 1`)
    t.same(r.lines, [`${file}:2: server.port: the PORT environment variable (${JSON.stringify(port)}) must be a port number from 0 to 65535`], `PORT=${JSON.stringify(port)}`)
  }
  const start = portico(['start', '--config', file], { env: { PORT: 'abc' } })
  t.equal(start.code, 1, 'start refuses it too, instead of listening on 8080')
  t.same(start.lines, [`${file}:2: server.port: the PORT environment variable ("abc") must be a port number from 0 to 65535`])
  t.notMatch(start.stdout + start.stderr, STACK_LINE)
  for (const port of ['0', '8081', '65535', '']) {
    const ok = portico(['check', '--config', file], { env: { PORT: port } })
    t.equal(ok.code, 0, `PORT=${JSON.stringify(port)} is fine`)
  }
})

t.test('check: a memory event sink beside a configured Redis is a warning (exit 0)', async t => {
  const file = join(writeConfigFiles({
    'gateway.yaml': `redis:\n  url: redis://127.0.0.1:6379\nevents:\n  sink: memory\n${VALID}`,
  }), 'gateway.yaml')
  const r = portico(['check', '--config', file])
  t.equal(r.code, 0, r.stdout + r.stderr)
  t.same(r.lines, [
    `${file}:4: events.sink: warning: sink: memory keeps events inside this one process although redis.url is set: other instances and \`portico events tail\` never see them, and a restart loses them (use sink: redis or auto)`,
    `${file}: OK — 2 routes, 2 services, 2 policies, 1 warnings`,
  ])
})

t.test('no command: usage, exit 2', async t => {
  const r = portico([])
  t.equal(r.code, 2)
  t.match(r.stdout + r.stderr, /Usage: portico <command>/)
})

t.test('unknown command: exit 2 and says so', async t => {
  const r = portico(['chek'])
  t.equal(r.code, 2)
  t.match(r.stderr, /unknown command "chek"/)
})

t.test('unknown flag: exit 2 and says so, for every command', async t => {
  // start included: an unknown flag must stop it before it listens (the timeout would catch that).
  for (const command of ['start', 'check', 'routes', 'token']) {
    const r = portico([command, '--confgi', 'x.yaml'])
    t.equal(r.code, 2, `${command}: ${r.stdout}${r.stderr}`)
    t.match(r.stderr, /--confgi/, command)
    t.notOk(r.lines.some(l => STACK_LINE.test(l)), `${command}: no stack trace`)
  }
})
