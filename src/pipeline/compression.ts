// Response compression (server.compression): the last onSend hook of every
// route (src/gateway/pipeline.ts), after the response plugin hooks, so what
// is compressed is exactly what would have been sent.
//
// An answer is left as it is when it has no body to encode (HEAD, 204, 304),
// is already encoded (any content-encoding but identity: passed through byte
// for byte), says `cache-control: no-transform`, is a range (206 or a
// content-range), has a media type outside the allowlist (or none), or is
// smaller than the threshold. Every answer that is compressible by those
// rules gets `vary: accept-encoding`, merged into the upstream's vary, also
// when this client gets identity, so a shared cache keeps the variants apart.
// Problem documents (application/problem+json, every error the gateway makes)
// are never compressed: they are small, and a refusal (401, 429, 503) stays as
// cheap as it can be for a client that sends many of them.
//
// A Buffer (what the pool reads whole, what the cache and aggregates hold)
// is compressed with zlib's callback API, in libuv's thread pool: 1 MB of JSON
// never blocks the event loop. A stream (an upstream answer over 64 KiB or
// unsized) is piped through a zlib stream: backpressure holds end to end, and
// a client that goes away destroys the chain back to the upstream call.
//
// Cached bodies are compressed once per encoding: the cache hands the same
// Buffer to every HIT from memory (and from the near cache in front of
// Redis); `reusableBody` marks such a Buffer, and its encoded variants are kept
// beside it (a WeakMap: they go when the entry's body goes). Concurrent HITs
// wait for the one compression in flight.

import { brotliCompress, constants, createBrotliCompress, createGzip, gzip, type BrotliOptions, type ZlibOptions } from 'node:zlib'
import { pipeline, type Readable, type Transform } from 'node:stream'
import type { FastifyReply, FastifyRequest, onSendHookHandler } from 'fastify'
import type { CompressionConfig, CompressionEncoding } from '../config/compression.js'
import { compileNegotiator } from './accept-encoding.js'

/** What a compressor has done so far (tests and benchmarks read it; nothing decides on it). */
export interface CompressionStats {
  /** zlib runs over a whole Buffer. */
  buffers: number
  /** zlib streams started. */
  streams: number
  /** Answers served from an encoded variant kept beside a cached body. */
  reused: number
}

export interface Compression {
  onSend: onSendHookHandler
  stats: CompressionStats
}

declare module 'fastify' {
  interface FastifyInstance {
    /** undefined: server.compression is absent (off). */
    compression: Compression | undefined
  }
}

/** Bodies the cache hands out again and again, never changed in place. */
const reusable = new WeakSet<Buffer>()

/** Marks a body that is sent unchanged to many requests (a cache entry's), so its encoded variants are kept. */
export function reusableBody (body: Buffer): void {
  reusable.add(body)
}

type Variants = Partial<Record<CompressionEncoding, Promise<Buffer>>>

const MEDIA_TYPES_REMEMBERED = 1000

