// Cache keys and what may be stored (README "Response cache"): the key covers route
// id, path, sorted query, the route's `vary` headers and, for `scope: user`
// only, the subject; only 200s are stored, never with no-store or a
// set-cookie, `private` only per user, and an upstream max-age / s-maxage
// shorter than the route's ttl wins.
import t from 'tap'
import type { FastifyRequest } from 'fastify'
import { cacheKey, freshnessFor, mayShare, storableHeaders, type KeySpec } from '../../src/cache/keys.js'

interface FakeRequest { url: string, headers?: Record<string, string>, sub?: string }

/** The parts of a request cacheKey reads. */
function request (r: FakeRequest): FastifyRequest {
  return {
    url: r.url,
    headers: r.headers ?? {},
    auth: r.sub === undefined ? undefined : { sub: r.sub, roles: [], scopes: [], claims: { sub: r.sub } },
  } as unknown as FastifyRequest
}

const PUBLIC: KeySpec = { routeId: 'items', scope: 'public', vary: [] }
const USER: KeySpec = { routeId: 'items', scope: 'user', vary: [] }

const key = (r: FakeRequest, spec: KeySpec = PUBLIC): string => cacheKey(request(r), spec)

t.test('cacheKey: the same for reordered query parameters', async t => {
  t.equal(key({ url: '/items?a=1&b=2&c=3' }), key({ url: '/items?c=3&a=1&b=2' }))
  t.equal(key({ url: '/items?a=1&&b=2' }), key({ url: '/items?b=2&a=1' }), 'empty pairs do not matter')
  t.not(key({ url: '/items?a=1&b=2' }), key({ url: '/items?a=1&b=3' }), 'a different value is a different key')
  t.not(key({ url: '/items?a=1' }), key({ url: '/items' }), 'a query is part of the key')
  t.not(key({ url: '/items?a=1&b=2' }), key({ url: '/items?a=1b=2' }))
})

t.test('cacheKey: differs by path and by route id', async t => {
  t.not(key({ url: '/items/1' }), key({ url: '/items/2' }))
  t.not(key({ url: '/items/1?x=1' }), key({ url: '/items/2?x=1' }))
  t.not(key({ url: '/items/1' }, PUBLIC), key({ url: '/items/1' }, { ...PUBLIC, routeId: 'other' }))
  // Path and query cannot be confused with each other.
  t.not(key({ url: '/items?a' }), key({ url: '/items%3Fa' }))
})

t.test('cacheKey: a vary header\'s value is part of the key; other headers are not', async t => {
  const spec: KeySpec = { ...PUBLIC, vary: ['accept-language'] }
  const en = key({ url: '/items', headers: { 'accept-language': 'en' } }, spec)
  t.equal(en, key({ url: '/items', headers: { 'accept-language': 'en', 'user-agent': 'x' } }, spec), 'same value, same key')
  t.not(en, key({ url: '/items', headers: { 'accept-language': 'de' } }, spec), 'another value, another key')
  t.not(en, key({ url: '/items' }, spec), 'absent is its own value')
  t.equal(
    key({ url: '/items', headers: { 'accept-language': 'en' } }),
    key({ url: '/items', headers: { 'accept-language': 'de' } }),
    'without vary the header is ignored')
  const two: KeySpec = { ...PUBLIC, vary: ['accept-language', 'x-tenant'] }
  t.not(
    key({ url: '/items', headers: { 'accept-language': 'en', 'x-tenant': 'a' } }, two),
    key({ url: '/items', headers: { 'accept-language': 'en', 'x-tenant': 'b' } }, two))
})

t.test('cacheKey: the subject is part of the key only with scope user', async t => {
  t.equal(key({ url: '/me', sub: 'alice' }, PUBLIC), key({ url: '/me', sub: 'bob' }, PUBLIC), 'public: shared')
  t.equal(key({ url: '/me', sub: 'alice' }, PUBLIC), key({ url: '/me' }, PUBLIC), 'public: same as anonymous')
  t.not(key({ url: '/me', sub: 'alice' }, USER), key({ url: '/me', sub: 'bob' }, USER), 'user: one key per subject')
  t.equal(key({ url: '/me', sub: 'alice' }, USER), key({ url: '/me', sub: 'alice' }, USER), 'user: stable for one subject')
  t.not(key({ url: '/me', sub: 'alice' }, USER), key({ url: '/me', sub: 'alice' }, PUBLIC))
})

t.test('cacheKey: short and the same length whatever the URL', async t => {
  const short = key({ url: '/a' })
  const long = key({ url: '/a/' + 'x'.repeat(5000) + '?q=' + 'y'.repeat(5000) })
  t.match(short, /^[A-Za-z0-9_-]{43}$/)
  t.match(long, /^[A-Za-z0-9_-]{43}$/)
})

const TTL = 30_000

t.test('freshnessFor: only a 200 is stored', async t => {
  t.equal(freshnessFor(200, {}, 'public', TTL), TTL)
  for (const status of [201, 203, 204, 206, 301, 304, 404, 410, 500, 503]) {
    t.equal(freshnessFor(status, {}, 'public', TTL), 0, `${status} is not stored`)
  }
})

t.test('freshnessFor: no-store is never stored, whatever the scope', async t => {
  for (const cc of ['no-store', 'No-Store', 'public, no-store', 'max-age=60,no-store']) {
    t.equal(freshnessFor(200, { 'cache-control': cc }, 'public', TTL), 0, `public: ${cc}`)
    t.equal(freshnessFor(200, { 'cache-control': cc }, 'user', TTL), 0, `user: ${cc}`)
  }
})

