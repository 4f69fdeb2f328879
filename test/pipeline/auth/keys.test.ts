// JWT policies verified with public keys (auth.jwt.publicKey / jwksUrl,
// README "JWT verification"): RS256 and ES256 PEM files, and a JWKS
// endpoint with key rotation and a bounded refetch rate.
import t from 'tap'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { buildFromFiles, writeConfigFiles } from '../../helpers/gateway.js'
import { startGateway } from '../../../src/main/server.js'
import { closedPort, upstream } from '../../helpers/upstream.js'
import { waitFor } from '../../helpers/wait.js'
import { authGateway, expectProblem } from '../../helpers/auth.js'
import { ecKeys, jwk, now, rsaKeys, signAsym, signHs, type Claims, type KeyPair } from '../../helpers/jwt.js'

type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const ISS = 'https://idp.example.test'
const AUD = 'portico'

function good (extra: Claims = {}): Claims {
  return { sub: 'alice', iss: ISS, aud: AUD, iat: now(), exp: now() + 600, roles: ['ops'], ...extra }
}

async function call (app: FastifyInstance, token: string): Promise<{ statusCode: number, headers: Record<string, unknown>, body: string }> {
  return await app.inject({ method: 'GET', url: '/user', headers: { authorization: `Bearer ${token}` } })
}

// Four RSA keys are generated once: generation is the slow part of these tests.
const rsa = rsaKeys()
const rsaOther = rsaKeys()
const ec = ecKeys()
const ecOther = ecKeys()

t.test('RS256 with a PEM publicKey file', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, {
    'gateway.yaml': authGateway({ upstream: up.url, auth: { jwt: { algorithms: ['RS256'], publicKey: 'keys/idp.pem', issuer: ISS, audience: AUD } }, policies: { user: { auth: 'jwt', roles: ['ops'] } } }),
    'keys/idp.pem': rsa.publicPem,
  })
  const res = await call(app, signAsym(good(), rsa.privateKey, { alg: 'RS256' }))
  t.equal(res.statusCode, 200)
  t.equal(up.seen[0]?.headers['x-auth-sub'], 'alice')
  t.equal(up.seen[0]?.headers['x-auth-roles'], 'ops')

  const refused: Array<[string, string]> = [
    ['signed by another RSA key', signAsym(good(), rsaOther.privateKey, { alg: 'RS256' })],
    ['ES256 token (not in algorithms)', signAsym(good(), ec.privateKey, { alg: 'ES256' })],
    ['HS256 signed with the public key PEM', signHs(good(), rsa.publicPem)],
    ['expired', signAsym(good({ exp: now() - 3600 }), rsa.privateKey, { alg: 'RS256' })],
    ['wrong issuer', signAsym(good({ iss: 'https://evil.example' }), rsa.privateKey, { alg: 'RS256' })],
  ]
  for (const [name, token] of refused) {
    const r = await call(app, token)
    expectProblem(t, r, 401, 'UNAUTHENTICATED', name)
    t.match(String(r.headers['www-authenticate']), /^Bearer .*error="invalid_token"/, `${name}: invalid_token challenge`)
  }
  t.equal(up.hits(), 1, 'only the valid token reached the upstream')
})

t.test('ES256 with a PEM publicKey file', async t => {
  const up = await upstream(t)
  const app = await buildFromFiles(t, {
    'gateway.yaml': authGateway({ upstream: up.url, auth: { jwt: { algorithms: ['ES256'], publicKey: './ec.pem', issuer: ISS, audience: AUD } }, policies: { user: { auth: 'jwt' } } }),
    'ec.pem': ec.publicPem,
  })
  const res = await call(app, signAsym(good(), ec.privateKey, { alg: 'ES256' }))
  t.equal(res.statusCode, 200)
  t.equal(up.seen[0]?.headers['x-auth-sub'], 'alice')

  const refused: Array<[string, string]> = [
    ['signed by another EC key', signAsym(good(), ecOther.privateKey, { alg: 'ES256' })],
    ['RS256 token (not in algorithms)', signAsym(good(), rsa.privateKey, { alg: 'RS256' })],
    ['HS256 signed with the EC public key PEM', signHs(good(), ec.publicPem)],
  ]
  for (const [name, token] of refused) expectProblem(t, await call(app, token), 401, 'UNAUTHENTICATED', name)
  t.equal(up.hits(), 1)
})

