// Path differentials against prefix policies, through a real listening
// gateway and a real upstream (raw paths: app.inject would normalise some
// of them itself). A public `/api/*` sits beside an admin-only
// `/api/admin/*`: no spelling of an admin path may reach the upstream
// without the admin token, and what is forwarded is the normalised path.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildFromFiles } from '../../helpers/gateway.js'
import { upstream, type Upstream } from '../../helpers/upstream.js'
import { listen, rawRequest, type RawResponse } from '../../helpers/http.js'
import { expectProblem } from '../../helpers/auth.js'
import { now, signHs } from '../../helpers/jwt.js'

type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const SECRET = 'paths-test-secret-0123456789-abcdef'
const ADMIN = signHs({ sub: 'root', roles: ['admin'], iat: now(), exp: now() + 600 }, SECRET)
const USER = signHs({ sub: 'bob', roles: ['user'], iat: now(), exp: now() + 600 }, SECRET)

interface Setup { port: number, up: Upstream, app: FastifyInstance }

async function gateway (t: Test, opts: { paths?: Record<string, unknown>, routes?: unknown[] } = {}): Promise<Setup> {
  const up = await upstream(t)
  const config = {
    ...(opts.paths !== undefined ? { server: { paths: opts.paths } } : {}),
    services: { backend: { urls: [up.url], timeout: '2s' } },
    auth: { jwt: { secret: SECRET, algorithms: ['HS256'] } },
    policies: { public: { auth: 'none' }, admin: { auth: 'jwt', roles: ['admin'] } },
    routes: opts.routes ?? [
      { id: 'public', method: ['GET', 'POST'], path: '/api/*', policy: 'public', proxy: { service: 'backend' } },
      { id: 'admin', method: ['GET', 'POST'], path: '/api/admin/*', policy: 'admin', proxy: { service: 'backend' } },
      { id: 'users', path: '/api/users', policy: 'admin', proxy: { service: 'backend' } },
    ],
  }
  const app = await buildFromFiles(t, { 'gateway.yaml': JSON.stringify(config) })
  return { port: await listen(app), up, app }
}

async function get (s: Setup, path: string, token?: string): Promise<RawResponse> {
  return await rawRequest(s.port, { path, headers: token !== undefined ? { authorization: `Bearer ${token}` } : {} })
}

function asInjected (res: RawResponse): { statusCode: number, headers: Record<string, unknown>, body: string } {
  return { statusCode: res.status, headers: res.headers, body: res.body.toString('utf8') }
}

/** What the upstream saw for the last request. */
function lastUrl (s: Setup): string | undefined {
  return s.up.seen.at(-1)?.url
}

t.test('every spelling of an admin path is refused (400) or needs the admin token (401); none reaches the upstream', async t => {
  const s = await gateway(t)
  const refused = [
    '/api/admin;/x', '/api/admin;x=1/x', '/api/admin/x;jsessionid=1',
    '/api/admin\\x', '/api/x\\..\\admin\\y', '/api/admin%5cx', '/api/admin%5Cx',
    '/api/admin%2fx', '/api/admin%2Fx', '/api%2fadmin/x',
    '/api/x/../admin/y', '/api/./admin/x', '/api/x/%2e%2e/admin/y', '/api/x/%2E%2E/admin/y',
    '/api/x/.%2e/admin/y', '/api/x/%2e./admin/y', '/api/%2e/admin/x', '/api/x/..',
    '/api/x/%2e%2e%2fadmin', '/api/admin/x#frag', '/api/admin%zz/x', '/api/admin%2/x',
  ]
  for (const path of refused) expectProblem(t, asInjected(await get(s, path)), 400, 'BAD_REQUEST', path)
  const needToken = [
    '/api//admin/x', '//api/admin/x', '/api/admin//x', '/api///admin///x',
    '/api/%61dmin/x', '/api/adm%69n/x', '/api/%61%64%6d%69%6e/x',
    '/api/admin', '/api/admin/', '/api/admin?x=1', '/api//admin', '/api/users', '/api/users/',
  ]
  for (const path of needToken) expectProblem(t, asInjected(await get(s, path)), 401, 'UNAUTHENTICATED', path)
  t.equal(s.up.hits(), 0, 'the upstream saw none of them')

  // A token without the admin role is refused at the root too.
  expectProblem(t, asInjected(await get(s, '/api/admin', USER)), 403, 'FORBIDDEN', 'root, user token')
  expectProblem(t, asInjected(await get(s, '/api//admin/x', USER)), 403, 'FORBIDDEN', 'merged, user token')
  t.equal(s.up.hits(), 0)
})

