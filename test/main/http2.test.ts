// HTTP/2 and HTTP/1.1 on one TLS port (server.http2, ALPN), through the real
// CLI: the same status, headers and body over both for a proxied route, an
// aggregate, a cache HIT and the gateway's own errors (404, 401, 429); what
// reaches the upstream is an ordinary HTTP/1.1 request (no pseudo-headers, no
// client x-auth-*); request bodies stream over h2; curl and h2load speak h2;
// SIGTERM ends an open h2 session with GOAWAY and exits 0.
import t from 'tap'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { connect as tlsConnect } from 'node:tls'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { upstream, type UpstreamHandler } from '../helpers/upstream.js'
import { buildIfStale, childEnv, freePort, startCli, type Gateway, type Test } from '../helpers/cli.js'
import { serverPki } from '../helpers/certs.js'
import { curl, h1, h2, h2session, type Answer } from '../helpers/https.js'

t.before(buildIfStale)

const pki = t.testdir()
const { ca, server } = serverPki(pki)
const files = { ca: ca.cert }

const answers: UpstreamHandler = (req, res, body) => {
  if (req.url?.startsWith('/stream') === true) {
    // No content-length: chunked from the upstream, and Node adds connection/keep-alive headers.
    res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': 'streamed' })
    res.write('one,')
    setImmediate(() => { res.end('two') })
    return
  }
  if (req.url?.startsWith('/echo-body') === true) {
    res.writeHead(201, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ length: body.length, sha: body.subarray(0, 8).toString('utf8') }))
    return
  }
  // Two set-cookie fields on proxied answers (a list over both protocols); none where the cache should store.
  const cookies = req.url?.startsWith('/p/') === true ? { 'set-cookie': ['a=1; Secure', 'b=2; Secure'] } : {}
  res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'yes', ...cookies })
  res.end(JSON.stringify({ path: req.url }))
}

async function startGateway (t: Test, backend: string): Promise<{ port: number, gw: Gateway }> {
  const port = await freePort()
  const dir = join(pki, `gw-${port}`)
  const yaml = `server:
  host: 127.0.0.1
  port: ${port}
  shutdownTimeout: 5s
  tls: { cert: ${server.cert}, key: ${server.key} }
  http2: true
auth:
  jwt: { secret: "an-hs256-secret-that-is-long-enough-for-tests" }
services:
  backend: { urls: [${backend}], timeout: 2s }
policies:
  public: { auth: none }
  user: { auth: jwt }
routes:
  - { id: proxied, path: /p/*, policy: public, proxy: { service: backend } }
  - { id: streamed, method: [GET], path: /stream, policy: public, proxy: { service: backend } }
  - { id: upload, method: [POST], path: /echo-body, policy: public, proxy: { service: backend } }
  - { id: merged, path: /agg, policy: public, aggregate: { one: { service: backend, path: /one }, two: { service: backend, path: /two, pick: [path] } } }
  - { id: cached, path: /cached, policy: public, cache: { ttl: 1m }, proxy: { service: backend } }
  - { id: private, path: /private, policy: user, proxy: { service: backend } }
  - { id: limited, path: /limited, policy: public, rateLimit: { max: 1, window: 1m }, proxy: { service: backend } }
`
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'gateway.yaml'), yaml)
  const gw = startCli(t, ['start', '--config', join(dir, 'gateway.yaml')], childEnv())
  await gw.waitForLine(/^portico listening on /)
  return { port, gw }
}

/** Headers that differ between HTTP/1.1 and h2 by nature, or per request. */
const PER_CONNECTION = new Set(['date', 'connection', 'keep-alive', 'transfer-encoding', 'x-request-id'])
const PER_MOMENT = new Set(['age', 'ratelimit-reset', 'retry-after'])

