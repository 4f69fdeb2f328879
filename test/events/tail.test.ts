// `portico events tail` (README "Events"), the real CLI in its own process
// against the real Redis: it prints each new stream entry as one JSON line
// with `body` parsed, `--from-start` prints what is already there, SIGTERM
// ends it with exit 0, and without redis.url or with Redis unreachable it
// refuses with one line and exit 1.
import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { writeConfigFiles, buildFromFiles } from '../helpers/gateway.js'
import { closedPort, upstream } from '../helpers/upstream.js'
import { skipUnlessRedis, REDIS_URL, eventually, uniquePrefix, withClient } from '../helpers/redis.js'
import { uniqueStream } from '../helpers/events.js'

await skipUnlessRedis(t)

// A subtest (the last overload of t.test takes only the callback).
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CLI = join(ROOT, 'dist/src/main/cli.js')

t.before(() => {
  // `npm test` builds first (pretest); running this file alone may not have.
  if (existsSync(CLI)) return
  const build = spawnSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8' })
  if (build.status !== 0) throw new Error(`npm run build failed:\n${build.stdout}${build.stderr}`)
})

function configFile (redisUrl: string | undefined, upstream = 'http://127.0.0.1:4002'): string {
  const dir = writeConfigFiles({
    'gateway.yaml': `${redisUrl !== undefined ? `redis:\n  url: ${redisUrl}\n` : ''}services:
  orders:
    urls: [${upstream}]
policies:
  public: { auth: none }
routes:
  - id: list-orders
    method: GET
    path: /api/orders
    policy: public
    proxy: { service: orders }
`,
  })
  return join(dir, 'gateway.yaml')
}

interface Tail {
  proc: ChildProcess
  /** Parsed stdout lines so far. */
  lines: Array<Record<string, unknown>>
  stderr: () => string
  /** Waits for at least n stdout lines. */
  waitLines: (n: number) => Promise<void>
  /** SIGTERM, then the exit code. */
  stop: () => Promise<number | null>
}

