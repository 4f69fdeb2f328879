// Proxy routes through a real gateway to real upstream servers: what reaches
// the upstream (method, path, query, body, headers) and what comes back
// (README "routes" and "Request handling").
import t from 'tap'
import { randomBytes } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { buildFromFiles, simpleConfig } from '../helpers/gateway.js'
import { upstream, type UpstreamHandler } from '../helpers/upstream.js'
import { listen, rawRequest } from '../helpers/http.js'

const ok: UpstreamHandler = (_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' })
  res.end('ok')
}

/** Headers the upstream saw, minus the ones the gateway or its HTTP client always add. */
function clientHeaders (h: IncomingHttpHeaders): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(h)) {
    if (!['host', 'connection', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id'].includes(k)) out[k] = v
  }
  return out
}

const USER_ROUTES = `
- id: user
  method: [GET, POST, PUT, PATCH, DELETE]
  path: /api/users/:id
  policy: public
  proxy: { service: backend, path: "/users/{params.id}/profile" }
`

t.test('method, filled path and query string reach the upstream', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, USER_ROUTES) })
  for (const method of ['GET', 'DELETE', 'POST', 'PUT', 'PATCH'] as const) {
    const res = await app.inject({ method, url: '/api/users/42?expand=orders&tag=a&tag=b&q=a%20b%2Fc' })
    t.equal(res.statusCode, 200, method)
    const seen = up.seen.at(-1)
    t.equal(seen?.method, method)
    t.equal(seen?.url, '/users/42/profile?expand=orders&tag=a&tag=b&q=a%20b%2Fc', `${method} path and raw query`)
  }
  t.equal(up.hits(), 5)
})

t.test('a JSON body is forwarded byte for byte, with its content-type', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, USER_ROUTES) })
  // Odd spacing, key order and escapes: a parse/re-serialize would change these bytes.
  const body = Buffer.from('{ "b":1,  "a" : "zoë \\u00e9 😀",\n"n": 1.50 }\n', 'utf8')
  for (const method of ['POST', 'PUT'] as const) {
    const res = await app.inject({ method, url: '/api/users/7', headers: { 'content-type': 'application/json; charset=utf-8' }, payload: body })
    t.equal(res.statusCode, 200)
    const seen = up.seen.at(-1)
    t.equal(seen?.method, method)
    t.same(seen?.body, body, `${method} body unchanged`)
    t.equal(seen?.headers['content-type'], 'application/json; charset=utf-8')
    t.equal(seen?.headers['content-length'], String(body.length))
  }
})

t.test('a binary body is forwarded byte for byte, with or without a content-type', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, USER_ROUTES) })
  const body = randomBytes(200 * 1024)
  const typed = await app.inject({ method: 'PUT', url: '/api/users/7', headers: { 'content-type': 'application/octet-stream' }, payload: body })
  t.equal(typed.statusCode, 200)
  t.ok(up.seen.at(-1)?.body.equals(body), 'octet-stream body unchanged')
  t.equal(up.seen.at(-1)?.headers['content-type'], 'application/octet-stream')

  const untyped = await app.inject({ method: 'POST', url: '/api/users/7', payload: body })
  t.equal(untyped.statusCode, 200)
  t.ok(up.seen.at(-1)?.body.equals(body), 'body without content-type unchanged')

  const image = await app.inject({ method: 'POST', url: '/api/users/7', headers: { 'content-type': 'image/png' }, payload: body })
  t.equal(image.statusCode, 200)
  t.ok(up.seen.at(-1)?.body.equals(body), 'image/png body unchanged')
  t.equal(up.hits(), 3)
})

t.test('a chunked request body is streamed through unchanged', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, USER_ROUTES) })
  const port = await listen(app)
  const chunks = [randomBytes(1000), Buffer.from('middle'), randomBytes(70_000), Buffer.from([0, 255, 0])]
  const res = await rawRequest(port, { method: 'POST', path: '/api/users/9', headers: { 'content-type': 'application/octet-stream' }, body: chunks })
  t.equal(res.status, 200)
  t.equal(up.hits(), 1)
  t.ok(up.seen[0].body.equals(Buffer.concat(chunks)), 'every chunk arrived, in order')
  t.equal(up.seen[0].headers['content-length'], undefined, 'no length was invented')
})