t.test('with the admin token, the normalised path is what the upstream gets; the query is passed as sent', async t => {
  const s = await gateway(t)
  const cases: Array<[string, string]> = [
    ['/api/admin/x', '/api/admin/x'],
    ['/api//admin//x', '/api/admin/x'],
    ['/api/%61dmin/x', '/api/admin/x'],
    ['/api/admin/a%20b%3Bc', '/api/admin/a%20b%3Bc'],
    ['/api/admin/x?next=/a//b;c\\d%2F', '/api/admin/x?next=/a//b;c\\d%2F'],
    ['/api/admin', '/api/admin'],
    ['/api/admin/', '/api/admin/'],
  ]
  for (const [sent, forwarded] of cases) {
    const res = await get(s, sent, ADMIN)
    t.equal(res.status, 200, sent)
    t.equal(lastUrl(s), forwarded, `${sent} → ${forwarded}`)
  }
  // Public paths still work, merged the same way.
  const res = await get(s, '/api//pub//x')
  t.equal(res.status, 200)
  t.equal(lastUrl(s), '/api/pub/x')
})

t.test('matching is case-sensitive by default: /api/ADMIN/x is a public path, forwarded as sent', async t => {
  const s = await gateway(t)
  const res = await get(s, '/api/ADMIN/x')
  t.equal(res.status, 200)
  t.equal(lastUrl(s), '/api/ADMIN/x')
  // %41 is "A": decoded before matching, so the router and the upstream read the same path.
  t.equal((await get(s, '/api/%41DMIN/x')).status, 200)
  t.equal(lastUrl(s), '/api/ADMIN/x')
})

t.test('caseInsensitive: true matches and forwards lower-cased, so /API/ADMIN/x needs the admin token', async t => {
  const s = await gateway(t, { paths: { caseInsensitive: true } })
  for (const path of ['/API/ADMIN/x', '/Api/Admin', '/api/%41DMIN/x', '/API/USERS/']) {
    expectProblem(t, asInjected(await get(s, path)), 401, 'UNAUTHENTICATED', path)
  }
  t.equal(s.up.hits(), 0)
  t.equal((await get(s, '/API/ADMIN/X?Q=KeepMe', ADMIN)).status, 200)
  t.equal(lastUrl(s), '/api/admin/x?Q=KeepMe', 'path lower-cased, query untouched')
})

t.test('escapedSlashes: keep forwards %2F and %5C untouched; dot segments they would form are still refused', async t => {
  const s = await gateway(t, { paths: { escapedSlashes: 'keep' } })
  t.equal((await get(s, '/api/files/a%2Fb%5cc')).status, 200)
  t.equal(lastUrl(s), '/api/files/a%2Fb%5cc')
  for (const path of ['/api/x%2F..%2Fadmin', '/api/x%5c..%5cadmin', '/api/x%2f%2e%2e%2fadmin']) {
    expectProblem(t, asInjected(await get(s, path)), 400, 'BAD_REQUEST', path)
  }
  t.equal(s.up.hits(), 1)
})

t.test('backslashes: keep and pathParameters: keep forward as sent, but never a dot segment they hide', async t => {
  const s = await gateway(t, { paths: { backslashes: 'keep', pathParameters: 'keep' } })
  t.equal((await get(s, '/api/a\\b;v=1/c')).status, 200)
  t.equal(lastUrl(s), '/api/a\\b;v=1/c')
  for (const path of ['/api/x\\..\\admin', '/api/..;/admin/x', '/api/x/.;a=b/y', '/api/x\\%2e%2e;x\\admin']) {
    expectProblem(t, asInjected(await get(s, path)), 400, 'BAD_REQUEST', path)
  }
  t.equal(s.up.hits(), 1)
})

