// The request path as the gateway matches and forwards it. Upstreams read
// paths differently (nginx merges `//`, Tomcat and Spring drop `;params`,
// WHATWG parsers and IIS read `\` as `/`, Express matches case-insensitively):
// a path the router reads one way and the upstream another would let a
// client reach a protected route's upstream through a broader route. So the
// path is brought to one form before matching, and that form is what goes
// upstream; what cannot be brought to one safe form is refused.
//
// Per `server.paths` (compiled once at config load):
// - percent-encoded unreserved characters (`%41` → `A`, `%2e` → `.`) are
//   decoded, as the router and most upstreams would; other escapes stay as sent;
// - `//` is merged (mergeSlashes);
// - `%2F`/`%5C` (escapedSlashes), a raw `\` (backslashes) and a `;` in a
//   segment (pathParameters) are refused unless kept;
// - `%00` is always refused (C-based upstreams end the path there);
// - `.` and `..` segments are always refused, also where a kept `\`, `%2F`,
//   `%5C` or `;` would make one for the upstream;
// - caseInsensitive lower-cases the path (ASCII letters only).
// The query string is left exactly as sent.

import type { PathRules } from '../config/types.js'

/** Why a request target was refused (answered 400 BAD_REQUEST). Not an Error: refusals are cheap and expected. */
export class PathRefused {
  constructor (readonly detail: string) {}
}

export type PathNormaliser = (target: string) => string | PathRefused

/** Nothing to do for a path without these (and, when case-insensitive, without upper-case letters). */
const NEEDS_WORK = /[%\\;#]|\/\/|\/\.\.?(?:\/|$)/
const UPPER = /[A-Z]/
const HEX = /^[0-9A-Fa-f]{2}$/
const UNRESERVED = /[A-Za-z0-9\-._~]/
/** Separators an upstream may read inside one of our segments, when the rules keep them. */
const INNER_SEPARATORS = /\\|%2f|%5c/i

const refusals = {
  escapedSlash: new PathRefused('an encoded "/" or "\\" (%2F, %5C) is not accepted in the path'),
  backslash: new PathRefused('a "\\" is not accepted in the path'),
  pathParameter: new PathRefused('a ";" (path parameter) is not accepted in the path'),
  dotSegment: new PathRefused('a path segment may not be "." or ".."'),
  badEscape: new PathRefused('the path has a malformed percent-encoding'),
  nul: new PathRefused('an encoded NUL (%00) is not accepted in the path'),
  fragment: new PathRefused('a request target may not carry a "#" fragment'),
  notOrigin: new PathRefused('the request target must be a path starting with "/"'),
}

export function compilePathNormaliser (rules: PathRules): PathNormaliser {
  const keepEscapedSlashes = rules.escapedSlashes === 'keep'
  const keepBackslashes = rules.backslashes === 'keep'
  const keepParameters = rules.pathParameters === 'keep'
  const { mergeSlashes, caseInsensitive } = rules

  return function normalisePath (target) {
    if (target.charCodeAt(0) !== 47 /* / */) return refusals.notOrigin
    const q = target.indexOf('?')
    const rawPath = q === -1 ? target : target.slice(0, q)
    if (!NEEDS_WORK.test(rawPath) && !(caseInsensitive && UPPER.test(rawPath))) return target

    let path = ''
    for (let i = 0; i < rawPath.length; i++) {
      const c = rawPath[i]
      if (c === '%') {
        const hex = rawPath.slice(i + 1, i + 3)
        if (!HEX.test(hex)) return refusals.badEscape
        const decoded = String.fromCharCode(parseInt(hex, 16))
        if (UNRESERVED.test(decoded)) path += decoded
        else if (decoded === '\0') return refusals.nul
        else if (decoded === '/' || decoded === '\\') {
          if (!keepEscapedSlashes) return refusals.escapedSlash
          path += '%' + hex
        } else path += '%' + hex
        i += 2
      } else if (c === '\\') {
        if (!keepBackslashes) return refusals.backslash
        path += c
      } else if (c === ';') {
        if (!keepParameters) return refusals.pathParameter
        path += c
      } else if (c === '#') {
        return refusals.fragment
      } else if (c === '/' && mergeSlashes && path.endsWith('/')) {
        // merged: the second `/` of `//` adds nothing
      } else path += c
    }

    if (hasDotSegment(path)) return refusals.dotSegment
    if (caseInsensitive) path = asciiLowerCase(path)
    return q === -1 ? path : path + target.slice(q)
  }
}

/**
 * A `.`/`..` segment, where the router's segments are split by `/` and an
 * upstream's may also be split by a kept `\`, `%2F` or `%5C`, and a kept
 * `;params` suffix is dropped (Tomcat reads `..;x` as `..`).
 */
function hasDotSegment (path: string): boolean {
  for (const segment of path.split('/')) {
    if (!segment.includes('.')) continue
    for (const piece of INNER_SEPARATORS.test(segment) ? segment.split(/\\|%2f|%5c/i) : [segment]) {
      const semi = piece.indexOf(';')
      const name = semi === -1 ? piece : piece.slice(0, semi)
      if (name === '.' || name === '..') return true
    }
  }
  return false
}

function asciiLowerCase (text: string): string {
  return text.replace(/[A-Z]+/g, s => s.toLowerCase())
}
