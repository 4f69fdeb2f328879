// HTTPS through the real CLI: the ready line says https://, curl verifies the
// certificate against the test CA, upstreams learn x-forwarded-proto: https
// (proxy and aggregate parts), minVersion holds, and SIGHUP rotates the
// certificate: new handshakes get the new one while an open keep-alive
// connection keeps answering; a bad new pair is refused and the old one kept.
// Workers serve TLS and rotate too. Certificates made by openssl.
import t from 'tap'
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Agent } from 'node:https'
import { execFileSync, spawnSync } from 'node:child_process'
import { upstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'
import { buildIfStale, childEnv, CLI, freePort, ROOT, startCli } from '../helpers/cli.js'
import { serverPki } from '../helpers/certs.js'
import { curl, h1, presentedCert } from '../helpers/https.js'

t.before(buildIfStale)

const pki = t.testdir()
const { ca, server } = serverPki(pki)

function gatewayYaml (port: number, backend: string, extra = ''): string {
  return `server:
  host: 127.0.0.1
  port: ${port}
  shutdownTimeout: 3s
  tls: { cert: ./gw.crt, key: ./gw.key }
${extra}services:
  backend: { urls: [${backend}], timeout: 2s }
policies:
  public: { auth: none }
routes:
  - { id: proxied, path: /p, policy: public, proxy: { service: backend } }
  - { id: merged, path: /agg, policy: public, aggregate: { one: { service: backend, path: /one }, two: { service: backend, path: /two } } }
`
}

/** A gateway dir of its own: gw.crt/gw.key are copies the test may overwrite. */
function gatewayDir (name: string, yaml: string): string {
  const dir = join(pki, name)
  execFileSync('mkdir', ['-p', dir])
  copyFileSync(server.cert, join(dir, 'gw.crt'))
  copyFileSync(server.key, join(dir, 'gw.key'))
  writeFileSync(join(dir, 'gateway.yaml'), yaml)
  return dir
}

const files = { ca: ca.cert }

t.test('HTTPS: curl verifies the certificate; x-forwarded-proto is https on proxy and aggregate calls', async t => {
  const up = await upstream(t)
  const port = await freePort()
  const dir = gatewayDir('basic', gatewayYaml(port, up.url))
  const gw = startCli(t, ['start', '--config', join(dir, 'gateway.yaml')], childEnv())
  const ready = await gw.waitForLine(/^portico listening on /)
  t.match(ready, new RegExp(`^portico listening on https://127\\.0\\.0\\.1:${port} `))

  const res = await curl(['--cacert', ca.cert, '-H', 'x-forwarded-proto: http', `https://localhost:${port}/p`])
  t.equal(res.code, 0, res.stderr)
  const seen = JSON.parse(res.stdout) as { headers: Record<string, string> }
  t.equal(seen.headers['x-forwarded-proto'], 'https', 'proxy: the gateway says https, not what the client claimed')
  t.equal(seen.headers['x-forwarded-host'], `localhost:${port}`)

  const agg = await h1(port, '/agg', files)
  t.equal(agg.status, 200)
  const parts = JSON.parse(agg.body) as Record<string, { headers: Record<string, string> }>
  t.equal(parts.one.headers['x-forwarded-proto'], 'https', 'aggregate part one')
  t.equal(parts.two.headers['x-forwarded-proto'], 'https', 'aggregate part two')

  const untrusted = await curl([`https://127.0.0.1:${port}/p`])
  t.equal(untrusted.code, 60, 'a client that does not trust the CA refuses the certificate (curl 60)')
  const plain = await curl([`http://127.0.0.1:${port}/p`])
  t.not(plain.code, 0, 'plain HTTP on the TLS port gets no answer a client accepts')
  t.equal(up.hits(), 3, 'only the verified requests reached the upstream')

  // The image's HEALTHCHECK, as the Dockerfile writes it, against this gateway.
  const docker = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  const script = /CMD node -e "(.*)"\s*$/m.exec(docker)?.[1]
  t.ok(script, 'the Dockerfile has a node -e health check')
  const health = (url: string): number | null => spawnSync(process.execPath, ['-e', script ?? ''], { env: { ...process.env, HEALTH_URL: url }, timeout: 10_000 }).status
  t.equal(health(`https://127.0.0.1:${port}/healthz`), 0, 'HEALTH_URL=https://… passes against the TLS listener')
  t.equal(health(`http://127.0.0.1:${port}/healthz`), 1, 'plain http:// against it fails')
})

t.test('minVersion: TLSv1.3 refuses a TLS 1.2 client', async t => {
  const up = await upstream(t)
  const port = await freePort()
  const dir = gatewayDir('v13', gatewayYaml(port, up.url).replace('key: ./gw.key }', 'key: ./gw.key, minVersion: TLSv1.3 }'))
  const gw = startCli(t, ['start', '--config', join(dir, 'gateway.yaml')], childEnv())
  await gw.waitForLine(/^portico listening on /)
  const old = await curl(['--cacert', ca.cert, '--tls-max', '1.2', `https://localhost:${port}/p`])
  t.not(old.code, 0, 'TLS 1.2 handshake refused')
  const ok = await curl(['--cacert', ca.cert, '-o', '/dev/null', '-w', '%{http_code}', `https://localhost:${port}/p`])
  t.equal(ok.stdout, '200', 'TLS 1.3 works')
})

t.test('SIGHUP rotates the certificate: new handshakes get it, an open connection keeps answering; a bad pair is refused', async t => {
  const up = await upstream(t)
  const port = await freePort()
  const dir = gatewayDir('rotate', gatewayYaml(port, up.url))
  const gw = startCli(t, ['start', '--config', join(dir, 'gateway.yaml')], childEnv())
  await gw.waitForLine(/^portico listening on /)

  const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: readFileSync(ca.cert, 'utf8'), servername: 'localhost' })
  t.teardown(() => { agent.destroy() })
  const first = await h1(port, '/p', files, { agent })
  t.equal(first.status, 200)
  t.equal(first.serial, server.serial, 'the first certificate')
  const socket = [...Object.values(agent.sockets).flat(), ...Object.values(agent.freeSockets).flat()][0]

  const next = ca.issue('rotated', { subject: '/CN=localhost', san: ['IP:127.0.0.1', 'DNS:localhost'] })
  t.not(next.serial, server.serial)
  copyFileSync(next.cert, join(dir, 'gw.crt'))
  copyFileSync(next.key, join(dir, 'gw.key'))
  gw.child.kill('SIGHUP')
  await waitFor(async () => (await presentedCert(port, ca.cert)).serialNumber === next.serial, { timeout: 10_000, interval: 50, message: 'a new handshake presents the rotated certificate' })
  t.match(await gw.waitForLine(/TLS certificates reloaded/), /gw\.crt/, 'the reload is logged')

  const again = await h1(port, '/p', files, { agent })
  t.equal(again.status, 200, 'the connection opened before the rotation still answers')
  t.equal(again.serial, server.serial, 'on the session it negotiated with the old certificate')
  const socketNow = [...Object.values(agent.sockets).flat(), ...Object.values(agent.freeSockets).flat()][0]
  t.equal(socketNow, socket, 'the same socket: not dropped')
  const fresh = await h1(port, '/p', files)
  t.equal(fresh.serial, next.serial, 'a new connection gets the new certificate')

  // A key that fits no certificate: the reload is refused, the pair in use stays.
  copyFileSync(ca.strayKey('stray'), join(dir, 'gw.key'))
  gw.child.kill('SIGHUP')
  const rejected = await gw.waitForLine(/config reload rejected/)
  t.match(rejected, /1 problems/)
  t.ok(gw.lines.some(l => /gateway\.yaml:5: server\.tls\.key: .*gw\.key is not the private key of the certificate/.test(l)), 'the problem names the file and line')
  t.equal((await presentedCert(port, ca.cert)).serialNumber, next.serial, 'new handshakes still get the last good certificate')
  t.equal((await h1(port, '/p', files)).status, 200)
})

