// Waiting on a condition instead of sleeping and hoping: poll until it holds,
// give up with a message at a deadline. For things that happen by themselves
// (a probe, a refetch, a state change), never to time them.

import { setTimeout as sleep } from 'node:timers/promises'

export interface WaitOptions {
  /** Give up after this many ms (default 5000). */
  timeout?: number
  /** Poll every this many ms (default 10). */
  interval?: number
  /** What is awaited, for the error when it never happens. */
  message?: string
}

/** Resolves once condition() holds; rejects after `timeout` ms (checked one last time at the deadline). */
export async function waitFor (condition: () => boolean | Promise<boolean>, opts: WaitOptions = {}): Promise<void> {
  const { timeout = 5000, interval = 10, message = 'the condition' } = opts
  const deadline = Date.now() + timeout
  for (;;) {
    if (await condition()) return
    if (Date.now() >= deadline) throw new Error(`gave up after ${timeout} ms waiting for: ${message}`)
    await sleep(interval)
  }
}
