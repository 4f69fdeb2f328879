// Cancelling calls in flight (an aggregate's parts past their deadline, a
// proxied call whose client went away).

import { stackOff } from './errors.js'

/** The part of AbortSignal a call listens to. */
export interface CancelSignal {
  readonly aborted: boolean
  readonly reason: unknown
  addEventListener: (type: 'abort', listener: EventListenerObject, options?: { once?: boolean }) => void
  removeEventListener: (type: 'abort', listener: EventListenerObject) => void
}

/**
 * A one-shot cancellation with AbortSignal's listening surface. An
 * AbortController per aggregate request (an EventTarget, an Event on abort)
 * cost more than the bookkeeping of all its parts together.
 */
export class Cancellation implements CancelSignal {
  aborted = false
  reason: unknown = undefined
  private listeners: EventListenerObject[] = []

  addEventListener (_type: 'abort', listener: EventListenerObject): void {
    this.listeners.push(listener)
  }

  removeEventListener (_type: 'abort', listener: EventListenerObject): void {
    const i = this.listeners.indexOf(listener)
    if (i !== -1) this.listeners.splice(i, 1)
  }

  abort (reason?: unknown): void {
    if (this.aborted) return
    this.aborted = true
    if (this.listeners.length === 0) return
    // The reason is built only when someone listens: an Error's stack is not free.
    this.reason = reason ?? new Error('cancelled')
    const listeners = this.listeners
    this.listeners = []
    for (const l of listeners) l.handleEvent(ABORT_EVENT)
  }
}

const ABORT_EVENT = new Event('abort')

/**
 * The reason a call is cancelled when its client closed the connection
 * before the answer. It is not the upstream's failure: the breaker, the
 * balancer's passive health and retries leave it alone, so clients that
 * hang up cannot trip a breaker or eject an instance. One shared instance,
 * without a stack: it is an outcome, not a bug.
 */
export class ClientGone extends Error {
  readonly code = 'CLIENT_GONE'
}

export const CLIENT_GONE: ClientGone = (() => {
  const limit = stackOff()
  const err = new ClientGone('the client closed the request before the answer')
  Error.stackTraceLimit = limit
  return err
})()
