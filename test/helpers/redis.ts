// Real Redis for tests: a unique key prefix per test (tests run in parallel,
// in several processes), its keys deleted when the test ends, and a private
// redis-server a test can kill and restart for outage cases.

import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { Redis } from 'ioredis'
import { waitFor } from './wait.js'

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

interface Teardown { teardown: (fn: () => unknown) => void }

/**
 * For a test file that needs Redis: on a developer's machine without Redis
 * (REDIS_URL unset, not CI, nothing answering on 127.0.0.1:6379) the whole
 * file is skipped with the reason. With REDIS_URL set, or under CI, it always
 * runs, so a Redis that is down there fails the tests instead of hiding them.
 */
export async function skipUnlessRedis (t: { plan: (n: number, reason: string) => void }): Promise<void> {
  if (process.env.REDIS_URL !== undefined || process.env.CI !== undefined) return
  const up = await withClient(REDIS_URL, async c => (await c.ping()) === 'PONG').catch(() => false)
  if (!up) t.plan(0, `needs Redis: nothing answers at ${REDIS_URL} (start redis-server, or set REDIS_URL; CI always runs this file)`)
}

/** A short-lived client; rejects at once when nothing listens. */
export async function withClient<T> (url: string, fn: (c: Redis) => Promise<T>): Promise<T> {
  const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null })
  c.on('error', () => {}) // a refused connect rejects connect() below
  await c.connect()
  try { return await fn(c) } finally { c.disconnect() }
}

/** Every key under the prefix, sorted. */
export async function keysUnder (url: string, prefix: string): Promise<string[]> {
  return await withClient(url, async c => {
    const out: string[] = []
    let cursor = '0'
    do {
      const [next, keys] = await c.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
      out.push(...keys)
      cursor = next
    } while (cursor !== '0')
    return out.sort()
  })
}

let prefixes = 0
/** A key prefix no other test or test process uses; its keys (on REDIS_URL) are deleted when the test ends. */
export function uniquePrefix (t: Teardown, name: string): string {
  const prefix = `test-${name}-${process.pid}-${Date.now()}-${++prefixes}:`
  t.teardown(async () => {
    const keys = await keysUnder(REDIS_URL, prefix)
    if (keys.length > 0) await withClient(REDIS_URL, async c => await c.del(...keys))
  })
  return prefix
}

/** waitFor (helpers/wait.ts) with the argument order the Redis tests use. */
export async function eventually (what: string, check: () => Promise<boolean>, ms = 10_000, every = 20): Promise<void> {
  await waitFor(check, { timeout: ms, interval: every, message: what })
}

/** A redis-server of our own, on a fixed port, that a test can kill and restart. */
export class PrivateRedis {
  private proc: ChildProcess | undefined
  private readonly killOnExit = (): void => { this.proc?.kill('SIGKILL') }

  constructor (readonly port: number) {}
  get url (): string { return `redis://127.0.0.1:${this.port}` }

  /** Starts it and kills it when the test ends (or the process exits). */
  static async started (t: Teardown, port: number): Promise<PrivateRedis> {
    const server = new PrivateRedis(port)
    process.once('exit', server.killOnExit)
    t.teardown(async () => { process.off('exit', server.killOnExit); await server.kill() })
    await server.start()
    return server
  }

  async start (): Promise<void> {
    const proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    this.proc = proc
    const failed = new Promise<never>((_resolve, reject) => {
      proc.once('error', reject)
      proc.once('exit', code => { reject(new Error(`redis-server exited with ${String(code)}`)) })
    })
    failed.catch(() => {})
    await Promise.race([failed, eventually(`redis-server on ${this.port} answers`, async () => {
      try { return await withClient(this.url, async c => await c.ping()) === 'PONG' } catch { return false }
    })])
  }

  async kill (): Promise<void> {
    const proc = this.proc
    this.proc = undefined
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = once(proc, 'exit')
    proc.kill('SIGKILL')
    await exited
  }
}