t.test('end-to-end headers are forwarded; hop-by-hop ones are dropped', async t => {
  const up = await upstream(t, ok)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, USER_ROUTES) })
  const res = await app.inject({
    method: 'GET',
    url: '/api/users/1',
    headers: {
      accept: 'application/json',
      'accept-language': 'de-CH',
      'user-agent': 'portico-test/1',
      cookie: 'a=1; b=2',
      'x-custom': 'kept',
      'if-none-match': '"v1"',
      connection: 'keep-alive, X-Drop-Me',
      'x-drop-me': 'named in Connection, so hop-by-hop',
      'keep-alive': 'timeout=5',
      te: 'trailers',
      upgrade: 'websocket',
      'proxy-authorization': 'Basic c2VjcmV0OnNlY3JldA==',
      'proxy-connection': 'keep-alive',
      trailer: 'x-checksum',
    },
  })
  t.equal(res.statusCode, 200)
  const seen = up.seen[0].headers
  t.same(clientHeaders(seen), {
    accept: 'application/json',
    'accept-language': 'de-CH',
    'user-agent': 'portico-test/1',
    cookie: 'a=1; b=2',
    'x-custom': 'kept',
    'if-none-match': '"v1"',
  })
  t.not(String(seen.connection).toLowerCase(), 'keep-alive, x-drop-me', 'the client\'s Connection header is not passed on')
})

t.test('client x-auth-* headers and authorization never reach the upstream', async t => {
  const up = await upstream(t, ok)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, USER_ROUTES) })
  const res = await app.inject({
    method: 'POST',
    url: '/api/users/1',
    headers: {
      authorization: 'Bearer secret-token',
      'x-auth-sub': 'admin',
      'x-auth-roles': 'admin,root',
      'x-auth-scopes': 'everything',
      'X-Auth-Tenant': 'acme',
      'x-auth-': 'empty suffix',
      'x-authentic': 'not an x-auth- header',
      'content-type': 'application/json',
    },
    payload: '{}',
  })
  t.equal(res.statusCode, 200)
  const names = Object.keys(up.seen[0].headers)
  t.same(names.filter(n => n.startsWith('x-auth-')), [], 'no x-auth-* header from the client')
  t.notOk(names.includes('authorization'), 'authorization is not forwarded')
  t.equal(up.seen[0].headers['x-authentic'], 'not an x-auth- header')
})

t.test('method-override headers never reach the upstream, whatever their case', async t => {
  // An upstream with method-override middleware: it would run the method a header names.
  const up = await upstream(t, (req, res) => {
    const h = req.headers
    const override = h['x-http-method-override'] ?? h['x-http-method'] ?? h['x-method-override']
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(String(override ?? req.method))
  })
  const app = await buildFromFiles(t, {
    'gateway.yaml': simpleConfig(up.url, `
- id: read-only
  method: GET
  path: /api/items/:id
  policy: public
  proxy: { service: backend, path: "/items/{params.id}" }
`),
  })
  const port = await listen(app)
  const spellings = ['X-HTTP-Method-Override', 'x-http-method-override', 'X-HTTP-Method', 'x-http-method', 'X-Method-Override', 'X-METHOD-OVERRIDE']
  for (const name of spellings) {
    const res = await rawRequest(port, { path: '/api/items/1', headers: { [name]: 'DELETE', connection: 'keep-alive' } })
    t.equal(res.status, 200, name)
    t.equal(res.body.toString(), 'GET', `${name}: the upstream ran a GET`)
  }
  // All three at once, and listed in Connection too.
  const res = await rawRequest(port, {
    path: '/api/items/1',
    headers: { 'x-http-method-override': 'DELETE', 'x-http-method': 'PUT', 'x-method-override': 'PATCH', connection: 'x-http-method' },
  })
  t.equal(res.body.toString(), 'GET')
  t.equal(up.hits(), spellings.length + 1)
  for (const seen of up.seen) {
    t.same(Object.keys(seen.headers).filter(n => /method/i.test(n)), [], 'no override header upstream')
    t.equal(seen.method, 'GET')
  }
})

t.test('x-forwarded-for, -proto and -host describe the client, not what it claims', async t => {
  const up = await upstream(t, ok)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, USER_ROUTES) })
  const port = await listen(app)
  const res = await rawRequest(port, {
    path: '/api/users/1',
    headers: { host: 'api.example.com:8443', 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example' },
  })
  t.equal(res.status, 200)
  const seen = up.seen[0].headers
  t.equal(seen['x-forwarded-for'], '127.0.0.1', 'trustProxy is off: the chain starts at the real peer')
  t.equal(seen['x-forwarded-proto'], 'http')
  t.equal(seen['x-forwarded-host'], 'api.example.com:8443')
  t.equal(seen.host, `127.0.0.1:${up.port}`, 'the upstream gets its own host')
})

