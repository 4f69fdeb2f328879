// auth: mtls through the real CLI: the client certificate verified against
// server.tls.clientCa is the identity (sub = subject CN); upstreams get
// x-auth-sub and x-auth-cert-fingerprint (SHA-256 of the DER, lowercase hex)
// and never a client's own copies. No certificate, one from another CA, an
// expired one, a server certificate posing as a client's, and subjects that
// are not one plain CN → 401; a CN outside `subjects` → 403; the same over
// HTTP/2. requireClientCert: no valid certificate, no TLS session at all.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { upstream } from '../../helpers/upstream.js'
import { buildIfStale, childEnv, freePort, startCli, type Test } from '../../helpers/cli.js'
import { makeCa, serverPki, type IssuedCert } from '../../helpers/certs.js'
import { curl, h1, h2, h2session, type Answer, type TlsClientFiles } from '../../helpers/https.js'
import { expectProblem } from '../../helpers/auth.js'
import { buildFromFiles } from '../../helpers/gateway.js'

t.before(buildIfStale)

const dir = t.testdir()
const { ca, server } = serverPki(dir)
const other = makeCa(dir, 'other', '/CN=Another CA')

const billing = ca.issue('billing', { subject: '/CN=acme-billing', clientAuth: true })
const ops = ca.issue('ops', { subject: '/CN=acme-ops', clientAuth: true })
const spaced = ca.issue('spaced', { subject: '/CN=ops team@acme', clientAuth: true })
const foreign = other.issue('foreign', { subject: '/CN=acme-billing', clientAuth: true })
const expired = ca.issue('expired', { subject: '/CN=acme-billing', clientAuth: true, days: -1 })
const future = ca.issue('future', { subject: '/CN=acme-billing', clientAuth: true, notBefore: '20400101000000Z', notAfter: '20410101000000Z' })
const hostile: Array<[string, IssuedCert]> = [
  ['a CN that reads like another RDN', ca.issue('comma', { subject: '/CN=acme-billing, CN=admin', clientAuth: true })],
  ['two CNs', ca.issue('two-cns', { subject: '/CN=acme-billing/CN=admin', clientAuth: true })],
  ['a multi-valued RDN', ca.issue('multi-rdn', { subject: '/CN=acme-billing+CN=admin', clientAuth: true })],
  ['no CN', ca.issue('no-cn', { subject: '/O=acme', clientAuth: true })],
  ['an empty CN (openssl leaves the subject empty)', ca.issue('empty-cn', { subject: '/CN=', clientAuth: true })],
  ['a non-ASCII CN', ca.issue('utf8', { subject: '/CN=acme-billïng', clientAuth: true })],
  ['a CN with a trailing space', ca.issue('trailing', { subject: '/CN=acme-billing ', clientAuth: true })],
  ['the server certificate (serverAuth only) as a client certificate', server],
  ['another CA', foreign],
  ['an expired certificate', expired],
  ['a certificate not valid yet', future],
]

const client = (cert?: IssuedCert): TlsClientFiles => cert === undefined ? { ca: ca.cert } : { ca: ca.cert, cert: cert.cert, key: cert.key }

async function startGateway (t: Test, backend: string, tlsExtra = ''): Promise<number> {
  const port = await freePort()
  const file = join(dir, `gateway-${port}.yaml`)
  writeFileSync(file, `server:
  host: 127.0.0.1
  port: ${port}
  tls: { cert: ./server.crt, key: ./server.key, clientCa: ./ca.crt${tlsExtra} }
  http2: true
services:
  backend: { urls: [${backend}], timeout: 2s }
policies:
  billing-only: { auth: mtls, subjects: [acme-billing, "ops team@acme"] }
  any-client: { auth: mtls, rateLimit: { max: 100, window: 1m, key: user } }
  public: { auth: none }
routes:
  - { id: billing, path: /billing, policy: billing-only, proxy: { service: backend } }
  - { id: any, path: /any, policy: any-client, proxy: { service: backend } }
  - { id: agg, path: /agg, policy: any-client, aggregate: { me: { service: backend, path: "/who/{auth.sub}" } } }
  - { id: open, path: /open, policy: public, proxy: { service: backend } }
`)
  const gw = startCli(t, ['start', '--config', file], childEnv())
  await gw.waitForLine(/^portico listening on /)
  return port
}

function seenHeaders (a: Answer): Record<string, string> {
  return (JSON.parse(a.body) as { headers: Record<string, string> }).headers
}

