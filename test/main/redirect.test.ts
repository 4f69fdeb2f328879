// server.redirectHttpPort: a plain listener answering every request with 308
// to https://<Host's name>[:<TLS port unless 443>]<path and query>. Hostile
// Host values (missing, repeated, userinfo, slashes, bad characters, an
// empty name before a port) get 400 problem+json, never a location that
// points elsewhere. The function alone, then the real CLI over raw sockets.
import t from 'tap'
import { connect } from 'node:net'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { redirectLocation } from '../../src/main/redirect-listener.js'
import { GatewayError } from '../../src/util/errors.js'
import { upstream } from '../helpers/upstream.js'
import { buildIfStale, childEnv, freePort, startCli } from '../helpers/cli.js'
import { serverPki } from '../helpers/certs.js'
import { curl } from '../helpers/https.js'

t.before(buildIfStale)

t.test('where a request is sent', async t => {
  const cases: Array<[string, string[], number, string]> = [
    ['/a/b?x=1&y=2', ['api.example.com'], 443, 'https://api.example.com/a/b?x=1&y=2'],
    ['/a', ['api.example.com:80'], 443, 'https://api.example.com/a'],
    ['/a', ['API.Example.COM:8081'], 8443, 'https://api.example.com:8443/a'],
    ['/a', ['127.0.0.1:8081'], 8443, 'https://127.0.0.1:8443/a'],
    ['/a', ['[::1]:8081'], 8443, 'https://[::1]:8443/a'],
    ['/a', ['example.com.'], 443, 'https://example.com./a'],
    ['//evil.example/x', ['good.example'], 443, 'https://good.example//evil.example/x'],
    ['/\\evil.example', ['good.example'], 443, 'https://good.example/\\evil.example'],
    ['/caf\u00c3\u00a9 x', ['good.example'], 443, 'https://good.example/caf%C3%A9%20x'],
    ['http://good.example:8081/p?q', [], 8443, 'https://good.example:8443/p?q'],
    ['http://good.example?q', ['ignored.example'], 443, 'https://good.example/?q'],
  ]
  for (const [target, hosts, port, expected] of cases) {
    t.equal(redirectLocation(target, hosts, port), expected, `${target} (Host ${hosts.join(' + ') || 'none'})`)
  }
})

t.test('hostile Host values and targets: 400, never a location', async t => {
  const bad: Array<[string, string[]]> = [
    ['/a', []],
    ['/a', ['']],
    ['/a', [':8081']],
    ['/a', ['good.example', 'evil.example']],
    ['/a', ['evil.example@good.example']],
    ['/a', ['good.example/evil']],
    ['/a', ['good.example\\evil']],
    ['/a', ['good.example:8081:1']],
    ['/a', ['good.example:99999999']],
    ['/a', ['-bad.example']],
    ['/a', ['under_score.example']],
    ['/a', ['evil.example%2F']],
    ['/a', ['[::1']],
    ['/a', ['[not-an-ip]']],
    ['/a', ['a'.repeat(64) + '.example']],
    ['/a', ['good.example#frag']],
    ['/a', ['good example']],
    ['*', ['good.example']],
    ['evil.example/a', ['good.example']],
    ['http:///a', ['good.example']],
    ['http://evil@good.example/a', []],
  ]
  for (const [target, hosts] of bad) {
    const out = redirectLocation(target, hosts, 8443)
    t.ok(out instanceof GatewayError && out.status === 400 && out.code === 'BAD_REQUEST', `${target} with Host ${JSON.stringify(hosts)} → 400`)
  }
})

