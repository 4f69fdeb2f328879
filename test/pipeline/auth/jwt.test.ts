// JWT policies as a client sees them (README "Policy reference", "Request
// handling" steps 3–4): hostile tokens are
// refused with 401 before any upstream call, valid ones pass with identity
// headers, authorization refuses with 403, and `portico token` mints tokens
// the gateway accepts.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createHmac, randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { buildFromFiles, writeConfigFiles } from '../../helpers/gateway.js'
import { loadConfig } from '../../../src/config/index.js'
import { ConfigError, formatProblem } from '../../../src/config/problems.js'
import { upstream } from '../../helpers/upstream.js'
import { authGateway, expectProblem } from '../../helpers/auth.js'
import { jwk, now, rsaKeys, signAsym, signHs, unsigned, type Claims } from '../../helpers/jwt.js'

const SECRET = 'hs-secret-for-tests-0123456789-abcdef'
const ISS = 'portico-test'
const AUD = 'portico'

const HS_JWT = { secret: SECRET, algorithms: ['HS256'], issuer: ISS, audience: AUD, clockTolerance: '5s' }

/** Claims of a token that the HS config accepts. */
function good (extra: Claims = {}): Claims {
  return { sub: 'alice', iss: ISS, aud: AUD, iat: now(), exp: now() + 600, ...extra }
}

async function get (app: FastifyInstance, url: string, headers: Record<string, string> = {}): Promise<{ statusCode: number, headers: Record<string, unknown>, body: string }> {
  return await app.inject({ method: 'GET', url, headers })
}

// ---- 1. hostile tokens -----------------------------------------------------------

