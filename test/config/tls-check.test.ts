// server.tls / http2 / redirectHttpPort and auth: mtls, as `portico check`
// (and start, and reload) see them: certificate files read and refused with
// FILE:LINE: server.tls.FIELD: when a key does not fit its certificate, a
// certificate is out of date, a file is missing, unreadable or not PEM; the
// settings that need TLS refused without it. Certificates made by openssl.
import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadGatewayConfig } from '../../src/extensions/load-config.js'
import { ConfigError, formatProblem } from '../../src/config/problems.js'
import { effectiveConfig } from '../../src/admin/admin-app.js'
import { makeCa, serverPki } from '../helpers/certs.js'
import { buildIfStale, CLI, ROOT } from '../helpers/cli.js'

const dir = t.testdir()
const { ca, server } = serverPki(dir)
const other = makeCa(dir, 'other', '/CN=Another CA')
ca.strayKey('stray')
ca.issue('expired', { subject: '/CN=localhost', san: ['DNS:localhost'], notBefore: '20200101000000Z', notAfter: '20210101000000Z' })
ca.issue('future', { subject: '/CN=localhost', san: ['DNS:localhost'], notBefore: '20400101000000Z', notAfter: '20410101000000Z' })
writeFileSync(join(dir, 'not-pem.crt'), 'hello, I am not a certificate\n')
writeFileSync(join(dir, 'broken.crt'), '-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n')
execFileSync('openssl', ['x509', '-in', server.cert, '-outform', 'DER', '-out', join(dir, 'server.der')])
execFileSync('openssl', ['pkey', '-in', server.key, '-aes256', '-passout', 'pass:secret', '-out', join(dir, 'encrypted.key')])
mkdirSync(join(dir, 'a-directory.crt'))
// A "CA" file that is a leaf certificate.
copyFileSync(server.cert, join(dir, 'leaf-as-ca.crt'))

let n = 0
/** Writes gateway.yaml (server block given as lines) next to the certificates and loads it. */
async function load (serverLines: string, policies = '  public: { auth: none }', extra = ''): Promise<{ problems: string[], config?: Awaited<ReturnType<typeof loadGatewayConfig>>['config'], warnings: string[] }> {
  const file = join(dir, `gateway-${n++}.yaml`)
  writeFileSync(file, `server:
  host: 127.0.0.1
  port: 8443
${serverLines}
${extra}services:
  backend: { urls: [http://127.0.0.1:1] }
policies:
${policies}
routes:
  - { id: r, path: /r, policy: ${policies.trim().split(':')[0]}, proxy: { service: backend } }
`)
  try {
    const { config, warnings } = await loadGatewayConfig(file, {})
    return { problems: [], config, warnings: warnings.map(formatProblem) }
  } catch (err) {
    if (err instanceof ConfigError) return { problems: err.problems.map(formatProblem), warnings: [] }
    throw err
  }
}

const tls = (fields: string): string => `  tls: { ${fields} }`
const good = 'cert: ./server.crt, key: ./server.key'

t.test('a good pair loads: absolute paths, TLSv1.2 by default, PEM kept out of any JSON view', async t => {
  const { problems, config } = await load(`${tls(`${good}, clientCa: ./ca.crt`)}\n  http2: true\n  redirectHttpPort: 8081`)
  t.same(problems, [])
  const s = config!.server
  t.equal(s.tls?.cert, server.cert)
  t.equal(s.tls?.key, server.key)
  t.equal(s.tls?.clientCa, ca.cert)
  t.equal(s.tls?.minVersion, 'TLSv1.2')
  t.equal(s.tls?.requireClientCert, false)
  t.equal(s.http2, true)
  t.equal(s.redirectHttpPort, 8081)
  t.equal(s.tls?.pem.key, server.keyPem(), 'the key is read once, at load')
  const shown = JSON.stringify(effectiveConfig(config!))
  t.notMatch(shown, /PRIVATE KEY|BEGIN CERTIFICATE/, '/admin/config never shows PEM text')
  t.match(shown, /server\.key/, 'it shows the file names')
  t.ok(config!.files.includes(server.cert) && config!.files.includes(server.key) && config!.files.includes(ca.cert), '--watch sees certificate changes')
})

