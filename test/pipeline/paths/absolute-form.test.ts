// Absolute-form request targets (`GET http://host/path HTTP/1.1`) over raw
// sockets, against a listening gateway and a real upstream that records the
// request-target it got: the upstream only ever sees origin-form, and a
// target naming another host than the Host header is refused.
import t from 'tap'
import { connect } from 'node:net'
import { join } from 'node:path'
import { buildFromFiles, writeConfigFiles } from '../../helpers/gateway.js'
import { upstream } from '../../helpers/upstream.js'
import { listen } from '../../helpers/http.js'
import { startGateway } from '../../../src/main/server.js'

interface RawAnswer { status: number, headers: string, body: string }

/** Writes the bytes as they are, reads until the server closes (every request says connection: close). */
async function send (port: number, bytes: string): Promise<RawAnswer> {
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', reject)
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('latin1')
      const split = text.indexOf('\r\n\r\n')
      const head = split === -1 ? text : text.slice(0, split)
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), headers: head, body: split === -1 ? '' : text.slice(split + 4) })
    })
    socket.write(bytes)
  })
}

function config (upstreamUrl: string, server = ''): string {
  return `${server}services:
  backend: { urls: [${upstreamUrl}], timeout: 2s }
policies:
  public: { auth: none }
routes:
  - id: pub
    path: /pub/*
    policy: public
    proxy: { service: backend }
`
}

function problemCode (a: RawAnswer): unknown {
  return (JSON.parse(a.body.slice(a.body.indexOf('{'), a.body.lastIndexOf('}') + 1)) as { code?: unknown }).code
}

t.test('an absolute-form target whose authority is the Host is forwarded in origin-form', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': config(up.url) })
  const port = await listen(app)
  const cases: Array<[string, string, string]> = [
    ['http://g/pub/abs', 'g', '/pub/abs'],
    ['http://G:80/pub//abs?x=1&y=//', 'g', '/pub/abs?x=1&y=//'],
    [`http://127.0.0.1:${port}/pub/here`, `127.0.0.1:${port}`, '/pub/here'],
  ]
  for (const [target, host, forwarded] of cases) {
    const a = await send(port, `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
    t.equal(a.status, 200, target)
    t.equal(up.seen.at(-1)?.url, forwarded, `${target} reaches the upstream as ${forwarded}`)
    t.equal(up.seen.at(-1)?.headers.host, `127.0.0.1:${up.port}`, 'the upstream gets its own Host, as for any request')
  }
})

t.test('an absolute-form target naming another host is refused with 400 and never forwarded', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': config(up.url) })
  const port = await listen(app)
  const refused = [
    ['http://other-host/pub/abs', 'g'],
    ['http://g:8080/pub/abs', 'g'],
    ['http://g.evil/pub/abs', 'g'],
    ['http://user@g/pub/abs', 'g'],
    ['http://g/pub/../admin', 'g'],
    ['ftp://g/pub/abs', 'g'],
  ]
  for (const [target, host] of refused) {
    const a = await send(port, `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
    t.equal(a.status, 400, target)
    t.match(a.headers, /content-type: application\/problem\+json/i, `${target}: problem+json`)
    t.equal(problemCode(a), 'BAD_REQUEST', `${target}: code`)
  }
  // Asterisk-form is only for OPTIONS to the server itself; there is nothing to route.
  const star = await send(port, 'OPTIONS * HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n')
  t.equal(star.status, 400, 'OPTIONS *')
  t.equal(up.hits(), 0, 'the upstream saw none of them')
})

t.test('the process\'s own server (src/main/server.ts) applies the same rules', async t => {
  const up = await upstream(t)
  const dir = writeConfigFiles({ 'gateway.yaml': config(up.url, 'server: { host: 127.0.0.1, port: 0 }\n') })
  const saved = process.env.LOG_LEVEL
  process.env.LOG_LEVEL = 'silent'
  const gw = await startGateway({ configFile: join(dir, 'gateway.yaml'), demo: false })
  if (saved === undefined) delete process.env.LOG_LEVEL
  else process.env.LOG_LEVEL = saved
  t.teardown(gw.stop)
  const port = Number(new URL(gw.addresses[0]).port)

  const other = await send(port, 'GET http://other-host/pub/abs HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n')
  t.equal(other.status, 400)
  t.equal(problemCode(other), 'BAD_REQUEST')
  const same = await send(port, 'GET http://g/pub//abs HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n')
  t.equal(same.status, 200)
  const backslash = await send(port, 'GET /pub/a\\b HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n')
  t.equal(backslash.status, 400)
  t.same(up.seen.map(s => s.url), ['/pub/abs'], 'only the matching absolute-form reached the upstream, in origin-form')
})