t.test('hostile or invalid credentials get 401 and never reach the upstream', async t => {
  const up = await upstream(t)
  const rsa = rsaKeys()
  const policies = { user: { auth: 'jwt' } }

  // HS256 with issuer and audience checks.
  const hs = await buildFromFiles(t, { 'gateway.yaml': authGateway({ upstream: up.url, auth: { jwt: HS_JWT }, policies }) })
  // Both an HS secret and an RS256 public key: the algorithm-confusion setup.
  const mixed = await buildFromFiles(t, {
    'gateway.yaml': authGateway({ upstream: up.url, auth: { jwt: { ...HS_JWT, algorithms: ['HS256', 'RS256'], publicKey: './keys/rs.pem' } }, policies }),
    'keys/rs.pem': rsa.publicPem,
  })
  // RS256 only.
  const rsOnly = await buildFromFiles(t, {
    'gateway.yaml': authGateway({ upstream: up.url, auth: { jwt: { algorithms: ['RS256'], publicKey: 'rs.pem', issuer: ISS, audience: AUD } }, policies }),
    'rs.pem': rsa.publicPem,
  })
  // JWKS publishing one RSA key, kid k1.
  let jwksFetches = 0
  const jwks = createServer((_req, res) => {
    jwksFetches++
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ keys: [jwk(rsa, 'k1', 'RS256')] }))
  })
  await new Promise<void>(resolve => jwks.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise(resolve => { jwks.closeAllConnections(); jwks.close(resolve) }))
  const jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/.well-known/jwks.json`
  const viaJwks = await buildFromFiles(t, {
    'gateway.yaml': authGateway({ upstream: up.url, auth: { jwt: { algorithms: ['RS256'], jwksUrl, issuer: ISS, audience: AUD, jwksMinRefetchInterval: '0ms' } }, policies }),
  })

  const garbage = randomBytes(4000).toString('base64url').slice(0, 5000).padEnd(5000, 'x')
  const dottedGarbage = `${randomBytes(1500).toString('base64url')}.${randomBytes(1500).toString('base64url')}.${randomBytes(700).toString('base64url')}`.slice(0, 5000)
  const validHs = signHs(good(), SECRET)

  interface Case {
    name: string
    app: FastifyInstance
    /** The Authorization header sent; undefined: none. */
    authorization?: string
    /** Credential text that must not be echoed back (the token). */
    secret?: string
    /** A bearer token was presented, so the challenge carries error="invalid_token". */
    tokenGiven: boolean
  }
  const bearer = (name: string, app: FastifyInstance, token: string): Case => ({ name, app, authorization: `Bearer ${token}`, secret: token, tokenGiven: true })

  const cases: Case[] = [
    { name: 'no Authorization header', app: hs, tokenGiven: false },
    { name: 'Basic scheme', app: hs, authorization: 'Basic eHl6OnNlY3JldHBhc3N3b3Jk', secret: 'eHl6OnNlY3JldHBhc3N3b3Jk', tokenGiven: false },
    { name: 'Bearer with an empty token', app: hs, authorization: 'Bearer ', tokenGiven: false },
    { name: 'Bearer alone', app: hs, authorization: 'Bearer', tokenGiven: false },
    { name: 'the token without a scheme', app: hs, authorization: validHs, secret: validHs, tokenGiven: false },
    bearer('malformed (two segments)', hs, 'abc.def'),
    bearer('wrong signature (another secret)', hs, signHs(good(), 'another-secret-of-sufficient-length-000000')),
    bearer('signature stripped', hs, validHs.slice(0, validHs.lastIndexOf('.') + 1)),
    bearer('payload swapped under a valid signature', hs, (() => {
      const [h, , s] = validHs.split('.')
      return `${h}.${Buffer.from(JSON.stringify(good({ sub: 'mallory', roles: ['admin'] }))).toString('base64url')}.${s}`
    })()),
    bearer('expired beyond the clock tolerance', hs, signHs(good({ iat: now() - 3600, exp: now() - 60 }), SECRET)),
    bearer('not yet valid (nbf in the future)', hs, signHs(good({ nbf: now() + 300 }), SECRET)),
    bearer('wrong issuer', hs, signHs(good({ iss: 'https://evil.example' }), SECRET)),
    bearer('missing issuer', hs, signHs(good({ iss: undefined }), SECRET)),
    bearer('wrong audience', hs, signHs(good({ aud: 'someone-else' }), SECRET)),
    bearer('missing audience', hs, signHs(good({ aud: undefined }), SECRET)),
    bearer('missing subject (sub is the identity sent upstream)', hs, signHs(good({ sub: undefined }), SECRET)),
    bearer('alg none, no signature', hs, unsigned(good())),
    bearer('alg none with the valid signature appended', hs, unsigned(good()) + validHs.split('.')[2]),
    bearer('alg "None" (case variant)', hs, (() => {
      const p = Buffer.from(JSON.stringify(good())).toString('base64url')
      return `${Buffer.from('{"alg":"None","typ":"JWT"}').toString('base64url')}.${p}.`
    })()),
    bearer('HS384 token where only HS256 is allowed', hs, signHs(good(), SECRET, { alg: 'HS384' })),
    bearer('RS256 token against an HS-only config', hs, signAsym(good(), rsa.privateKey, { alg: 'RS256' })),
    bearer('HS256 signed with the RSA public key PEM (HS+RS config)', mixed, signHs(good(), rsa.publicPem)),
    bearer('HS256 signed with the RSA public key PEM (RS256-only config)', rsOnly, signHs(good(), rsa.publicPem)),
    bearer('HS256 signed with the RSA public key DER (HS+RS config)', mixed, signHs(good(), rsa.publicKey.export({ type: 'spki', format: 'der' }))),
    bearer('HS256 with the right HS secret against an RS256-only config', rsOnly, signHs(good(), SECRET)),
    bearer('unknown kid (JWKS)', viaJwks, signAsym(good(), rsaKeys().privateKey, { alg: 'RS256', kid: 'not-a-known-kid' })),
    bearer('known kid, wrong signing key (JWKS)', viaJwks, signAsym(good(), rsaKeys().privateKey, { alg: 'RS256', kid: 'k1' })),
    bearer('HS256 signed with the JWKS key PEM, kid k1 (JWKS)', viaJwks, signHs(good(), rsa.publicPem, { kid: 'k1' })),
    bearer('5000 characters of garbage', hs, garbage),
    bearer('5000 characters of dotted garbage', hs, dottedGarbage),
    bearer('a 9000-character token', hs, signHs(good({ pad: 'x'.repeat(9000) }), SECRET)),
  ]

  for (const c of cases) {
    const before = up.hits()
    const res = await get(c.app, '/user', c.authorization !== undefined ? { authorization: c.authorization } : {})
    const body = expectProblem(t, res, 401, 'UNAUTHENTICATED', c.name)
    const challenge = String(res.headers['www-authenticate'] ?? '')
    t.match(challenge, /^Bearer( |$)/, `${c.name}: www-authenticate is a Bearer challenge`)
    t.match(challenge, /realm="portico"/, `${c.name}: realm`)
    if (c.tokenGiven) t.match(challenge, /error="invalid_token"/, `${c.name}: error="invalid_token"`)
    if (c.authorization === undefined) t.notMatch(challenge, /error=/, `${c.name}: no error code without credentials (RFC 6750 §3.1)`)
    if (c.secret !== undefined && c.secret.length >= 6) {
      // Neither the whole credential nor any of its segments comes back.
      for (const piece of [c.secret, ...c.secret.split('.').filter(p => p.length >= 6)]) {
        t.notOk(res.body.includes(piece), `${c.name}: credential not echoed in the body`)
        t.notOk(challenge.includes(piece), `${c.name}: credential not echoed in www-authenticate`)
      }
    }
    t.notMatch(String(body.detail), /eyJ/, `${c.name}: no token text in detail`)
    t.equal(up.hits(), before, `${c.name}: upstream not called`)
  }

  // Control: each of these gateways does let a good token through, so the
  // refusals above are about the tokens, not a broken setup.
  const controls: Array<[string, FastifyInstance, string]> = [
    ['hs', hs, validHs],
    ['mixed (HS)', mixed, validHs],
    ['mixed (RS)', mixed, signAsym(good(), rsa.privateKey, { alg: 'RS256' })],
    ['rs-only', rsOnly, signAsym(good(), rsa.privateKey, { alg: 'RS256' })],
    ['jwks', viaJwks, signAsym(good(), rsa.privateKey, { alg: 'RS256', kid: 'k1' })],
  ]
  for (const [name, app, token] of controls) {
    const res = await get(app, '/user', { authorization: `Bearer ${token}` })
    t.equal(res.statusCode, 200, `control ${name}: a valid token passes`)
  }
  t.equal(up.hits(), controls.length, 'only the controls reached the upstream')
  t.ok(jwksFetches >= 1, 'the JWKS endpoint was consulted')
})

// ---- 2. valid tokens and identity headers -----------------------------------------

t.test('a valid token reaches the upstream with identity headers, without authorization or client x-auth-*', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, {
    'gateway.yaml': authGateway({
      upstream: up.url,
      auth: { jwt: HS_JWT },
      policies: { user: { auth: 'jwt' }, passthrough: { auth: 'jwt', forwardAuthorization: true }, public: { auth: 'none' } },
    }),
  })
  const token = signHs(good({ roles: ['admin', 'ops'], scope: 'orders:read orders:write' }), SECRET)
  const spoof = { 'x-auth-sub': 'evil', 'x-auth-roles': 'root', 'x-auth-scopes': 'everything', 'x-auth-tenant': 'evil-corp' }

  const res = await get(app, '/user', { authorization: `Bearer ${token}`, ...spoof })
  t.equal(res.statusCode, 200)
  t.equal(up.hits(), 1)
  const h = up.seen[0].headers
  t.equal(h['x-auth-sub'], 'alice')
  t.equal(h['x-auth-roles'], 'admin,ops', 'roles comma-joined')
  t.equal(h['x-auth-scopes'], 'orders:read orders:write', 'scopes space-joined')
  t.equal(h['x-auth-tenant'], undefined, 'client x-auth-* removed')
  t.equal(h.authorization, undefined, 'authorization not forwarded by default')
  t.notOk(JSON.stringify(h).includes(token), 'the token is nowhere in the upstream headers')

  // The scheme is case-insensitive (RFC 9110 §11.1).
  const lower = await get(app, '/user', { authorization: `bearer ${token}` })
  t.equal(lower.statusCode, 200, 'lower-case "bearer" is accepted')

  const fwd = await get(app, '/passthrough', { authorization: `Bearer ${token}`, ...spoof })
  t.equal(fwd.statusCode, 200)
  const fh = up.seen.at(-1)?.headers ?? {}
  t.equal(fh.authorization, `Bearer ${token}`, 'forwardAuthorization: true passes the header on unchanged')
  t.equal(fh['x-auth-sub'], 'alice', 'identity headers still set')
  t.equal(fh['x-auth-roles'], 'admin,ops')

  // An identity without roles or scopes: the client's spoofed ones must not fill the gap.
  const bare = signHs(good({ sub: 'bob' }), SECRET)
  const b = await get(app, '/user', { authorization: `Bearer ${bare}`, ...spoof })
  t.equal(b.statusCode, 200)
  const bh = up.seen.at(-1)?.headers ?? {}
  t.equal(bh['x-auth-sub'], 'bob')
  t.equal(bh['x-auth-roles'], undefined, 'no roles: no x-auth-roles, and not the client\'s')
  t.equal(bh['x-auth-scopes'], undefined, 'no scopes: no x-auth-scopes, and not the client\'s')

  // auth: none — client identity headers are still removed.
  const pub = await get(app, '/public', spoof)
  t.equal(pub.statusCode, 200)
  const ph = up.seen.at(-1)?.headers ?? {}
  for (const name of Object.keys(spoof)) t.equal(ph[name], undefined, `public route: ${name} removed`)
  t.equal(up.hits(), 5)
})

t.test('claims cannot inject headers upstream: CR/LF and non-ASCII in sub and roles are encoded', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': authGateway({ upstream: up.url, auth: { jwt: HS_JWT }, policies: { user: { auth: 'jwt' } } }) })
  const token = signHs(good({ sub: 'alice\r\nx-auth-roles: admin', roles: ['ops\r\nx-injected: 1'], scope: 'zoë' }), SECRET)
  const res = await get(app, '/user', { authorization: `Bearer ${token}` })
  t.equal(res.statusCode, 200)
  const h = up.seen[0]?.headers ?? {}
  t.equal(h['x-injected'], undefined, 'no header injected through roles')
  t.notMatch(String(h['x-auth-sub']), /[\r\n]/, 'sub carries no line break')
  t.notMatch(String(h['x-auth-roles']), /admin|[\r\n]/, 'roles carry no injected value')
  t.match(String(h['x-auth-sub']), /^alice/, 'sub still recognisable')
  t.notMatch(String(h['x-auth-scopes']), /[^\x20-\x7e]/, 'non-ASCII scope encoded')
})

t.test('identity values that are not identities: signed tokens whose sub, roles, scopes or dates are not plain values get 401', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': authGateway({ upstream: up.url, auth: { jwt: HS_JWT }, policies: { user: { auth: 'jwt' } } }) })
  const noExp = good()
  delete noExp.exp
  // [name, claims, what the detail names]
  const cases: Array<[string, Claims, RegExp]> = [
    ['empty sub', good({ sub: '' }), /sub/],
    ['object sub', good({ sub: { id: 'admin' } }), /sub/],
    ['array sub', good({ sub: ['bob', 'admin'] }), /sub/],
    ['numeric sub', good({ sub: 42 }), /sub/],
    ['boolean sub', good({ sub: true }), /sub/],
    ['null sub', good({ sub: null }), /sub|claim/],
    ['no exp', noExp, /lacks the exp claim/],
    ['null exp', good({ exp: null }), /exp claim|claims are malformed/],
    ['string exp', good({ exp: String(now() + 600) }), /claims are malformed/],
    ['null nbf', good({ nbf: null }), /nbf|claims are malformed/],
    ['string nbf', good({ nbf: '0' }), /claims are malformed/],
    ['string iat', good({ iat: 'yesterday' }), /iat/],
    ['roles with a number', good({ roles: ['ops', 1] }), /roles/],
    ['roles with an object', good({ roles: [{ name: 'admin' }] }), /roles/],
    ['roles as an object', good({ roles: { admin: true } }), /roles/],
    ['a role holding the separator', good({ roles: ['ops,admin'] }), /roles/],
    ['an empty role', good({ roles: [''] }), /roles/],
    ['scope as an array', good({ scope: ['orders:write'] }), /scope/],
    ['scope as a number', good({ scope: 5 }), /scope/],
    ['scp as a string', good({ scp: 'orders:write' }), /scp/],
    ['scp with a number', good({ scp: ['orders:read', 1] }), /scp/],
    ['an scp entry holding a space', good({ scp: ['orders:read orders:write'] }), /scp/],
  ]
  for (const [name, claims, detail] of cases) {
    const res = await get(app, '/user', { authorization: `Bearer ${signHs(claims, SECRET)}` })
    const body = expectProblem(t, res, 401, 'UNAUTHENTICATED', name)
    t.match(String(res.headers['www-authenticate']), /^Bearer .*error="invalid_token"/, `${name}: invalid_token challenge`)
    t.match(String(body.detail), detail, `${name}: the detail says what is wrong (${String(body.detail)})`)
  }
  t.equal(up.hits(), 0, 'none of them reached the upstream')

  // Control: the well-formed variants pass, with the identity the upstream expects.
  const ok = await get(app, '/user', { authorization: `Bearer ${signHs(good({ sub: 'bob', roles: ['ops'], scp: ['orders:read', 'orders:write'] }), SECRET)}` })
  t.equal(ok.statusCode, 200)
  t.equal(up.seen[0]?.headers['x-auth-sub'], 'bob')
  t.equal(up.seen[0]?.headers['x-auth-roles'], 'ops')
  t.equal(up.seen[0]?.headers['x-auth-scopes'], 'orders:read orders:write')
  t.equal((await get(app, '/user', { authorization: `Bearer ${signHs(good({ roles: [], scope: '' }), SECRET)}` })).statusCode, 200, 'empty roles and scope are no roles and no scopes')
  // A roles claim sent as one string (as some identity providers do) is a space/comma separated list.
  t.equal((await get(app, '/user', { authorization: `Bearer ${signHs(good({ sub: 'carol', roles: 'ops, admin' }), SECRET)}` })).statusCode, 200)
  t.equal(up.seen.at(-1)?.headers['x-auth-roles'], 'ops,admin', 'a string roles claim is split into roles')
})

t.test('auth.jwt.requireExp: false accepts a token without exp; sub rules and a present exp still apply', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': authGateway({ upstream: up.url, auth: { jwt: { ...HS_JWT, requireExp: false } }, policies: { user: { auth: 'jwt' } } }) })
  const noExp = good({ sub: 'service-account' })
  delete noExp.exp
  const res = await get(app, '/user', { authorization: `Bearer ${signHs(noExp, SECRET)}` })
  t.equal(res.statusCode, 200, 'no exp: accepted')
  t.equal(up.seen[0]?.headers['x-auth-sub'], 'service-account')
  expectProblem(t, await get(app, '/user', { authorization: `Bearer ${signHs({ ...noExp, sub: '' }, SECRET)}` }), 401, 'UNAUTHENTICATED', 'empty sub')
  expectProblem(t, await get(app, '/user', { authorization: `Bearer ${signHs(good({ exp: now() - 3600 }), SECRET)}` }), 401, 'UNAUTHENTICATED', 'expired')
  t.equal(up.hits(), 1)
})

t.test('auth.jwt.requireExp that is not a boolean is a config error naming file, line and field', async t => {
  const dir = writeConfigFiles({
    'gateway.yaml': `services:
  users: { urls: ['http://127.0.0.1:9'] }
