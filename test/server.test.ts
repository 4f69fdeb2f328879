// The real process: `portico start` as a user runs it. Ready line on stdout,
// graceful SIGTERM (stop accepting, finish in-flight requests, exit 0) and the
// `npm start` demo (DESIGN.md "Run" and "Operations").
import t from 'tap'
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { createServer, connect } from 'node:net'
import { createRequire } from 'node:module'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'
import { request } from 'undici'
import { startUpstream } from './helpers/upstream.js'
import { writeConfigFiles } from './helpers/gateway.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const CLI = join(ROOT, 'dist', 'src', 'cli.js')

// A subtest (the last overload of t.test takes only the callback).
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

// The CLI runs from dist. `npm test` builds it first (pretest); run alone, this
// file builds it when a source is newer, so it never tests stale code. (Not
// unconditionally: other test files may be running the CLI from dist meanwhile.)
t.before(() => {
  if (!distIsStale()) return
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  execFileSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, stdio: 'inherit' })
})

function distIsStale (): boolean {
  if (!existsSync(CLI)) return true
  const built = statSync(CLI).mtimeMs
  const newest = (dir: string): number => {
    let max = 0
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) max = Math.max(max, newest(path))
      else if (entry.name.endsWith('.ts')) max = Math.max(max, statSync(path).mtimeMs)
    }
    return max
  }
  return ['src', 'plugins', 'demo'].some(dir => existsSync(join(ROOT, dir)) && newest(join(ROOT, dir)) > built)
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise(resolve => server.close(resolve))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

interface Gateway {
  child: ChildProcess
  /** Every stdout line so far. */
  lines: string[]
  /** Resolves with the first stdout line matching, rejects if the process ends first. */
  waitForLine: (re: RegExp) => Promise<string>
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  hasExited: () => boolean
}

function startCli (t: Test, args: string[], env: NodeJS.ProcessEnv): Gateway {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: string[] = []
  const waiters: Array<{ re: RegExp, resolve: (line: string) => void }> = []
  let stderr = ''
  let buffered = ''
  let done = false
  child.stdout?.setEncoding('utf8').on('data', (text: string) => {
    buffered += text
    const parts = buffered.split('\n')
    buffered = parts.pop() ?? ''
    for (const line of parts) {
      lines.push(line)
      for (const w of [...waiters]) {
        if (w.re.test(line)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(line) }
      }
    }
  })
  child.stderr?.setEncoding('utf8').on('data', (text: string) => { stderr += text })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => {
    child.on('exit', (code, signal) => { done = true; resolve({ code, signal }) })
  })
  t.teardown(async () => {
    if (!done) { child.kill('SIGKILL'); await exited }
  })
  return {
    child,
    lines,
    exited,
    hasExited: () => done,
    waitForLine: async re => {
      const already = lines.find(l => re.test(l))
      if (already !== undefined) return already
      return await Promise.race([
        new Promise<string>(resolve => { waiters.push({ re, resolve }) }),
        exited.then(({ code }) => { throw new Error(`portico exited (${code}) before printing ${re}; stderr: ${stderr}; stdout: ${lines.join('\n')}`) }),
      ])
    },
  }
}

/** Env for a child gateway: no inherited PORT or config path, quiet enough to read. */
function childEnv (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'info', ...extra }
  if (extra.PORT === undefined) delete env.PORT
  delete env.PORTICO_CONFIG
  return env
}

/** Tries new connections until one is refused (or gives up); true when refused. */
async function refusesConnections (port: number): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    const refused = await new Promise<boolean>(resolve => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => { socket.destroy(); resolve(false) })
      socket.once('error', err => { resolve((err as NodeJS.ErrnoException).code === 'ECONNREFUSED') })
    })
    if (refused) return true
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  return false
}

t.test('portico start: ready line, then SIGTERM finishes the request in flight and exits 0', async t => {
  const up = await startUpstream((_req, res) => {
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{"slow":true}')
    }, 800)
  })
  t.teardown(up.close)
  const port = await freePort()
  const dir = writeConfigFiles({
    'gateway.yaml': `server:
  host: 127.0.0.1
  port: ${port}
services:
  slow:
    urls: [${up.url}]
    timeout: 5s
policies:
  public: { auth: none }
routes:
  - id: slow
    path: /slow
    policy: public
    proxy: { service: slow }
`,
  })
  const gw = startCli(t, ['start', '--config', join(dir, 'gateway.yaml')], childEnv())
  const ready = await gw.waitForLine(/^portico listening on /)
  t.match(ready, new RegExp(`^portico listening on http://127\\.0\\.0\\.1:${port} \\(1 routes from .*gateway\\.yaml\\)$`))
  t.equal(gw.lines.filter(l => l.startsWith('portico listening on')).length, 1, 'one ready line')

  const inFlight = request(`http://127.0.0.1:${port}/slow`)
  // The request has reached the slow upstream: it is in flight at the gateway.
  while (up.hits() === 0) await new Promise(resolve => setTimeout(resolve, 10))

  gw.child.kill('SIGTERM')
  t.ok(await refusesConnections(port), 'new connections are refused after SIGTERM')
  t.notOk(gw.hasExited(), 'refused while the process was still finishing its request')

  const res = await inFlight
  t.equal(res.statusCode, 200, 'the in-flight request completes')
  t.same(await res.body.json(), { slow: true })
  t.same(await gw.exited, { code: 0, signal: null }, 'exit 0 after the drain')
  t.equal(up.hits(), 1)
})

t.test('npm start\'s command serves the demo config and stops on SIGTERM', async t => {
  const port = await freePort()
  const gw = startCli(t, ['start', '--demo'], childEnv({ PORT: String(port) }))
  const ready = await gw.waitForLine(/^portico listening on /)
  t.match(ready, new RegExp(`:${port} \\(\\d+ routes from config/gateway\\.yaml\\)$`))

  const res = await request(`http://127.0.0.1:${port}/api/products`)
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  const products = await res.body.json() as Array<{ id: string }>
  t.ok(Array.isArray(products) && products.length > 0, 'a list of products')
  t.match(products[0], { id: String, name: String })

  gw.child.kill('SIGTERM')
  t.same(await gw.exited, { code: 0, signal: null })
})
