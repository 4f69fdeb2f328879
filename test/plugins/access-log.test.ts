// The access log (plugins/access-log.ts): one JSON line per request with the
// request id, route, method, path without the query, status and duration,
// and `sub` once a policy authenticated the request. Never the token, the
// API key or the query string, whatever the client sends.
import t from 'tap'
import { Writable } from 'node:stream'
import { join } from 'node:path'
import { pino } from 'pino'
import { loadConfig } from '../../src/config/index.js'
import { buildGateway } from '../../src/gateway/app.js'
import { writeConfigFiles } from '../helpers/gateway.js'
import { startUpstream } from '../helpers/upstream.js'
import { signHs, now } from '../helpers/jwt.js'
import { connect } from 'node:net'
import { listen } from '../helpers/http.js'
import { waitFor } from '../helpers/wait.js'

const SECRET = 'access-log-test-secret-0123456789abcdef'
const API_KEY = 'acme-access-log-key-0123456789abcdef'

type Line = Record<string, unknown>

/** The gateway for `file`, its log lines (JSON, at info) collected as they are written. */
async function gatewayWithLog (t: { teardown: (fn: () => unknown) => void }, file: string): Promise<{ app: Awaited<ReturnType<typeof buildGateway>>, lines: Line[] }> {
  const lines: Line[] = []
  const out = new Writable({
    write (chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l !== '') lines.push(JSON.parse(l) as Line)
      cb()
    },
  })
  const app = await buildGateway(loadConfig(file, {}).config, { logger: pino({ level: 'info' }, out) })
  t.teardown(async () => { await app.close() })
  return { app, lines }
}

t.test('access-log lines carry sub for authenticated requests, never a credential', async t => {
  const up = await startUpstream()
  t.teardown(up.close)
  const dir = writeConfigFiles({
    'gateway.yaml': `auth:
  jwt: { secret: ${SECRET}, algorithms: [HS256] }
  apiKeys:
    keys:
      partner-acme: { key: ${API_KEY}, roles: [partner] }
services:
  backend: { urls: [${up.url}] }
policies:
  public: { auth: none }
  user: { auth: jwt }
  partners: { auth: apiKey, roles: [partner] }
routes:
  - { id: open, path: /open, policy: public, proxy: { service: backend } }
  - { id: me, path: /me, policy: user, proxy: { service: backend } }
  - { id: partner, path: /partner, policy: partners, proxy: { service: backend } }
`,
  })
  const { app, lines } = await gatewayWithLog(t, join(dir, 'gateway.yaml'))
  const token = signHs({ sub: 'bob', exp: now() + 600 }, SECRET)

  const requests = [
    { url: '/me?access_token=q-secret', headers: { authorization: `Bearer ${token}` }, sub: 'bob', status: 200 },
    { url: '/partner', headers: { 'x-api-key': API_KEY }, sub: 'partner-acme', status: 200 },
    { url: '/open', headers: { authorization: `Bearer ${token}` }, sub: undefined, status: 200 },
    { url: '/me', headers: { authorization: 'Bearer not.a.token' }, sub: undefined, status: 401 },
  ]
  for (const r of requests) {
    const res = await app.inject({ url: r.url, headers: r.headers })
    t.equal(res.statusCode, r.status, r.url)
    const line = lines.filter(l => l.msg === 'request').find(l => l.requestId === res.headers['x-request-id'])
    if (line === undefined) { t.fail(`no access-log line for ${r.url}`); continue }
    t.equal(line.sub, r.sub, `${r.url} (${r.status}): sub ${String(r.sub)}`)
    if (r.sub === undefined) t.notOk('sub' in line, `${r.url}: no sub key when nobody was authenticated`)
    t.match(line, { route: r.url.slice(1).split('?')[0], method: 'GET', status: r.status }, `${r.url}: route, method, status`)
    t.equal(line.path, r.url.split('?')[0], `${r.url}: the path, without the query`)
  }
  const all = lines.map(l => JSON.stringify(l)).join('\n')
  t.notMatch(all, token, 'the token is never logged')
  t.notMatch(all, API_KEY, 'the API key is never logged')
  t.notMatch(all, 'q-secret', 'the query string is never logged')
})

t.test('a client that hangs up before its answer gets a line with status 499', async t => {
  let held = 0
  const up = await startUpstream(() => { held++ }) // never answers; the gateway cancels the call
  t.teardown(up.close)
  const dir = writeConfigFiles({
    'gateway.yaml': `services:
  backend: { urls: [${up.url}], timeout: 30s }
policies:
  public: { auth: none }
routes:
  - { id: slow, path: /slow, policy: public, proxy: { service: backend } }
`,
  })
  const { app, lines } = await gatewayWithLog(t, join(dir, 'gateway.yaml'))
  const port = await listen(app)
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await new Promise<void>(resolve => socket.once('connect', resolve))
  socket.write('GET /slow?token=q-secret HTTP/1.1\r\nHost: g\r\n\r\n')
  await waitFor(() => held === 1, { message: 'the request reached the upstream' })
  socket.destroy()
  await waitFor(() => lines.some(l => l.msg === 'request'), { timeout: 5000, message: 'an access-log line for the hang-up' })
  const line = lines.find(l => l.msg === 'request')
  t.match(line, { route: 'slow', method: 'GET', path: '/slow', status: 499 })
  t.notMatch(JSON.stringify(lines), 'q-secret', 'the query string is never logged')
})
