// The admin listener's config view and metrics: secrets never shown, metric
// labels are route ids, and the counters follow what clients saw.
import t from 'tap'
import { buildFromFiles } from '../helpers/gateway.js'
import { upstream } from '../helpers/upstream.js'
import { buildAdminApp } from '../../src/admin/admin-app.js'

const SECRET = 'jwt-secret-that-must-not-leak-0123456789'
const API_KEY = 'api-key-that-must-not-leak-0123'
const ADMIN_TOKEN = 'admin-token-that-must-not-leak'
const REDIS_PASSWORD = 'redis-password-that-must-not-leak'

async function setup (t: { teardown: (fn: () => unknown) => void }): Promise<{ gateway: Awaited<ReturnType<typeof buildFromFiles>>, admin: Awaited<ReturnType<typeof buildAdminApp>> }> {
  const up = await upstream(t, (req, res) => {
    res.writeHead(req.url === '/fail' ? 500 : 200, { 'content-type': 'application/json' })
    res.end('{"ok":true}')
  })
  const gateway = await buildFromFiles(t, {
    'gateway.yaml': `admin: { port: 0, token: "${ADMIN_TOKEN}" }
redis: { url: "redis://:${REDIS_PASSWORD}@127.0.0.1:1/0" }
cache: { timeout: 20ms }
auth:
  jwt: { secret: "${SECRET}", algorithms: [HS256] }
  apiKeys: { keys: { acme: { key: "${API_KEY}", roles: [partner] } } }
services:
  backend: { urls: [${up.url}], timeout: 1s }
policies:
  public: { auth: none }
  user: { auth: jwt, roles: [ops] }
  partners: { auth: apiKey }
routes:
  - { id: items, path: /items, policy: public, rateLimit: { max: 2, window: 1m }, proxy: { service: backend, path: /ok } }
  - { id: broken, path: /broken, policy: public, proxy: { service: backend, path: /fail } }
`,
  })
  const admin = await buildAdminApp(gateway)
  t.teardown(async () => { await admin.close() })
  return { gateway, admin }
}

t.test('GET /admin/config shows the effective config with every secret masked', async t => {
  const { admin } = await setup(t)
  const res = await admin.inject({ url: '/admin/config', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  t.equal(res.statusCode, 200)
  for (const secret of [SECRET, API_KEY, ADMIN_TOKEN, REDIS_PASSWORD]) t.notOk(res.body.includes(secret), 'a secret is not shown')
  const body = res.json()
  t.equal(body.auth.jwt.secret, '***')
  t.equal(body.auth.apiKeys.keys[0].name, 'acme')
  t.equal(body.auth.apiKeys.keys[0].key, '***')
  t.equal(body.redis.url, 'redis://:***@127.0.0.1:1/0')
  t.equal(body.routes[0].id, 'items')
  t.same(body.policies.user, { name: 'user', auth: 'jwt', roles: ['ops'], scopes: [], claims: {}, forwardAuthorization: false }, 'a policy shows its kind and rules')
  t.same(Object.keys(body.policies.partners), ['name', 'auth', 'roles', 'scopes', 'claims', 'forwardAuthorization'])
  t.same(body.routes[0].target, { kind: 'proxy', service: 'backend', path: '/ok' })
  t.equal(body.services.backend.timeout, 1000)
  t.equal((await admin.inject({ url: '/admin/config' })).statusCode, 401, 'the token is required')
})

t.test('GET /metrics counts requests by route id and status class, rate limits and upstream outcomes', async t => {
  const { gateway, admin } = await setup(t)
  for (let i = 0; i < 3; i++) await gateway.inject({ url: '/items' })
  await gateway.inject({ url: '/broken' })
  await gateway.inject({ url: '/nowhere/abc' })
  const res = await admin.inject({ url: '/metrics' })
  t.equal(res.statusCode, 200, '/metrics is outside /admin/* and needs no token')
  t.match(res.headers['content-type'], /text\/plain/)
  const text = res.body
  t.match(text, /portico_http_requests_total\{route="items",method="GET",status_class="2xx"\} 2/)
  t.match(text, /portico_http_requests_total\{route="items",method="GET",status_class="4xx"\} 1/)
  t.match(text, /portico_rate_limited_total\{route="items"\} 1/)
  t.match(text, /portico_http_requests_total\{route="broken",method="GET",status_class="5xx"\} 1/)
  t.match(text, /portico_http_requests_total\{route="unmatched",method="GET",status_class="4xx"\} 1/)
  t.notMatch(text, /nowhere/, 'raw paths never become label values')
  t.match(text, /portico_upstream_request_duration_seconds_count\{service="backend",outcome="ok"\} 2/)
  t.match(text, /portico_upstream_request_duration_seconds_count\{service="backend",outcome="5xx"\} 1/)
  t.match(text, /portico_breaker_state\{service="backend"\} 0/)
  t.match(text, /portico_redis_up 0/, 'the configured Redis does not answer')
  t.match(text, /portico_http_request_duration_seconds_bucket\{le="0.005",route="items"\}/)
  t.match(text, /portico_process_cpu_seconds_total/, 'process metrics too')
})
