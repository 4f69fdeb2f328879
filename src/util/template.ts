// Templates such as `/users/{params.id}` or `{auth.sub}` are parsed once at
// config load into literal/placeholder lists; per request they are only
// filled in. Path templates percent-encode every value so a client-supplied
// value can never change the shape of the upstream path.

import { GatewayError } from './errors.js'

export const TEMPLATE_SOURCES = ['params', 'query', 'headers', 'auth'] as const
export type TemplateSource = typeof TEMPLATE_SOURCES[number]

export interface Placeholder {
  source: TemplateSource
  key: string
  /** The placeholder is a whole path segment (`/{params.id}/`), so empty or dot values would change the path's shape. */
  wholeSegment: boolean
}

export interface ParsedTemplate {
  /** Always one more literal than placeholders: lit0 ph0 lit1 ph1 … litN. */
  literals: string[]
  placeholders: Placeholder[]
}

/** What a template may read from the request. */
export interface FillContext {
  params: Record<string, string | undefined>
  query: Record<string, unknown>
  headers: Record<string, string | string[] | undefined>
  auth?: Record<string, unknown>
}

export class TemplateError extends Error {}

const PLACEHOLDER = /\{([^{}]*)\}/g

export function parseTemplate (text: string): ParsedTemplate {
  const literals: string[] = []
  const placeholders: Placeholder[] = []
  let last = 0
  for (const m of text.matchAll(PLACEHOLDER)) {
    const inner = m[1].trim()
    const dot = inner.indexOf('.')
    const source = inner.slice(0, dot) as TemplateSource
    const key = inner.slice(dot + 1)
    if (dot <= 0 || key === '' || !TEMPLATE_SOURCES.includes(source)) {
      throw new TemplateError(`"{${inner}}" is not a placeholder; use {params.X}, {query.X}, {headers.X} or {auth.X}`)
    }
    const before = text.slice(last, m.index)
    const end = m.index + m[0].length
    const after = text.slice(end)
    literals.push(before)
    placeholders.push({
      source,
      key: source === 'headers' ? key.toLowerCase() : key,
      wholeSegment: (before.endsWith('/') || (m.index === 0)) && (after === '' || after.startsWith('/') || after.startsWith('?')),
    })
    last = end
  }
  const tail = text.slice(last)
  if (/[{}]/.test(tail) || literals.some(l => /[{}]/.test(l))) throw new TemplateError('has an unbalanced { or }')
  literals.push(tail)
  return { literals, placeholders }
}

/** The raw value a placeholder refers to, as a string (undefined when absent). */
export function lookup (ctx: FillContext, p: Placeholder): string | undefined {
  let v: unknown
  switch (p.source) {
    case 'params': v = own(ctx.params, p.key); break
    case 'query': v = own(ctx.query, p.key); break
    case 'headers': v = own(ctx.headers, p.key); break
    case 'auth': v = ctx.auth === undefined ? undefined : own(ctx.auth, p.key); break
  }
  if (v === undefined || v === null) return undefined
  if (Array.isArray(v)) return p.source === 'query' ? stringOf(v[0]) : v.map(stringOf).join(',')
  return stringOf(v)
}

/** Own entries only: `{headers.constructor}` is an absent header, not Object.prototype's function. */
function own (from: object, key: string): unknown {
  return Object.hasOwn(from, key) ? (from as Record<string, unknown>)[key] : undefined
}

function stringOf (v: unknown): string {
  return typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v)
}

const DOT_SEGMENT = /(^|\/)\.{1,2}(\/|$)/

export type PathFiller = (ctx: FillContext) => string

/** An empty segment inside a wildcard's rest (`a//b`, `/a`); a final `/` (`a/`) is a trailing slash, kept. */
const EMPTY_INNER_SEGMENT = /^\/|\/\//

/**
 * A path template whose values are percent-encoded: `/`, `?`, `#` and `%` in a
 * value stay data. `{params.*}` (a wildcard's rest) keeps its `/` separators
 * but encodes each segment. A value that would become a `.`/`..` segment or an
 * empty segment is refused with 400 rather than sent on. An empty
 * `{params.*}` (the route's root: `/files` or `/files/` on `/files/*`) drops
 * out together with the `/` before it.
 */
export function compilePathTemplate (text: string): PathFiller {
  const { literals, placeholders } = parseTemplate(text)
  if (placeholders.length === 0) return () => text
  return function fillPath (ctx) {
    let out = literals[0]
    for (let i = 0; i < placeholders.length; i++) {
      const p = placeholders[i]
      const value = lookup(ctx, p) ?? ''
      const rest = p.source === 'params' && p.key === '*'
      if (rest && value === '' && p.wholeSegment) {
        if (out.endsWith('/')) out = out.slice(0, -1)
        out += literals[i + 1]
        continue
      }
      if (value === '' && p.wholeSegment) throw new GatewayError('BAD_REQUEST', `missing value for {${p.source}.${p.key}} in the upstream path`)
      if (rest && EMPTY_INNER_SEGMENT.test(value)) throw new GatewayError('BAD_REQUEST', 'an empty path segment ("//") cannot fill {params.*}')
      out += encodePathValue(value, rest) + literals[i + 1]
    }
    if (out === '' || out.startsWith('?')) out = '/' + out
    // Values are encoded, so the first `?` is the template's own: only the path before it has segments.
    const q = out.indexOf('?')
    if (DOT_SEGMENT.test(q === -1 ? out : out.slice(0, q))) throw new GatewayError('BAD_REQUEST', 'a path segment may not be "." or ".."')
    return out
  }
}

function encodePathValue (value: string, keepSlashes: boolean): string {
  try {
    if (!keepSlashes) return encodeURIComponent(value)
    return value.split('/').map(encodeURIComponent).join('/')
  } catch {
    // Lone surrogates cannot be encoded; the request is malformed.
    throw new GatewayError('BAD_REQUEST', 'the request path is not valid UTF-8')
  }
}


export type ValueFiller = (ctx: FillContext) => string

/**
 * A template for a query or header value: filled as plain text (the caller
 * encodes it for where it goes). Absent values become empty strings.
 */
export function compileValueTemplate (text: string): ValueFiller {
  const { literals, placeholders } = parseTemplate(text)
  if (placeholders.length === 0) return () => text
  return function fillValue (ctx) {
    let out = literals[0]
    for (let i = 0; i < placeholders.length; i++) out += (lookup(ctx, placeholders[i]) ?? '') + literals[i + 1]
    return out
  }
}