auth:
  jwt:
    secret: ${SECRET}
    requireExp: "no"
policies:
  user: { auth: jwt }
routes:
  - { id: a, method: GET, path: /a, policy: user, proxy: { service: users } }
`,
  })
  const file = join(dir, 'gateway.yaml')
  let lines: string[] = []
  try { loadConfig(file) } catch (err) { if (err instanceof ConfigError) lines = err.problems.map(formatProblem); else throw err }
  t.equal(lines.length, 1, lines.join('\n'))
  t.match(lines[0], new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:6: auth\\.jwt\\.requireExp: `))
  t.match(lines[0], /boolean|true or false/, 'says what the value must be')
})

t.test('every method of a jwt route is protected, HEAD and POST with a body included', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, { 'gateway.yaml': authGateway({ upstream: up.url, auth: { jwt: HS_JWT }, policies: { user: { auth: 'jwt' } } }) })
  const head = await app.inject({ method: 'HEAD', url: '/user' })
  t.equal(head.statusCode, 401, 'HEAD')
  t.match(String(head.headers['www-authenticate']), /^Bearer/)
  const post = await app.inject({ method: 'POST', url: '/user', headers: { 'content-type': 'application/json' }, payload: '{"a":1}' })
  expectProblem(t, post, 401, 'UNAUTHENTICATED', 'POST')
  const bad = await app.inject({ method: 'POST', url: '/user?token=x', headers: { 'content-type': 'application/json', authorization: 'Bearer abc.def.ghi' }, payload: '{not json' })
  expectProblem(t, bad, 401, 'UNAUTHENTICATED', 'POST with a malformed body: auth comes first')
  t.equal(up.hits(), 0)
})

