// Redis Cluster for real: three redis-server nodes in cluster mode, started by
// this test on free ports, and a gateway configured with redis+cluster://.
// The cache (entries, tags, purges) and the shared rate limit must work there
// as on one Redis.
import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster } from 'ioredis'
import { parseRedisUrl } from '../../src/redis/connection.js'
import { buildFromFiles } from '../helpers/gateway.js'
import { upstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'
import { freePort } from '../helpers/cli.js'

t.test('parseRedisUrl: one server, cluster seeds, sentinels', async t => {
  t.same(parseRedisUrl('redis://127.0.0.1:6379/2'), { kind: 'single' })
  t.same(parseRedisUrl('rediss://user:pw@host:6380'), { kind: 'single' })
  t.same(parseRedisUrl('redis+cluster://10.0.0.1:7000,10.0.0.2:7001'), {
    kind: 'cluster', nodes: [{ host: '10.0.0.1', port: 7000 }, { host: '10.0.0.2', port: 7001 }],
  })
  t.same(parseRedisUrl('redis+cluster://:s%40cret@h1:7000'), { kind: 'cluster', nodes: [{ host: 'h1', port: 7000 }], password: 's@cret' })
  t.same(parseRedisUrl('redis+sentinel://s1:26379,s2/primary/3'), {
    kind: 'sentinel', nodes: [{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }], name: 'primary', db: 3,
  })
})

async function startCluster (t: { teardown: (fn: () => void) => void }): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), 'portico-cluster-'))
  const ports: number[] = []
  const procs: ChildProcess[] = []
  t.teardown(() => { for (const p of procs) p.kill('SIGKILL') })
  for (let i = 0; i < 3; i++) {
    const port = await freePort()
    ports.push(port)
    procs.push(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes',
      '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' }))
  }
  for (const port of ports) {
    await waitFor(() => spawnSync('redis-cli', ['-p', String(port), 'ping']).stdout?.toString().trim() === 'PONG', { timeout: 5000, interval: 100, message: `redis-server on ${port} answers PING` })
  }
  const created = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map(p => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'])
  if (created.status !== 0) throw new Error(`cluster create failed: ${created.stdout?.toString()} ${created.stderr?.toString()}`)
  // Every node must agree the cluster is up (under load the others lag the first).
  await waitFor(() => ports.every(p => /cluster_state:ok/.test(spawnSync('redis-cli', ['-p', String(p), 'cluster', 'info']).stdout?.toString() ?? '')), { timeout: 20_000, interval: 100, message: 'every node reports cluster_state:ok' })
  return ports
}

const hasRedisServer = spawnSync('redis-server', ['--version']).status === 0

t.test('cache and rate limits on a real Redis Cluster', { skip: hasRedisServer ? false : 'redis-server is not installed' }, async t => {
  const ports = await startCluster(t)
  const up = await upstream(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ url: req.url, n: Math.random() }))
  })
  const url = `redis+cluster://${ports.map(p => `127.0.0.1:${p}`).join(',')}`
  const files = {
    'gateway.yaml': `redis: { url: "${url}", keyPrefix: "cl-test:" }
services:
  backend: { urls: [${up.url}], timeout: 2s }
policies:
  public: { auth: none }
routes:
  - id: item
    path: /items/:id
    policy: public
    cache: { ttl: 1m, tags: ["item:{params.id}", "items"] }
    proxy: { service: backend, path: "/items/{params.id}" }
  - id: limited
    path: /limited
    policy: public
    rateLimit: { max: 5, window: 1m }
    proxy: { service: backend }
  - id: touch
    method: POST
    path: /items/:id
    policy: public
    invalidates: ["item:{params.id}"]
    proxy: { service: backend, path: "/items/{params.id}" }
`,
  }
  const app = await buildFromFiles(t, files)
  await app.ready()
  // The gateway waits up to 2 s for Redis at start; a cluster just formed, on a
  // machine busy with the other test files, may take longer to answer.
  const redisState = async (): Promise<string> => (await app.inject({ url: '/readyz' })).json<{ redis: string }>().redis
  await waitFor(async () => await redisState() === 'up', { timeout: 10_000, interval: 100, message: 'the gateway reaches the cluster' })
  t.equal(await redisState(), 'up', 'the gateway reached the cluster')

  // Several ids land in different hash slots, i.e. on different nodes.
  for (const id of ['a', 'b', 'c', 'd']) {
    const miss = await app.inject({ url: `/items/${id}` })
    t.equal(miss.headers['x-cache'], 'MISS', `${id}: first read`)
    const hit = await app.inject({ url: `/items/${id}` })
    t.equal(hit.headers['x-cache'], 'HIT', `${id}: second read from the cluster`)
    t.equal(hit.body, miss.body)
  }
  t.equal(up.hits(), 4)

  const touched = await app.inject({ method: 'POST', url: '/items/b' })
  t.equal(touched.statusCode, 200)
  t.equal((await app.inject({ url: '/items/b' })).headers['x-cache'], 'MISS', 'the write purged b')
  t.equal((await app.inject({ url: '/items/a' })).headers['x-cache'], 'HIT', 'a is untouched')

  const direct = new Cluster([{ host: '127.0.0.1', port: ports[0] }])
  t.teardown(() => { direct.disconnect() })
  t.equal(await direct.scard('cl-test:t:items'), 4, 'the tag set names all four entries')

  // The limiter counts in the cluster too: max 5 per route and key.
  const statuses = []
  for (let i = 0; i < 7; i++) statuses.push((await app.inject({ url: '/limited' })).statusCode)
  t.same(statuses, [200, 200, 200, 200, 200, 429, 429], '5 allowed per minute, counted in the cluster')
  t.equal(await direct.get('cl-test:rl:limited:ip:127.0.0.1'), '7')
})