/** What must be the same over both protocols: status, headers (values except timing ones), body (minus requestId). */
function comparable (t: Test, a: Answer): { status: number, headers: Record<string, unknown>, body: unknown } {
  const headers: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(a.headers)) {
    if (PER_CONNECTION.has(name) || value === undefined) continue
    headers[name] = PER_MOMENT.has(name) ? '(present)' : value
  }
  let body: unknown = a.body
  try {
    const parsed = JSON.parse(a.body) as Record<string, unknown>
    if (parsed !== null && typeof parsed === 'object' && 'requestId' in parsed) {
      t.equal(parsed.requestId, a.headers['x-request-id'], 'problem requestId is the x-request-id header')
      delete parsed.requestId
    }
    body = parsed
  } catch { /* not JSON: compared as text */ }
  return { status: a.status, headers, body }
}

t.test('the same answers over h2 and HTTP/1.1', async t => {
  const up = await upstream(t, answers)
  const { port } = await startGateway(t, up.url)
  const session = await h2session(port, files)
  t.teardown(() => { session.close() })
  t.equal(session.alpnProtocol, 'h2', 'ALPN chose h2')

  // Fill the cache and use up the rate limit first, so both protocols see the same state.
  t.equal((await h1(port, '/cached', files)).headers['x-cache'], 'MISS')
  t.equal((await h1(port, '/limited', files)).status, 200)

  const table: Array<[string, string, Record<string, string>, number, Record<string, unknown>]> = [
    ['proxied', '/p/a/b?q=1', { 'x-auth-sub': 'forged', 'x-auth-cert-fingerprint': 'forged' }, 200, { 'x-upstream': 'yes', 'content-type': 'application/json', 'set-cookie': ['a=1; Secure', 'b=2; Secure'] }],
    ['streamed (chunked upstream)', '/stream', {}, 200, { 'x-upstream': 'streamed' }],
    ['aggregate', '/agg', {}, 200, { 'content-type': /^application\/json/ }],
    ['cache HIT', '/cached', {}, 200, { 'x-cache': 'HIT' }],
    ['404', '/nowhere', {}, 404, { 'content-type': /^application\/problem\+json/ }],
    ['401', '/private', {}, 401, { 'www-authenticate': /^Bearer / }],
    ['401 with a bad token', '/private', { authorization: 'Bearer not.a.jwt' }, 401, { 'www-authenticate': /error="invalid_token"/ }],
    ['429', '/limited', {}, 429, { 'ratelimit-limit': '1', 'ratelimit-remaining': '0' }],
  ]
  for (const [label, path, headers, status, expected] of table) {
    const overH1 = await h1(port, path, files, { headers })
    const overH2 = await h2(session, path, { headers })
    t.equal(overH2.status, status, `${label}: status`)
    t.match(overH2.headers, expected, `${label}: headers over h2`)
    t.same(comparable(t, overH2), comparable(t, overH1), `${label}: h2 answers as HTTP/1.1 does`)
    if (status >= 400) t.match(overH2.headers['content-type'], /^application\/problem\+json/, `${label}: problem+json`)
  }
  t.equal((await h2(session, '/stream')).body, 'one,two', 'a chunked upstream body arrives whole over h2')

  const hits = up.hits()
  const twoAuthorities = await h2(session, '/p/x', { headers: { ':authority': `localhost:${port}`, host: 'evil.example' } })
  t.equal(twoAuthorities.status, 400, 'a Host naming another authority than :authority is refused')
  t.match(JSON.parse(twoAuthorities.body), { code: 'BAD_REQUEST', detail: /another authority than :authority/ })
  const sameAuthority = await h2(session, '/p/x', { headers: { ':authority': `localhost:${port}`, host: `LOCALHOST:${port}` } })
  t.equal(sameAuthority.status, 200, 'a Host equal to :authority (any case) is fine')
  t.equal(up.hits(), hits + 1, 'the refused one reached no upstream')
  t.equal((await h2(session, '/p/x')).status, 200, 'the session goes on after a refused stream')

  // HTTP/1.1 on the h2 port goes through Node's HTTP/1.1 parser: its errors are problem+json as well.
  const broken = await new Promise<string>((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(ca.cert, 'utf8'), servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => {
      socket.write('GET /p/x HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n')
    })
    let data = ''
    socket.setEncoding('utf8').on('data', (c: string) => { data += c })
    socket.on('close', () => { resolve(data) })
    socket.on('error', reject)
  })
  t.match(broken, /^HTTP\/1\.1 400 [^]*content-type: application\/problem\+json[^]*"code":"BAD_REQUEST"/, 'a malformed HTTP/1.1 request on the h2 port: 400 problem+json')

  for (const seen of up.seen) {
    t.notOk(Object.keys(seen.headers).some(h => h.startsWith(':')), `${seen.url}: no pseudo-header reached the upstream`)
    t.equal(seen.headers['x-auth-sub'], undefined, `${seen.url}: no client x-auth-sub`)
    t.equal(seen.headers['x-auth-cert-fingerprint'], undefined, `${seen.url}: no client x-auth-cert-fingerprint`)
    t.equal(seen.headers['x-forwarded-proto'], 'https', `${seen.url}: x-forwarded-proto https`)
  }
  const proxied = up.seen.filter(s => s.url === '/p/a/b?q=1')
  t.equal(proxied.length, 2)
  t.equal(proxied[0].headers['x-forwarded-host'], `127.0.0.1:${port}`, 'over HTTP/1.1 the Host is the forwarded host')
  // node:http2 takes :authority from the TLS servername the session was opened with.
  t.equal(proxied[1].headers['x-forwarded-host'], `localhost:${port}`, 'over h2 the :authority is')
  t.equal(proxied[1].headers.host, up.url.slice('http://'.length), 'and the upstream gets its own Host')
})

