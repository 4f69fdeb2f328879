// Command routes, the asynchronous write side: no upstream call. The body
// (validated by the route schema before this runs) is appended to a stream
// with a generated commandId, and the client gets 202 {"commandId"}. A
// command that could not be stored is a 503, never a 202. With an
// `idempotency-key` header a repeat within the window returns the first
// commandId and stores nothing new.

import { randomUUID } from 'node:crypto'
import type { FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify'
import { GatewayError } from '../errors.js'
import type { EventPublisher } from '../events/publisher.js'
import { rawBodyOf } from '../compile/body.js'

export interface CommandPlan {
  routeId: string
  stream: string
  type: string
  /** e.g. `/api/reports/{commandId}`: sent as `location`. */
  statusPath?: string
  idempotencyWindow: number
  publisher: EventPublisher
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/

export function createCommandHandler (plan: CommandPlan): RouteHandlerMethod {
  const { publisher } = plan
  const sink = publisher.sink
  return async function commandHandler (request: FastifyRequest, reply: FastifyReply) {
    const commandId = randomUUID()
    const given = request.headers['idempotency-key']
    let claimKey: string | undefined
    if (given !== undefined) {
      if (typeof given !== 'string' || !IDEMPOTENCY_KEY.test(given)) {
        throw new GatewayError('BAD_REQUEST', 'idempotency-key must be 1–200 visible ASCII characters')
      }
      // Per route and per identity: one client's key never collides with another's.
      claimKey = `${plan.routeId}:${request.auth?.sub ?? ''}:${given}`
      let existing: string | undefined
      try {
        existing = await sink.claim(claimKey, commandId, plan.idempotencyWindow)
      } catch (err) {
        throw unavailable(err)
      }
      if (existing !== undefined) return accepted(reply, existing, plan.statusPath, true)
    }
    const raw = rawBodyOf(request)
    try {
      await sink.append(plan.stream, {
        type: plan.type,
        route: plan.routeId,
        sub: request.auth?.sub ?? '',
        requestId: request.id,
        at: new Date().toISOString(),
        body: raw !== undefined ? raw.toString('utf8') : JSON.stringify(request.body ?? null),
        commandId,
      })
    } catch (err) {
      if (claimKey !== undefined) await sink.release(claimKey).catch(() => {})
      throw unavailable(err)
    }
    publisher.counters.commands++
    return accepted(reply, commandId, plan.statusPath, false)
  }
}

function accepted (reply: FastifyReply, commandId: string, statusPath: string | undefined, replayed: boolean): FastifyReply {
  if (statusPath !== undefined) reply.header('location', statusPath.replaceAll('{commandId}', encodeURIComponent(commandId)))
  if (replayed) reply.header('idempotent-replayed', 'true')
  return reply.code(202).send({ commandId })
}

function unavailable (cause: unknown): GatewayError {
  return new GatewayError('EVENTS_UNAVAILABLE', 'the command could not be stored; nothing was accepted', { cause })
}