t.test('--watch: rewritten certificate files are picked up without a signal', async t => {
  const up = await upstream(t)
  const port = await freePort()
  const dir = gatewayDir('watch', gatewayYaml(port, up.url))
  const gw = startCli(t, ['start', '--watch', '--config', join(dir, 'gateway.yaml')], childEnv())
  await gw.waitForLine(/^portico listening on /)
  t.equal((await presentedCert(port, ca.cert)).serialNumber, server.serial)
  const next = ca.issue('watched', { subject: '/CN=localhost', san: ['IP:127.0.0.1', 'DNS:localhost'] })
  copyFileSync(next.cert, join(dir, 'gw.crt'))
  copyFileSync(next.key, join(dir, 'gw.key'))
  await waitFor(async () => (await presentedCert(port, ca.cert)).serialNumber === next.serial, { timeout: 10_000, interval: 50, message: 'the watched certificate is in use' })
  t.pass('new handshakes present the rewritten certificate')
})

t.test('parser errors over TLS are problem+json too; a handshake that never comes is cut at headersTimeout', async t => {
  const port = await freePort()
  const dir = gatewayDir('parser', gatewayYaml(port, 'http://127.0.0.1:1', '  headersTimeout: 1s\n'))
  const gw = startCli(t, ['start', '--config', join(dir, 'gateway.yaml')], childEnv())
  await gw.waitForLine(/^portico listening on /)
  const answer = await rawTls(port, 'GET /p HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n')
  t.match(answer, /^HTTP\/1\.1 400 /)
  t.match(answer, /content-type: application\/problem\+json/)
  t.match(answer, /"code":"BAD_REQUEST"/)

  const { connect } = await import('node:net')
  const silent = connect(port, '127.0.0.1')
  const opened = Date.now()
  await new Promise<void>(resolve => { silent.on('close', () => { resolve() }); silent.on('error', () => {}) })
  const held = Date.now() - opened
  t.ok(held >= 900 && held < 3000, `a TCP connection that never starts TLS is closed after about 1 s (${held} ms)`)
})