/** Sends raw bytes to the port and reads the whole answer (the server closes, or the header block ends with a body length of 0). */
async function raw (port: number, text: string): Promise<{ status: number, headers: Record<string, string>, body: string }> {
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => { socket.write(text) })
    let data = ''
    const done = (): void => {
      const [head, ...rest] = data.split('\r\n\r\n')
      const lines = head.split('\r\n')
      const headers: Record<string, string> = {}
      for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim()
      resolve({ status: Number(lines[0].split(' ')[1]), headers, body: rest.join('\r\n\r\n') })
    }
    socket.setEncoding('utf8').on('data', (c: string) => {
      data += c
      // A 308 has content-length 0: complete once the header block is.
      if (/^HTTP\/1\.1 308/.test(data) && data.includes('\r\n\r\n')) { socket.destroy(); done() }
    })
    socket.on('end', done)
    socket.on('error', reject)
  })
}

t.test('the real listener: 308 for every method, 400 problem+json for hostile framing, TLS port alongside', async t => {
  const up = await upstream(t)
  const dir = t.testdir()
  const { ca } = serverPki(dir)
  const [port, redirectPort] = [await freePort(), await freePort()]
  writeFileSync(join(dir, 'gateway.yaml'), `server:
  host: 127.0.0.1
  port: ${port}
  tls: { cert: ./server.crt, key: ./server.key }
  redirectHttpPort: ${redirectPort}
services:
  backend: { urls: [${up.url}] }
policies:
  public: { auth: none }
routes:
  - { id: r, path: /r, policy: public, proxy: { service: backend } }
`)
  const gw = startCli(t, ['start', '--config', join(dir, 'gateway.yaml')], childEnv())
  const ready = await gw.waitForLine(/^portico listening on /)
  t.match(ready, `https://127.0.0.1:${port}, http://127.0.0.1:${redirectPort} (redirects to https)`)

  for (const method of ['GET', 'HEAD', 'POST', 'DELETE', 'OPTIONS']) {
    const res = await raw(redirectPort, `${method} /r?x=1 HTTP/1.1\r\nHost: localhost:${redirectPort}\r\ncontent-length: 0\r\n\r\n`)
    t.equal(res.status, 308, `${method}: 308`)
    t.equal(res.headers.location, `https://localhost:${port}/r?x=1`, `${method}: to the TLS port, the Host's own port dropped`)
  }
  // curl follows it to the TLS port and gets the route's answer.
  const followed = await curl(['-L', '--cacert', ca.cert, '-o', '/dev/null', '-w', '%{http_code} %{url_effective}', `http://localhost:${redirectPort}/r`])
  t.equal(followed.stdout, `200 https://localhost:${port}/r`, 'curl -L lands on https and the route answers')
  t.equal(up.hits(), 1, 'the plain request itself never reached the upstream')

  const hostile: Array<[string, string]> = [
    ['two Host headers', `GET /r HTTP/1.1\r\nHost: good.example\r\nHost: evil.example\r\n\r\n`],
    ['no Host (HTTP/1.0)', 'GET /r HTTP/1.0\r\n\r\n'],
    ['userinfo in Host', 'GET /r HTTP/1.1\r\nHost: evil.example@good.example\r\n\r\n'],
    ['empty name before a port', 'GET /r HTTP/1.1\r\nHost: :443\r\n\r\n'],
    ['asterisk target', 'OPTIONS * HTTP/1.1\r\nHost: good.example\r\n\r\n'],
  ]
  for (const [label, request] of hostile) {
    const res = await raw(redirectPort, request)
    t.equal(res.status, 400, `${label}: 400`)
    t.equal(res.headers.location, undefined, `${label}: no location`)
    t.match(res.headers['content-type'], /^application\/problem\+json/, `${label}: problem+json`)
    const body = JSON.parse(res.body) as { code: string, requestId: string }
    t.equal(body.code, 'BAD_REQUEST')
    t.equal(body.requestId, res.headers['x-request-id'])
  }
  const broken = await raw(redirectPort, 'GET /r HTTP/1.1\r\nHost: good.example\r\nBad Header\r\n\r\n')
  t.equal(broken.status, 400, 'a parser error is answered too')
  t.match(broken.headers['content-type'], /^application\/problem\+json/)
})
