// The admin API names a route's plugins but never shows their settings,
// which may hold secrets (a plugin's token, a header value).
import t from 'tap'
import { buildFromFiles } from '../helpers/gateway.js'
import { startUpstream } from '../helpers/upstream.js'
import { buildAdminApp } from '../../src/admin/admin-app.js'

const ADMIN_TOKEN = 'admin-token-for-the-extensions-test'
const PLUGIN_SECRET = 'plugin-secret-that-must-not-leak'

t.test('/admin/routes and /admin/config list plugin names only', async t => {
  const up = await startUpstream()
  t.teardown(up.close)
  const gateway = await buildFromFiles(t, {
    'gateway.yaml': `admin: { port: 0, token: "${ADMIN_TOKEN}" }
services:
  backend: { urls: [${up.url}], timeout: 1s }
policies:
  public: { auth: none }
plugins:
  ip-filter: { deny: [192.0.2.0/24] }
routes:
  - id: signed
    path: /signed
    policy: public
    proxy: { service: backend }
    plugins:
      headers: { request: { set: { x-service-key: "${PLUGIN_SECRET}" } } }
  - { id: plain, path: /plain, policy: public, proxy: { service: backend } }
`,
  })
  const admin = await buildAdminApp(gateway)
  t.teardown(async () => { await admin.close() })
  const headers = { authorization: `Bearer ${ADMIN_TOKEN}` }
  const routes = await admin.inject({ url: '/admin/routes', headers })
  t.equal(routes.statusCode, 200)
  const listed = routes.json<Array<{ id: string, plugins?: string[] }>>()
  t.same(listed.find(r => r.id === 'signed')?.plugins, ['ip-filter', 'headers'])
  t.same(listed.find(r => r.id === 'plain')?.plugins, ['ip-filter'])
  const config = await admin.inject({ url: '/admin/config', headers })
  t.equal(config.statusCode, 200)
  t.same(config.json<{ routes: Array<{ plugins?: unknown }> }>().routes.map(r => r.plugins), [['ip-filter', 'headers'], ['ip-filter']])
  t.notMatch(routes.body + config.body, PLUGIN_SECRET)
})
