// Is this body JSON? The aggregate must refuse a part whose body is not
// (a part answering non-JSON fails like any other part error), but it only needs a yes or no: JSON.parse would
// build every object and string of the body just to throw them away, which
// cost more than the rest of the part's bookkeeping. This checks the
// RFC 8259 grammar over the bytes, allocating nothing but a small stack.

const enum C {
  TAB = 0x09, LF = 0x0a, CR = 0x0d, SPACE = 0x20, QUOTE = 0x22, PLUS = 0x2b, COMMA = 0x2c, MINUS = 0x2d, DOT = 0x2e,
  SLASH = 0x2f, ZERO = 0x30, NINE = 0x39, COLON = 0x3a, E_UP = 0x45, OPEN_SQ = 0x5b, BACKSLASH = 0x5c, CLOSE_SQ = 0x5d,
  LOWER_A = 0x61, LOWER_B = 0x62, E_LOW = 0x65, LOWER_F = 0x66, LOWER_N = 0x6e, LOWER_R = 0x72, LOWER_T = 0x74, LOWER_U = 0x75,
  OPEN_CURLY = 0x7b, CLOSE_CURLY = 0x7d,
}

/** Deeper than this is refused (JSON.parse on such input would overflow the stack anyway). */
const MAX_DEPTH = 1000
const ARRAY = 1
const OBJECT = 2

const TRUE = Buffer.from('true')
const FALSE = Buffer.from('false')
const NULL = Buffer.from('null')

/** Containers open so far; one for the process (the check never yields, so never overlaps). */
const stack = new Uint8Array(MAX_DEPTH)

export function isJsonText (b: Uint8Array): boolean {
  const n = b.length
  let depth = 0
  let i = skipWs(b, 0)
  // Each turn reads one value, then what may follow it inside its container.
  for (;;) {
    if (i >= n) return false
    const c = b[i]
    if (c === C.OPEN_CURLY || c === C.OPEN_SQ) {
      if (depth === MAX_DEPTH) return false
      i = skipWs(b, i + 1)
      if (c === C.OPEN_CURLY) {
        if (b[i] === C.CLOSE_CURLY) { i++ } else {
          stack[depth++] = OBJECT
          i = key(b, i)
          if (i < 0) return false
          continue
        }
      } else {
        if (b[i] === C.CLOSE_SQ) { i++ } else {
          stack[depth++] = ARRAY
          continue
        }
      }
    } else if (c === C.QUOTE) {
      i = string(b, i)
    } else if (c === C.LOWER_T) {
      i = literal(b, i, TRUE)
    } else if (c === C.LOWER_F) {
      i = literal(b, i, FALSE)
    } else if (c === C.LOWER_N) {
      i = literal(b, i, NULL)
    } else {
      i = number(b, i)
    }
    if (i < 0) return false
    // After a value: close containers, or a comma and the next member.
    for (;;) {
      i = skipWs(b, i)
      if (depth === 0) return i === n
      const top = stack[depth - 1]
      const d = b[i]
      if (d === C.COMMA) {
        i = skipWs(b, i + 1)
        if (top === OBJECT) {
          i = key(b, i)
          if (i < 0) return false
        }
        break
      }
      if ((top === OBJECT && d === C.CLOSE_CURLY) || (top === ARRAY && d === C.CLOSE_SQ)) {
        depth--
        i++
        continue
      }
      return false
    }
  }
}

function skipWs (b: Uint8Array, i: number): number {
  const n = b.length
  while (i < n) {
    const c = b[i]
    if (c !== C.SPACE && c !== C.LF && c !== C.CR && c !== C.TAB) break
    i++
  }
  return i
}

/** A member's key and its colon; the index of its value, or -1. */
function key (b: Uint8Array, i: number): number {
  if (b[i] !== C.QUOTE) return -1
  i = string(b, i)
  if (i < 0) return -1
  i = skipWs(b, i)
  if (b[i] !== C.COLON) return -1
  return skipWs(b, i + 1)
}

/** A string starting at the quote; the index after its closing quote, or -1. */
function string (b: Uint8Array, i: number): number {
  const n = b.length
  i++
  while (i < n) {
    const c = b[i]
    if (c === C.QUOTE) return i + 1
    if (c < 0x20) return -1
    if (c === C.BACKSLASH) {
      const e = b[i + 1]
      if (e === C.LOWER_U) {
        for (let k = 2; k < 6; k++) if (!isHex(b[i + k])) return -1
        i += 6
        continue
      }
      if (e !== C.QUOTE && e !== C.BACKSLASH && e !== C.SLASH && e !== C.LOWER_B && e !== C.LOWER_F && e !== C.LOWER_N && e !== C.LOWER_R && e !== C.LOWER_T) return -1
      i += 2
      continue
    }
    i++
  }
  return -1
}

function isHex (c: number | undefined): boolean {
  return c !== undefined && ((c >= C.ZERO && c <= C.NINE) || (c >= 0x41 && c <= 0x46) || (c >= C.LOWER_A && c <= C.LOWER_F))
}

function literal (b: Uint8Array, i: number, word: Uint8Array): number {
  for (let k = 0; k < word.length; k++) if (b[i + k] !== word[k]) return -1
  return i + word.length
}

/** -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
function number (b: Uint8Array, i: number): number {
  if (b[i] === C.MINUS) i++
  if (b[i] === C.ZERO) {
    i++
  } else {
    if (!isDigit(b[i])) return -1
    while (isDigit(b[i])) i++
  }
  if (b[i] === C.DOT) {
    i++
    if (!isDigit(b[i])) return -1
    while (isDigit(b[i])) i++
  }
  if (b[i] === C.E_LOW || b[i] === C.E_UP) {
    i++
    if (b[i] === C.PLUS || b[i] === C.MINUS) i++
    if (!isDigit(b[i])) return -1
    while (isDigit(b[i])) i++
  }
  return i
}

function isDigit (c: number | undefined): boolean {
  return c !== undefined && c >= C.ZERO && c <= C.NINE
}
