// The `cors:` block (gateway-wide, or a route's own, or a route's `cors: false`):
// its schema fragment, its checks (origins must be origins) and its normalized
// form. Origins are canonicalised here the way a browser serialises its
// Origin header (lower case, punycode, no default port), so that matching a
// request is a set lookup and a suffix test (src/pipeline/cors.ts).

import type { SourceMap } from './load.js'
import type { ConfigProblem, FieldPath } from './problems.js'
import { parseDuration } from './units.js'

export interface CorsConfig {
  /** Canonical origins: `https://app.example.com`, `https://*.example.com[:port]`, or `*`. */
  origins: string[]
  /** Allowed request headers, lower case. */
  headers: string[]
  /** Response headers a page may read, lower case. */
  exposeHeaders: string[]
  credentials: boolean
  /** Milliseconds; absent: no access-control-max-age (the browser's default, 5 s). */
  maxAge?: number
}

const headerName = { type: 'string', pattern: '^[A-Za-z0-9-]+$', 'x-message': 'must be a header name ("*" is not accepted: list the names)' }

const corsProperties = {
  origins: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
  headers: { type: 'array', items: headerName },
  exposeHeaders: { type: 'array', items: headerName },
  credentials: { type: 'boolean' },
  maxAge: { duration: true },
}

/** The gateway-wide `cors:` block. */
export const corsSchema = { type: 'object', additionalProperties: false, required: ['origins'], properties: corsProperties }

/**
 * A route's `cors:`: `false` or a block of its own. One schema for both (object
 * keywords do not apply to a boolean) so an error inside the block keeps its
 * own message; `true` is refused by checkCors.
 */
export const routeCorsSchema = { type: ['object', 'boolean'], additionalProperties: false, required: ['origins'], properties: corsProperties }

export interface RawCors { origins: string[], headers?: string[], exposeHeaders?: string[], credentials?: boolean, maxAge?: string | number }

/** Chromium caps a preflight's cache at 2 h (Firefox at 24 h): a longer maxAge does nothing there. */
const BROWSER_MAX_AGE_CAP = 7_200_000

export function checkCors (raw: { cors?: unknown, routes?: unknown }, map: SourceMap): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const at = (path: FieldPath, message: string, warning = false): void => {
    problems.push({ ...map.locate(path), message, ...(warning ? { warning } : {}) })
  }
  if (isBlock(raw.cors)) checkBlock(raw.cors, ['cors'], at)
  if (Array.isArray(raw.routes)) {
    raw.routes.forEach((route: { cors?: unknown } | null, i) => {
      const cors = route?.cors
      if (cors === true) at(['routes', i, 'cors'], 'must be false (no CORS on this route) or a cors block of its own (origins, headers, …)')
      else if (isBlock(cors)) checkBlock(cors, ['routes', i, 'cors'], at)
    })
  }
  return problems
}

function isBlock (v: unknown): v is RawCors {
  return v !== null && typeof v === 'object' && Array.isArray((v as RawCors).origins)
}

function checkBlock (cors: RawCors, path: FieldPath, at: (p: FieldPath, m: string, warning?: boolean) => void): void {
  let any = false
  cors.origins.forEach((entry, i) => {
    if (typeof entry !== 'string') return // the schema reports it
    const parsed = parseOrigin(entry)
    if (typeof parsed === 'object') at([...path, 'origins', i], parsed.problem)
    else if (parsed === '*') any = true
  })
  if (any && cors.credentials === true) {
    at([...path, 'credentials'], 'true cannot go with the "*" origin: browsers refuse a credentialed answer that allows any origin, and reflecting every origin would hand any site the user\'s session; list the origins instead')
  }
  if (any && cors.origins.length > 1) at([...path, 'origins'], '"*" allows every origin; the other entries add nothing', true)
  const maxAge = parseDuration(cors.maxAge)
  if (maxAge !== undefined && maxAge > BROWSER_MAX_AGE_CAP) at([...path, 'maxAge'], 'is over 2h, which Chromium caps preflight caching at', true)
}

