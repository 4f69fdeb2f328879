// server.workers with the real process: the primary forks workers sharing the
// port, aggregates their metrics, forwards SIGHUP and SIGTERM, and replaces a
// worker that dies (README "Workers and scaling out").
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { upstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'
import { writeConfigFiles } from '../helpers/gateway.js'
import { buildIfStale, childEnv, freePort, startCli } from '../helpers/cli.js'
import { Redis } from 'ioredis'
import { skipUnlessRedis } from '../helpers/redis.js'

await skipUnlessRedis(t)

t.before(buildIfStale)

function workerPids (primary: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(primary)]).toString().trim().split('\n').filter(Boolean).map(Number)
  } catch {
    return []
  }
}

async function until (what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  await waitFor(check, { timeout: 10_000, interval: 50, message: what })
}

t.test('two workers: one ready line, shared port, aggregated metrics, reload, replacement, clean stop', async t => {
  const up = await upstream(t, (_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"ok":true}') })
  const [port, adminPort] = [await freePort(), await freePort()]
  const prefix = `test-workers-${process.pid}-${Date.now()}:`
  const config = (routes: string): string => `server: { host: 127.0.0.1, port: ${port}, workers: 2 }
admin: { port: ${adminPort} }
redis: { url: "${process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'}", keyPrefix: "${prefix}" }
services:
  backend: { urls: [${up.url}] }
policies:
  public: { auth: none }
routes:
${routes}
`
  const limited = '  - { id: limited, path: /limited, policy: public, rateLimit: { max: 6, window: 1m }, proxy: { service: backend } }'
  const dir = writeConfigFiles({ 'gateway.yaml': config(`  - { id: a, path: /a, policy: public, proxy: { service: backend } }\n${limited}`) })
  const file = join(dir, 'gateway.yaml')
  const gw = startCli(t, ['start', '--config', file], childEnv())
  const ready = await gw.waitForLine(/^portico listening on /)
  t.match(ready, /\(2 workers, 2 routes from /)
  t.equal(gw.lines.filter(l => l.startsWith('portico listening on')).length, 1, 'one ready line for the whole group')
  const primary = gw.child.pid ?? 0
  await until('two workers', () => workerPids(primary).length === 2)

  for (let i = 0; i < 10; i++) {
    const res = await request(`http://127.0.0.1:${port}/a`, { reset: true })
    t.equal(res.statusCode, 200)
    await res.body.dump()
  }
  const metrics = await (await request(`http://127.0.0.1:${adminPort}/metrics`)).body.text()
  t.match(metrics, /portico_http_requests_total\{route="a",method="GET",status_class="2xx"\} 10/, 'metrics summed over the workers')
  const routes = await (await request(`http://127.0.0.1:${adminPort}/admin/routes`)).body.json() as Array<{ id: string }>
  t.same(routes.map(r => r.id), ['a', 'limited'], 'admin calls are answered by a worker')

  // New connections each time, so the requests spread over both workers; the
  // limit is one counter in Redis, shared by them.
  const codes: number[] = []
  for (let i = 0; i < 12; i++) {
    const res = await request(`http://127.0.0.1:${port}/limited`, { reset: true })
    codes.push(res.statusCode)
    await res.body.dump()
  }
  t.equal(codes.filter(c => c === 200).length, 6, 'the two workers share one rate-limit counter')
  t.equal(codes.filter(c => c === 429).length, 6)

  writeFileSync(file, config(`  - { id: a, path: /a, policy: public, proxy: { service: backend } }\n  - { id: b, path: /b, policy: public, proxy: { service: backend } }\n${limited}`))
  gw.child.kill('SIGHUP')
  await until('both workers serve /b', async () => {
    const codes = []
    for (let i = 0; i < 6; i++) {
      const res = await request(`http://127.0.0.1:${port}/b`, { reset: true })
      codes.push(res.statusCode)
      await res.body.dump()
    }
    return codes.every(c => c === 200)
  })
  t.pass('SIGHUP reloaded every worker')

  const [victim] = workerPids(primary)
  process.kill(victim, 'SIGKILL')
  await until('a replacement worker', () => { const pids = workerPids(primary); return pids.length === 2 && !pids.includes(victim) })
  const after = await request(`http://127.0.0.1:${port}/a`, { reset: true })
  t.equal(after.statusCode, 200, 'still serving after a worker died')
  await after.body.dump()

  gw.child.kill('SIGTERM')
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379')
  const keys = await redis.keys(`${prefix}*`)
  if (keys.length > 0) await redis.del(...keys)
  redis.disconnect()
  const { code } = await gw.exited
  t.equal(code, 0, 'the group stops cleanly')
  t.same(workerPids(primary), [], 'no worker left behind')
})
