// Cache entries in Redis, shared by every gateway instance, so one instance's
// invalidation is every instance's. Each entry is one key (PX = its
// retention); each tag is a set of entry keys. Commands touch one key each,
// so this works unchanged on Redis Cluster, where multi-key commands across
// slots are refused.

import type { Cluster, Redis } from 'ioredis'
import { decodeEntry, encodeEntry, retention, type CacheEntry, type CacheStore } from './store.js'

export class RedisCacheStore implements CacheStore {
  readonly kind = 'redis'

  constructor (private readonly client: Redis | Cluster, private readonly prefix: string) {}

  async get (key: string): Promise<CacheEntry | undefined> {
    const data = await this.client.getBuffer(this.entryKey(key))
    return data === null ? undefined : decodeEntry(data)
  }

  async set (key: string, entry: CacheEntry): Promise<void> {
    const keep = Math.ceil(retention(entry))
    if (keep <= 0) return
    const k = this.entryKey(key)
    await this.client.set(k, encodeEntry(entry), 'PX', keep)
    await Promise.all(entry.tags.map(async tag => {
      const t = this.tagKey(tag)
      await this.client.sadd(t, k)
      // The tag set lives as long as the longest entry it names.
      await this.client.pexpire(t, keep, 'GT')
      await this.client.pexpire(t, keep, 'NX')
    }))
  }

  async purgeTags (tags: string[]): Promise<number> {
    let removed = 0
    for (const tag of tags) {
      const t = this.tagKey(tag)
      const keys = await this.client.smembers(t)
      const counts = await Promise.all(keys.map(async k => await this.client.unlink(k)))
      removed += counts.reduce((a, b) => a + b, 0)
      await this.client.unlink(t)
    }
    return removed
  }

  async purgeAll (): Promise<number> {
    let removed = 0
    for (const pattern of [`${this.prefix}c:*`, `${this.prefix}t:*`]) {
      let cursor = '0'
      do {
        const [next, keys] = await this.client.scan(cursor, 'MATCH', pattern, 'COUNT', 500)
        cursor = next
        for (const k of keys) removed += pattern.endsWith('c:*') ? await this.client.unlink(k) : (await this.client.unlink(k), 0)
      } while (cursor !== '0')
    }
    return removed
  }

  private entryKey (key: string): string { return `${this.prefix}c:${key}` }
  private tagKey (tag: string): string { return `${this.prefix}t:${tag}` }
}
