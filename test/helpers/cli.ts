// Runs the real CLI (`node dist/src/main/cli.js`) as a child process for tests
// that need the process: ready line, signals, reload, exit codes.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { createRequire } from 'node:module'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'
import t from 'tap'
import { writeConfigFiles } from './gateway.js'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const CLI = join(ROOT, 'dist', 'src', 'main', 'cli.js')

// A subtest (the last overload of t.test takes only the callback).
export type Test = Parameters<Parameters<typeof t.test>[0]>[0]

// The CLI runs from dist. `npm test` builds it first (pretest); run alone, a
// test file calls this to build it when a source is newer, so it never tests
// stale code. (Not unconditionally: other test files may be running the CLI
// from dist meanwhile.)
export function buildIfStale (): void {
  if (!distIsStale()) return
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  execFileSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, stdio: 'inherit' })
}

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

export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise(resolve => server.close(resolve))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

export interface Gateway {
  child: ChildProcess
  /** Every stdout line so far. */
  lines: string[]
  /** Resolves with the first stdout line matching, rejects if the process ends first. */
  waitForLine: (re: RegExp) => Promise<string>
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  hasExited: () => boolean
}

export function startCli (t: Test, args: string[], env: NodeJS.ProcessEnv): Gateway {
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
export function childEnv (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'info', ...extra }
  if (extra.PORT === undefined) delete env.PORT
  delete env.PORTICO_CONFIG
  return env
}


export interface ConfiguredGateway {
  port: number
  gw: Gateway
  /** The temp dir holding gateway.yaml. */
  dir: string
  /** The ready line. */
  ready: string
}

/**
 * Writes a gateway.yaml (given a free port to listen on), starts the real
 * CLI on it and waits for the ready line.
 */
export async function startConfiguredCli (t: Test, gatewayYaml: (port: number) => string, env: NodeJS.ProcessEnv = childEnv()): Promise<ConfiguredGateway> {
  const port = await freePort()
  const dir = writeConfigFiles({ 'gateway.yaml': gatewayYaml(port) })
  const gw = startCli(t, ['start', '--config', join(dir, 'gateway.yaml')], env)
  const ready = await gw.waitForLine(/^portico listening on /)
  return { port, gw, dir, ready }
}
