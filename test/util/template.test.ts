// Path templates with hostile values: whatever a client puts in a param, the
// upstream path keeps the shape the template gives it, or the request is
// refused with 400 BAD_REQUEST.
import t from 'tap'
import { compilePathTemplate, parseTemplate, TemplateError, type FillContext } from '../../src/util/template.js'
import { GatewayError } from '../../src/util/errors.js'

function ctx (over: Partial<FillContext> = {}): FillContext {
  return { params: {}, query: {}, headers: {}, ...over }
}

/** Fills the template and reports either the path or the refusal's code. */
function fill (template: string, c: FillContext): string {
  const fillPath = compilePathTemplate(template)
  try {
    return fillPath(c)
  } catch (err) {
    if (err instanceof GatewayError) return `${err.status} ${err.code}`
    throw err
  }
}

function thrownBy (fn: () => unknown): unknown {
  try { fn() } catch (err) { return err }
  return undefined
}

t.test('a whole-segment param is encoded so it stays one segment', async t => {
  const cases: Array<[string, string]> = [
    ['../admin', '/users/..%2Fadmin/orders'],
    ['a/b?c', '/users/a%2Fb%3Fc/orders'],
    ['%2e%2e', '/users/%252e%252e/orders'],
    ['#frag', '/users/%23frag/orders'],
    ['a b', '/users/a%20b/orders'],
    ['...', '/users/.../orders'],
    ['.hidden', '/users/.hidden/orders'],
    ['zoë/日本', '/users/zo%C3%AB%2F%E6%97%A5%E6%9C%AC/orders'],
    ['😀', '/users/%F0%9F%98%80/orders'],
    ['alice', '/users/alice/orders'],
  ]
  for (const [value, expected] of cases) {
    t.equal(fill('/users/{params.id}/orders', ctx({ params: { id: value } })), expected, JSON.stringify(value))
  }
})

t.test('a whole-segment param that would be a dot or empty segment is refused', async t => {
  const refused: Array<[string, string | undefined]> = [
    ['dot-dot', '..'],
    ['dot', '.'],
    ['empty', ''],
    ['absent', undefined],
  ]
  for (const template of ['/users/{params.id}/orders', '/users/{params.id}', '/{params.id}', '/users/{params.id}?full=1']) {
    for (const [name, value] of refused) {
      const params = value === undefined ? {} : { id: value }
      t.equal(fill(template, ctx({ params })), '400 BAD_REQUEST', `${template} with ${name}`)
    }
  }
})

t.test('the refusal is a GatewayError the error handler renders as 400', async t => {
  const fillPath = compilePathTemplate('/users/{params.id}')
  t.throws(() => fillPath(ctx({ params: { id: '..' } })), { name: 'GatewayError', code: 'BAD_REQUEST', status: 400 })
  t.throws(() => fillPath(ctx({ params: { id: '\uD800' } })), { name: 'GatewayError', code: 'BAD_REQUEST', status: 400 })
})

t.test('a lone surrogate cannot be encoded and is refused wherever it appears', async t => {
  for (const [template, params] of [
    ['/users/{params.id}', { id: '\uD800' }],
    ['/users/x-{params.id}', { id: 'a\uDC00b' }],
    ['/files/{params.*}', { '*': 'ok/\uD800' }],
  ] as const) {
    t.equal(fill(template, ctx({ params })), '400 BAD_REQUEST', template)
  }
})

t.test('a param inside a segment may be empty or dots: the segment keeps its literal part', async t => {
  t.equal(fill('/u/v-{params.id}', ctx({ params: { id: '..' } })), '/u/v-..')
  t.equal(fill('/u/v-{params.id}', ctx({ params: { id: '' } })), '/u/v-')
  t.equal(fill('/u/{params.id}.json', ctx({ params: { id: '../x' } })), '/u/..%2Fx.json')
  t.equal(fill('/u/{params.id}.json', ctx({ params: { id: 'a?b' } })), '/u/a%3Fb.json')
})

t.test('values in the query part are encoded so they cannot add parameters', async t => {
  t.equal(fill('/search?q={query.q}&page=1', ctx({ query: { q: 'a&page=99#x' } })), '/search?q=a%26page%3D99%23x&page=1')
  // Only the first of repeated query values is used.
  t.equal(fill('/search?q={query.q}', ctx({ query: { q: ['first', 'second'] } })), '/search?q=first')
})

