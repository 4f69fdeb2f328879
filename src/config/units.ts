// Durations and sizes as people write them in YAML. Both accept a bare number
// (milliseconds / bytes) so generated configs need no suffix.

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/
const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

const SIZE = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)$/i
const SIZE_BYTES: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }

/** Milliseconds, or undefined when the value is not a duration. */
export function parseDuration (value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined
  if (typeof value !== 'string') return undefined
  const m = DURATION.exec(value.trim())
  if (m === null) return /^\d+$/.test(value.trim()) ? Number(value) : undefined
  return Math.round(Number(m[1]) * DURATION_MS[m[2]])
}

/** Bytes, or undefined when the value is not a size. */
export function parseSize (value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined
  if (typeof value !== 'string') return undefined
  const m = SIZE.exec(value.trim())
  if (m === null) return /^\d+$/.test(value.trim()) ? Number(value) : undefined
  return Math.floor(Number(m[1]) * SIZE_BYTES[m[2].toLowerCase()])
}

export const DURATION_HINT = 'must be a duration such as 500ms, 2s, 1m, 1h or a number of milliseconds'
export const SIZE_HINT = 'must be a size such as 64kb, 1mb or a number of bytes'
