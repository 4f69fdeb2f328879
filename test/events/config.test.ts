// The events part of the config (`events`, and publish/command on routes;
// README "Events and CQRS"): where a publish/command route can write, what
// each route kind may carry, the defaults, and every mistake reported as
// `FILE:LINE: path.to.field: what is wrong`.
import t from 'tap'
import { join } from 'node:path'
import { loadConfig, type LoadResult } from '../../src/config/index.js'
import { ConfigError, formatProblem } from '../../src/config/problems.js'
import { writeConfigFiles } from '../helpers/gateway.js'

/** Loads `gateway.yaml`; the result, or every problem formatted (FILE is the absolute temp path). */
function load (yaml: string): { result?: LoadResult, lines: string[], file: string } {
  const file = join(writeConfigFiles({ 'gateway.yaml': yaml }), 'gateway.yaml')
  try {
    return { result: loadConfig(file, {}), lines: [], file }
  } catch (err) {
    if (err instanceof ConfigError) return { lines: err.problems.map(formatProblem), file }
    throw err
  }
}

// Lines 1–6; the routes follow from line 7.
const HEAD = `services:
  orders:
    urls: [http://127.0.0.1:4002]
policies:
  public: { auth: none }
routes:
`

// Lines 7–17 after HEAD: a publishing proxy route (publish on line 12) and a command route (command on line 17).
const EVENT_ROUTES = `  - id: create-order
    method: POST
    path: /api/orders
    policy: public
    proxy: { service: orders }
    publish: { stream: orders, type: order.created }
  - id: submit-report
    method: POST
    path: /api/reports
    policy: public
    command: { stream: report-commands }
`

const NEEDS_STREAM = 'needs an event stream: set redis.url, or events: { sink: memory } for demos and tests'

t.test('publish and command without redis.url and without events.sink: one error per route, naming the field', async t => {
  const { result, lines, file } = load(HEAD + EVENT_ROUTES)
  t.notOk(result, 'not loaded')
  t.same(lines, [
    `${file}:12: routes[0].publish: ${NEEDS_STREAM}`,
    `${file}:17: routes[1].command: ${NEEDS_STREAM}`,
  ])
})

t.test('redis.url given but empty (${REDIS_URL:-}) counts as no redis', async t => {
  const { lines, file } = load(`redis:\n  url: ""\n${HEAD}${EVENT_ROUTES}`)
  t.same(lines, [
    `${file}:14: routes[0].publish: ${NEEDS_STREAM}`,
    `${file}:19: routes[1].command: ${NEEDS_STREAM}`,
  ])
})

t.test('events.sink: redis without redis.url is an error at events.sink, once', async t => {
  const { lines, file } = load(`events: { sink: redis }\n${HEAD}${EVENT_ROUTES}`)
  t.same(lines, [`${file}:1: events.sink: sink: redis needs redis.url`])
})

t.test('events.sink: redis without redis.url is an error even with no event routes yet', async t => {
  const { lines, file } = load(`events: { sink: redis }\n${HEAD}  - id: list-orders\n    method: GET\n    path: /api/orders\n    policy: public\n    proxy: { service: orders }\n`)
  t.same(lines, [`${file}:1: events.sink: sink: redis needs redis.url`])
})

t.test('a command route takes body methods only', async t => {
  for (const method of ['GET', '[POST, GET]', 'HEAD']) {
    const { lines, file } = load(`events: { sink: memory }\n${HEAD}  - id: c\n    method: ${method}\n    path: /c\n    policy: public\n    command: { stream: s }\n`)
    t.same(lines, [`${file}:9: routes[0].method: a command route takes POST, PUT, PATCH or DELETE only`], method)
  }
  for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', '[POST, PUT]']) {
    t.same(load(`events: { sink: memory }\n${HEAD}  - id: c\n    method: ${method}\n    path: /c\n    policy: public\n    command: { stream: s }\n`).lines, [], `${method} is fine`)
  }
})