t.test('the request id is sent upstream and returned to the client', async t => {
  const up = await upstream(t, ok)
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, USER_ROUTES) })
  const given = await app.inject({ url: '/api/users/1', headers: { 'x-request-id': 'client-id-1' } })
  t.equal(given.headers['x-request-id'], 'client-id-1')
  t.equal(up.seen[0].headers['x-request-id'], 'client-id-1')

  const made = await app.inject({ url: '/api/users/1' })
  const id = made.headers['x-request-id']
  t.match(id, /^[A-Za-z0-9._-]{1,128}$/)
  t.equal(up.seen[1].headers['x-request-id'], id, 'the generated id goes upstream too')
})

t.test('the response carries the gateway\'s request id even when the upstream sends its own', async t => {
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'x-request-id': 'upstream-made-this', 'content-type': 'text/plain' })
    res.end('ok')
  })
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, USER_ROUTES) })
  const res = await app.inject({ url: '/api/users/1', headers: { 'x-request-id': 'client-id-2' } })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['x-request-id'], 'client-id-2', 'the id the gateway logged and sent upstream')
})

t.test('the upstream status, headers and body come back unchanged', async t => {
  const teapot = Buffer.from('short and stout\n\u0000not json{', 'latin1')
  const up = await upstream(t, (_req, res) => {
    res.writeHead(418, 'I\'m a teapot', [
      ['content-type', 'text/x-teapot'],
      ['x-brew', 'earl grey'],
      ['cache-control', 'no-store'],
      ['set-cookie', 'a=1; Path=/; HttpOnly'],
      ['set-cookie', 'b=2; Path=/api; Secure'],
      ['set-cookie', 'c=3'],
    ])
    res.end(teapot)
  })
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, USER_ROUTES) })
  const res = await app.inject({ url: '/api/users/1' })
  t.equal(res.statusCode, 418)
  t.equal(res.headers['content-type'], 'text/x-teapot')
  t.equal(res.headers['x-brew'], 'earl grey')
  t.equal(res.headers['cache-control'], 'no-store')
  t.same(res.headers['set-cookie'], ['a=1; Path=/; HttpOnly', 'b=2; Path=/api; Secure', 'c=3'])
  t.ok(res.rawPayload.equals(teapot), 'body bytes unchanged')
})

t.test('upstream error statuses are passed through, not turned into gateway errors', async t => {
  const up = await upstream(t, (req, res) => {
    const status = Number(req.url?.split('/')[2])
    res.writeHead(status, { 'content-type': 'application/json', 'x-upstream': 'yes' })
    res.end(JSON.stringify({ upstream: status }))
  })
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, USER_ROUTES) })
  for (const status of [201, 400, 404, 409, 500, 502, 503]) {
    const res = await app.inject({ url: `/api/users/${status}` })
    t.equal(res.statusCode, status)
    t.equal(res.headers['x-upstream'], 'yes')
    t.equal(res.headers['content-type'], 'application/json')
    t.same(res.json(), { upstream: status })
  }
})

t.test('a 304 with its validators comes back without a body', async t => {
  const up = await upstream(t, (req, res) => {
    if (req.headers['if-none-match'] === '"v7"') { res.writeHead(304, { etag: '"v7"', 'cache-control': 'max-age=60' }); res.end(); return }
    res.writeHead(200, { etag: '"v7"', 'content-type': 'application/json' })
    res.end('{"v":7}')
  })
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, USER_ROUTES) })
  const fresh = await app.inject({ url: '/api/users/1' })
  t.equal(fresh.statusCode, 200)
  t.equal(fresh.headers.etag, '"v7"')
  const cached = await app.inject({ url: '/api/users/1', headers: { 'if-none-match': '"v7"' } })
  t.equal(cached.statusCode, 304)
  t.equal(cached.headers.etag, '"v7"')
  t.equal(cached.headers['cache-control'], 'max-age=60')
  t.equal(cached.body, '')
})