/** Sends raw bytes over a TLS connection (ALPN http/1.1) and returns everything the server wrote before closing. */
async function rawTls (port: number, text: string): Promise<string> {
  const { connect } = await import('node:tls')
  return await new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca: readFileSync(ca.cert, 'utf8'), servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => { socket.write(text) })
    let data = ''
    socket.setEncoding('utf8').on('data', (c: string) => { data += c })
    socket.on('end', () => { resolve(data) })
    socket.on('close', () => { resolve(data) })
    socket.on('error', reject)
  })
}

t.test('start refuses an expired certificate with FILE:LINE and exit 1', async t => {
  const port = await freePort()
  const expired = ca.issue('expired', { subject: '/CN=localhost', days: -1 })
  const dir = gatewayDir('expired', gatewayYaml(port, 'http://127.0.0.1:1'))
  copyFileSync(expired.cert, join(dir, 'gw.crt'))
  copyFileSync(expired.key, join(dir, 'gw.key'))
  const run = spawnSync(process.execPath, [CLI, 'start', '--config', join(dir, 'gateway.yaml')], { cwd: ROOT, env: childEnv(), encoding: 'utf8', timeout: 30_000 })
  t.equal(run.status, 1)
  t.match(run.stdout + run.stderr, /gateway\.yaml:5: server\.tls\.cert: .*gw\.crt: the certificate \(serial [0-9A-F]+\) expired on /)
})

t.test('two workers serve TLS and HTTP/2 (and the redirect listener), and both rotate on SIGHUP', async t => {
  const up = await upstream(t)
  const [port, redirectPort] = [await freePort(), await freePort()]
  const dir = gatewayDir('workers', gatewayYaml(port, up.url, `  workers: 2\n  http2: true\n  redirectHttpPort: ${redirectPort}\n`))
  const gw = startCli(t, ['start', '--config', join(dir, 'gateway.yaml')], childEnv())
  const ready = await gw.waitForLine(/^portico listening on /)
  t.match(ready, `portico listening on https://127.0.0.1:${port}, http://127.0.0.1:${redirectPort} (redirects to https) (2 workers`)
  const redirected = await curl(['-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', `http://localhost:${redirectPort}/p?x=1`])
  t.equal(redirected.stdout, `308 https://localhost:${port}/p?x=1`, 'the workers share the redirect port too')
  for (const version of ['--http2', '--http1.1']) {
    for (let i = 0; i < 4; i++) {
      const res = await curl(['--cacert', ca.cert, version, '-o', '/dev/null', '-w', '%{http_version} %{http_code}', `https://localhost:${port}/p`])
      t.equal(res.stdout, version === '--http2' ? '2 200' : '1.1 200', `${version} #${i}`)
    }
  }
  const next = ca.issue('rotated-workers', { subject: '/CN=localhost', san: ['IP:127.0.0.1', 'DNS:localhost'] })
  copyFileSync(next.cert, join(dir, 'gw.crt'))
  copyFileSync(next.key, join(dir, 'gw.key'))
  gw.child.kill('SIGHUP')
  // New connections spread over both workers; eight in a row with the new
  // serial means neither worker still presents the old one.
  await waitFor(async () => {
    for (let i = 0; i < 8; i++) if ((await presentedCert(port, ca.cert)).serialNumber !== next.serial) return false
    return true
  }, { timeout: 15_000, interval: 100, message: 'every worker presents the rotated certificate' })
  t.pass('both workers rotated')
  gw.child.kill('SIGTERM')
  t.equal((await gw.exited).code, 0, 'clean stop')
})
