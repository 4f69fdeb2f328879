// A complete answer as a value (status, headers, bytes): what cached routes
// and aggregates produce, so the cache can store it and any number of
// waiting requests can send it.

import type { FastifyReply } from 'fastify'
import { copyResponseHeaders } from './forward-headers.js'

export interface ProducedResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  /** False for answers that must not be stored (a degraded aggregate). */
  cacheable: boolean
}

export function sendProduced (reply: FastifyReply, res: ProducedResponse): FastifyReply {
  reply.code(res.status)
  copyResponseHeaders(res.headers, reply)
  return reply.send(res.body)
}
