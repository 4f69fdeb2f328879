// Request bodies. On plain proxy routes they are streamed to the upstream,
// not parsed. Fastify's bodyLimit only guards the parsers it runs itself, so
// the limit is enforced here: up front from content-length, and byte by byte
// for chunked bodies (the stream fails with 413 the moment it goes over).
// Routes with a body schema parse JSON to validate it, but still forward the
// client's exact bytes.

import { Transform, type TransformCallback } from 'node:stream'
import type { IncomingMessage } from 'node:http'
import type { FastifyRequest } from 'fastify'
import { GatewayError } from '../util/errors.js'
import { MAX_JSON_DEPTH, TOO_DEEP, checkJsonKeys, duplicateKeyError } from './validation/duplicate-keys.js'

const TOO_LARGE = 'the request body exceeds the configured limit'

export type RawBodyParser = (req: FastifyRequest, payload: IncomingMessage, done: (err: Error | null, body?: unknown) => void) => void

export function streamingBodyParser (limit: number): RawBodyParser {
  return function passThrough (_req, payload, done) {
    const length = payload.headers['content-length']
    if (length !== undefined) {
      if (Number(length) > limit) { done(new GatewayError('PAYLOAD_TOO_LARGE', TOO_LARGE)); return }
      // Node's parser delivers exactly content-length bytes, so nothing more to count.
      done(null, payload)
      return
    }
    done(null, limitedBody(payload, limit))
  }
}

/**
 * The chunked body as undici reads it. `pipe` forwards data only: a client
 * that goes away mid-body, a malformed chunk (the socket is destroyed) or
 * Node's requestTimeout would leave this stream open forever, and undici
 * with it, holding a pooled connection. So every bad end of the client's
 * body destroys this stream too, and undici then aborts the upstream request.
 */
function limitedBody (payload: IncomingMessage, limit: number): LimitStream {
  const body = new LimitStream(limit)
  payload.on('error', (err) => { body.destroy(err) })
  payload.on('close', () => {
    if (!payload.complete && !body.destroyed) body.destroy(new GatewayError('BAD_REQUEST', 'the request body was cut off'))
  })
  // The other way round: undici dropped the body (413, upstream gone, the
  // call's timeout). Node drains an unread body itself, but not one that was
  // piped, so the socket would stay paused mid-body and never see the client
  // close. Discard the rest; the error answer closes the connection.
  body.on('close', () => {
    if (payload.complete || payload.destroyed) return
    payload.unpipe(body)
    payload.resume()
  })
  payload.pipe(body)
  return body
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

const RAW_BODY = Symbol('portico.rawBody')

type WithRawBody = FastifyRequest & { [RAW_BODY]?: Buffer }

/** The exact bytes of a parsed JSON body, to forward unchanged. */
export function rawBodyOf (request: FastifyRequest): Buffer | undefined {
  return (request as WithRawBody)[RAW_BODY]
}

type JsonParse = (req: FastifyRequest, body: string, done: (err: Error | null, body?: unknown) => void) => void

/**
 * A JSON parser that keeps the raw bytes beside the parsed value, and refuses
 * an object that names a key twice, and nesting past MAX_JSON_DEPTH. `parse` is Fastify's own JSON parser
 * (prototype-poisoning safe).
 */
export function jsonKeepingRaw (parse: JsonParse): (req: FastifyRequest, body: Buffer, done: (err: Error | null, body?: unknown) => void) => void {
  return function parseJson (req, body, done) {
    (req as WithRawBody)[RAW_BODY] = body
    // Before JSON.parse, which deep nesting makes slow; a repeated key counts only once it parses.
    const keys = checkJsonKeys(body)
    if (keys === TOO_DEEP) { done(new GatewayError('BAD_REQUEST', `the request body nests deeper than ${MAX_JSON_DEPTH} levels`)); return }
    parse(req, body.toString('utf8'), (err, value) => {
      if (err !== null) { done(new GatewayError('BAD_REQUEST', 'the request body is not valid JSON', { cause: err })); return }
      // The value validated holds the last of a repeated key; the bytes forwarded hold both.
      if (keys !== undefined) { done(duplicateKeyError(keys)); return }
      done(null, value)
    })
  }
}