/** A JWKS endpoint on port 0 whose key set a test can swap, counting fetches. */
async function startJwks (t: Test, keys: Array<Record<string, unknown>>): Promise<{ url: string, fetches: () => number, setKeys: (k: Array<Record<string, unknown>>) => void, setHandler: (h: (res: ServerResponse) => void) => void }> {
  let current = keys
  let fetches = 0
  let handler = (res: ServerResponse): void => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ keys: current }))
  }
  const server = createServer((_req, res) => { fetches++; handler(res) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise(resolve => { server.closeAllConnections(); server.close(resolve) }))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`,
    fetches: () => fetches,
    setKeys: k => { current = k },
    setHandler: h => { handler = h },
  }
}

function jwksGateway (upstreamUrl: string, jwksUrl: string, extra: Record<string, unknown> = {}): Record<string, string> {
  return {
    'gateway.yaml': authGateway({
      upstream: upstreamUrl,
      auth: { jwt: { algorithms: ['RS256', 'ES256'], jwksUrl, issuer: ISS, audience: AUD, ...extra } },
      policies: { user: { auth: 'jwt' } },
    }),
  }
}

const sign = (keys: KeyPair, kid: string, extra: Claims = {}, alg: 'RS256' | 'ES256' = 'RS256'): string => signAsym(good(extra), keys.privateKey, { alg, kid })

t.test('JWKS: a token signed with a published key passes; key rotation is picked up after one refetch', async t => {
  const up = await upstream(t)
  const idp = await startJwks(t, [jwk(rsa, 'k1', 'RS256'), jwk(ec, 'e1', 'ES256')])
  const app = await buildFromFiles(t, jwksGateway(up.url, idp.url, { jwksMinRefetchInterval: '0ms' }))

  t.equal((await call(app, sign(rsa, 'k1'))).statusCode, 200, 'RS256 key k1')
  t.equal((await call(app, sign(ec, 'e1', {}, 'ES256'))).statusCode, 200, 'ES256 key e1')
  t.equal(up.hits(), 2)
  const fetchesBefore = idp.fetches()
  t.ok(fetchesBefore >= 1, 'the key set was fetched')

  // Refused without rotation: a key the IdP does not publish, or a published kid with the wrong alg.
  expectProblem(t, await call(app, sign(rsaOther, 'k2')), 401, 'UNAUTHENTICATED', 'k2 before rotation')
  expectProblem(t, await call(app, signAsym(good(), ec.privateKey, { alg: 'ES256', kid: 'k1' })), 401, 'UNAUTHENTICATED', 'kid k1 (RS256) used with ES256')
  t.equal(up.hits(), 2)

  // The IdP rotates: k1 is retired, k2 published.
  idp.setKeys([jwk(rsaOther, 'k2', 'RS256')])
  const rotated = await call(app, sign(rsaOther, 'k2', { sub: 'after-rotation' }))
  t.equal(rotated.statusCode, 200, 'a token signed with the new key passes')
  t.equal(up.seen.at(-1)?.headers['x-auth-sub'], 'after-rotation')
  t.ok(idp.fetches() > fetchesBefore, 'the unknown kid caused a refetch')

  // A fresh token from the retired key is no longer accepted.
  expectProblem(t, await call(app, sign(rsa, 'k1', { sub: 'retired-key' })), 401, 'UNAUTHENTICATED', 'retired key k1')
  t.equal(up.hits(), 3)
})

t.test('JWKS: a burst of tokens with random unknown kids costs the IdP at most one refetch per interval', async t => {
  const up = await upstream(t)

  t.test('warm: after the key set was fetched once', async t => {
    const idp = await startJwks(t, [jwk(rsa, 'k1', 'RS256')])
    const app = await buildFromFiles(t, jwksGateway(up.url, idp.url, { jwksMinRefetchInterval: '1m' }))
    const hits = up.hits()
    t.equal((await call(app, sign(rsa, 'k1'))).statusCode, 200)
    const fetched = idp.fetches()
    t.equal(fetched, 1)

    // One after another, so concurrent refetches cannot simply share one request.
    for (let i = 0; i < 20; i++) {
      expectProblem(t, await call(app, sign(rsaOther, randomBytes(8).toString('hex'))), 401, 'UNAUTHENTICATED', `sequential ${i}`)
    }
    t.ok(idp.fetches() - fetched <= 1, `20 sequential unknown kids made ${idp.fetches() - fetched} refetches (at most 1 allowed)`)

    // And all at once.
    const burst = await Promise.all(Array.from({ length: 20 }, async () => await call(app, sign(rsaOther, randomBytes(8).toString('hex')))))
    for (const [i, r] of burst.entries()) expectProblem(t, r, 401, 'UNAUTHENTICATED', `burst ${i}`)
    t.ok(idp.fetches() - fetched <= 1, `40 unknown kids made ${idp.fetches() - fetched} refetches in all (at most 1 allowed)`)
    t.equal(up.hits(), hits + 1, 'none of them reached the upstream')

    // A known key still passes during the quiet period.
    t.equal((await call(app, sign(rsa, 'k1', { sub: 'still-fine' }))).statusCode, 200)
  })

  t.test('cold: the burst is the first traffic', async t => {
    const idp = await startJwks(t, [jwk(rsa, 'k1', 'RS256')])
    const app = await buildFromFiles(t, jwksGateway(up.url, idp.url, { jwksMinRefetchInterval: '1m' }))
    const hits = up.hits()
    const burst = await Promise.all(Array.from({ length: 20 }, async () => await call(app, sign(rsaOther, randomBytes(8).toString('hex')))))
    for (const [i, r] of burst.entries()) expectProblem(t, r, 401, 'UNAUTHENTICATED', `burst ${i}`)
    t.ok(idp.fetches() >= 1 && idp.fetches() <= 2, `20 unknown kids made ${idp.fetches()} fetches (1–2 allowed)`)
    for (let i = 0; i < 10; i++) await call(app, sign(rsaOther, randomBytes(8).toString('hex')))
    t.ok(idp.fetches() <= 2, `10 more unknown kids, one by one: ${idp.fetches()} fetches in all (at most 2)`)
    t.equal(up.hits(), hits)
  })
})

t.test('JWKS endpoint down or broken: 401, not a 5xx, and no upstream call', async t => {
  const up = await upstream(t)
  const port = await closedPort()
  const down = await buildFromFiles(t, jwksGateway(up.url, `http://127.0.0.1:${port}/jwks.json`))
  const r1 = await call(down, sign(rsa, 'k1'))
  expectProblem(t, r1, 401, 'UNAUTHENTICATED', 'connection refused')
  t.match(String(r1.headers['www-authenticate']), /error="invalid_token"/)

  const idp = await startJwks(t, [])
  idp.setHandler(res => { res.writeHead(500, { 'content-type': 'text/plain' }); res.end('boom') })
  const broken = await buildFromFiles(t, jwksGateway(up.url, idp.url))
  expectProblem(t, await call(broken, sign(rsa, 'k1')), 401, 'UNAUTHENTICATED', 'JWKS answers 500')

  const garbled = await startJwks(t, [])
  garbled.setHandler(res => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"keys": [ {"kty": "oct", "k": "c2VjcmV0", "kid": "k1"} ') })
  const bad = await buildFromFiles(t, jwksGateway(up.url, garbled.url))
  expectProblem(t, await call(bad, sign(rsa, 'k1')), 401, 'UNAUTHENTICATED', 'JWKS answers truncated JSON')

  // A symmetric key in the set must not turn into an HMAC secret.
  const symmetric = await startJwks(t, [{ kty: 'oct', k: Buffer.from('shared-secret').toString('base64url'), kid: 'k1', alg: 'HS256' }])
  const sym = await buildFromFiles(t, jwksGateway(up.url, symmetric.url))
  expectProblem(t, await call(sym, signHs(good(), 'shared-secret', { kid: 'k1' })), 401, 'UNAUTHENTICATED', 'HS256 token with an oct key in the JWKS')
  t.equal(up.hits(), 0)
})

t.test('JWKS: when the key set expires and the IdP is down, cached keys keep serving without a fetch per request', async t => {
  const up = await upstream(t)
  const idp = await startJwks(t, [jwk(rsa, 'k1', 'RS256')])
  const app = await buildFromFiles(t, jwksGateway(up.url, idp.url, { jwksCacheTtl: '100ms', jwksMinRefetchInterval: '1m' }))
  t.equal((await call(app, sign(rsa, 'k1'))).statusCode, 200)
  t.equal(idp.fetches(), 1)

  idp.setHandler(res => { res.writeHead(503, { 'content-type': 'text/plain' }); res.end('down') })
  await new Promise(resolve => setTimeout(resolve, 250)) // let the key set's TTL pass
  for (let i = 0; i < 10; i++) {
    t.equal((await call(app, sign(rsa, 'k1', { sub: `u${i}` }))).statusCode, 200, `request ${i}: the cached key still verifies`)
  }
  t.ok(idp.fetches() <= 2, `10 requests during the outage made ${idp.fetches() - 1} fetches (at most 1 per jwksMinRefetchInterval)`)
  t.equal(up.hits(), 11)
})

t.test('JWKS: an expired key set is refetched when the IdP is healthy, even within jwksMinRefetchInterval', async t => {
  const up = await upstream(t)
  const idp = await startJwks(t, [jwk(rsa, 'k1', 'RS256')])
  const app = await buildFromFiles(t, jwksGateway(up.url, idp.url, { jwksCacheTtl: '100ms', jwksMinRefetchInterval: '1m' }))
  t.equal((await call(app, sign(rsa, 'k1'))).statusCode, 200)
  t.equal(idp.fetches(), 1)

  // The IdP revokes k1 (still under the same kid, now a different key).
  idp.setKeys([jwk(rsaOther, 'k1', 'RS256')])
  await new Promise(resolve => setTimeout(resolve, 250)) // let the key set's TTL pass
  expectProblem(t, await call(app, sign(rsa, 'k1', { sub: 'old-key' })), 401, 'UNAUTHENTICATED', 'token from the replaced key')
  t.equal((await call(app, sign(rsaOther, 'k1', { sub: 'new-key' }))).statusCode, 200, 'token from the new key')
  t.equal(idp.fetches(), 2, 'one refresh after the TTL')
  t.equal(up.hits(), 2)
})

/** Sends the same token until it is refused (or the deadline passes); returns the last answer and when it came. */
async function untilRefused (app: FastifyInstance, token: string, deadlineMs: number): Promise<{ res: Awaited<ReturnType<typeof call>>, at: number }> {
  const deadline = Date.now() + deadlineMs
  for (;;) {
    const res = await call(app, token)
    if (res.statusCode !== 200 || Date.now() > deadline) return { res, at: Date.now() }
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

t.test('JWKS revocation: a token verified (and cached) before its key left the set is refused once the set is refetched', async t => {
  const up = await upstream(t)
  const idp = await startJwks(t, [jwk(rsa, 'k1', 'RS256'), jwk(ec, 'e1', 'ES256')])
  const app = await buildFromFiles(t, jwksGateway(up.url, idp.url, { jwksCacheTtl: '200ms', jwksMinRefetchInterval: '1m' }))
  const revoked = sign(rsa, 'k1', { sub: 'revoked-key-user' })
  const kept = sign(ec, 'e1', { sub: 'kept-key-user' }, 'ES256')
  for (let i = 0; i < 3; i++) {
    t.equal((await call(app, revoked)).statusCode, 200, `k1 token, call ${i + 1}`)
    t.equal((await call(app, kept)).statusCode, 200, `e1 token, call ${i + 1}`)
  }
  const fetchedBefore = idp.fetches()

  idp.setKeys([jwk(ec, 'e1', 'ES256')]) // the IdP withdraws k1
  const removedAt = Date.now()
  const { res, at } = await untilRefused(app, revoked, 5000)
  expectProblem(t, res, 401, 'UNAUTHENTICATED', 'the cached token of the withdrawn key')
  t.match(String(res.headers['www-authenticate']), /error="invalid_token"/)
  t.ok(idp.fetches() > fetchedBefore, 'the key set was refetched')
  t.ok(at - removedAt < 200 + 1500, `refused ${at - removedAt} ms after the withdrawal (jwksCacheTtl 200 ms)`)
  expectProblem(t, await call(app, revoked), 401, 'UNAUTHENTICATED', 'and stays refused')

  const hits = up.hits()
  const still = await call(app, kept)
  t.equal(still.statusCode, 200, 'the token of the key still published keeps working')
  t.equal(up.hits(), hits + 1)
  t.equal(up.seen.at(-1)?.headers['x-auth-sub'], 'kept-key-user')
})

t.test('JWKS revocation: a cached token of a key replaced under the same kid is refused after the refetch', async t => {
  const up = await upstream(t)
  const idp = await startJwks(t, [jwk(rsa, 'k1', 'RS256')])
  const app = await buildFromFiles(t, jwksGateway(up.url, idp.url, { jwksCacheTtl: '200ms', jwksMinRefetchInterval: '1m' }))
  const old = sign(rsa, 'k1', { sub: 'old-key-user' })
  t.equal((await call(app, old)).statusCode, 200)
  t.equal((await call(app, old)).statusCode, 200)

  idp.setKeys([jwk(rsaOther, 'k1', 'RS256')])
  const { res } = await untilRefused(app, old, 5000)
  expectProblem(t, res, 401, 'UNAUTHENTICATED', 'token signed with the replaced key')
  t.equal((await call(app, sign(rsaOther, 'k1', { sub: 'new-key-user' }))).statusCode, 200, 'the new key under k1 verifies')
  t.equal(up.seen.at(-1)?.headers['x-auth-sub'], 'new-key-user')
})

t.test('JWKS: random unknown kids first do not lock out a published key', async t => {
  const up = await upstream(t)
  const idp = await startJwks(t, [jwk(rsa, 'k1', 'RS256'), jwk(ec, 'e1', 'ES256')])
  const app = await buildFromFiles(t, jwksGateway(up.url, idp.url, { jwksMinRefetchInterval: '1m' }))
  // The attacker's tokens arrive before any legitimate one (a fresh start, or right after a reload).
  for (let i = 0; i < 5; i++) expectProblem(t, await call(app, sign(rsaOther, randomBytes(8).toString('hex'))), 401, 'UNAUTHENTICATED', `random kid ${i}`)
  t.equal(idp.fetches(), 1, 'one fetch for all the unknown kids')
  t.equal((await call(app, sign(rsa, 'k1'))).statusCode, 200, 'a token of the published RSA key passes within the refetch interval')
  t.equal((await call(app, sign(ec, 'e1', {}, 'ES256'))).statusCode, 200, 'and one of the published EC key')
  t.equal(idp.fetches(), 1, 'without another fetch')
  t.equal(up.hits(), 2)
})

t.test('publicKey file: a token cached before the key file changed is refused once the config is reloaded', async t => {
  // Pins what the docs promise: a publicKey is read with the config, so a reload is what revokes it.
  const up = await upstream(t)
  const config = JSON.parse(authGateway({ upstream: up.url, auth: { jwt: { algorithms: ['RS256'], publicKey: 'keys/idp.pem', issuer: ISS, audience: AUD } }, policies: { user: { auth: 'jwt' } } })) as Record<string, unknown>
  const dir = writeConfigFiles({ 'gateway.yaml': JSON.stringify({ ...config, server: { host: '127.0.0.1', port: 0 }, admin: { port: 0 } }), 'keys/idp.pem': rsa.publicPem })
  const prevLevel = process.env.LOG_LEVEL
  process.env.LOG_LEVEL = 'silent'
  const gw = await startGateway({ configFile: join(dir, 'gateway.yaml'), demo: false })
  if (prevLevel === undefined) delete process.env.LOG_LEVEL
  else process.env.LOG_LEVEL = prevLevel
  t.teardown(gw.stop)
  const old = signAsym(good({ sub: 'old-key-user' }), rsa.privateKey, { alg: 'RS256' })
  t.equal((await call(gw.app, old)).statusCode, 200)
  t.equal((await call(gw.app, old)).statusCode, 200, 'served again (from the verified-token cache)')

  writeFileSync(join(dir, 'keys/idp.pem'), rsaOther.publicPem)
  t.equal((await call(gw.app, old)).statusCode, 200, 'before the reload the old key still verifies')
  t.equal(await gw.reload(), true, 'the reload is accepted')
  expectProblem(t, await call(gw.app, old), 401, 'UNAUTHENTICATED', 'after the reload, the token of the replaced key')
  t.equal((await call(gw.app, signAsym(good({ sub: 'new-key-user' }), rsaOther.privateKey, { alg: 'RS256' }))).statusCode, 200, 'the new key verifies')
  t.equal(up.seen.at(-1)?.headers['x-auth-sub'], 'new-key-user')
})

t.test('JWKS: a hanging identity provider does not stall cached tokens when the key set comes due', async t => {
  const up = await upstream(t)
  const idp = await startJwks(t, [jwk(rsa, 'k1', 'RS256')])
  const app = await buildFromFiles(t, jwksGateway(up.url, idp.url, { jwksCacheTtl: '100ms', jwksMinRefetchInterval: '1m' }))
  const token = sign(rsa, 'k1')
  t.equal((await call(app, token)).statusCode, 200)
  t.equal(idp.fetches(), 1)

  idp.setHandler(() => { /* accepts the request and never answers */ })
  await new Promise(resolve => setTimeout(resolve, 150)) // let the key set's TTL pass
  const started = Date.now()
  const res = await call(app, token)
  const took = Date.now() - started
  t.equal(res.statusCode, 200, 'the cached verification answers')
  t.ok(took < 1000, `answered in ${took} ms, not after the 3 s JWKS fetch timeout`)
  // The refetch runs beside the answer: it may reach the IdP just after it.
  await waitFor(() => idp.fetches() >= 2, { timeout: 2000, message: 'the refetch reaches the IdP' })
  t.equal(idp.fetches(), 2, 'the refetch was started')
  t.equal(up.hits(), 2)
})

t.test('JWKS: a provider that drips its answer is cut off at the fetch timeout; an oversized key set is refused', async t => {
  const up = await upstream(t)
  const drip = await startJwks(t, [])
  drip.setHandler(res => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('{"keys": [')
    // One byte every 300 ms keeps undici's per-chunk body timeout from ever firing.
    const timer = setInterval(() => res.write(' '), 300)
    const end = setTimeout(() => { clearInterval(timer); res.end(`${JSON.stringify(jwk(rsa, 'k1', 'RS256'))}]}`) }, 8000)
    res.on('close', () => { clearInterval(timer); clearTimeout(end) })
  })
  const app = await buildFromFiles(t, jwksGateway(up.url, drip.url))
  const started = Date.now()
  const res = await call(app, sign(rsa, 'k1'))
  const took = Date.now() - started
  expectProblem(t, res, 401, 'UNAUTHENTICATED', 'no key set within the fetch timeout')
  t.ok(took < 3000 + 1000, `refused after ${took} ms (fetch timeout 3 s)`)

  const huge = await startJwks(t, [])
  huge.setHandler(res => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(`{"keys": [${JSON.stringify(jwk(rsa, 'k1', 'RS256'))}], "padding": "${'x'.repeat(2 * 1024 * 1024)}"}`)
  })
  const big = await buildFromFiles(t, jwksGateway(up.url, huge.url))
  expectProblem(t, await call(big, sign(rsa, 'k1')), 401, 'UNAUTHENTICATED', 'a 2 MB key set is not loaded')
  t.equal(up.hits(), 0)
})