t.test('clock tolerance: a token expired 2 s ago passes with 5 s tolerance and fails with none', async t => {
  const up = await upstream(t)
  const policies = { user: { auth: 'jwt' } }
  const tolerant = await buildFromFiles(t, { 'gateway.yaml': authGateway({ upstream: up.url, auth: { jwt: { ...HS_JWT, clockTolerance: '5s' } }, policies }) })
  const strict = await buildFromFiles(t, { 'gateway.yaml': authGateway({ upstream: up.url, auth: { jwt: { ...HS_JWT, clockTolerance: '0s' } }, policies }) })

  const expired = signHs(good({ iat: now() - 600, exp: now() - 2 }), SECRET)
  t.equal((await get(tolerant, '/user', { authorization: `Bearer ${expired}` })).statusCode, 200, 'within tolerance')
  t.equal(up.hits(), 1)
  expectProblem(t, await get(strict, '/user', { authorization: `Bearer ${expired}` }), 401, 'UNAUTHENTICATED', 'no tolerance')

  // nbf 2–3 s ahead (whole seconds): inside 5 s, outside 0 s, with a margin either way.
  const early = (): string => signHs(good({ nbf: now() + 3 }), SECRET)
  t.equal((await get(tolerant, '/user', { authorization: `Bearer ${early()}` })).statusCode, 200, 'nbf a few seconds ahead is within tolerance')
  t.equal(up.hits(), 2)
  expectProblem(t, await get(strict, '/user', { authorization: `Bearer ${early()}` }), 401, 'UNAUTHENTICATED', 'nbf ahead, no tolerance')
  t.equal(up.hits(), 2)
})

