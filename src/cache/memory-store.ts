// In-memory LRU, bounded by entries and by bytes, with a tag index. The Map's
// insertion order is the recency order: a hit moves the key to the end.

import { retention, type CacheEntry, type CacheStore } from './store.js'

export interface MemoryStoreOptions {
  maxEntries: number
  maxBytes: number
}

export class MemoryCacheStore implements CacheStore {
  readonly kind = 'memory'
  private readonly entries = new Map<string, { entry: CacheEntry, size: number, until: number }>()
  private readonly tagIndex = new Map<string, Set<string>>()
  private bytes = 0

  constructor (private readonly opts: MemoryStoreOptions) {}

  async get (key: string): Promise<CacheEntry | undefined> {
    return this.peek(key)
  }

  /** The entry, synchronously (the near cache's hot path). */
  peek (key: string): CacheEntry | undefined {
    const item = this.entries.get(key)
    if (item === undefined) return undefined
    if (item.until <= Date.now()) { this.delete(key); return undefined }
    this.entries.delete(key)
    this.entries.set(key, item)
    return item.entry
  }

  /** Forgets one entry; true when there was one. */
  drop (key: string): boolean {
    return this.delete(key)
  }

  async set (key: string, entry: CacheEntry): Promise<void> {
    // The previous answer goes even when this one cannot be kept: it is outdated either way.
    this.delete(key)
    const keep = retention(entry)
    if (keep <= 0) return
    const size = entry.body.length + 512
    if (size > this.opts.maxBytes) return
    this.entries.set(key, { entry, size, until: Date.now() + keep })
    this.bytes += size
    for (const tag of entry.tags) {
      let keys = this.tagIndex.get(tag)
      if (keys === undefined) { keys = new Set(); this.tagIndex.set(tag, keys) }
      keys.add(key)
    }
    while (this.entries.size > this.opts.maxEntries || this.bytes > this.opts.maxBytes) {
      const oldest = this.entries.keys().next().value
      if (oldest === undefined) break
      this.delete(oldest)
    }
  }

  async purgeTags (tags: string[]): Promise<number> {
    let removed = 0
    for (const tag of tags) {
      for (const key of this.tagIndex.get(tag) ?? []) if (this.delete(key)) removed++
      this.tagIndex.delete(tag)
    }
    return removed
  }

  async purgeAll (): Promise<number> {
    const n = this.entries.size
    this.entries.clear()
    this.tagIndex.clear()
    this.bytes = 0
    return n
  }

  private delete (key: string): boolean {
    const item = this.entries.get(key)
    if (item === undefined) return false
    this.entries.delete(key)
    this.bytes -= item.size
    for (const tag of item.entry.tags) {
      const keys = this.tagIndex.get(tag)
      keys?.delete(key)
      if (keys?.size === 0) this.tagIndex.delete(tag)
    }
    return true
  }
}