t.test('request bodies stream over h2; curl and h2load speak h2', async t => {
  const up = await upstream(t, answers)
  const { port } = await startGateway(t, up.url)
  const session = await h2session(port, files)
  t.teardown(() => { session.close() })
  const big = 'x'.repeat(300_000)
  const posted = await h2(session, '/echo-body', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: big })
  t.equal(posted.status, 201)
  t.same(JSON.parse(posted.body), { length: big.length, sha: 'xxxxxxxx' }, 'the whole body reached the upstream')

  const viaCurl = await curl(['--http2', '--cacert', ca.cert, '-o', '/dev/null', '-w', '%{http_version} %{http_code}', `https://localhost:${port}/p/x`])
  t.equal(viaCurl.stdout, '2 200', 'curl --http2 negotiates h2')
  const viaCurl11 = await curl(['--http1.1', '--cacert', ca.cert, '-o', '/dev/null', '-w', '%{http_version} %{http_code}', `https://localhost:${port}/p/x`])
  t.equal(viaCurl11.stdout, '1.1 200', 'and HTTP/1.1 on the same port')

  const load = await new Promise<string>((resolve) => {
    execFile('h2load', ['-n', '200', '-c', '2', '-m', '10', `https://127.0.0.1:${port}/p/load`], { encoding: 'utf8' }, (_err, stdout) => { resolve(stdout) })
  })
  t.match(load, /requests: 200 total, 200 started, 200 done, 200 succeeded, 0 failed, 0 errored/, 'h2load: 200 multiplexed requests succeed')
  t.match(load, /status codes: 200 2xx/)
})

t.test('SIGTERM: an open h2 session gets GOAWAY, its stream in flight finishes, exit 0', async t => {
  let release: () => void = () => {}
  const slow = await upstream(t, (_req, res) => {
    release = () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"late":true}') }
  })
  const { port, gw } = await startGateway(t, slow.url)
  const session = await h2session(port, files)
  const goaway = new Promise<void>(resolve => { session.once('goaway', () => { resolve() }) })
  const inFlight = h2(session, '/p/slow')
  await new Promise<void>(resolve => { const check = (): void => { if (slow.hits() > 0) resolve(); else setTimeout(check, 10) }; check() })
  gw.child.kill('SIGTERM')
  await goaway
  t.pass('the client was told to go away')
  release()
  const res = await inFlight
  t.equal(res.status, 200, 'the stream in flight finished')
  t.same(JSON.parse(res.body), { late: true })
  t.equal((await gw.exited).code, 0)
  session.close()
})