t.test('headers and auth claims fill paths too, encoded the same way', async t => {
  t.equal(fill('/tenants/{headers.X-Tenant}/items', ctx({ headers: { 'x-tenant': 'acme/../root' } })), '/tenants/acme%2F..%2Froot/items')
  t.equal(fill('/tenants/{headers.x-tenant}', ctx({ headers: { 'x-tenant': '..' } })), '400 BAD_REQUEST')
  t.equal(fill('/users/{auth.sub}', ctx({ auth: { sub: 'bob?admin=1' } })), '/users/bob%3Fadmin%3D1')
  t.equal(fill('/users/{auth.uid}', ctx({ auth: { uid: 42 } })), '/users/42')
  t.equal(fill('/users/{auth.sub}', ctx()), '400 BAD_REQUEST', 'no identity: no value for a whole segment')
})

t.test('{params.*} keeps the slashes between segments and encodes each one', async t => {
  const cases: Array<[string, string]> = [
    ['a/b/c', '/files/a/b/c'],
    ['a b/c?d#e', '/files/a%20b/c%3Fd%23e'],
    ['%2e%2e/x', '/files/%252e%252e/x'],
    ['docs/zoë.txt', '/files/docs/zo%C3%AB.txt'],
    ['a/.../b', '/files/a/.../b'],
    ['single', '/files/single'],
  ]
  for (const [value, expected] of cases) {
    t.equal(fill('/files/{params.*}', ctx({ params: { '*': value } })), expected, JSON.stringify(value))
  }
})

t.test('{params.*} refuses "." and ".." segments anywhere in the rest', async t => {
  for (const value of ['..', '.', '../admin', 'a/../../admin', 'a/./b', 'a/..', 'a/.', './a']) {
    t.equal(fill('/files/{params.*}', ctx({ params: { '*': value } })), '400 BAD_REQUEST', JSON.stringify(value))
  }
})

t.test('{params.*} refuses an empty segment (kept "//" when server.paths.mergeSlashes is false)', async t => {
  for (const value of ['a//b', '/a', '//', 'a//', 'a/b//c']) {
    t.equal(fill('/files/{params.*}', ctx({ params: { '*': value } })), '400 BAD_REQUEST', JSON.stringify(value))
  }
  // A final "/" is a trailing slash, not an empty segment between two others.
  t.equal(fill('/files/{params.*}', ctx({ params: { '*': 'a/b/' } })), '/files/a/b/')
})

t.test('an empty {params.*} (the route\'s root, /files on /files/*) drops out with the "/" before it', async t => {
  t.equal(fill('/files/{params.*}', ctx({ params: { '*': '' } })), '/files')
  t.equal(fill('/files/{params.*}?full=1', ctx({ params: { '*': '' } })), '/files?full=1')
  t.equal(fill('/files/{params.*}/meta', ctx({ params: { '*': '' } })), '/files/meta')
  t.equal(fill('/{params.*}', ctx({ params: { '*': '' } })), '/')
  t.equal(fill('/{params.*}', ctx({ params: {} })), '/', 'absent: no rest')
})

t.test('a template without placeholders is returned as written', async t => {
  t.equal(fill('/health/deep', ctx({ params: { id: '..' } })), '/health/deep')
})

t.test('parseTemplate rejects what is not a placeholder, at config load', async t => {
  const bad = ['/{x}', '/{params}', '/{.id}', '/{params.}', '/{foo.id}', '/{}', '/{ }', '/{params.id', '/params.id}', '/a}/{params.id}', '/{params.{id}}']
  for (const text of bad) {
    t.ok(thrownBy(() => parseTemplate(text)) instanceof TemplateError, text)
    // compilePathTemplate parses once, up front: a bad template never reaches a request.
    t.ok(thrownBy(() => compilePathTemplate(text)) instanceof TemplateError, `compile ${text}`)
  }
  t.throws(() => parseTemplate('/{foo.id}'), { message: /"\{foo\.id\}" is not a placeholder/ })
  t.throws(() => parseTemplate('/x/{params.id'), { message: /unbalanced/ })
})

t.test('parseTemplate reads sources, keys and whole-segment positions', async t => {
  t.same(parseTemplate('/users/{params.id}/orders?since={query.since}'), {
    literals: ['/users/', '/orders?since=', ''],
    placeholders: [
      { source: 'params', key: 'id', wholeSegment: true },
      { source: 'query', key: 'since', wholeSegment: false },
    ],
  })
  // Header names are case-insensitive, so the key is lower-cased once here.
  t.same(parseTemplate('/{ headers.X-Tenant }').placeholders, [{ source: 'headers', key: 'x-tenant', wholeSegment: true }])
  t.same(parseTemplate('/v-{auth.sub}').placeholders, [{ source: 'auth', key: 'sub', wholeSegment: false }])
})
