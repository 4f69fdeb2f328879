// The admin status page in a real browser (headless Chromium driven by
// playwright-core): it loads, lists the routes, and shows a breaker turning
// open after its upstream breaks.
import t from 'tap'
import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'
import { buildFromFiles } from '../helpers/gateway.js'
import { upstream } from '../helpers/upstream.js'
import { buildAdminApp } from '../../src/admin/admin-app.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', '--disable-component-update', '--disable-sync']

t.test('the status page shows routes and a breaker opening', { skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (.ci/run installs Debian's chromium package)` }, async t => {
  let broken = false
  const up = await upstream(t, (_req, res) => {
    res.writeHead(broken ? 500 : 200, { 'content-type': 'application/json' })
    res.end('{"ok":true}')
  })
  const app = await buildFromFiles(t, {
    'gateway.yaml': `services:
  flaky: { urls: [${up.url}], breaker: { volumeThreshold: 2, errorThresholdPercentage: 10, resetTimeout: 1m } }
policies:
  public: { auth: none }
routes:
  - { id: flaky-items, path: /items, policy: public, cache: { ttl: 1s }, proxy: { service: flaky } }
`,
  })
  const admin = await buildAdminApp(app)
  await admin.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(async () => { await admin.close() })
  const address = admin.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true })
  t.teardown(async () => { await browser.close() })
  const page = await browser.newPage()
  await page.goto(`http://127.0.0.1:${port}/`)
  await page.locator('#routes tbody tr', { hasText: 'flaky-items' }).waitFor({ timeout: 10_000 })
  t.match(await page.locator('#routes tbody').innerText(), /flaky-items\s+GET, HEAD\s+\/items\s+public/, 'the route is listed')
  const badge = page.locator('[data-service="flaky"]')
  t.equal(await badge.innerText(), 'closed')

  broken = true
  for (let i = 0; i < 4; i++) await app.inject({ url: '/items' })
  t.equal((await app.inject({ url: '/items' })).statusCode, 503, 'the breaker is open at the gateway')
  await page.waitForFunction(() => document.querySelector('[data-service="flaky"]')?.textContent === 'open', undefined, { timeout: 10_000 })
  t.equal(await badge.innerText(), 'open', 'the page shows it open after refreshing itself')
  await page.screenshot({ path: '/tmp/portico-status-page.png' })
})
