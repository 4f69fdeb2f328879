// The order of a route's stages (src/gateway/pipeline.ts), pinned from the
// outside: a plugin refusal before authentication, authentication before the
// rate limit (a refused request uses no count), the rate limit before
// validation, validation before any upstream call, and no `100 Continue` to a
// request that is refused. Real gateway, real upstream, raw sockets for the 100.
import t from 'tap'
import { connect } from 'node:net'
import type { AddressInfo } from 'node:net'
import type { InjectOptions } from 'fastify'
import { buildFromFiles } from '../helpers/gateway.js'
import { upstream } from '../helpers/upstream.js'
import { expectProblem } from '../helpers/auth.js'
import { now, signHs } from '../helpers/jwt.js'
import { routePipeline } from '../../src/gateway/pipeline.js'
import { sendContinue } from '../../src/pipeline/expect-continue.js'

const SECRET = 'pipeline-order-test-secret-0123456789'

function yaml (url: string): string {
  return `auth:
  jwt: { secret: "${SECRET}", algorithms: [HS256] }
services:
  core: { urls: [${url}], timeout: 2s }
policies:
  users: { auth: jwt }
routes:
  - id: orders
    path: /orders
    method: [POST]
    policy: users
    rateLimit: { max: 2, window: 1m, key: user }
    schema:
      body: { type: object, required: [qty], properties: { qty: { type: integer } } }
    plugins:
      ip-filter: { deny: [192.0.2.0/24] }
    proxy: { service: core }
`
}

const token = (): string => signHs({ sub: 'alice', exp: now() + 600 }, SECRET)
const post = (body: string, opts: { auth?: boolean, remoteAddress?: string } = {}): InjectOptions => ({
  method: 'POST',
  url: '/orders',
  headers: { 'content-type': 'application/json', ...(opts.auth === true ? { authorization: `Bearer ${token()}` } : {}) },
  payload: body,
  ...(opts.remoteAddress !== undefined ? { remoteAddress: opts.remoteAddress } : {}),
})

t.test('the route pipeline lists its hooks in stage order', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': yaml(up.url) })
  const p = routePipeline(app, app.routePlans[0]!)
  t.same(p.onRequest.map(h => h.name), ['pluginsOnRequest', 'authenticate'], 'plugin hooks, then authentication')
  t.equal(p.preParsing.length, 2, 'rate limit, then 100-continue')
  t.equal(p.preParsing[1], sendContinue, '100-continue comes last, after the rate limit')
})

t.test('ip-filter → auth → rate limit → validation → upstream', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': yaml(up.url) })

  expectProblem(t, await app.inject(post('{"qty":1}', { remoteAddress: '192.0.2.7' })), 403, 'FORBIDDEN', 'a denied address is refused before authentication')
  for (let i = 0; i < 3; i++) expectProblem(t, await app.inject(post('{"qty":1}')), 401, 'UNAUTHENTICATED', 'no token')

  const invalid = await app.inject(post('{"qty":"two"}', { auth: true }))
  expectProblem(t, invalid, 400, 'VALIDATION_FAILED', 'an invalid body is refused')
  t.equal(invalid.headers['ratelimit-remaining'], '1', 'the refusals before authentication used no count; the invalid body used one')
  t.equal(up.hits(), 0, 'no refused request reached the upstream')

  const ok = await app.inject(post('{"qty":1}', { auth: true }))
  t.equal(ok.statusCode, 200)
  t.equal(ok.headers['ratelimit-remaining'], '0')
  t.equal(up.hits(), 1)

  expectProblem(t, await app.inject(post('{"qty":"two"}', { auth: true })), 429, 'RATE_LIMITED', 'over the limit, an invalid body gets 429, not 400')
  expectProblem(t, await app.inject(post('{"qty":1}', { remoteAddress: '192.0.2.7' })), 403, 'FORBIDDEN', 'the filter still answers first')
  t.equal(up.hits(), 1)
})

t.test('Expect: 100-continue: no 100 to a refused request, a 100 to one that passed', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': yaml(up.url) })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as AddressInfo).port
  const exchange = async (auth: string, until: RegExp, body?: string): Promise<string> => await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => {
      text += d
      if (body !== undefined && text === 'HTTP/1.1 100 Continue\r\n\r\n') socket.write(body)
      if (until.test(text)) { socket.destroy(); resolve(text) }
    })
    socket.on('close', () => { reject(new Error(`closed; got: ${text}`)) })
    socket.write(`POST /orders HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\nContent-Length: 9\r\nExpect: 100-continue\r\n${auth}\r\n`)
  })
  const refused = await exchange('', /\r\n\r\n\{.*\}$/s)
  t.match(refused, /^HTTP\/1\.1 401 /, 'the final answer comes first')
  t.notMatch(refused, /100 Continue/i)
  const passed = await exchange(`Authorization: Bearer ${token()}\r\n`, /HTTP\/1\.1 200 OK[\s\S]*\r\n\r\n/, '{"qty":1}')
  t.match(passed, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/, 'the 100 came before the body was sent')
  t.equal(up.hits(), 1)
})