// ---- 3. authorization ----------------------------------------------------------------

t.test('roles, scopes and claims: allowed passes, missing is 403 FORBIDDEN naming what is missing', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, {
    'gateway.yaml': authGateway({
      upstream: up.url,
      auth: { jwt: HS_JWT },
      policies: {
        staff: { auth: 'jwt', roles: ['admin', 'ops'] },
        writer: { auth: 'jwt', scopes: ['orders:read', 'orders:write'] },
        acme: { auth: 'jwt', claims: { tenant: 'acme' } },
        eu: { auth: 'jwt', claims: { region: ['eu-west', 'eu-central'] } },
        verified: { auth: 'jwt', claims: { email_verified: true } },
        strict: { auth: 'jwt', roles: ['admin'], scopes: ['orders:write'], claims: { tenant: 'acme' } },
      },
    }),
  })
  const bearer = (claims: Claims): Record<string, string> => ({ authorization: `Bearer ${signHs(good(claims), SECRET)}` })

  const cases: Array<{ name: string, path: string, claims: Claims, allowed: boolean, detail?: RegExp }> = [
    { name: 'one of the roles (ops)', path: '/staff', claims: { roles: ['ops'] }, allowed: true },
    { name: 'one of the roles among others', path: '/staff', claims: { roles: ['viewer', 'admin'] }, allowed: true },
    { name: 'no listed role', path: '/staff', claims: { roles: ['viewer'] }, allowed: false, detail: /admin/ },
    { name: 'no roles claim', path: '/staff', claims: {}, allowed: false, detail: /admin/ },
    { name: 'a role name differing in case', path: '/staff', claims: { roles: ['Admin'] }, allowed: false },
    { name: 'role in another claim', path: '/staff', claims: { groups: ['admin'] }, allowed: false },
    { name: 'all scopes from `scope`', path: '/writer', claims: { scope: 'profile orders:write orders:read' }, allowed: true },
    { name: 'all scopes from `scp`', path: '/writer', claims: { scp: ['orders:read', 'orders:write'] }, allowed: true },
    { name: 'one scope of two in `scope`', path: '/writer', claims: { scope: 'orders:read' }, allowed: false, detail: /orders:write/ },
    { name: 'one scope of two in `scp`', path: '/writer', claims: { scp: ['orders:write'] }, allowed: false, detail: /orders:read/ },
    { name: 'a scope prefix is not the scope', path: '/writer', claims: { scope: 'orders:read orders:writer' }, allowed: false, detail: /orders:write/ },
    { name: 'no scopes', path: '/writer', claims: {}, allowed: false },
    { name: 'claim equals', path: '/acme', claims: { tenant: 'acme' }, allowed: true },
    { name: 'claim differs', path: '/acme', claims: { tenant: 'globex' }, allowed: false, detail: /tenant/ },
    { name: 'claim absent', path: '/acme', claims: {}, allowed: false, detail: /tenant/ },
    { name: 'claim one of a list (first)', path: '/eu', claims: { region: 'eu-west' }, allowed: true },
    { name: 'claim one of a list (second)', path: '/eu', claims: { region: 'eu-central' }, allowed: true },
    { name: 'claim not in the list', path: '/eu', claims: { region: 'us-east' }, allowed: false, detail: /region/ },
    { name: 'boolean claim true', path: '/verified', claims: { email_verified: true }, allowed: true },
    { name: 'boolean claim false', path: '/verified', claims: { email_verified: false }, allowed: false },
    { name: 'everything present', path: '/strict', claims: { roles: ['admin'], scope: 'orders:write', tenant: 'acme' }, allowed: true },
    { name: 'role missing among several requirements', path: '/strict', claims: { scope: 'orders:write', tenant: 'acme' }, allowed: false, detail: /admin/ },
    { name: 'scope missing among several requirements', path: '/strict', claims: { roles: ['admin'], tenant: 'acme' }, allowed: false, detail: /orders:write/ },
    { name: 'claim missing among several requirements', path: '/strict', claims: { roles: ['admin'], scope: 'orders:write' }, allowed: false, detail: /tenant/ },
  ]
  for (const c of cases) {
    const before = up.hits()
    const headers = bearer(c.claims)
    const res = await get(app, c.path, headers)
    if (c.allowed) {
      t.equal(res.statusCode, 200, `${c.name}: allowed`)
      t.equal(up.hits(), before + 1, `${c.name}: upstream called`)
    } else {
      const body = expectProblem(t, res, 403, 'FORBIDDEN', c.name)
      if (c.detail !== undefined) t.match(String(body.detail), c.detail, `${c.name}: detail names what is missing`)
      t.notOk(res.body.includes(headers.authorization.slice(7)), `${c.name}: token not echoed`)
      t.equal(up.hits(), before, `${c.name}: upstream not called`)
    }
  }
})