t.test('without tls: plain HTTP, no http2, no redirect', async t => {
  const { problems, config } = await load('')
  t.same(problems, [])
  t.equal(config!.server.tls, undefined)
  t.equal(config!.server.http2, false)
  t.equal(config!.server.redirectHttpPort, 0)
})

t.test('each bad file is named, on the line of its field', async t => {
  const cases: Array<[string, string, RegExp]> = [
    ['cert: ./server.crt, key: ./stray.key', 'key not matching', /:4: server\.tls\.key: .*stray\.key is not the private key of the certificate in .*server\.crt/],
    ['cert: ./other.crt, key: ./server.key', 'another certificate for the key', /:4: server\.tls\.key: .*server\.key is not the private key of the certificate in .*other\.crt/],
    ['cert: ./expired.crt, key: ./expired.key', 'expired', /:4: server\.tls\.cert: .*expired\.crt: the certificate \(serial [0-9A-F]+\) expired on 2021-01-01T00:00:00\.000Z/],
    ['cert: ./future.crt, key: ./future.key', 'not yet valid', /:4: server\.tls\.cert: .*future\.crt: the certificate \(serial [0-9A-F]+\) is not valid before 2040-01-01T00:00:00\.000Z/],
    ['cert: ./missing.crt, key: ./server.key', 'missing cert', /:4: server\.tls\.cert: file not found: .*missing\.crt/],
    ['cert: ./server.crt, key: ./missing.key', 'missing key', /:4: server\.tls\.key: file not found: .*missing\.key/],
    ['cert: ./a-directory.crt, key: ./server.key', 'unreadable', /:4: server\.tls\.cert: cannot read .*a-directory\.crt \(EISDIR\)/],
    ['cert: ./not-pem.crt, key: ./server.key', 'not PEM', /:4: server\.tls\.cert: .*not-pem\.crt is not a PEM certificate \(expected -----BEGIN CERTIFICATE-----\)/],
    ['cert: ./server.der, key: ./server.key', 'DER, not PEM', /:4: server\.tls\.cert: .*server\.der is not a PEM certificate/],
    ['cert: ./broken.crt, key: ./server.key', 'PEM armour around garbage', /:4: server\.tls\.cert: .*broken\.crt: the certificate is not a valid X\.509 certificate/],
    ['cert: ./server.crt, key: ./server.crt', 'a certificate as the key', /:4: server\.tls\.key: .*server\.crt is not a PEM private key/],
    ['cert: ./server.crt, key: ./encrypted.key', 'encrypted key', /:4: server\.tls\.key: .*encrypted\.key is encrypted; give the key without a passphrase/],
  ]
  for (const [fields, label, expected] of cases) {
    const { problems } = await load(tls(fields))
    t.equal(problems.length, 1, `${label}: one problem (${problems.join(' | ')})`)
    t.match(problems[0] ?? '', expected, label)
  }
})

t.test('a tls block written over several lines points at the field itself', async t => {
  const { problems } = await load('  tls:\n    cert: ./server.crt\n    key: ./stray.key')
  t.match(problems, [/gateway-\d+\.yaml:6: server\.tls\.key: /])
})

t.test('client CAs: an expired-only bundle is refused, a leaf posing as a CA is a warning', async t => {
  t.same((await load(tls(`${good}, clientCa: ./ca.crt`))).problems, [])
  const leaf = await load(tls(`${good}, clientCa: ./leaf-as-ca.crt`))
  t.same(leaf.problems, [])
  t.match(leaf.warnings, [/server\.tls\.clientCa: warning: .*leaf-as-ca\.crt: certificate 1 .* is not a CA certificate/])
  const expiredCa = await load(tls(`${good}, clientCa: ./expired.crt`))
  t.match(expiredCa.problems, [/server\.tls\.clientCa: warning: .*expired\.crt: certificate 1 \(CN=localhost\) expired on /, /server\.tls\.clientCa: .*expired\.crt holds no CA certificate that is in date/])
  const missing = await load(tls(`${good}, clientCa: ./nope.pem`))
  t.match(missing.problems, [/server\.tls\.clientCa: file not found: .*nope\.pem/])
})

