// What the HTTP server answers before any route sees the request: parser
// errors, a slow client's timeout and framing RFC 9112 refuses, all as
// problem+json with a code. The real CLI (its server is the one that
// matters) and raw sockets, since a client library would not send these.
import t from 'tap'
import { connect } from 'node:net'
import { upstream } from '../helpers/upstream.js'
import { buildFromFiles } from '../helpers/gateway.js'
import { listen } from '../helpers/http.js'
import { buildIfStale, childEnv, type Test, startConfiguredCli } from '../helpers/cli.js'

t.before(buildIfStale)

interface Answer { status: number, headers: Record<string, string>, body: string, raw: string, at: number }

/** Writes raw bytes and reads until the gateway closes the connection (or the response is complete). */
async function exchange (port: number, raw: string | string[], opts: { keepOpen?: boolean } = {}): Promise<Answer> {
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let out = ''
    let at = 0
    const done = (): void => {
      const [head, ...rest] = out.split('\r\n\r\n')
      const [statusLine, ...lines] = head.split('\r\n')
      const headers: Record<string, string> = {}
      for (const l of lines) { const i = l.indexOf(':'); headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim() }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n'), raw: out, at })
    }
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => {
      if (out === '') at = Date.now()
      out += d
      // Kept-alive answers end at content-length: stop reading there.
      const m = /content-length: (\d+)/i.exec(out)
      const split = out.indexOf('\r\n\r\n')
      if (m !== null && split !== -1 && Buffer.byteLength(out) - Buffer.byteLength(out.slice(0, split + 4)) >= Number(m[1])) { socket.destroy(); done() }
    })
    socket.on('error', reject)
    socket.on('close', () => { if (out !== '' || !opts.keepOpen) done() })
    for (const part of Array.isArray(raw) ? raw : [raw]) socket.write(part)
  })
}

function checkProblem (t: Test, a: Answer, status: number, code: string): void {
  t.equal(a.status, status, `status ${status}`)
  t.match(a.headers['content-type'], /^application\/problem\+json/, 'problem+json')
  t.equal(a.headers.connection, 'close')
  const body = JSON.parse(a.body) as Record<string, unknown>
  t.match(body, { status, code, type: String, title: String, detail: String })
}

t.test('the real CLI answers parser errors, timeouts and bad framing as problem+json', async t => {
  const up = await upstream(t)
  const { port } = await startConfiguredCli(t, port => `server:
  host: 127.0.0.1
  port: ${port}
  headersTimeout: 1s
services:
  core:
    urls: [${up.url}]
policies:
  public: { auth: none }
routes:
  - id: pub
    path: /pub/*
    method: [GET, POST]
    policy: public
    proxy: { service: core }
`, childEnv({ LOG_LEVEL: 'error' }))

  t.test('a malformed header line: 400 BAD_REQUEST', async t => {
    checkProblem(t, await exchange(port, 'GET /pub/x HTTP/1.1\r\nHost: g\r\nthis is not a header\r\n\r\n'), 400, 'BAD_REQUEST')
  })
  t.test('a NUL in a header value: 400 BAD_REQUEST', async t => {
    checkProblem(t, await exchange(port, 'GET /pub/x HTTP/1.1\r\nHost: g\r\nX-A: a\0b\r\n\r\n'), 400, 'BAD_REQUEST')
  })
  t.test('headers over the limit: 431 HEADERS_TOO_LARGE', async t => {
    checkProblem(t, await exchange(port, `GET /pub/x HTTP/1.1\r\nHost: g\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`), 431, 'HEADERS_TOO_LARGE')
  })
  t.test('a slowloris client gets 408 REQUEST_TIMEOUT within a second of headersTimeout', async t => {
    const started = Date.now()
    // Part of the headers, then nothing.
    const a = await exchange(port, 'GET /pub/x HTTP/1.1\r\nHost: g\r\nX-Slow: 1\r\n', { keepOpen: true })
    checkProblem(t, a, 408, 'REQUEST_TIMEOUT')
    const elapsed = a.at - started
    t.ok(elapsed >= 1000 && elapsed < 2200, `408 after ${elapsed} ms (headersTimeout 1s)`)
  })
  t.test('a request line without an HTTP version: 400, not proxied', async t => {
    checkProblem(t, await exchange(port, 'GET /pub/x\r\nHost: g\r\n\r\n'), 400, 'BAD_REQUEST')
  })
  t.test('two Host headers: 400', async t => {
    checkProblem(t, await exchange(port, 'GET /pub/x HTTP/1.1\r\nHost: g\r\nhost: evil\r\n\r\n'), 400, 'BAD_REQUEST')
  })
  t.test('an invalid Host: 400', async t => {
    checkProblem(t, await exchange(port, 'GET /pub/x HTTP/1.1\r\nHost: evil example/path\r\n\r\n'), 400, 'BAD_REQUEST')
    checkProblem(t, await exchange(port, 'GET /pub/x HTTP/1.1\r\nHost: g:80:80\r\n\r\n'), 400, 'BAD_REQUEST')
    checkProblem(t, await exchange(port, 'GET /pub/x HTTP/1.1\r\nHost: a@b\r\n\r\n'), 400, 'BAD_REQUEST')
    // The grammar allows five digits; no TCP port is above 65535.
    checkProblem(t, await exchange(port, 'GET /pub/x HTTP/1.1\r\nHost: g:65536\r\n\r\n'), 400, 'BAD_REQUEST')
    checkProblem(t, await exchange(port, 'GET /pub/x HTTP/1.1\r\nHost: [::1]:99999\r\n\r\n'), 400, 'BAD_REQUEST')
  })
  t.test('no Host on HTTP/1.1: 400', async t => {
    checkProblem(t, await exchange(port, 'GET /pub/x HTTP/1.1\r\nX-A: 1\r\n\r\n'), 400, 'BAD_REQUEST')
  })
  t.test('none of the refused requests reached the upstream', async t => {
    t.equal(up.hits(), 0)
  })
  t.test('valid hosts still pass', async t => {
    for (const host of ['example.com', 'example.com:8080', '127.0.0.1:80', '[::1]:8080', 'xn--bcher-kva.example', 'a_b.local', 'g:65535', '[::ffff]', '[::abcd]:65535']) {
      const a = await exchange(port, `GET /pub/x HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
      t.equal(a.status, 200, host)
    }
    const old = await exchange(port, 'GET /pub/x HTTP/1.0\r\n\r\n')
    t.equal(old.status, 200, 'HTTP/1.0 without Host')
    t.equal(up.hits(), 10)
  })
  t.test('an answered connection still works for a later good request', async t => {
    const a = await exchange(port, 'GET /pub/ok HTTP/1.1\r\nHost: g\r\n\r\n')
    t.equal(a.status, 200)
  })
})

t.test('an app listening on its own answers parser errors as problem+json too', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, {
    'gateway.yaml': `services:
  core:
    urls: [${up.url}]
policies:
  public: { auth: none }
routes:
  - id: pub
    path: /pub/*
    policy: public
    proxy: { service: core }
`,
  })
  const port = await listen(app)
  checkProblem(t, await exchange(port, 'GET /pub/x HTTP/1.1\r\nHost: g\r\nbad header\r\n\r\n'), 400, 'BAD_REQUEST')
  checkProblem(t, await exchange(port, `GET /pub/x HTTP/1.1\r\nHost: g\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`), 431, 'HEADERS_TOO_LARGE')
  checkProblem(t, await exchange(port, 'GET /pub/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'), 400, 'BAD_REQUEST')
  t.equal(up.hits(), 0)
})
