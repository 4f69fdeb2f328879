// `server.compression`: its schema fragment, its normalized type and defaults.
// Kept apart from schema.ts/types.ts/validate.ts (which only hook it in) so the
// config's TypeBox conversion and this feature do not edit the same lines.
// The matchers built from it live in src/pipeline/compression.ts.

import { parseSize } from './units.js'

export const COMPRESSION_ENCODINGS = ['br', 'gzip'] as const
export type CompressionEncoding = typeof COMPRESSION_ENCODINGS[number]

/**
 * Media types compressed when `types` is not given. `type/*` covers a whole
 * top-level type, `type/*+suffix` a structured-syntax suffix (RFC 6838 §4.2.8).
 * text/event-stream is excluded by the stage even under `text/*`: an event
 * stream must reach the client event by event, and a compressor holds bytes back.
 */
export const DEFAULT_COMPRESSIBLE_TYPES = [
  'application/json', 'application/*+json', 'text/*', 'application/javascript', 'application/x-javascript',
  'application/ecmascript', 'image/svg+xml', 'application/xml', 'application/*+xml',
]

export interface CompressionConfig {
  /** Server preference, most preferred first (a client's q-values still come first). */
  encodings: CompressionEncoding[]
  /** Bodies smaller than this many bytes are sent as they are. */
  threshold: number
  /** Lower-cased media-type patterns (see DEFAULT_COMPRESSIBLE_TYPES). */
  types: string[]
  /** zlib level for gzip (1–9) and brotli quality (0–11). */
  level: { gzip: number, br: number }
}

/** gzip 6 is zlib's own default; brotli 4 is near gzip 6 in speed with smaller output (11, brotli's default, is far too slow per request). */
export const DEFAULT_COMPRESSION = {
  encodings: ['br', 'gzip'] as CompressionEncoding[],
  threshold: 1024,
  level: { gzip: 6, br: 4 },
}

const MEDIA_TYPE_PATTERN = '^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/(\\*|\\*\\+[A-Za-z0-9!#$&^_.+-]+|[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*)$'

/** The schema of `server.compression` (validate.ts's ajv: `size` is its keyword). */
export const compressionSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    encodings: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: [...COMPRESSION_ENCODINGS], 'x-message': 'must be br or gzip' } },
    threshold: { size: true },
    types: {
      type: 'array',
      items: { type: 'string', pattern: MEDIA_TYPE_PATTERN, 'x-message': 'must be a media type such as application/json, text/* or application/*+json' },
    },
    level: {
      type: 'object',
      additionalProperties: false,
      properties: {
        gzip: { type: 'integer', minimum: 1, maximum: 9 },
        br: { type: 'integer', minimum: 0, maximum: 11 },
      },
    },
  },
}

export interface RawCompression {
  encodings?: CompressionEncoding[]
  threshold?: string | number
  types?: string[]
  level?: { gzip?: number, br?: number }
}

/** `{ compression }` for ServerConfig when the block is present, `{}` when it is absent (compression off). */
export function normalizeCompression (raw: unknown): { compression?: CompressionConfig } {
  if (raw === undefined || raw === null) return {}
  const c = raw as RawCompression
  return {
    compression: {
      encodings: c.encodings ?? [...DEFAULT_COMPRESSION.encodings],
      threshold: parseSize(c.threshold) ?? DEFAULT_COMPRESSION.threshold,
      types: (c.types ?? DEFAULT_COMPRESSIBLE_TYPES).map(t => t.toLowerCase()),
      level: { ...DEFAULT_COMPRESSION.level, ...c.level },
    },
  }
}
