// CORS in a real browser: headless Chromium (playwright-core) opens a page on
// one origin (http://127.0.0.1:A, a static server started here) that fetches
// the gateway, run by the real CLI, on another (http://127.0.0.1:B). All of
// them are on loopback, so Chromium's Private Network Access rules (a public
// page calling a private address) do not come into it; a different port is a
// different origin. A second page server (http://127.0.0.1:C) is an origin the
// gateway does not list. What the pages saw — status and body, or the
// TypeError of a CORS failure — and what reached the upstream are checked.
// `portico check` on a bad cors block runs here too (it needs the built CLI).
import t from 'tap'
import { existsSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { chromium, type Browser, type Page } from 'playwright-core'
import { buildIfStale, childEnv, CLI, ROOT, startConfiguredCli } from '../helpers/cli.js'
import { writeConfigFiles } from '../helpers/gateway.js'
import { upstream } from '../helpers/upstream.js'
import { now, signHs } from '../helpers/jwt.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', '--disable-component-update', '--disable-sync']
const SECRET = 'cors-browser-secret-0123456789abcdef'

t.before(buildIfStale)

/** What a page's fetch ended with: the answer it could read, or the error a blocked one throws. */
interface Seen {
  ok: boolean
  status?: number
  body?: string
  requestId?: string | null
  cache?: string | null
  /** A header the gateway does not expose: a page can never read it. */
  server?: string | null
  error?: string
}

/** A page server answering one HTML page whose `window.call(url, init)` fetches and reports what it saw. */
async function pageServer (t: { teardown: (fn: () => unknown) => void }): Promise<{ origin: string, port: number }> {
  const html = `<!doctype html><meta charset="utf-8"><title>cors test</title>
<script>
window.call = async (url, init) => {
  try {
    const r = await fetch(url, init)
    return { ok: true, status: r.status, body: await r.text(), requestId: r.headers.get('x-request-id'), cache: r.headers.get('x-cache'), server: r.headers.get('x-upstream') }
  } catch (e) {
    return { ok: false, error: e.name + ': ' + e.message }
  }
}
</script>`
  const server: Server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end(html)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { server.closeAllConnections(); await new Promise(resolve => server.close(resolve)) })
  const port = (server.address() as AddressInfo).port
  return { origin: `http://127.0.0.1:${port}`, port }
}

async function call (page: Page, url: string, init: Record<string, unknown> = {}): Promise<Seen> {
  return await page.evaluate(async ([u, i]) => await (window as unknown as { call: (u: string, i: unknown) => Promise<Seen> }).call(u as string, i), [url, init] as const)
}