/** Starts `portico events tail ...` and waits for its "tailing stream" line. */
async function startTail (t: Test, args: string[]): Promise<Tail> {
  const proc = spawn(process.execPath, [CLI, 'events', 'tail', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<number | null>(resolve => proc.once('exit', code => { resolve(code) }))
  t.teardown(() => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL') })
  const lines: Array<Record<string, unknown>> = []
  let out = ''
  let err = ''
  proc.stdout?.on('data', (c: Buffer) => {
    out += c.toString('utf8')
    let nl: number
    while ((nl = out.indexOf('\n')) !== -1) {
      const line = out.slice(0, nl)
      out = out.slice(nl + 1)
      try { lines.push(JSON.parse(line) as Record<string, unknown>) } catch { lines.push({ notJson: line }) }
    }
  })
  proc.stderr?.on('data', (c: Buffer) => { err += c.toString('utf8') })
  const live = async (): Promise<boolean> => proc.exitCode === null && proc.signalCode === null
  await eventually('the "tailing stream" line', async () => {
    if (!await live()) throw new Error(`tail exited early (${String(proc.exitCode)}): ${err}`)
    return err.includes('tailing stream')
  })
  return {
    proc,
    lines,
    stderr: () => err,
    waitLines: async n => { await eventually(`${n} lines from tail (stderr: ${err})`, async () => lines.length >= n) },
    stop: async () => {
      proc.kill('SIGTERM')
      return await Promise.race([exited, sleep(10_000).then(() => { throw new Error('tail did not exit within 10 s of SIGTERM') })])
    },
  }
}

/** XADDs an entry with the gateway's field layout; the entry id. */
async function addEvent (stream: string, fields: Record<string, string>): Promise<string> {
  const flat = Object.entries(fields).flat()
  const id = await withClient(REDIS_URL, async c => await c.xadd(stream, '*', ...flat))
  if (id === null) throw new Error('XADD returned no id')
  return id
}

const EVENT = {
  type: 'order.created',
  route: 'create-order',
  sub: 'user-42',
  requestId: 'req-tail-1',
  at: '2024-05-01T12:00:00.000Z',
  body: '{ "orderId": 7, "items": [1, 2], "note": "zoë" }',
}

t.test('prints each new entry as one JSON line with body parsed; SIGTERM exits 0', async t => {
  const stream = uniqueStream(t, 'tail-new')
  // Already there: not printed without --from-start.
  await addEvent(stream, { ...EVENT, requestId: 'old' })
  const tail = await startTail(t, ['--stream', stream, '--config', configFile(REDIS_URL)])
  t.match(tail.stderr(), `tailing stream ${stream}`)

  const id1 = await addEvent(stream, EVENT)
  const id2 = await addEvent(stream, { ...EVENT, type: 'report.requested', route: 'submit-report', requestId: 'req-tail-2', body: '{"title":"Q3"}', commandId: '6c1d8a36-3d7e-4c53-9d32-0b8f0e2f8f11' })
  await tail.waitLines(2)
  t.same(tail.lines[0], { id: id1, type: 'order.created', route: 'create-order', sub: 'user-42', requestId: 'req-tail-1', at: '2024-05-01T12:00:00.000Z', body: { orderId: 7, items: [1, 2], note: 'zoë' } })
  t.same(tail.lines[1], { id: id2, type: 'report.requested', route: 'submit-report', sub: 'user-42', requestId: 'req-tail-2', at: '2024-05-01T12:00:00.000Z', body: { title: 'Q3' }, commandId: '6c1d8a36-3d7e-4c53-9d32-0b8f0e2f8f11' })

  t.equal(await tail.stop(), 0, 'exit 0 on SIGTERM')
  t.equal(tail.lines.length, 2, 'nothing else printed (not the entry from before it started)')
})

t.test('--from-start prints the entries already in the stream, then new ones', async t => {
  const stream = uniqueStream(t, 'tail-start')
  const a = await addEvent(stream, { ...EVENT, requestId: 'a' })
  const b = await addEvent(stream, { ...EVENT, requestId: 'b', body: 'not json at all' })
  const tail = await startTail(t, ['--stream', stream, '--from-start', '--config', configFile(REDIS_URL)])
  await tail.waitLines(2)
  t.same(tail.lines.map(l => [l.id, l.requestId]), [[a, 'a'], [b, 'b']], 'existing entries in stream order')
  t.equal(tail.lines[1].body, 'not json at all', 'a body that is not JSON is printed as a string')
  const c = await addEvent(stream, { ...EVENT, requestId: 'c' })
  await tail.waitLines(3)
  t.same(tail.lines.map(l => l.id), [a, b, c])
  t.equal(await tail.stop(), 0)
})

t.test('shows what a publishing gateway writes', async t => {
  const stream = uniqueStream(t, 'tail-gateway')
  const up = await upstream(t, (_req, res) => {
    res.writeHead(201, { 'content-type': 'application/json' })
    res.end('{"orderId":99,"status":"new"}')
  })
  const app = await buildFromFiles(t, {
    'gateway.yaml': `redis:
  url: ${REDIS_URL}
  keyPrefix: "${uniquePrefix(t, 'ev-tail')}"
services:
  orders:
    urls: [${up.url}]
policies:
  public: { auth: none }
routes:
  - id: create-order
    method: POST
    path: /api/orders
    policy: public
    proxy: { service: orders }
    publish: { stream: ${stream}, type: order.created }
`,
  })
  const tail = await startTail(t, ['--stream', stream, '--config', configFile(REDIS_URL, up.url)])
  const res = await app.inject({ method: 'POST', url: '/api/orders', payload: '{}', headers: { 'content-type': 'application/json' } })
  t.equal(res.statusCode, 201)
  await tail.waitLines(1)
  t.match(tail.lines[0], { type: 'order.created', route: 'create-order', sub: '', requestId: res.headers['x-request-id'], body: { orderId: 99, status: 'new' } })
  t.equal(await tail.stop(), 0)
})

t.test('a config without redis.url: exit 1, saying why', async t => {
  const r = spawnSync(process.execPath, [CLI, 'events', 'tail', '--stream', 'orders', '--config', configFile(undefined)], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 })
  t.equal(r.status, 1)
  t.match(r.stderr, /redis\.url/)
  t.equal(r.stdout, '')
})

t.test('Redis unreachable: one line on stderr, no stack, exit 1 (and a password in the URL is masked)', async t => {
  const port = await closedPort()
  for (const [url, shown] of [
    [`redis://127.0.0.1:${port}`, `redis://127.0.0.1:${port}`],
    [`redis://:tail-s3cret-pw@127.0.0.1:${port}/0`, `redis://:***@127.0.0.1:${port}/0`],
  ]) {
    const r = spawnSync(process.execPath, [CLI, 'events', 'tail', '--stream', 'orders', '--config', configFile(url)], { cwd: ROOT, encoding: 'utf8', timeout: 20_000 })
    t.equal(r.status, 1, `${shown}: exit 1 (not retrying forever)`)
    t.equal(r.stdout, '', 'nothing on stdout')
    const lines = r.stderr.split('\n').filter(l => l !== '')
    t.equal(lines.length, 1, `one stderr line, got: ${r.stderr.slice(0, 500)}`)
    t.match(lines[0], new RegExp(`^portico: cannot reach Redis at ${shown.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: connect ECONNREFUSED`))
    t.notMatch(r.stderr, /\n\s+at |ioredis|tail-s3cret-pw/, 'no stack, no ioredis noise, no password')
  }
})

t.test('usage errors: exit 2', async t => {
  for (const args of [['events', 'tail'], ['events', 'tail', '--stream', ''], ['events', 'follow', '--stream', 'x'], ['events']]) {
    const r = spawnSync(process.execPath, [CLI, ...args, '--config', configFile(REDIS_URL)], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 })
    t.equal(r.status, 2, args.join(' '))
    t.match(r.stderr, /events tail --stream NAME/, `${args.join(' ')}: usage shown`)
  }
})
