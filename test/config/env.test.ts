// `${VAR}` and `${VAR:-default}` in config files, with the
// shell's meaning of `:-`: the default applies when the variable is unset or empty.
import t from 'tap'
import { substituteEnv, coercePlainScalar } from '../../src/config/env.js'

t.test('a set variable is substituted', async t => {
  t.same(substituteEnv('${HOST}', { HOST: 'example.com' }), { value: 'example.com', missing: [] })
  t.same(substituteEnv('http://${HOST}:8080/x', { HOST: 'example.com' }), { value: 'http://example.com:8080/x', missing: [] })
})

t.test('a set variable wins over the default', async t => {
  t.same(substituteEnv('${PORT:-8080}', { PORT: '9000' }), { value: '9000', missing: [] })
})

t.test('an unset variable with a default takes the default', async t => {
  t.same(substituteEnv('${PORT:-8080}', {}), { value: '8080', missing: [] })
  t.same(substituteEnv('${URL:-redis://127.0.0.1:6379/0}', {}), { value: 'redis://127.0.0.1:6379/0', missing: [] })
})

t.test('an empty default gives an empty string, and is not missing', async t => {
  t.same(substituteEnv('${REDIS_URL:-}', {}), { value: '', missing: [] })
})

t.test('an empty variable takes the :- default', async t => {
  t.same(substituteEnv('${PORT:-8080}', { PORT: '' }), { value: '8080', missing: [] })
})

t.test('an empty variable without a default is empty, not missing', async t => {
  t.same(substituteEnv('[${TOKEN}]', { TOKEN: '' }), { value: '[]', missing: [] })
})

t.test('an unset variable without a default is reported as missing', async t => {
  t.same(substituteEnv('Bearer ${TOKEN}', {}), { value: 'Bearer ', missing: ['TOKEN'] })
})

t.test('several references in one string are each substituted', async t => {
  const env = { SCHEME: 'https', HOST: 'api.example.com' }
  t.same(substituteEnv('${SCHEME}://${HOST}:${PORT:-443}/${BASE}/${PATH_X}', env), {
    value: 'https://api.example.com:443//',
    missing: ['BASE', 'PATH_X'],
  })
})

t.test('a value is inserted literally, never re-substituted or interpreted', async t => {
  const env = { A: '${B}', B: 'nope', C: "$& $' $1 # x: y" }
  t.same(substituteEnv('${A}|${C}', env), { value: "${B}|$& $' $1 # x: y", missing: [] })
})

t.test('text without a well-formed reference is left alone', async t => {
  for (const text of ['plain', '$HOME', '${}', '${1ABC}', '${ A }', 'cost: $5']) {
    t.same(substituteEnv(text, { HOME: '/root', A: 'x' }), { value: text, missing: [] }, text)
  }
})

t.test('coercePlainScalar reads a substituted plain scalar as YAML would', async t => {
  const cases: Array<[string, unknown]> = [
    ['8081', 8081],
    ['0', 0],
    ['-5', -5],
    ['1.5', 1.5],
    ['true', true],
    ['false', false],
    ['', ''],
    ['8081x', '8081x'],
    ['1.2.3', '1.2.3'],
    ['TRUE-ish', 'TRUE-ish'],
    ['abc', 'abc'],
    ['127.0.0.1', '127.0.0.1'],
  ]
  for (const [text, value] of cases) t.equal(coercePlainScalar(text), value, JSON.stringify(text))
})