t.test('a binary response body comes back byte for byte', async t => {
  const blob = randomBytes(300 * 1024)
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    // Several writes: the gateway must stream them all, in order.
    res.write(blob.subarray(0, 1000))
    res.write(blob.subarray(1000, 100_000))
    res.end(blob.subarray(100_000))
  })
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, USER_ROUTES) })
  const port = await listen(app)
  const res = await rawRequest(port, { path: '/api/users/1' })
  t.equal(res.status, 200)
  t.ok(res.body.equals(blob), 'body bytes unchanged')
})

t.test('connection-specific upstream response headers are not passed to the client', async t => {
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { connection: 'x-hop', 'x-hop': 'between gateway and upstream', 'keep-alive': 'timeout=5', 'x-end': 'kept', 'content-type': 'text/plain' })
    res.end('fine')
  })
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, USER_ROUTES) })
  const res = await app.inject({ url: '/api/users/1' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['x-end'], 'kept')
  t.equal(res.headers['x-hop'], undefined)
  t.equal(res.headers['keep-alive'], undefined)
  t.equal(res.body, 'fine')
})

t.test('HEAD on a GET route is forwarded as HEAD', async t => {
  const up = await upstream(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '27', 'x-method': req.method ?? '' })
    res.end(req.method === 'HEAD' ? undefined : '{"a":"twenty-seven bytes!"}')
  })
  const app = await buildFromFiles(t, {
    'gateway.yaml': simpleConfig(up.url, `
- id: doc
  method: GET
  path: /api/docs/:id
  policy: public
  proxy: { service: backend, path: "/docs/{params.id}" }
`),
  })
  const port = await listen(app)
  const res = await rawRequest(port, { method: 'HEAD', path: '/api/docs/1?v=2' })
  t.equal(res.status, 200)
  t.equal(res.headers['x-method'], 'HEAD')
  t.equal(res.headers['content-type'], 'application/json')
  t.equal(res.headers['content-length'], '27', 'the length a GET would have')
  t.equal(res.body.length, 0)
  t.equal(up.hits(), 1)
  t.equal(up.seen[0].method, 'HEAD')
  t.equal(up.seen[0].url, '/docs/1?v=2')

  const post = await app.inject({ method: 'POST', url: '/api/docs/1' })
  t.equal(post.statusCode, 404, 'other methods are not added')
  t.equal(up.hits(), 1)
})

t.test('without proxy.path the incoming path and query are forwarded unchanged', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, {
    'gateway.yaml': simpleConfig(up.url, `
- id: things
  method: [GET, POST]
  path: /api/things/*
  policy: public
  proxy: { service: backend }
- id: exact
  path: /api/exact
  policy: public
  proxy: { service: backend }
`),
  })
  const a = await app.inject({ url: '/api/things/a/b%20c/d.json?x=1&y=%2F' })
  t.equal(a.statusCode, 200)
  t.equal(up.seen[0].url, '/api/things/a/b%20c/d.json?x=1&y=%2F')
  const b = await app.inject({ url: '/api/exact' })
  t.equal(b.statusCode, 200)
  t.equal(up.seen[1].url, '/api/exact')
})

t.test('without proxy.path, "." and ".." segments in the incoming path are refused', async t => {
  const up = await upstream(t, ok)
  const app = await buildFromFiles(t, {
    'gateway.yaml': simpleConfig(up.url, `
- id: things
  method: [GET, POST]
  path: /api/things/*
  policy: public
  proxy: { service: backend }
`),
  })
  const port = await listen(app)
  // Forwarded as is, these would reach /admin on any upstream that resolves dot segments.
  for (const path of ['/api/things/../../admin', '/api/things/%2e%2e/%2E%2E/admin', '/api/things/a/.%2e/b', '/api/things/./x', '/api/things/..?x=1']) {
    const res = await rawRequest(port, { path })
    t.equal(res.status, 400, path)
    t.equal(JSON.parse(res.body.toString()).code, 'BAD_REQUEST', path)
  }
  const post = await rawRequest(port, { method: 'POST', path: '/api/things/../../admin', headers: { 'content-type': 'application/json' }, body: Buffer.from('{}') })
  t.equal(post.status, 400)
  t.equal(up.hits(), 0, 'nothing reached the upstream')

  // Dots that are not whole segments are ordinary names.
  for (const path of ['/api/things/.well-known/x', '/api/things/a..b/...', '/api/things/v1.2/file.tar.gz?next=../x']) {
    const res = await rawRequest(port, { path })
    t.equal(res.status, 200, path)
    t.equal(up.seen.at(-1)?.url, path)
  }
})

