// Concurrent misses for one key on one instance make one upstream call: the
// first caller runs it, the others await the same promise.

export class Coalescer<T> {
  private readonly inflight = new Map<string, Promise<T>>()

  async run (key: string, work: () => Promise<T>): Promise<T> {
    const running = this.inflight.get(key)
    if (running !== undefined) return await running
    const p = work().finally(() => { this.inflight.delete(key) })
    this.inflight.set(key, p)
    return await p
  }

  has (key: string): boolean {
    return this.inflight.has(key)
  }
}