export function compileCompression (config: CompressionConfig): Compression {
  const negotiate = compileNegotiator(config.encodings)
  const compressible = compileMediaTypes(config.types)
  const threshold = config.threshold
  // zlib's own 16 KiB output chunks: measured faster end to end than 64 KiB ones
  // (output reaches the socket while the rest is still being compressed).
  const gzipOptions: ZlibOptions = { level: config.level.gzip }
  const brotliParams = { [constants.BROTLI_PARAM_QUALITY]: config.level.br, [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT }
  const stats: CompressionStats = { buffers: 0, streams: 0, reused: 0 }
  const variants = new WeakMap<Buffer, Variants>()

  function compressBuffer (body: Buffer, encoding: CompressionEncoding): Promise<Buffer> {
    stats.buffers++
    return new Promise((resolve, reject) => {
      const done = (err: Error | null, out: Buffer): void => { if (err !== null) reject(err); else resolve(out) }
      if (encoding === 'gzip') gzip(body, gzipOptions, done)
      else {
        const options: BrotliOptions = { params: { ...brotliParams, [constants.BROTLI_PARAM_SIZE_HINT]: body.length } }
        brotliCompress(body, options, done)
      }
    })
  }

  function encoded (body: Buffer, encoding: CompressionEncoding): Promise<Buffer> {
    if (!reusable.has(body)) return compressBuffer(body, encoding)
    let kept = variants.get(body)
    if (kept === undefined) { kept = {}; variants.set(body, kept) }
    const inFlightOrDone = kept[encoding]
    if (inFlightOrDone !== undefined) { stats.reused++; return inFlightOrDone }
    const made = compressBuffer(body, encoding)
    kept[encoding] = made
    made.catch(() => { if (kept[encoding] === made) delete kept[encoding] })
    return made
  }

  function compressStream (body: Readable, encoding: CompressionEncoding): Transform {
    stats.streams++
    const z = encoding === 'gzip' ? createGzip(gzipOptions) : createBrotliCompress({ params: brotliParams })
    // A failure on either side destroys both: Fastify sees the zlib stream end
    // in error and drops the response; a client gone destroys the zlib stream,
    // and with it the upstream body (which aborts the upstream call).
    pipeline(body, z, ignore)
    return z
  }

  async function compressAnswer (request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
    const status = reply.statusCode
    if (status === 204 || status < 200) return payload
    if (alreadyEncoded(reply.getHeader('content-encoding'))) return payload
    if (noTransform(reply.getHeader('cache-control'))) return payload
    if (status === 206 || reply.getHeader('content-range') !== undefined) return payload
    if (!compressible(reply.getHeader('content-type'))) return payload
    const bodyless = request.method === 'HEAD' || status === 304
    const size = bodyless || isStream(payload) ? declaredLength(reply.getHeader('content-length')) : byteLength(payload)
    if (size < threshold) return payload
    addVary(reply)
    if (bodyless || payload === undefined || payload === null) return payload
    const encoding = negotiate(request.headers['accept-encoding'])
    if (encoding === undefined) return payload
    if (isStream(payload)) {
      markEncoded(reply, encoding)
      reply.removeHeader('content-length')
      return compressStream(payload, encoding)
    }
    const body = typeof payload === 'string' ? Buffer.from(payload) : payload
    if (!Buffer.isBuffer(body)) return payload // Fastify serializes everything else before onSend
    const out = await encoded(body, encoding)
    markEncoded(reply, encoding)
    reply.header('content-length', String(out.length))
    return out
  }

  return { onSend: compressAnswer as onSendHookHandler, stats }
}

function ignore (): void {}

function isStream (payload: unknown): payload is Readable {
  return payload !== null && typeof payload === 'object' && typeof (payload as Readable).pipe === 'function'
}

function byteLength (payload: unknown): number {
  if (Buffer.isBuffer(payload)) return payload.length
  if (typeof payload === 'string') return Buffer.byteLength(payload)
  return 0
}

/** A streamed or bodyless answer's size, as its content-length says; unsized: taken as large. */
function declaredLength (value: ReturnType<FastifyReply['getHeader']>): number {
  if (value === undefined) return Infinity
  const n = Number(Array.isArray(value) ? value[0] : value)
  return Number.isFinite(n) ? n : Infinity
}

function alreadyEncoded (value: ReturnType<FastifyReply['getHeader']>): boolean {
  if (value === undefined) return false
  const text = String(value).trim().toLowerCase()
  return text !== '' && text !== 'identity'
}

const NO_TRANSFORM = /(?:^|[\s,])no-transform\s*(?:,|$)/i

function noTransform (value: ReturnType<FastifyReply['getHeader']>): boolean {
  if (value === undefined) return false
  return NO_TRANSFORM.test(Array.isArray(value) ? value.join(',') : String(value))
}

/**
 * The content-encoding, and what it changes: the length is the encoded one
 * (or unknown), ranges of the identity bytes no longer apply, and a strong
 * validator is weakened, as nginx does: the encoded bytes differ from the
 * ones the upstream's ETag names (If-None-Match compares weakly, so
 * revalidation still works).
 */
function markEncoded (reply: FastifyReply, encoding: CompressionEncoding): void {
  reply.header('content-encoding', encoding)
  reply.removeHeader('accept-ranges')
  const etag = reply.getHeader('etag')
  if (typeof etag === 'string' && etag.startsWith('"')) reply.header('etag', `W/${etag}`)
}

function addVary (reply: FastifyReply): void {
  const current = reply.getHeader('vary')
  if (current === undefined || current === '') { reply.header('vary', 'accept-encoding'); return }
  const text = Array.isArray(current) ? current.join(', ') : String(current)
  for (const part of text.split(',')) {
    const name = part.trim().toLowerCase()
    if (name === '*' || name === 'accept-encoding') return
  }
  reply.header('vary', `${text}, accept-encoding`)
}

/**
 * The allowlist as a test over a content-type header value: exact types,
 * `type/*`, and `type/*+suffix`. Problem documents and event streams are
 * never compressed, whatever the list says.
 */
export function compileMediaTypes (patterns: readonly string[]): (value: ReturnType<FastifyReply['getHeader']>) => boolean {
  const exact = new Set<string>()
  const wholeTypes = new Set<string>()
  const suffixes = new Map<string, Set<string>>()
  for (const pattern of patterns) {
    const [type, sub] = pattern.split('/')
    if (sub === '*') wholeTypes.add(type)
    else if (sub.startsWith('*+')) {
      let set = suffixes.get(type)
      if (set === undefined) { set = new Set(); suffixes.set(type, set) }
      set.add(sub.slice(2))
    } else exact.add(pattern)
  }
  const matches = (mediaType: string): boolean => {
    if (mediaType === 'application/problem+json' || mediaType === 'text/event-stream') return false
    if (exact.has(mediaType)) return true
    const slash = mediaType.indexOf('/')
    if (slash <= 0) return false
    const type = mediaType.slice(0, slash)
    if (wholeTypes.has(type)) return true
    const plus = mediaType.lastIndexOf('+')
    return plus > slash && suffixes.get(type)?.has(mediaType.slice(plus + 1)) === true
  }
  // Upstreams send the same few content-type values over and over.
  const recent = new Map<string, boolean>()
  return function compressible (value) {
    if (typeof value !== 'string') return false
    const known = recent.get(value)
    if (known !== undefined) return known
    const semi = value.indexOf(';')
    const result = matches((semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase())
    if (value.length <= 256) {
      if (recent.size >= MEDIA_TYPES_REMEMBERED) recent.delete(recent.keys().next().value as string)
      recent.set(value, result)
    }
    return result
  }
}