t.test('only a proxy route publishes', async t => {
  const aggregate = load(`events: { sink: memory }
${HEAD}  - id: dash
    method: GET
    path: /dash
    policy: public
    aggregate:
      recent: { service: orders, path: /orders }
    publish: { stream: s, type: t }
`)
  t.same(aggregate.lines, [`${aggregate.file}:14: routes[0].publish: only a proxy route publishes (a command route appends its body itself)`], 'aggregate')
  const command = load(`events: { sink: memory }
${HEAD}  - id: c
    method: POST
    path: /c
    policy: public
    command: { stream: s }
    publish: { stream: s, type: t }
`)
  t.same(command.lines, [`${command.file}:13: routes[0].publish: only a proxy route publishes (a command route appends its body itself)`], 'command')
})

t.test('a command route has no upstream target and no cache', async t => {
  const both = load(`events: { sink: memory }
${HEAD}  - id: c
    method: POST
    path: /c
    policy: public
    proxy: { service: orders }
    command: { stream: s }
`)
  t.equal(both.lines.length, 1, both.lines.join('\n'))
  t.match(both.lines[0], /routes\[0\]: has several targets \(proxy, command\); a route has exactly one$/)
  const cached = load(`events: { sink: memory }
${HEAD}  - id: c
    method: POST
    path: /c
    policy: public
    cache: { ttl: 10s }
    command: { stream: s }
`)
  t.ok(cached.lines.some(l => l.startsWith(`${cached.file}:12: routes[0].cache: `)), cached.lines.join('\n'))
  t.notOk(cached.result)
})

t.test('a command route invalidates nothing: accepting the command has not changed the data yet', async t => {
  const r = load(`events: { sink: memory }
${HEAD}  - id: c
    method: POST
    path: /c
    policy: public
    invalidates: [reports]
    command: { stream: s }
`)
  t.same(r.lines, [`${r.file}:12: routes[0].invalidates: a command route only accepts the command: purge when its consumer has applied it (POST /admin/cache/purge)`])
  t.notOk(r.result)
})

t.test('malformed events and publish/command settings are errors naming the field', async t => {
  const proxy = '    proxy: { service: orders }\n'
  // [top-level lines, route target lines, the one expected problem without FILE]
  const cases: Array<[string, string, string]> = [
    ['events: { sink: kafka }\n', proxy, ':1: events.sink: must be redis, memory or auto'],
    ['events: { sink: memory, maxLen: 0 }\n', proxy, ':1: events.maxLen: must be >= 1'],
    ['events: { sink: memory, publishRetries: 11 }\n', proxy, ':1: events.publishRetries: must be <= 10'],
    ['events: { sink: memory, idempotencyWindow: soon }\n', proxy, ':1: events.idempotencyWindow: must be a duration such as 500ms, 2s, 1m, 1h or a number of milliseconds'],
    ['events: { sink: memory, topic: x }\n', proxy, ':1: events.topic: unknown key'],
    ['events: { sink: memory }\n', `${proxy}    publish: { stream: s }\n`, ':13: routes[0].publish.type: is required'],
    ['events: { sink: memory }\n', `${proxy}    publish: { stream: s, type: t, from: body }\n`, ':13: routes[0].publish.from: must be one of: response, request'],
    ['events: { sink: memory }\n', `${proxy}    publish: { stream: "", type: t }\n`, ':13: routes[0].publish.stream: must NOT have fewer than 1 characters'],
    ['events: { sink: memory }\n', '    command: { type: t }\n', ':12: routes[0].command.stream: is required'],
    ['events: { sink: memory }\n', '    command: { stream: s, statusPath: "reports/{commandId}" }\n', ':12: routes[0].command.statusPath: must start with "/"'],
  ]
  for (const [top, target, want] of cases) {
    const { lines, result, file } = load(`${top}${HEAD}  - id: r\n    method: POST\n    path: /r\n    policy: public\n${target}`)
    t.notOk(result, `${want}: not loaded`)
    t.same(lines, [file + want], want)
  }
})

