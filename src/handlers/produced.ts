// A complete answer as a value (status, headers, bytes): what cached routes
// and aggregates produce, so the cache can store it and any number of
// waiting requests can send it.

import type { FastifyReply } from 'fastify'
import { GatewayError } from '../errors.js'
import type { UpstreamResponse } from '../upstream/types.js'
import { copyResponseHeaders } from './forward-headers.js'

export interface ProducedResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  /** False for answers that must not be stored (a degraded aggregate). */
  cacheable: boolean
}

/** The body as bytes, refusing (not buffering) anything over `limit`. */
export async function readBody (res: UpstreamResponse, limit: number, service: string): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length
      if (size > limit) {
        res.body.destroy()
        throw new GatewayError('UPSTREAM_ERROR', `service "${service}" answered more than ${limit} bytes`)
      }
      chunks.push(chunk as Buffer)
    }
  } catch (err) {
    if (err instanceof GatewayError) throw err
    throw new GatewayError('UPSTREAM_ERROR', `service "${service}" broke off its answer`, { cause: err })
  }
  return Buffer.concat(chunks, size)
}

export function sendProduced (reply: FastifyReply, res: ProducedResponse): FastifyReply {
  reply.code(res.status)
  copyResponseHeaders(res.headers, reply)
  return reply.send(res.body)
}
