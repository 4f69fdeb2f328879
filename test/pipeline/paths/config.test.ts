// `server.paths` in the config: defaults, the values each rule takes, and
// errors that name file, line and field as `portico check` prints them.
import t from 'tap'
import { join } from 'node:path'
import { loadConfig } from '../../../src/config/index.js'
import { ConfigError, formatProblem } from '../../../src/config/problems.js'
import { writeConfigFiles } from '../../helpers/gateway.js'

const ROUTES = `services:
  users:
    urls: [http://127.0.0.1:4001]
policies:
  public: { auth: none }
routes:
  - id: a
    path: /a
    policy: public
    proxy: { service: users }
`

function load (text: string): { lines: string[], file: string, config?: ReturnType<typeof loadConfig>['config'] } {
  const file = join(writeConfigFiles({ 'gateway.yaml': text }), 'gateway.yaml')
  try {
    return { lines: [], file, config: loadConfig(file, {}).config }
  } catch (err) {
    if (err instanceof ConfigError) return { lines: err.problems.map(formatProblem), file }
    throw err
  }
}

t.test('defaults: merge slashes, refuse escaped slashes, backslashes and path parameters, case-sensitive', async t => {
  t.same(load(ROUTES).config?.server.paths, {
    mergeSlashes: true, escapedSlashes: 'reject', backslashes: 'reject', pathParameters: 'reject', caseInsensitive: false,
  })
})

t.test('each rule can be relaxed on its own; the others keep their defaults', async t => {
  const { config } = load(`server:
  paths: { escapedSlashes: keep, caseInsensitive: true }
${ROUTES}`)
  t.same(config?.server.paths, {
    mergeSlashes: true, escapedSlashes: 'keep', backslashes: 'reject', pathParameters: 'reject', caseInsensitive: true,
  })
})

t.test('unknown keys and bad values are errors with file, line and field', async t => {
  const { lines, file } = load(`server:
  paths:
    mergeSlashes: yes please
    escapedSlashes: decode
    normalize: true
${ROUTES}`)
  t.same(lines.sort(), [
    `${file}:3: server.paths.mergeSlashes: must be boolean`,
    `${file}:4: server.paths.escapedSlashes: must be one of: reject, keep`,
    `${file}:5: server.paths.normalize: unknown key`,
  ].sort())
})

t.test('a route path with "//" could never match while slashes are merged', async t => {
  const text = ROUTES.replace('path: /a', 'path: /a//b')
  const { lines, file } = load(text)
  t.same(lines, [`${file}:8: routes[0].path: has "//", which never reaches a route: server.paths.mergeSlashes merges it before matching`])
  t.same(load(`server: { paths: { mergeSlashes: false } }\n${text}`).lines, [])
})

t.test('caseInsensitive: true makes /A and /a the same route path: declaring both is a conflict', async t => {
  const both = `${ROUTES}  - id: b
    path: /A
    policy: public
    proxy: { service: users }
`
  t.same(load(both).lines, [])
  const { lines } = load(`server: { paths: { caseInsensitive: true } }\n${both}`)
  t.equal(lines.length, 1)
  t.match(lines[0], /routes\[1\]\.path: GET \/A is already taken by another route/)
})
