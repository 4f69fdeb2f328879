// The `cors:` block as config: what is accepted and how it is normalised
// (canonical origins, lower-case header names, maxAge in ms), a route's own
// block or `false`, and every malformed origin refused with FILE:LINE: field.
// `portico check` itself is run in test/pipeline/cors-browser.test.ts.
import t from 'tap'
import { join } from 'node:path'
import { loadConfig } from '../../src/config/index.js'
import { ConfigError, formatProblem } from '../../src/config/problems.js'
import { parseOrigin } from '../../src/config/cors.js'
import { writeConfigFiles } from '../helpers/gateway.js'

function yaml (cors: string, routeCors = ''): string {
  return `services:
  users: { urls: ["http://127.0.0.1:4001"] }
policies:
  public: { auth: none }
${cors}
routes:
  - id: one
    path: /one
    policy: public
    proxy: { service: users }
${routeCors}
`
}

function load (text: string): ReturnType<typeof loadConfig> {
  const dir = writeConfigFiles({ 'gateway.yaml': text })
  return loadConfig(join(dir, 'gateway.yaml'), {})
}

/** Every problem line (formatted as `portico check` prints them), or [] when the config loads. */
function problems (text: string): string[] {
  try {
    const { warnings } = load(text)
    return warnings.map(formatProblem)
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map(formatProblem)
    throw err
  }
}

t.test('a full block is normalised: canonical origins, lower-case headers, maxAge in ms', async t => {
  const { config } = load(yaml(`cors:
  origins: [HTTPS://App.Example.COM, "https://*.Example.com", "https://app.example.com:443", "http://localhost:5173", "https://bücher.example", "capacitor://localhost"]
  headers: [Authorization, content-type, Idempotency-Key]
  exposeHeaders: [X-Request-Id, x-cache]
  credentials: true
  maxAge: 10m`))
  t.same(config.cors, {
    origins: ['https://app.example.com', 'https://*.example.com', 'http://localhost:5173', 'https://xn--bcher-kva.example', 'capacitor://localhost'],
    headers: ['authorization', 'content-type', 'idempotency-key'],
    exposeHeaders: ['x-request-id', 'x-cache'],
    credentials: true,
    maxAge: 600_000,
  })
  t.equal(config.routes[0]!.cors, undefined, 'a route without its own block: the gateway\'s applies')
})

t.test('defaults: credentials false, no headers, no maxAge; absent block: no cors', async t => {
  t.same(load(yaml('cors: { origins: ["https://a.test"] }')).config.cors, { origins: ['https://a.test'], headers: [], exposeHeaders: [], credentials: false })
  t.equal(load(yaml('')).config.cors, undefined)
})

t.test('a route says false or gives its own block, which replaces the gateway\'s', async t => {
  const off = load(yaml('cors: { origins: ["https://a.test"] }', '    cors: false')).config
  t.equal(off.routes[0]!.cors, false)
  const own = load(yaml('cors: { origins: ["https://a.test"], headers: [authorization] }', '    cors: { origins: ["https://b.test"] }')).config
  t.same(own.routes[0]!.cors, { origins: ['https://b.test'], headers: [], exposeHeaders: [], credentials: false }, 'nothing inherited')
  const onlyRoute = load(yaml('', '    cors: { origins: ["https://b.test"], maxAge: 30s }')).config
  t.equal(onlyRoute.cors, undefined)
  t.same(onlyRoute.routes[0]!.cors, { origins: ['https://b.test'], headers: [], exposeHeaders: [], credentials: false, maxAge: 30_000 })
})

t.test('credentials with "*" is refused at cors.credentials, with its line', async t => {
  const lines = problems(yaml(`cors:
  origins: ["*"]
  credentials: true`))
  t.equal(lines.length, 1)
  t.match(lines[0], /gateway\.yaml:7: cors\.credentials: true cannot go with the "\*" origin/)
  const route = problems(yaml('', '    cors: { origins: ["*"], credentials: true }'))
  t.match(route[0], /gateway\.yaml:\d+: routes\[0\]\.cors\.credentials: true cannot go/)
  t.same(problems(yaml('cors: { origins: ["*"] }')), [], '"*" without credentials is fine')
})

t.test('malformed origins are refused, each at its own entry', async t => {
  const cases: Array<[string, RegExp]> = [
    ['https://app.example.com/', /trailing "\/".*browsers send https:\/\/app\.example\.com/],
    ['https://app.example.com/app', /has a path/],
    ['app.example.com', /has no scheme/],
    ['//app.example.com', /has no scheme/],
    ['https://app.*.example.com', /wildcard may only be the whole first label/],
    ['https://*app.example.com', /wildcard may only be the whole first label/],
    ['https://**.example.com', /wildcard may only be the whole first label/],
    ['*.example.com', /has no scheme/],
    ['https://*.com', /at least two labels/],
    ['https://*.10.0.0.1', /at least two labels|not an address/],
    ['null', /"null" origin/],
    ['https://app.example.com.', /trailing dot/],
    ['https://user@app.example.com', /user info/],
    ['https://app.example.com?x=1', /query/],
    ['https://app.example.com:99999', /not a valid origin/],
    ['https:// app.example.com', /whitespace/],
    ['capacitor://*.local', /only supported for http/],
  ]
  for (const [origin, message] of cases) {
    const lines = problems(yaml(`cors:
  origins:
    - ${JSON.stringify(origin)}`))
    t.equal(lines.length, 1, `${origin}: one problem`)
    t.match(lines[0], /gateway\.yaml:7: cors\.origins\[0\]: /, `${origin}: located at the entry`)
    t.match(lines[0], message, `${origin}: ${String(message)}`)
  }
})

t.test('schema errors name the field: unknown key, "*" header, wrong types, empty origins, cors: true', async t => {
  t.match(problems(yaml('cors: { origins: ["https://a.test"], allowHeaders: [x] }')).join('\n'), /cors\.allowHeaders: unknown key/)
  t.match(problems(yaml('cors: { origins: ["https://a.test"], headers: ["*"] }')).join('\n'), /cors\.headers\[0\]: must be a header name/)
  t.match(problems(yaml('cors: { origins: [] }')).join('\n'), /cors\.origins: /)
  t.match(problems(yaml('cors: { origins: ["https://a.test"], maxAge: soon }')).join('\n'), /cors\.maxAge: /)
  t.match(problems(yaml('', '    cors: true')).join('\n'), /routes\[0\]\.cors: must be false .* or a cors block/)
  t.match(problems(yaml('', '    cors: { origins: ["https://a.test"], credential: true }')).join('\n'), /routes\[0\]\.cors\.credential: unknown key \(did you mean "credentials"\?\)/)
  t.match(problems(yaml('cors: { origins: ["https://a.test"], maxAge: 3h }')).join('\n'), /cors\.maxAge: warning: is over 2h/)
})

t.test('parseOrigin canonical forms', async t => {
  t.equal(parseOrigin('HTTPS://*.Example.COM:8443'), 'https://*.example.com:8443')
  t.equal(parseOrigin('http://127.0.0.1:80'), 'http://127.0.0.1', 'a default port is dropped, as in a browser\'s Origin')
  t.equal(parseOrigin('https://[::1]:8443'), 'https://[::1]:8443')
  t.equal(parseOrigin('*'), '*')
})