t.test('mergeSlashes: false keeps "//" (documented), and {params.*} refuses the empty segment', async t => {
  const s = await gateway(t, {
    paths: { mergeSlashes: false },
    routes: [
      { id: 'pass', path: '/api/*', policy: 'public', proxy: { service: 'backend' } },
      { id: 'echo', path: '/echo/*', policy: 'public', proxy: { service: 'backend', path: '/e/{params.*}' } },
    ],
  })
  t.equal((await get(s, '/api//x')).status, 200)
  t.equal(lastUrl(s), '/api//x')
  for (const path of ['/echo/a//b', '/echo//a', '/echo/a//']) {
    expectProblem(t, asInjected(await get(s, path)), 400, 'BAD_REQUEST', path)
  }
  t.equal(s.up.hits(), 1)
})

t.test('by default "//" is merged before {params.*} is filled, and the route root fills it empty', async t => {
  const s = await gateway(t, {
    routes: [{ id: 'echo', path: '/echo/*', policy: 'public', proxy: { service: 'backend', path: '/e/{params.*}' } }],
  })
  const cases: Array<[string, string]> = [['/echo/a//b', '/e/a/b'], ['/echo', '/e'], ['/echo/', '/e'], ['/echo/a/', '/e/a/']]
  for (const [sent, forwarded] of cases) {
    t.equal((await get(s, sent)).status, 200, sent)
    t.equal(lastUrl(s), forwarded, `${sent} → ${forwarded}`)
  }
})

t.test('a declared route on the bare prefix keeps it; X/* then serves only below it', async t => {
  const s = await gateway(t, {
    routes: [
      { id: 'files', path: '/files/*', policy: 'admin', proxy: { service: 'backend' } },
      { id: 'files-root', path: '/files', policy: 'public', proxy: { service: 'backend' } },
    ],
  })
  t.equal((await get(s, '/files')).status, 200, 'the declared /files route, public')
  expectProblem(t, asInjected(await get(s, '/files/')), 401, 'UNAUTHENTICATED', '/files/ belongs to /files/*')
  expectProblem(t, asInjected(await get(s, '/files/x')), 401, 'UNAUTHENTICATED', '/files/x')
  t.equal(s.up.hits(), 1)
})

t.test('a route on X and X/* count against one rate limit (in-memory store)', async t => {
  const s = await gateway(t, {
    routes: [{ id: 'limited', path: '/rl/*', policy: 'public', rateLimit: { max: 2, window: '1m' }, proxy: { service: 'backend' } }],
  })
  t.equal((await get(s, '/rl')).status, 200)
  t.equal((await get(s, '/rl/x')).status, 200)
  expectProblem(t, asInjected(await get(s, '/rl')), 429, 'RATE_LIMITED', 'third request on the same route')
  t.equal(s.up.hits(), 2)
})

t.test('cached routes key on the normalised path: /c//x and /c/x share one entry', async t => {
  const s = await gateway(t, {
    paths: { caseInsensitive: true },
    routes: [{ id: 'cached', path: '/c/*', policy: 'public', cache: { ttl: '1m' }, proxy: { service: 'backend' } }],
  })
  for (const path of ['/c/x', '/c//x', '//c/x', '/C/X', '/c/%78']) t.equal((await get(s, path)).status, 200, path)
  t.equal(s.up.hits(), 1, 'one upstream call, four answers from the cache')
})

t.test('app.inject goes through the same normalisation (tests and embedders build requests this way)', async t => {
  const s = await gateway(t)
  for (const [url, status, code] of [
    ['/api//admin/x', 401, 'UNAUTHENTICATED'],
    ['/api/admin', 401, 'UNAUTHENTICATED'],
    ['/api/admin;x=1/y', 400, 'BAD_REQUEST'],
    ['/api/admin%2Fx', 400, 'BAD_REQUEST'],
  ] as const) {
    expectProblem(t, await s.app.inject({ method: 'GET', url }), status, code, url)
  }
  t.equal(s.up.hits(), 0)
  const res = await s.app.inject({ method: 'GET', url: '/api//admin//x?a=//b', headers: { authorization: `Bearer ${ADMIN}` } })
  t.equal(res.statusCode, 200)
  t.equal(lastUrl(s), '/api/admin/x?a=//b')
})