t.test('settings that need TLS, and the rest of the schema', async t => {
  t.match((await load('  http2: true')).problems, [/:4: server\.http2: needs server\.tls: .*cleartext HTTP\/2 \(h2c\) is not offered/])
  t.match((await load('  redirectHttpPort: 8081')).problems, [/:4: server\.redirectHttpPort: needs server\.tls/])
  t.match((await load(`${tls(good)}\n  redirectHttpPort: 8443`)).problems, [/server\.redirectHttpPort: is server\.port \(8443\)/])
  t.match((await load(`${tls(good)}\n  redirectHttpPort: 9090`, undefined, 'admin: { port: 9090 }\n')).problems, [/server\.redirectHttpPort: is admin\.port \(9090\)/])
  t.match((await load(tls(`${good}, requireClientCert: true`))).problems, [/server\.tls\.requireClientCert: needs server\.tls\.clientCa/])
  t.match((await load(tls(`${good}, minVersion: TLSv1.1`))).problems, [/server\.tls\.minVersion: must be TLSv1\.2 or TLSv1\.3/])
  t.match((await load(tls(`${good}, ciphers: ALL`))).problems, [/server\.tls\.ciphers: unknown key/])
  t.match((await load(tls('cert: ./server.crt'))).problems, [/server\.tls\.key: is required/])
  const v13 = await load(tls(`${good}, minVersion: TLSv1.3`))
  t.equal(v13.config?.server.tls?.minVersion, 'TLSv1.3')
})

t.test('auth: mtls policies', async t => {
  const withCa = tls(`${good}, clientCa: ./ca.crt`)
  const ok = await load(withCa, '  certs: { auth: mtls, subjects: [acme-billing, "ops team", svc@acme.example] }')
  t.same(ok.problems, [])
  t.match(ok.config?.policies.get('certs'), { auth: 'mtls', subjects: ['acme-billing', 'ops team', 'svc@acme.example'] })
  t.same((await load(withCa, '  certs: { auth: mtls }')).problems, [], 'subjects are optional')
  t.match((await load(tls(good), '  certs: { auth: mtls }')).problems, [/policies\.certs\.auth: auth: mtls needs server\.tls\.clientCa/])
  t.match((await load('', '  certs: { auth: mtls }')).problems, [/policies\.certs\.auth: auth: mtls needs server\.tls\.clientCa/])
  t.match((await load(withCa, '  certs: { auth: mtls, roles: [admin] }')).problems, [/policies\.certs\.roles: has no effect with auth: mtls/])
  t.match((await load(withCa, '  open: { auth: none, subjects: [a] }')).problems, [/policies\.open\.subjects: applies to auth: mtls only/])
  t.match((await load(withCa, '  certs: { auth: mtls, subjects: ["acme, CN=admin"] }')).problems, [/policies\.certs\.subjects\[0\]: "acme, CN=admin" can never match/])
  t.match((await load(withCa, '  certs: { auth: mtls, subjects: [] }')).problems, [/policies\.certs\.subjects: /])
})

t.test('portico check names the file and line, exit 1; a good config exits 0', async t => {
  buildIfStale()
  const bad = join(dir, 'check-bad.yaml')
  writeFileSync(bad, `server:
  port: 8443
  tls:
    cert: ./expired.crt
    key: ./stray.key
  http2: true
services: { b: { urls: [http://127.0.0.1:1] } }
policies: { p: { auth: none } }
routes: [{ id: r, path: /r, policy: p, proxy: { service: b } }]
`)
  const res = spawnSync(process.execPath, [CLI, 'check', '--config', bad], { cwd: ROOT, encoding: 'utf8' })
  t.equal(res.status, 1)
  const lines = res.stdout.trim().split('\n')
  t.match(lines, [/check-bad\.yaml:4: server\.tls\.cert: .*expired\.crt: the certificate .* expired on /])
  t.equal(lines.length, 1, 'the key is not also reported against a certificate that failed already')
  const goodFile = join(dir, 'check-good.yaml')
  writeFileSync(goodFile, `server: { port: 8443, tls: { cert: ./server.crt, key: ./server.key }, http2: true }
services: { b: { urls: [http://127.0.0.1:1] } }
policies: { p: { auth: none } }
routes: [{ id: r, path: /r, policy: p, proxy: { service: b } }]
`)
  const okRun = spawnSync(process.execPath, [CLI, 'check', '--config', goodFile], { cwd: ROOT, encoding: 'utf8' })
  t.equal(okRun.status, 0, okRun.stdout)
  t.match(okRun.stdout, /OK — 1 routes/)
  t.ok(other.cert !== '')
})
