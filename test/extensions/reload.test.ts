// The real process: a plugin file is part of the config, so a reload
// (SIGHUP) runs the file's new content, not the module imported at start.
import t from 'tap'
import { utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.js'
import { writeConfigFiles } from '../helpers/gateway.js'
import { buildIfStale, childEnv, freePort, startCli } from '../helpers/cli.js'

t.before(buildIfStale)

const plugin = (version: string): string => `export default {
  name: 'version',
  configSchema: { type: 'object' },
  compile: () => ({ onResponse: (request, reply) => { reply.header('x-plugin-version', '${version}') } }),
}
`

t.test('SIGHUP re-imports a changed plugin file', async t => {
  const up = await startUpstream()
  t.teardown(up.close)
  const port = await freePort()
  const dir = writeConfigFiles({
    'gateway.yaml': `extensions: [./version.mjs]
server: { host: 127.0.0.1, port: ${port} }
services:
  backend: { urls: [${up.url}], timeout: 2s }
policies:
  public: { auth: none }
plugins:
  version: {}
routes:
  - { id: a, path: /a, policy: public, proxy: { service: backend } }
`,
    'version.mjs': plugin('1'),
  })
  const gw = startCli(t, ['start', '--config', join(dir, 'gateway.yaml')], childEnv())
  await gw.waitForLine(/^portico listening on /)
  const first = await request(`http://127.0.0.1:${port}/a`)
  await first.body.dump()
  t.equal(first.headers['x-plugin-version'], '1')

  const file = join(dir, 'version.mjs')
  writeFileSync(file, plugin('2'))
  // A later modification time, even on a file system with coarse timestamps.
  const later = new Date(Date.now() + 5_000)
  utimesSync(file, later, later)
  gw.child.kill('SIGHUP')
  await gw.waitForLine(/config reloaded/)
  const second = await request(`http://127.0.0.1:${port}/a`)
  await second.body.dump()
  t.equal(second.headers['x-plugin-version'], '2')
})