t.test('freshnessFor: private is stored per user, not for everyone', async t => {
  for (const cc of ['private', 'private, max-age=600', 'max-age=600, Private']) {
    t.equal(freshnessFor(200, { 'cache-control': cc }, 'public', TTL), 0, `public: ${cc}`)
    t.equal(freshnessFor(200, { 'cache-control': cc }, 'user', TTL), TTL, `user: ${cc}`)
  }
})

t.test('freshnessFor: an answer that sets a cookie is never stored', async t => {
  t.equal(freshnessFor(200, { 'set-cookie': 'sid=1; HttpOnly' }, 'public', TTL), 0)
  t.equal(freshnessFor(200, { 'set-cookie': ['a=1', 'b=2'] }, 'user', TTL), 0)
  t.equal(freshnessFor(200, { 'set-cookie': 'sid=1', 'cache-control': 'public, max-age=60' }, 'public', TTL), 0)
})

t.test('freshnessFor: an upstream max-age or s-maxage shorter than the ttl wins; a longer one does not', async t => {
  t.equal(freshnessFor(200, { 'cache-control': 'max-age=5' }, 'public', TTL), 5000)
  t.equal(freshnessFor(200, { 'cache-control': 'public, max-age=5' }, 'user', TTL), 5000)
  t.equal(freshnessFor(200, { 'cache-control': 'max-age=600' }, 'public', TTL), TTL, 'the route ttl caps it')
  t.equal(freshnessFor(200, { 'cache-control': 'max-age=0' }, 'public', TTL), 0, 'max-age=0 is not stored')
  t.equal(freshnessFor(200, { 'cache-control': 's-maxage=2' }, 'public', TTL), 2000)
  t.equal(freshnessFor(200, { 'cache-control': 'max-age=600, s-maxage=2' }, 'public', TTL), 2000, 's-maxage is the shared cache\'s')
  t.equal(freshnessFor(200, { 'cache-control': 'max-age=2, s-maxage=20' }, 'public', TTL), 20_000, 's-maxage over max-age for a shared cache')
  t.equal(freshnessFor(200, { 'cache-control': 'public' }, 'public', TTL), TTL, 'no age given: the ttl')
  t.equal(freshnessFor(200, { 'content-type': 'text/plain' }, 'public', TTL), TTL)
})

t.test('freshnessFor: an answer that varies on a request header outside the key is not stored', async t => {
  t.equal(freshnessFor(200, { vary: 'Accept-Encoding' }, 'public', TTL), 0, 'the gzip variant is not everyone\'s')
  t.equal(freshnessFor(200, { vary: 'Accept-Encoding' }, 'public', TTL, ['accept-encoding']), TTL, 'unless the route varies on it too')
  t.equal(freshnessFor(200, { vary: 'accept-language, Origin' }, 'public', TTL, ['accept-language']), 0, 'every named header must be covered')
  t.equal(freshnessFor(200, { vary: 'accept-language, Origin' }, 'public', TTL, ['accept-language', 'origin']), TTL)
  t.equal(freshnessFor(200, { vary: '*' }, 'public', TTL, ['accept-language']), 0, 'Vary: * never')
  t.equal(freshnessFor(200, { vary: '' }, 'public', TTL), TTL, 'an empty Vary names nothing')
})

t.test('mayShare: what one client\'s request got may go to the requests that waited for it, unless it is that client\'s alone', async t => {
  t.equal(mayShare({ 'content-type': 'application/json' }, 'public'), true)
  t.equal(mayShare({ 'cache-control': 'max-age=0' }, 'public'), true, 'not storable is not the same as not shareable')
  t.equal(mayShare({ 'set-cookie': 'sid=1' }, 'public'), false, 'a session cookie is one client\'s')
  t.equal(mayShare({ 'set-cookie': 'sid=1' }, 'user'), false)
  t.equal(mayShare({ 'cache-control': 'no-store' }, 'user'), false)
  t.equal(mayShare({ 'cache-control': 'private' }, 'public'), false)
  t.equal(mayShare({ 'cache-control': 'private' }, 'user'), true, 'private is shared only between one user\'s own requests')
  t.equal(mayShare({ vary: 'accept-encoding' }, 'public'), false)
  t.equal(mayShare({ vary: 'accept-encoding' }, 'public', ['accept-encoding']), true)
})

t.test('storableHeaders: per-connection, per-response and per-client headers are not stored', async t => {
  const stored = storableHeaders({
    'content-type': 'application/json',
    etag: '"v1"',
    'cache-control': 'max-age=60',
    link: ['</a>; rel=a', '</b>; rel=b'],
    'x-custom': 7,
    connection: 'keep-alive',
    'keep-alive': 'timeout=5',
    'transfer-encoding': 'chunked',
    date: 'Thu, 01 Jan 2026 00:00:00 GMT',
    age: '10',
    'content-length': '123',
    'x-request-id': 'abc',
    'set-cookie': 'sid=1',
    missing: undefined,
  })
  t.same(stored, {
    'content-type': 'application/json',
    etag: '"v1"',
    'cache-control': 'max-age=60',
    link: ['</a>; rel=a', '</b>; rel=b'],
    'x-custom': '7',
  })
})