t.test('a valid memory config loads with its defaults filled in', async t => {
  const { result, lines } = load(`events: { sink: memory, maxLen: 500, idempotencyWindow: 10m }
${HEAD}${EVENT_ROUTES}  - id: cancel-order
    method: DELETE
    path: /api/orders/:id
    policy: public
    command: { stream: order-commands, type: order.cancel, statusPath: "/api/commands/{commandId}" }
  - id: echo-order
    method: PUT
    path: /api/orders/:id
    policy: public
    proxy: { service: orders }
    publish: { stream: orders, type: order.replaced, from: request }
`)
  t.same(lines, [])
  if (result === undefined) return
  const { config, warnings } = result
  t.same(warnings, [])
  t.same(config.events, { sink: 'memory', maxLen: 500, idempotencyWindow: 600_000, publishRetries: 3 })
  const route = (id: string) => config.routes.find(r => r.id === id)
  t.same(route('create-order')?.publish, { stream: 'orders', type: 'order.created', from: 'response' }, 'from defaults to response')
  t.same(route('echo-order')?.publish, { stream: 'orders', type: 'order.replaced', from: 'request' })
  t.same(route('submit-report')?.target, { kind: 'command', stream: 'report-commands', type: 'submit-report' }, 'type defaults to the route id')
  t.same(route('cancel-order')?.target, { kind: 'command', stream: 'order-commands', type: 'order.cancel', statusPath: '/api/commands/{commandId}' })
})

t.test('with redis.url the sink is Redis by default; events: { sink: memory } overrides it', async t => {
  const redis = load(`redis:\n  url: redis://127.0.0.1:6379\n${HEAD}${EVENT_ROUTES}`)
  t.same(redis.lines, [])
  t.same(redis.result?.config.events, { sink: 'redis', maxLen: 100_000, idempotencyWindow: 86_400_000, publishRetries: 3 }, 'the documented defaults')
  const memory = load(`redis:\n  url: redis://127.0.0.1:6379\nevents: { sink: memory }\n${HEAD}${EVENT_ROUTES}`)
  t.same(memory.lines, [])
  t.equal(memory.result?.config.events.sink, 'memory')
  // Loaded, but said: events kept in one process beside a Redis every instance could share.
  t.same(memory.result?.warnings.map(formatProblem), [
    `${memory.file}:3: events.sink: warning: sink: memory keeps events inside this one process although redis.url is set: other instances and \`portico events tail\` never see them, and a restart loses them (use sink: redis or auto)`,
  ])
  const none = load(HEAD + '  - id: list\n    method: GET\n    path: /l\n    policy: public\n    proxy: { service: orders }\n')
  t.same(none.lines, [])
  t.equal(none.result?.config.events.sink, undefined, 'no redis, no events: no sink (and no event routes allowed)')
})

t.test('events.sink: auto (or empty, an unset ${EVENTS_SINK:-}) follows redis.url, else memory', async t => {
  for (const sink of ['auto', '""']) {
    const withRedis = load(`redis:\n  url: redis://127.0.0.1:6379\nevents: { sink: ${sink} }\n${HEAD}${EVENT_ROUTES}`)
    t.same(withRedis.lines, [], `${sink} with redis.url: loads`)
    t.equal(withRedis.result?.config.events.sink, 'redis', `${sink} with redis.url: redis`)
    t.same(withRedis.result?.warnings, [], `${sink} with redis.url: no warning`)
    const alone = load(`events: { sink: ${sink} }\n${HEAD}${EVENT_ROUTES}`)
    t.same(alone.lines, [], `${sink} without redis.url: loads`)
    t.equal(alone.result?.config.events.sink, 'memory', `${sink} without redis.url: memory`)
  }
})

t.test('the shipped demo config: REDIS_URL set means the redis sink; EVENTS_SINK=memory beside it is warned about', async t => {
  const shipped = join(import.meta.dirname, '..', '..', 'config', 'gateway.yaml')
  const redis = loadConfig(shipped, { REDIS_URL: 'redis://127.0.0.1:6379' })
  t.equal(redis.config.events.sink, 'redis', 'docker run -e REDIS_URL=... stores events in Redis')
  t.same(redis.warnings, [])
  t.equal(loadConfig(shipped, {}).config.events.sink, 'memory', 'npm start without Redis: memory')
  const forced = loadConfig(shipped, { REDIS_URL: 'redis://127.0.0.1:6379', EVENTS_SINK: 'memory' })
  t.equal(forced.config.events.sink, 'memory')
  t.match(forced.warnings.map(formatProblem), [/config\/gateway\.yaml:\d+: events\.sink: warning: sink: memory keeps events inside this one process although redis\.url is set/])
})
