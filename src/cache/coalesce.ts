// Concurrent misses for one key on one instance make one upstream call: the
// first caller runs it, the others await the same promise.

/** How many requests are waiting on a call another request is making (one tally per gateway, kept by CacheLayer). */
export interface WaitTally { waiting: number }

export class Coalescer<T> {
  private readonly inflight = new Map<string, Promise<T>>()

  constructor (private readonly tally: WaitTally = { waiting: 0 }) {}

  async run (key: string, work: () => Promise<T>): Promise<T> {
    const running = this.inflight.get(key)
    if (running !== undefined) {
      this.tally.waiting++
      try {
        return await running
      } finally {
        this.tally.waiting--
      }
    }
    const p = work().finally(() => { this.inflight.delete(key) })
    this.inflight.set(key, p)
    return await p
  }

  has (key: string): boolean {
    return this.inflight.has(key)
  }
}
