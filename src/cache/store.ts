// The response cache's storage: one interface, an in-memory LRU (embedded,
// one instance) and Redis (shared by every instance). Entries keep the body
// as bytes, exactly as the upstream sent it, never re-serialized.

export interface CacheEntry {
  status: number
  headers: Record<string, string | string[]>
  body: Buffer
  /** Epoch ms when stored (for `age`). */
  storedAt: number
  /** Fresh until. */
  freshUntil: number
  /** May be served stale while refreshing until. */
  staleUntil: number
  /** May be served when the upstream fails until. */
  errorUntil: number
  tags: string[]
}

export interface CacheStore {
  readonly kind: 'memory' | 'redis'
  get: (key: string) => Promise<CacheEntry | undefined>
  /** Stores until the entry's latest usable moment (fresh, stale or error window). */
  set: (key: string, entry: CacheEntry) => Promise<void>
  /** Removes every entry carrying any of the tags; resolves to how many were removed. */
  purgeTags: (tags: string[]) => Promise<number>
  purgeAll: () => Promise<number>
  /** An entry held in this process, without waiting (the near cache); undefined: ask get(). */
  peek?: (key: string) => CacheEntry | undefined
}

/** How long an entry is worth keeping (ms from now). */
export function retention (entry: CacheEntry, now = Date.now()): number {
  return Math.max(entry.freshUntil, entry.staleUntil, entry.errorUntil) - now
}

// Serialized form: a JSON header line, then the body bytes untouched.
export function encodeEntry (entry: CacheEntry): Buffer {
  const { body, ...meta } = entry
  return Buffer.concat([Buffer.from(JSON.stringify(meta) + '\n'), body])
}

export function decodeEntry (data: Buffer): CacheEntry | undefined {
  const nl = data.indexOf(10)
  if (nl === -1) return undefined
  try {
    const meta = JSON.parse(data.subarray(0, nl).toString('utf8')) as Omit<CacheEntry, 'body'>
    return { ...meta, body: data.subarray(nl + 1) }
  } catch {
    return undefined
  }
}