t.test('a service URL with a base path prefixes every upstream path', async t => {
  const up = await upstream(t)
  const routes = `
- id: user
  path: /api/users/:id
  policy: public
  proxy: { service: backend, path: "/users/{params.id}" }
- id: raw
  path: /api/raw/*
  policy: public
  proxy: { service: backend }
`
  for (const base of ['/v2', '/v2/']) {
    const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(`${up.url}${base}`, routes) })
    const user = await app.inject({ url: '/api/users/5?full=1' })
    t.equal(user.statusCode, 200)
    t.equal(up.seen.at(-1)?.url, '/v2/users/5?full=1', `base ${base}, template`)
    const raw = await app.inject({ url: '/api/raw/x' })
    t.equal(raw.statusCode, 200)
    t.equal(up.seen.at(-1)?.url, '/v2/api/raw/x', `base ${base}, same path`)
  }
})

t.test('hostile path params never change the upstream path\'s shape', async t => {
  const up = await upstream(t, ok)
  const app = await buildFromFiles(t, {
    'gateway.yaml': simpleConfig(up.url, `
- id: x
  path: /api/x/:id
  policy: public
  proxy: { service: backend, path: "/x/{params.id}" }
- id: search
  path: /api/search/:term
  policy: public
  proxy: { service: backend, path: "/search/{params.term}?source=gateway" }
- id: files
  method: [GET, PUT]
  path: /api/files/*
  policy: public
  proxy: { service: backend, path: "/files/{params.*}" }
`),
  })
  const port = await listen(app)

  // Encoded: the value stays one segment (or stays data) upstream.
  const kept: Array<[string, string]> = [
    ['/api/x/%252e%252e', '/x/%252e%252e'],
    ['/api/x/a%3Fadmin%3D1', '/x/a%3Fadmin%3D1'],
    ['/api/x/a%23frag', '/x/a%23frag'],
    ['/api/x/z%C3%B6e?q=1', '/x/z%C3%B6e?q=1'],
    ['/api/files/a/b%20c/d.txt', '/files/a/b%20c/d.txt'],
    ['/api/files/a/%252e%252e/b', '/files/a/%252e%252e/b'],
  ]
  for (const [path, upstreamUrl] of kept) {
    const res = await rawRequest(port, { path })
    t.equal(res.status, 200, path)
    t.equal(up.seen.at(-1)?.url, upstreamUrl, path)
  }
  const hits = up.hits()

  // A value that would be a "." or ".." segment is refused before any upstream call,
  // and so is an encoded "/" (server.paths.escapedSlashes: reject by default).
  const refused = [
    '/api/x/..%2Fadmin',
    '/api/x/%2e%2e%2fadmin',
    '/api/search/..%2F..%2Fadmin',
    '/api/x/..',
    '/api/x/.',
    '/api/x/%2e%2e',
    '/api/x/%2E%2E?q=1',
    '/api/x/%2e',
    '/api/search/..',
    '/api/search/%2e%2e?source=client',
    '/api/files/..',
    '/api/files/a/../../admin',
    '/api/files/a/..%2F..%2Fadmin',
    '/api/files/a/%2e%2e/admin',
    '/api/files/./a',
    '/api/files/a/.',
  ]
  for (const path of refused) {
    const res = await rawRequest(port, { path })
    t.equal(res.status, 400, path)
    t.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8')
    t.equal(JSON.parse(res.body.toString()).code, 'BAD_REQUEST', path)
  }
  const put = await rawRequest(port, { method: 'PUT', path: '/api/files/%2e%2e/etc/passwd', headers: { 'content-type': 'text/plain' }, body: Buffer.from('x') })
  t.equal(put.status, 400)
  t.equal(up.hits(), hits, 'no refused request reached the upstream')
})

t.test('a 103 Early Hints from the upstream is not the answer: the client gets the final status, headers and body', async t => {
  const up = await upstream(t, (_req, res) => {
    res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' }, () => {
      res.writeHead(200, { 'content-type': 'application/json', 'x-final': 'yes' })
      res.end('{"ok":true}')
    })
  })
  const app = await buildFromFiles(t, { 'gateway.yaml': simpleConfig(up.url, USER_ROUTES) })
  const res = await app.inject({ method: 'GET', url: '/api/users/1' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['x-final'], 'yes', 'the final answer\'s headers')
  t.equal(res.headers.link, undefined, 'not the hint\'s')
  t.equal(res.body, '{"ok":true}')
  t.equal(up.hits(), 1)
})