t.test('the verified certificate is the identity, over HTTP/1.1 and h2', async t => {
  const up = await upstream(t)
  const port = await startGateway(t, up.url)
  const forged = { 'x-auth-sub': 'admin', 'x-auth-cert-fingerprint': 'f'.repeat(64), 'x-auth-roles': 'admin' }

  const viaH1 = await h1(port, '/billing', client(billing), { headers: forged })
  t.equal(viaH1.status, 200)
  const up1 = seenHeaders(viaH1)
  t.equal(up1['x-auth-sub'], 'acme-billing', 'sub is the subject CN')
  t.equal(up1['x-auth-cert-fingerprint'], billing.fingerprint, 'SHA-256 of the DER, lowercase hex without colons')
  t.match(up1['x-auth-cert-fingerprint'], /^[0-9a-f]{64}$/)
  t.equal(up1['x-auth-roles'], undefined, 'the client\'s x-auth-roles is gone')

  const session = await h2session(port, client(billing))
  t.teardown(() => { session.close() })
  const viaH2 = await h2(session, '/billing', { headers: forged })
  t.equal(viaH2.status, 200, 'h2: the session socket carries the certificate')
  t.same({ sub: seenHeaders(viaH2)['x-auth-sub'], fp: seenHeaders(viaH2)['x-auth-cert-fingerprint'] }, { sub: 'acme-billing', fp: billing.fingerprint })
  const again = await h2(session, '/any')
  t.equal(seenHeaders(again)['x-auth-sub'], 'acme-billing', 'the next stream of the session too')

  const agg = await h2(session, '/agg')
  const part = JSON.parse(agg.body) as { me: { url: string, headers: Record<string, string> } }
  t.equal(part.me.url, '/who/acme-billing', '{auth.sub} is the CN in templates')
  t.equal(part.me.headers['x-auth-cert-fingerprint'], billing.fingerprint, 'aggregate parts get the fingerprint too')

  const withSpace = await h1(port, '/billing', client(spaced))
  t.equal(seenHeaders(withSpace)['x-auth-sub'], 'ops team@acme', 'a CN with inner spaces and @ is a plain name')

  const viaCurl = await curl(['--http2', '--cacert', ca.cert, '--cert', ops.cert, '--key', ops.key, `https://localhost:${port}/any`])
  t.equal(viaCurl.code, 0, viaCurl.stderr)
  t.equal((JSON.parse(viaCurl.stdout) as { headers: Record<string, string> }).headers['x-auth-sub'], 'acme-ops', 'curl --cert')
})

t.test('refusals: 401 without a valid plain certificate, 403 outside subjects, nothing reaches the upstream', async t => {
  const up = await upstream(t)
  const port = await startGateway(t, up.url)
  const check = (label: string, a: Answer, status: number, code: string): Record<string, unknown> =>
    expectProblem(t, { statusCode: a.status, headers: a.headers, body: a.body }, status, code, label)

  const none = await h1(port, '/any', client())
  t.match(check('no certificate', none, 401, 'UNAUTHENTICATED').detail, /client certificate is required/)
  const noneH2 = await h2session(port, client())
  t.teardown(() => { noneH2.close() })
  check('no certificate over h2', await h2(noneH2, '/any'), 401, 'UNAUTHENTICATED')
  t.equal((await h2(noneH2, '/open')).status, 200, 'a public route on the same port needs no certificate')

  for (const [label, cert] of hostile) {
    const a = await h1(port, '/any', client(cert))
    const body = check(label, a, 401, 'UNAUTHENTICATED')
    if (label === 'an expired certificate') t.match(body.detail, /has expired/)
    if (label === 'another CA') t.match(body.detail, /not signed by a CA this gateway trusts/)
    const session = await h2session(port, client(cert))
    check(`${label} over h2`, await h2(session, '/any'), 401, 'UNAUTHENTICATED')
    session.close()
  }

  const outside = await h1(port, '/billing', client(ops))
  t.match(check('CN outside subjects', outside, 403, 'FORBIDDEN').detail, /subject is not one this policy allows/)
  const outsideH2 = await h2session(port, client(ops))
  check('CN outside subjects over h2', await h2(outsideH2, '/billing'), 403, 'FORBIDDEN')
  outsideH2.close()
  t.equal(up.hits(), 1, 'only the public request reached the upstream')
})

t.test('requireClientCert: without a valid certificate there is no TLS session', async t => {
  const up = await upstream(t)
  const port = await startGateway(t, up.url, ', requireClientCert: true')
  const without = await curl(['--cacert', ca.cert, `https://localhost:${port}/open`])
  t.not(without.code, 0, `no certificate: the handshake fails (curl ${without.code})`)
  t.equal(without.stdout, '', 'and no HTTP answer comes')
  const foreignRun = await curl(['--cacert', ca.cert, '--cert', foreign.cert, '--key', foreign.key, `https://localhost:${port}/open`])
  t.not(foreignRun.code, 0, 'another CA\'s certificate: no session')
  const expiredRun = await curl(['--http2', '--cacert', ca.cert, '--cert', expired.cert, '--key', expired.key, `https://localhost:${port}/open`])
  t.not(expiredRun.code, 0, 'an expired certificate: no session')
  const ok = await curl(['--http2', '--cacert', ca.cert, '--cert', billing.cert, '--key', billing.key, '-o', '/dev/null', '-w', '%{http_version} %{http_code}', `https://localhost:${port}/billing`])
  t.equal(ok.stdout, '2 200', 'a valid certificate gets its answer')
  t.equal(up.hits(), 1)
})

t.test('an mtls route reached without TLS (inject) answers 401, not a crash', async t => {
  const app = await buildFromFiles(t, {
    'gateway.yaml': `server: { tls: { cert: ${server.cert}, key: ${server.key}, clientCa: ${ca.cert} } }
services: { backend: { urls: [http://127.0.0.1:1] } }
policies: { certs: { auth: mtls } }
routes: [{ id: r, path: /r, policy: certs, proxy: { service: backend } }]
`,
  })
  const res = await app.inject({ url: '/r', headers: { 'x-auth-sub': 'admin' } })
  t.match(expectProblem(t, res, 401, 'UNAUTHENTICATED').detail, /connect over TLS/)
})
