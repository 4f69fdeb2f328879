// The cache as the request path sees it: every store operation gets a short
// time budget, and a store that is down, slow or failing is skipped rather
// than waited for (the request is served from the upstream, `x-cache:
// BYPASS`). Failures are logged once per outage; the next operation after
// the store answers again resumes caching by itself. A Redis-backed store is
// not even tried while the Redis connection says it is down.
//
// Every purge goes through here (a route's `invalidates` and the operator's
// admin purge alike), so each one marks the reads in flight: a read that
// started before a purge does not store its answer from before it.

import type { FastifyBaseLogger } from 'fastify'
import type { RedisHealth } from '../redis/connection.js'
import type { CacheEntry, CacheStore } from './store.js'
import type { FillContext, ValueFiller } from '../util/template.js'
import type { WaitTally } from './coalesce.js'

export interface Lookup {
  /** False when the store could not be asked: do not try to write either. */
  ok: boolean
  entry?: CacheEntry
}

export class CacheLayer {
  private failing = false
  /**
   * Purges counted in order: a read notes the count when it starts, and a
   * purge after that has a higher number. (A clock would not do: a read and
   * a purge in the same millisecond could not be told apart.)
   */
  private purges = 0
  /** The number of each tag's last purge by this instance (bounded; for reads racing a write). */
  private readonly purgedAt = new Map<string, number>()
  /** The number of this instance's last purge of everything. */
  private purgedAllAt = -1
  /** Requests of every cached route waiting on a miss another request is already fetching (an observable, e.g. for tests). */
  readonly coalesced: WaitTally = { waiting: 0 }

  constructor (
    readonly store: CacheStore,
    private readonly log: FastifyBaseLogger,
    private readonly budget: number,
    /** The Redis connection's health when the store lives in Redis: skipped without trying while it is down. */
    private readonly redis?: RedisHealth,
  ) {}

  private available (): boolean {
    return this.redis === undefined || this.redis.state() === 'up'
  }

  /** An entry this process holds already (the near cache): no budget, no wait. */
  peek (key: string): CacheEntry | undefined {
    return this.store.peek !== undefined && this.available() ? this.store.peek(key) : undefined
  }

  async get (key: string): Promise<Lookup> {
    if (!this.available()) return { ok: false }
    try {
      const entry = await this.withBudget(this.store.get(key))
      this.recovered()
      return entry === undefined ? { ok: true } : { ok: true, entry }
    } catch (err) {
      this.failed(err)
      return { ok: false }
    }
  }

  async set (key: string, entry: CacheEntry): Promise<void> {
    if (!this.available()) return
    try {
      await this.withBudget(this.store.set(key, entry))
    } catch (err) {
      this.failed(err)
    }
  }

  /** Purges by tag (a route's `invalidates`); false when the store could not be reached (the entries then expire by ttl). */
  async purgeTags (tags: string[]): Promise<boolean> {
    if (tags.length === 0) return true
    this.markPurged(tags)
    try {
      await this.withBudget(this.store.purgeTags(tags), this.budget * 4)
      return true
    } catch (err) {
      this.failed(err)
      return false
    }
  }

  /**
   * The operator's purge, by tag or of everything: how many entries were
   * removed. Rejects when the store cannot be reached; no time budget, the
   * operator waits for the count.
   */
  async purge (what: { tags: string[] } | { all: true }): Promise<number> {
    if ('all' in what) this.purgedAllAt = ++this.purges
    else this.markPurged(what.tags)
    if (!this.available()) throw new Error('the cache store (Redis) is down')
    return 'all' in what ? await this.store.purgeAll() : await this.store.purgeTags(what.tags)
  }

  private markPurged (tags: string[]): void {
    const n = ++this.purges
    for (const tag of tags) {
      this.purgedAt.delete(tag)
      this.purgedAt.set(tag, n)
    }
    // Only races with reads in flight matter; old marks can go (oldest first).
    while (this.purgedAt.size > 10_000) this.purgedAt.delete(this.purgedAt.keys().next().value as string)
  }

  /** A mark for a read starting now, to ask `purgedSince` about when its answer is in. */
  purgeMark (): number {
    return this.purges
  }

  /** True when this instance purged any of the tags, or everything, after `mark` (from `purgeMark`). */
  purgedSince (tags: string[], mark: number): boolean {
    if (this.purgedAllAt > mark) return true
    for (const tag of tags) {
      const at = this.purgedAt.get(tag)
      if (at !== undefined && at > mark) return true
    }
    return false
  }

  /** A route's `invalidates` templates, filled from the request and purged. */
  invalidator (templates: ValueFiller[], routeId: string): (ctx: FillContext) => Promise<void> {
    return async (ctx) => {
      const tags = templates.map(fill => fill(ctx))
      if (!(await this.purgeTags(tags))) this.log.warn({ route: routeId, tags }, 'cache invalidation failed; entries expire by their ttl')
    }
  }

  private async withBudget<T> (op: Promise<T>, ms = this.budget): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new Error(`cache store took longer than ${ms} ms`)) }, ms)
    })
    try {
      return await Promise.race([op, late])
    } finally {
      clearTimeout(timer)
    }
  }

  private failed (err: unknown): void {
    if (this.failing) return
    this.failing = true
    this.log.warn({ store: this.store.kind, err: (err as Error).message }, 'cache store unavailable: serving without cache (x-cache: BYPASS)')
  }

  private recovered (): void {
    if (!this.failing) return
    this.failing = false
    this.log.info({ store: this.store.kind }, 'cache store answers again: caching resumed')
  }
}
