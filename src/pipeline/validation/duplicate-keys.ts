// Does a JSON body name the same key twice in one object? JSON.parse keeps
// the last value, so `{"qty":1000,"qty":1}` validates as qty 1, but the
// bytes forwarded upstream still hold both, and a service whose parser keeps
// the first value would act on 1000. Such a body is refused instead.
//
// The same pass refuses nesting deeper than MAX_JSON_DEPTH before JSON.parse
// runs: a megabyte of `[[[[…` costs JSON.parse a quarter of a second of the
// event loop, ten times a flat megabyte, and no API needs it.
//
// The pass does not check the grammar (JSON.parse does, after it): it only
// follows strings, brackets and commas, and what it finds counts only for
// text JSON.parse then accepts. Keys are compared as JSON.parse reads them,
// escapes decoded (`"q\u0074y"` is `"qty"`). The work is linear in the
// body's size: each key is decoded once and looked up in its object's set.

import { GatewayError } from '../../util/errors.js'
import { boundedField } from './validators.js'

const enum C {
  QUOTE = 0x22, COMMA = 0x2c, OPEN_SQ = 0x5b, BACKSLASH = 0x5c, CLOSE_SQ = 0x5d, OPEN_CURLY = 0x7b, CLOSE_CURLY = 0x7d,
}

/** Deeper than this is refused (the aggregate's JSON check draws the same line). */
export const MAX_JSON_DEPTH = 1000
export const TOO_DEEP = 'too deep'

/** Objects with up to this many keys are checked with a linear scan; larger ones with a Set. */
const SMALL_OBJECT = 8

interface Level {
  object: boolean
  /** In an object: the next string is a key. */
  expectKey: boolean
  /** Keys so far, while the object is small. */
  keys: string[]
  /** All keys, once the object has more than SMALL_OBJECT of them. */
  set: Set<string> | undefined
  /** The current key (object) or index (array), for the path of a duplicate. */
  at: string | number
}

/**
 * TOO_DEEP when containers nest deeper than MAX_JSON_DEPTH; else the path
 * (keys and array indexes from the root) of the first key that appears twice
 * in one object; else undefined. Meaningful only for text JSON.parse accepts,
 * but safe on any bytes.
 */
export function checkJsonKeys (json: Buffer): Array<string | number> | typeof TOO_DEEP | undefined {
  const n = json.length
  // Levels are reused as the depth goes up and down: a million small objects cost no allocation each.
  const levels: Level[] = []
  let depth = 0
  // In JSON, backslashes only occur inside strings, and each string consumes its own, so
  // this is always past the position read so far: finding escapes costs one pass in all.
  // (In bytes that are not JSON it may lag behind; that only makes a string look escaped.)
  let nextBackslash = json.indexOf(C.BACKSLASH)
  let i = 0
  while (i < n) {
    const c = json[i]
    if (c === C.QUOTE) {
      const start = i
      let end = closingQuote(json, i + 1)
      let escaped = false
      while (nextBackslash !== -1 && nextBackslash < end) {
        // An escape; the quote found may be an escaped one, so look again past it.
        escaped = true
        const afterEscape = nextBackslash + 2
        if (afterEscape > end) end = closingQuote(json, afterEscape)
        nextBackslash = json.indexOf(C.BACKSLASH, afterEscape)
      }
      i = end + 1
      const level = depth > 0 ? levels[depth - 1] : undefined
      if (level === undefined || !level.object || !level.expectKey) continue
      level.expectKey = false
      const key = escaped ? decodeString(json, start, end) : json.toString('utf8', start + 1, end)
      // Not JSON: JSON.parse refuses it next.
      if (key === undefined) return undefined
      if (seenBefore(level, key)) return pathTo(levels, depth, key)
      level.at = key
      continue
    }
    if (c === C.OPEN_CURLY || c === C.OPEN_SQ) {
      if (depth === MAX_JSON_DEPTH) return TOO_DEEP
      let level = levels[depth]
      if (level === undefined) {
        level = { object: false, expectKey: false, keys: [], set: undefined, at: 0 }
        levels.push(level)
      }
      level.object = c === C.OPEN_CURLY
      level.expectKey = level.object
      level.keys.length = 0
      level.set = undefined
      level.at = 0
      depth++
    } else if (c === C.CLOSE_CURLY || c === C.CLOSE_SQ) {
      if (depth === 0) return undefined
      depth--
    } else if (c === C.COMMA && depth > 0) {
      const level = levels[depth - 1]
      if (level.object) level.expectKey = true
      else level.at = (level.at as number) + 1
    }
    i++
  }
  return undefined
}

/** The 400 VALIDATION_FAILED for a body that repeats a key, naming the key's path. */
export function duplicateKeyError (path: Array<string | number>): GatewayError {
  const field = boundedField(['body', ...path].join('.'))
  const message = 'is a duplicate key'
  return new GatewayError('VALIDATION_FAILED', `${field} ${message}`, { extras: { errors: [{ field, message }] } })
}

/** Adds the key to its object's keys; true when it was there already. */
function seenBefore (level: Level, key: string): boolean {
  if (level.set !== undefined) {
    if (level.set.has(key)) return true
    level.set.add(key)
    return false
  }
  const keys = level.keys
  for (let k = 0; k < keys.length; k++) if (keys[k] === key) return true
  if (keys.length < SMALL_OBJECT) {
    keys.push(key)
  } else {
    level.set = new Set(keys)
    level.set.add(key)
  }
  return false
}

function pathTo (levels: Level[], depth: number, key: string): Array<string | number> {
  const path: Array<string | number> = []
  for (let d = 0; d < depth - 1; d++) path.push(levels[d].at)
  path.push(key)
  return path
}

function decodeString (json: Buffer, start: number, end: number): string | undefined {
  try {
    return JSON.parse(json.toString('utf8', start, end + 1)) as string
  } catch {
    return undefined
  }
}

/** The next quote from `from` (escaped ones are skipped by the caller). */
function closingQuote (json: Buffer, from: number): number {
  const at = json.indexOf(C.QUOTE, from)
  // JSON.parse accepted the text, so every string closes; never loop if one did not.
  return at === -1 ? json.length : at
}
