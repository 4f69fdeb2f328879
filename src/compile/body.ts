// Request bodies on proxy routes are streamed to the upstream, not parsed.
// Fastify's bodyLimit only guards the parsers it runs itself, so the limit is
// enforced here: up front from content-length, and byte by byte for chunked
// bodies (the stream fails with 413 the moment it goes over).

import { Transform, type TransformCallback } from 'node:stream'
import type { IncomingMessage } from 'node:http'
import { GatewayError } from '../errors.js'

const TOO_LARGE = 'the request body exceeds the configured limit'

export type RawBodyParser = (req: unknown, payload: IncomingMessage, done: (err: Error | null, body?: unknown) => void) => void

export function streamingBodyParser (limit: number): RawBodyParser {
  return function passThrough (_req, payload, done) {
    const length = payload.headers['content-length']
    if (length !== undefined) {
      if (Number(length) > limit) { done(new GatewayError('PAYLOAD_TOO_LARGE', TOO_LARGE)); return }
      // Node's parser delivers exactly content-length bytes, so nothing more to count.
      done(null, payload)
      return
    }
    done(null, payload.pipe(new LimitStream(limit)))
  }
}

class LimitStream extends Transform {
  private seen = 0
  constructor (private readonly limit: number) { super() }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length
    if (this.seen > this.limit) { cb(new GatewayError('PAYLOAD_TOO_LARGE', TOO_LARGE)); return }
    cb(null, chunk)
  }
}
