// Which content coding a client gets, from its `accept-encoding` (RFC 9110
// §12.5.3): the highest q-value among the codings the gateway offers, the
// gateway's order breaking ties; `*` stands for every coding not named; q=0
// refuses. Anything unparseable (a bad token, a q outside 0–1 or with more
// than three decimals) is ignored element by element, never an error. A
// coding named twice keeps its lowest q: a client that refused it once is
// taken at its word. No header, an empty one, or nothing acceptable: identity
// (undefined). Identity is always sendable here, even after `identity;q=0`:
// answering 415 to a GET would help nobody.
//
// The parse is one linear pass (no regular expression that could backtrack),
// and short header values, which repeat from request to request, are
// remembered per negotiator.

import type { CompressionEncoding } from '../config/compression.js'

export type Negotiate = (header: string | string[] | undefined) => CompressionEncoding | undefined

const REMEMBER = 1000
const REMEMBER_UP_TO = 256

/** RFC 9110 tchar, lower-cased input. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/
/** RFC 9110 qvalue: 0 to 1 with at most three decimals. */
const QVALUE = /^(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$/

export function compileNegotiator (offered: readonly CompressionEncoding[]): Negotiate {
  const recent = new Map<string, CompressionEncoding | null>()
  return function negotiate (header) {
    if (header === undefined) return undefined
    const text = typeof header === 'string' ? header : header.join(',')
    if (text.length > REMEMBER_UP_TO) return choose(offered, text)
    const known = recent.get(text)
    if (known !== undefined) return known ?? undefined
    const chosen = choose(offered, text)
    if (recent.size >= REMEMBER) recent.delete(recent.keys().next().value as string)
    recent.set(text, chosen ?? null)
    return chosen
  }
}

/** The best offered coding for this header value, or undefined for identity. */
export function choose (offered: readonly CompressionEncoding[], header: string): CompressionEncoding | undefined {
  const weights = parseAcceptEncoding(header)
  const star = weights.get('*')
  let best: CompressionEncoding | undefined
  let bestQ = 0
  for (const coding of offered) {
    const q = weights.get(coding) ?? star ?? 0
    if (q > bestQ) { best = coding; bestQ = q }
  }
  return best
}

/** coding (lower-case; `x-gzip` read as `gzip`) → q, for the well-formed elements of the header. */
export function parseAcceptEncoding (header: string): Map<string, number> {
  const out = new Map<string, number>()
  let start = 0
  while (start <= header.length) {
    let end = header.indexOf(',', start)
    if (end === -1) end = header.length
    const element = parseElement(header.slice(start, end))
    if (element !== undefined) {
      const [coding, q] = element
      const seen = out.get(coding)
      out.set(coding, seen === undefined ? q : Math.min(seen, q))
    }
    start = end + 1
  }
  return out
}

function parseElement (element: string): [string, number] | undefined {
  const semi = element.indexOf(';')
  let coding = (semi === -1 ? element : element.slice(0, semi)).trim().toLowerCase()
  if (coding === '' || !TOKEN.test(coding)) return undefined
  if (coding === 'x-gzip') coding = 'gzip'
  let q = 1
  if (semi !== -1) {
    for (const param of element.slice(semi + 1).split(';')) {
      const eq = param.indexOf('=')
      if (eq === -1) { if (param.trim() === '') continue; return undefined }
      if (param.slice(0, eq).trim().toLowerCase() !== 'q') continue // codings take no other parameters; ignored
      const value = param.slice(eq + 1).trim()
      if (!QVALUE.test(value)) return undefined
      q = Number(value)
    }
  }
  return [coding, q]
}