t.test('a custom rolesClaim is where roles come from', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, {
    'gateway.yaml': authGateway({ upstream: up.url, auth: { jwt: { ...HS_JWT, rolesClaim: 'groups' } }, policies: { staff: { auth: 'jwt', roles: ['admin'] } } }),
  })
  const ok = await get(app, '/staff', { authorization: `Bearer ${signHs(good({ groups: ['admin', 'dev'] }), SECRET)}` })
  t.equal(ok.statusCode, 200)
  t.equal(up.seen[0].headers['x-auth-roles'], 'admin,dev', 'x-auth-roles from the configured claim')

  const wrongClaim = await get(app, '/staff', { authorization: `Bearer ${signHs(good({ roles: ['admin'] }), SECRET)}` })
  expectProblem(t, wrongClaim, 403, 'FORBIDDEN', '`roles` is not the roles claim here')
  t.equal(up.hits(), 1)
})

// ---- 6. portico token ------------------------------------------------------------------

const ROOT = fileURLToPath(new URL('../../..', import.meta.url))
const CLI = join(ROOT, 'dist/src/main/cli.js')

function portico (args: string[]): { code: number | null, stdout: string, stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

function decodePart (token: string, i: number): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[i], 'base64url').toString('utf8')) as Record<string, unknown>
}