/**
 * An origin entry in canonical form (`*`, `scheme://host[:port]`,
 * `scheme://*.domain[:port]`), or what is wrong with it.
 */
export function parseOrigin (text: string): string | { problem: string } {
  if (text === '*') return '*'
  if (text.toLowerCase() === 'null') {
    return { problem: 'the "null" origin is what sandboxed iframes, file:// pages and redirected requests send: any site can produce it, so it cannot be allowed' }
  }
  if (/\s/.test(text)) return { problem: 'may not contain whitespace' }
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/.exec(text)
  if (m === null) return { problem: 'has no scheme: an origin is scheme://host[:port], e.g. https://app.example.com' }
  const scheme = m[1].toLowerCase()
  let rest = m[2]
  const slash = rest.indexOf('/')
  if (slash !== -1) {
    return { problem: slash === rest.length - 1
      ? `has a trailing "/": an origin has no path, and browsers send ${scheme}://${rest.slice(0, -1).toLowerCase()}`
      : 'has a path: an origin is only scheme://host[:port]' }
  }
  if (/[?#@\\]/.test(rest)) return { problem: 'may not have a query, fragment or user info: an origin is only scheme://host[:port]' }
  const wildcard = rest.startsWith('*.')
  if (wildcard) rest = rest.slice(2)
  if (rest.includes('*')) return { problem: 'a wildcard may only be the whole first label, as in https://*.example.com' }
  let host: string
  if (scheme === 'http' || scheme === 'https') {
    let url: URL
    try { url = new URL(`${scheme}://${rest}`) } catch { return { problem: 'is not a valid origin (scheme://host[:port])' } }
    // URL lower-cases the host, turns it into punycode and drops a default port, as a browser's Origin does.
    host = url.host
    if (url.hostname.endsWith('.')) return { problem: 'has a trailing dot: browsers send the name as the page was opened, so it would be a different origin' }
    if (wildcard && (url.hostname.startsWith('[') || /^[\d.]+$/.test(url.hostname) || !url.hostname.includes('.'))) {
      return { problem: 'a wildcard needs a domain of at least two labels after "*." (https://*.example.com), not an address or a single label' }
    }
  } else {
    // Other schemes (capacitor://localhost, app webviews) are compared as written, lower-cased.
    if (wildcard) return { problem: 'a wildcard is only supported for http:// and https:// origins' }
    if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$/.test(rest)) return { problem: 'is not a valid origin (scheme://host[:port])' }
    host = rest.toLowerCase()
  }
  return `${scheme}://${wildcard ? '*.' : ''}${host}`
}

function normalizeBlock (c: RawCors): CorsConfig {
  const maxAge = parseDuration(c.maxAge)
  return {
    // checkCors refused any entry parseOrigin cannot read.
    origins: [...new Set(c.origins.map(o => parseOrigin(o) as string))],
    headers: [...new Set((c.headers ?? []).map(h => h.toLowerCase()))],
    exposeHeaders: [...new Set((c.exposeHeaders ?? []).map(h => h.toLowerCase()))],
    credentials: c.credentials ?? false,
    ...(maxAge !== undefined ? { maxAge } : {}),
  }
}

/** The gateway-wide block, for GatewayConfig (`{}` when absent). */
export function normalizeGatewayCors (raw: { cors?: unknown }): { cors?: CorsConfig } {
  return isBlock(raw.cors) ? { cors: normalizeBlock(raw.cors) } : {}
}

/** A route's own `cors:` (false or a block), for RouteConfig (`{}` when absent: the gateway's applies). */
export function normalizeRouteCors (route: { cors?: unknown }): { cors?: CorsConfig | false } {
  if (route.cors === false) return { cors: false }
  return isBlock(route.cors) ? { cors: normalizeBlock(route.cors) } : {}
}
