// `Expect: 100-continue` is answered with 100 only for a request that passed
// authentication and its rate limit: a client is never invited to upload a
// body the gateway then refuses. Real CLI and raw sockets (a client library
// hides the interim 100).
import t from 'tap'
import { connect, type Socket } from 'node:net'
import { upstream } from '../helpers/upstream.js'
import { buildIfStale, childEnv, startConfiguredCli } from '../helpers/cli.js'
import { now, signHs } from '../helpers/jwt.js'

t.before(buildIfStale)

const SECRET = 'expect-continue-test-secret-0123456789'

/** A socket whose received text can be awaited by pattern. */
function rawClient (port: number): { socket: Socket, received: () => string, waitFor: (re: RegExp) => Promise<string> } {
  const socket = connect(port, '127.0.0.1')
  let text = ''
  const waiters: Array<{ re: RegExp, resolve: (s: string) => void, reject: (e: Error) => void }> = []
  socket.setEncoding('utf8')
  socket.on('data', (d: string) => {
    text += d
    for (const w of [...waiters]) if (w.re.test(text)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(text) }
  })
  socket.on('close', () => { for (const w of waiters.splice(0)) w.reject(new Error(`closed; got: ${text}`)) })
  socket.on('error', () => {})
  return {
    socket,
    received: () => text,
    waitFor: async re => re.test(text) ? text : await new Promise((resolve, reject) => waiters.push({ re, resolve, reject })),
  }
}

t.test('100 Continue only after auth and the rate limit', async t => {
  const up = await upstream(t)
  const { port } = await startConfiguredCli(t, port => `server:
  host: 127.0.0.1
  port: ${port}
auth:
  jwt: { secret: "${SECRET}", algorithms: [HS256] }
services:
  core:
    urls: [${up.url}]
policies:
  users: { auth: jwt }
routes:
  - id: upload
    path: /upload
    method: [POST]
    policy: users
    proxy: { service: core }
  - id: limited
    path: /limited
    method: [POST]
    policy: users
    rateLimit: { max: 1, window: 1m }
    proxy: { service: core }
`, childEnv({ LOG_LEVEL: 'error' }))
  const token = signHs({ sub: 'alice', exp: now() + 600 }, SECRET)
  const head = (path: string, auth: string): string =>
    `POST ${path} HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\nContent-Length: 11\r\nExpect: 100-continue\r\n${auth}\r\n`

  t.test('without a token: 401 and never a 100', async t => {
    const c = rawClient(port)
    c.socket.write(head('/upload', ''))
    const text = await c.waitFor(/\r\n\r\n\{.*\}$/s)
    c.socket.destroy()
    t.match(text, /^HTTP\/1\.1 401 /, 'the final answer comes first')
    t.notMatch(text, /100 Continue/i, 'no invitation to send the body')
    t.match(text, /"code":"UNAUTHENTICATED"/)
    t.equal(up.hits(), 0)
  })

  t.test('with a valid token: 100, then the body is proxied', async t => {
    const c = rawClient(port)
    c.socket.write(head('/upload', `Authorization: Bearer ${token}\r\n`))
    const interim = await c.waitFor(/^HTTP\/1\.1 100 Continue\r\n\r\n/)
    t.equal(interim, 'HTTP/1.1 100 Continue\r\n\r\n', 'the 100 arrives before any body was sent')
    c.socket.write('{"file":"x"}'.slice(0, 11))
    // The echo is streamed back chunked: read up to its last chunk.
    const text = await c.waitFor(/HTTP\/1\.1 200 OK[\s\S]*\r\n0\r\n\r\n$/)
    c.socket.destroy()
    t.match(text, /"body":"\{\\"file\\":\\"x\\""/, 'the upstream got the body sent after the 100')
    t.equal(up.hits(), 1)
  })

  t.test('over the rate limit: 429 and never a 100', async t => {
    const first = rawClient(port)
    first.socket.write(head('/limited', `Authorization: Bearer ${token}\r\n`))
    await first.waitFor(/100 Continue/)
    first.socket.write('{"file":"x"'.slice(0, 11))
    await first.waitFor(/HTTP\/1\.1 200 /)
    first.socket.destroy()

    const second = rawClient(port)
    second.socket.write(head('/limited', `Authorization: Bearer ${token}\r\n`))
    const text = await second.waitFor(/\r\n\r\n\{.*\}$/s)
    second.socket.destroy()
    t.match(text, /^HTTP\/1\.1 429 /)
    t.notMatch(text, /100 Continue/i)
    t.equal(up.hits(), 2)
  })
})
