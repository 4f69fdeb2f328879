// An upstream answer's body is a Buffer (small, read whole by the pool) or a
// stream. These two helpers are the only places that care which.

import type { Readable } from 'node:stream'
import { GatewayError } from '../util/errors.js'

/** Anything carrying an upstream body: an upstream's answer, or a target's answer built from one. */
interface WithBody { body: Buffer | Readable }

/** Drops a body nobody will read, so the pooled connection is free again. */
export function discardBody (res: WithBody): void {
  if (!Buffer.isBuffer(res.body)) res.body.resume()
}

/** The body as bytes, refusing (not buffering) anything over `limit`. */
export async function readBody (res: WithBody, limit: number, service: string): Promise<Buffer> {
  const body = res.body
  if (Buffer.isBuffer(body)) {
    if (body.length > limit) throw tooLarge(service, limit)
    return body
  }
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of body) {
      size += (chunk as Buffer).length
      if (size > limit) {
        body.destroy()
        throw tooLarge(service, limit)
      }
      chunks.push(chunk as Buffer)
    }
  } catch (err) {
    if (err instanceof GatewayError) throw err
    if ((err as { code?: string }).code === 'UND_ERR_BODY_TIMEOUT') throw new GatewayError('UPSTREAM_TIMEOUT', `service "${service}" stopped sending its answer`, { cause: err })
    throw new GatewayError('UPSTREAM_ERROR', `service "${service}" broke off its answer`, { cause: err })
  }
  return Buffer.concat(chunks, size)
}

function tooLarge (service: string, limit: number): GatewayError {
  return new GatewayError('UPSTREAM_ERROR', `service "${service}" answered more than ${limit} bytes`)
}