t.test('portico token', async t => {
  // `npm test` builds first (pretest); running this file alone may not have.
  if (!existsSync(CLI)) {
    const build = spawnSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8' })
    if (build.status !== 0) throw new Error(`npm run build failed:\n${build.stdout}${build.stderr}`)
  }

  t.test('prints a token signed with the configured secret that the gateway accepts', async t => {
    const up = await upstream(t)
    const files = {
      'gateway.yaml': authGateway({
        upstream: up.url,
        auth: { jwt: HS_JWT },
        policies: { ops: { auth: 'jwt', roles: ['ops'], scopes: ['a', 'b'] } },
      }),
    }
    const dir = writeConfigFiles(files)
    const before = now()
    const r = portico(['token', '--sub', 'alice', '--roles', 'admin,ops', '--scope', 'a b', '--ttl', '10m', '--config', join(dir, 'gateway.yaml')])
    const after = now()
    t.equal(r.code, 0, r.stderr)
    const token = r.stdout.trim()
    t.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'one compact JWT on stdout')

    const header = decodePart(token, 0)
    t.equal(header.alg, 'HS256')
    const [h, p, sig] = token.split('.')
    t.equal(createHmac('sha256', SECRET).update(`${h}.${p}`).digest('base64url'), sig, 'the signature is HMAC-SHA256 with the configured secret')
    const claims = decodePart(token, 1)
    t.equal(claims.sub, 'alice')
    t.same(claims.roles, ['admin', 'ops'])
    t.equal(claims.scope, 'a b')
    t.equal(claims.iss, ISS)
    t.equal(claims.aud, AUD)
    t.type(claims.exp, 'number')
    t.ok((claims.exp as number) >= before + 600 && (claims.exp as number) <= after + 600, `exp is 10 minutes ahead (${String(claims.exp)} vs ${before}..${after})`)

    // The same config, as a gateway: the token passes the policy.
    const app = await buildFromFiles(t, files)
    const res = await get(app, '/ops', { authorization: `Bearer ${token}` })
    t.equal(res.statusCode, 200)
    t.equal(up.seen[0]?.headers['x-auth-sub'], 'alice')
    t.equal(up.seen[0]?.headers['x-auth-roles'], 'admin,ops')
    t.equal(up.seen[0]?.headers['x-auth-scopes'], 'a b')
  })

  t.test('roles go into the configured rolesClaim', async t => {
    const dir = writeConfigFiles({
      'gateway.yaml': authGateway({ upstream: 'http://127.0.0.1:9', auth: { jwt: { ...HS_JWT, rolesClaim: 'groups' } }, policies: { user: { auth: 'jwt' } } }),
    })
    const r = portico(['token', '--sub', 'bob', '--roles', 'ops', '--config', join(dir, 'gateway.yaml')])
    t.equal(r.code, 0, r.stderr)
    t.same(decodePart(r.stdout.trim(), 1).groups, ['ops'])
  })

  t.test('exits 1 with a clear message when the config has no HS secret', async t => {
    const rsa = rsaKeys()
    const dir = writeConfigFiles({
      'gateway.yaml': authGateway({ upstream: 'http://127.0.0.1:9', auth: { jwt: { algorithms: ['RS256'], publicKey: './rs.pem' } }, policies: { user: { auth: 'jwt' } } }),
      'rs.pem': rsa.publicPem,
    })
    const r = portico(['token', '--sub', 'alice', '--config', join(dir, 'gateway.yaml')])
    t.equal(r.code, 1)
    t.equal(r.stdout.trim(), '', 'no token printed')
    t.match(r.stderr, /no HS secret/i, 'says what is missing')
    t.match(r.stderr, /gateway\.yaml/, 'names the config file')
    t.notMatch(r.stderr, /^\s+at /m, 'no stack trace')
  })
})
