// `auth: apiKey` policies (the key's name is the identity, README "API
// keys"): missing or wrong keys are 401, the right key passes with its
// name as x-auth-sub and its roles, and the key itself never goes upstream.
import t from 'tap'
import { buildFromFiles } from '../../helpers/gateway.js'
import { upstream } from '../../helpers/upstream.js'
import { authGateway, expectProblem } from '../../helpers/auth.js'
import { now, signHs } from '../../helpers/jwt.js'

const ACME_KEY = 'acme-key-7f3c9a1e5b2d4f60a8c1'
const GLOBEX_KEY = 'globex-key-0d9e8f7a6b5c4d3e2f10'
const SECRET = 'hs-secret-for-tests-0123456789-abcdef'

function files (upstreamUrl: string, header?: string): Record<string, string> {
  return {
    'gateway.yaml': authGateway({
      upstream: upstreamUrl,
      auth: {
        jwt: { secret: SECRET, algorithms: ['HS256'] },
        apiKeys: {
          ...(header !== undefined ? { header } : {}),
          keys: {
            'partner-acme': { key: ACME_KEY, roles: ['partner'], scopes: ['catalog:read'] },
            'globex-readonly': { key: GLOBEX_KEY, roles: ['viewer'] },
          },
        },
      },
      policies: {
        partners: { auth: 'apiKey', roles: ['partner'] },
        keyed: { auth: 'apiKey' },
        user: { auth: 'jwt' },
      },
    }),
  }
}

t.test('missing, empty or wrong API keys are 401 and never reach the upstream', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, files(up.url))
  const cases: Array<[string, Record<string, string>]> = [
    ['no key', {}],
    ['empty key', { 'x-api-key': '' }],
    ['wrong key', { 'x-api-key': 'not-a-key-but-long-enough-0000' }],
    ['a prefix of the right key', { 'x-api-key': ACME_KEY.slice(0, -1) }],
    ['the right key plus a character', { 'x-api-key': `${ACME_KEY}x` }],
    ['the right key in different case', { 'x-api-key': ACME_KEY.toUpperCase() }],
    ['the key name instead of the key', { 'x-api-key': 'partner-acme' }],
    ['the right key in another header', { 'x-apikey': ACME_KEY }],
    ['the right key as a bearer token', { authorization: `Bearer ${ACME_KEY}` }],
    ['a valid JWT instead of a key', { authorization: `Bearer ${signHs({ sub: 'alice', roles: ['partner'], exp: now() + 600 }, SECRET)}` }],
  ]
  for (const [name, headers] of cases) {
    for (const path of ['/partners', '/keyed']) {
      const res = await app.inject({ method: 'GET', url: path, headers })
      expectProblem(t, res, 401, 'UNAUTHENTICATED', `${path} ${name}`)
      t.ok(res.headers['www-authenticate'] !== undefined, `${path} ${name}: www-authenticate challenge`)
      const sent = Object.values(headers)[0]
      if (sent !== undefined && sent.length >= 6) t.notOk(res.body.includes(sent), `${path} ${name}: presented key not echoed`)
      t.notOk(res.body.includes(ACME_KEY) || res.body.includes(GLOBEX_KEY), `${path} ${name}: no configured key in the body`)
    }
  }
  t.equal(up.hits(), 0)

  // Control: the right key passes.
  t.equal((await app.inject({ method: 'GET', url: '/partners', headers: { 'x-api-key': ACME_KEY } })).statusCode, 200)
  t.equal(up.hits(), 1)
})

t.test('the right key passes: the key name is x-auth-sub, its roles and scopes follow, the key stays at the gateway', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, files(up.url))
  const res = await app.inject({
    method: 'POST',
    url: '/partners',
    headers: { 'x-api-key': ACME_KEY, 'x-auth-sub': 'evil', 'x-auth-roles': 'admin', 'content-type': 'application/json' },
    payload: '{"q":1}',
  })
  t.equal(res.statusCode, 200)
  t.equal(up.hits(), 1)
  const h = up.seen[0].headers
  t.equal(h['x-auth-sub'], 'partner-acme', 'the key name is the identity')
  t.equal(h['x-auth-roles'], 'partner')
  t.equal(h['x-auth-scopes'], 'catalog:read')
  t.equal(h['x-api-key'], undefined, 'the API key header is not forwarded')
  for (const [name, value] of Object.entries(h)) {
    t.notOk(String(value).includes(ACME_KEY), `the key value is not in upstream header ${name}`)
  }
  t.notOk(up.seen[0].body.toString().includes(ACME_KEY))
})

t.test('a key without the required role is 403 FORBIDDEN; with no role required it passes', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, files(up.url))
  const denied = await app.inject({ method: 'GET', url: '/partners', headers: { 'x-api-key': GLOBEX_KEY } })
  const body = expectProblem(t, denied, 403, 'FORBIDDEN')
  t.match(String(body.detail), /partner/, 'names the missing role')
  t.notOk(denied.body.includes(GLOBEX_KEY), 'key not echoed')
  t.equal(up.hits(), 0)

  const open = await app.inject({ method: 'GET', url: '/keyed', headers: { 'x-api-key': GLOBEX_KEY } })
  t.equal(open.statusCode, 200)
  t.equal(up.seen[0]?.headers['x-auth-sub'], 'globex-readonly')
  t.equal(up.seen[0]?.headers['x-auth-roles'], 'viewer')
  t.equal(up.seen[0]?.headers['x-api-key'], undefined)
})

t.test('a configured header name is matched case-insensitively and not forwarded', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, files(up.url, 'X-Partner-Key'))
  expectProblem(t, await app.inject({ method: 'GET', url: '/partners', headers: { 'x-api-key': ACME_KEY } }), 401, 'UNAUTHENTICATED', 'default header name no longer used')
  const res = await app.inject({ method: 'GET', url: '/partners', headers: { 'X-Partner-Key': ACME_KEY } })
  t.equal(res.statusCode, 200)
  t.equal(up.seen[0]?.headers['x-auth-sub'], 'partner-acme')
  t.equal(up.seen[0]?.headers['x-partner-key'], undefined, 'the configured key header is not forwarded')
  t.equal(up.hits(), 1)
})

t.test('an API key sent to a route of another policy is not forwarded either', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, files(up.url))
  const token = signHs({ sub: 'alice', iat: now(), exp: now() + 60 }, SECRET)
  const res = await app.inject({ method: 'GET', url: '/user', headers: { authorization: `Bearer ${token}`, 'x-api-key': ACME_KEY } })
  t.equal(res.statusCode, 200)
  t.equal(up.seen[0]?.headers['x-auth-sub'], 'alice')
  t.equal(up.seen[0]?.headers['x-api-key'], undefined, 'the key header is a credential on every route')
})