t.test('a page on another origin calls the gateway: simple GET, preflighted PUT, credentials, and a refused origin', { skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (.ci/run installs Debian's chromium package)` }, async t => {
  const up = await upstream(t, (req, res, body) => {
    res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'backend', 'access-control-allow-origin': '*' })
    res.end(JSON.stringify({ method: req.method, url: req.url, cookie: req.headers.cookie ?? null, body: body.toString('utf8') }))
  })
  const allowed = await pageServer(t)
  const other = await pageServer(t)
  const { port, gw } = await startConfiguredCli(t, port => `server: { host: 127.0.0.1, port: ${port} }
auth:
  jwt: { secret: "${SECRET}", algorithms: [HS256] }
services:
  backend: { urls: ["${up.url}"], timeout: 2s }
policies:
  public: { auth: none }
  user: { auth: jwt }
cors:
  origins: ["${allowed.origin}", "http://localhost:${allowed.port}"]
  headers: [authorization, content-type]
  exposeHeaders: [x-request-id, x-cache]
  credentials: true
  maxAge: 10m
routes:
  - { id: items, method: GET, path: /api/items, policy: public, cache: { ttl: 1m }, proxy: { service: backend } }
  - { id: item-put, method: PUT, path: /api/items/:id, policy: user, proxy: { service: backend } }
  - { id: me, method: GET, path: /api/me, policy: public, proxy: { service: backend } }
`, childEnv())
  const gateway = `http://127.0.0.1:${port}`

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true })
  t.teardown(async () => { await browser.close() })
  const context = await browser.newContext()
  // A cookie for the gateway's host (cookies do not separate ports): sent only with credentials: 'include'.
  await context.addCookies([{ name: 'session', value: 's3cr3t', domain: '127.0.0.1', path: '/', sameSite: 'Lax' }])
  const page = await context.newPage()
  await page.goto(`${allowed.origin}/`)

  t.test('a simple GET: readable, exposed headers readable, others not, no preflight', async t => {
    const seen = await call(page, `${gateway}/api/items`)
    t.equal(seen.ok, true, seen.error ?? 'fetched')
    t.equal(seen.status, 200)
    t.match(JSON.parse(seen.body ?? '{}'), { method: 'GET', url: '/api/items', cookie: null }, 'no cookie without credentials')
    t.match(seen.requestId, /^.+$/, 'x-request-id is exposed')
    t.equal(seen.cache, 'MISS', 'x-cache is exposed')
    t.equal(seen.server, null, 'a header not in exposeHeaders cannot be read')
    const hit = await call(page, `${gateway}/api/items`)
    t.equal(hit.cache, 'HIT', 'a cache HIT is readable too')
    t.equal(up.hits(), 1)
  })

  t.test('a PUT with authorization and JSON: preflighted, answered by the gateway, then the PUT', async t => {
    const before = up.hits()
    const seen = await call(page, `${gateway}/api/items/7`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${signHs({ sub: 'alice', exp: now() + 600 }, SECRET)}`, 'content-type': 'application/json' },
      body: JSON.stringify({ qty: 2 }),
    })
    t.equal(seen.ok, true, seen.error ?? 'fetched')
    t.equal(seen.status, 200)
    t.match(JSON.parse(seen.body ?? '{}'), { method: 'PUT', url: '/api/items/7', body: '{"qty":2}' })
    await gw.waitForLine(/"method":"OPTIONS".*"path":"\/api\/items\/7".*"status":204/)
    t.pass('the gateway answered the preflight with 204 (access log)')
    t.equal(up.hits() - before, 1, 'only the PUT reached the upstream; the preflight did not')
    t.same(up.seen.map(s => s.method).filter(m => m === 'OPTIONS'), [], 'no OPTIONS ever reached it')
  })

  t.test('a PUT without a token: the 401 is readable by the page (errors carry CORS headers)', async t => {
    const seen = await call(page, `${gateway}/api/items/7`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{}' })
    t.equal(seen.ok, true, seen.error ?? 'fetched')
    t.equal(seen.status, 401)
    t.match(JSON.parse(seen.body ?? '{}'), { code: 'UNAUTHENTICATED' })
  })

  t.test('a request header the gateway does not allow: the preflight fails, the PUT is never sent', async t => {
    const before = up.hits()
    const seen = await call(page, `${gateway}/api/items/8`, { method: 'PUT', headers: { 'x-custom': '1', 'content-type': 'application/json' }, body: '{}' })
    t.equal(seen.ok, false)
    t.match(seen.error, /^TypeError: Failed to fetch/)
    t.equal(up.hits(), before)
  })

  t.test('credentials: include — the cookie goes, and the answer is readable (allow-credentials)', async t => {
    const seen = await call(page, `${gateway}/api/me`, { credentials: 'include' })
    t.equal(seen.ok, true, seen.error ?? 'fetched')
    t.match(JSON.parse(seen.body ?? '{}'), { cookie: 'session=s3cr3t' })
  })

  t.test('the same page opened as http://localhost:A is another origin, allowed by its own entry', async t => {
    const page3 = await context.newPage()
    await page3.goto(`http://localhost:${allowed.port}/`)
    const seen = await call(page3, `${gateway}/api/items/9`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${signHs({ sub: 'alice', exp: now() + 600 }, SECRET)}`, 'content-type': 'application/json' },
      body: '{}',
    })
    t.equal(seen.ok, true, seen.error ?? 'fetched')
    t.equal(seen.status, 200)
    await gw.waitForLine(/"method":"OPTIONS".*"path":"\/api\/items\/9".*"status":204/)
    await page3.close()
  })

  t.test('a page on an origin not in the list: the browser refuses every answer', async t => {
    const page2 = await context.newPage()
    await page2.goto(`${other.origin}/`)
    const before = up.hits()
    const get = await call(page2, `${gateway}/api/me`)
    t.equal(get.ok, false)
    t.match(get.error, /^TypeError: Failed to fetch/, 'a simple GET: the answer is not readable')
    t.equal(up.hits(), before + 1, 'a simple request is still sent (CORS guards reading, not sending): routes that change things need auth')
    const put = await call(page2, `${gateway}/api/items/77`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{}' })
    t.equal(put.ok, false)
    t.match(put.error, /^TypeError: Failed to fetch/)
    await gw.waitForLine(/"method":"OPTIONS".*"path":"\/api\/items\/77".*"status":204/)
    t.equal(up.hits(), before + 1, 'a preflighted request from a refused origin never reaches the upstream')
    await page2.close()
  })
})

t.test('portico check refuses credentials with "*" and malformed origins, FILE:LINE: field', async t => {
  const dir = writeConfigFiles({
    'gateway.yaml': `services:
  users: { urls: ["http://127.0.0.1:4001"] }
policies:
  public: { auth: none }
cors:
  origins: ["*", "https://app.example.com/", "https://app.*.example.com"]
  credentials: true
routes:
  - { id: one, path: /one, policy: public, cors: { origins: [app.example.com] }, proxy: { service: users } }
`,
  })
  const r = spawnSync(process.execPath, [CLI, 'check', '--config', join(dir, 'gateway.yaml')], { cwd: ROOT, env: childEnv(), encoding: 'utf8', timeout: 30_000 })
  t.equal(r.status, 1)
  const lines = (r.stdout + r.stderr).split('\n').filter(l => l.trim() !== '')
  const file = join(dir, 'gateway.yaml')
  t.ok(lines.some(l => l === `${file}:7: cors.credentials: true cannot go with the "*" origin: browsers refuse a credentialed answer that allows any origin, and reflecting every origin would hand any site the user's session; list the origins instead`), 'credentials with *')
  t.ok(lines.some(l => l.startsWith(`${file}:6: cors.origins[1]: has a trailing "/"`)), 'trailing slash')
  t.ok(lines.some(l => l.startsWith(`${file}:6: cors.origins[2]: a wildcard may only be the whole first label`)), 'wildcard not first')
  t.ok(lines.some(l => l.startsWith(`${file}:9: routes[0].cors.origins[0]: has no scheme`)), 'no scheme, in a route\'s block')
  t.notMatch(r.stdout + r.stderr, /\s+at .+:\d+:\d+/, 'no stack')
})
