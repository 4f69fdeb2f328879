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

import type { PathRules } from '../../config/types.js'

/** Why a request target was refused (answered 400 BAD_REQUEST). Not an Error: refusals are cheap and expected. */
export class PathRefused {
  constructor (readonly detail: string) {}
}

export type PathNormaliser = (target: string) => string | PathRefused

/** Nothing to do for a path without these (and, when case-insensitive, without upper-case letters). */
const NEEDS_WORK = /[%\\;#]|\/\/|\/\.\.?(?:\/|$)/
const UPPER = /[A-Z]/
/** 1 for the bytes of RFC 3986 unreserved characters (ALPHA DIGIT - . _ ~), decoded wherever they are escaped. */
const UNRESERVED = new Uint8Array(128)
for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~') UNRESERVED[ch.charCodeAt(0)] = 1
/** Separators an upstream may read inside one of our segments, when the rules keep them. */
const INNER_SEPARATORS = /\\|%2f|%5c/i

const refusals = {
  escapedSlash: new PathRefused('an encoded "/" or "\\" (%2F, %5C) is not accepted in the path'),
  backslash: new PathRefused('a "\\" is not accepted in the path'),
  pathParameter: new PathRefused('a ";" (path parameter) is not accepted in the path'),
  dotSegment: new PathRefused('a path segment may not be "." or ".."'),
  badEscape: new PathRefused('the path has a malformed percent-encoding'),
  nul: new PathRefused('an encoded control character (%00-%1F, %7F) is not accepted in the path'),
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

    // Runs of ordinary characters are copied in one slice; only the special ones are looked at.
    let path = ''
    let run = 0
    for (let i = 0; i < rawPath.length; i++) {
      const c = rawPath.charCodeAt(i)
      if (c !== 37 /* % */ && c !== 92 /* \ */ && c !== 59 /* ; */ && c !== 35 /* # */ && c !== 47 /* / */) continue
      path += rawPath.slice(run, i)
      run = i + 1
      if (c === 37) {
        const code = hexByte(rawPath, i + 1)
        if (code < 0) return refusals.badEscape
        run = i + 3
        if (UNRESERVED[code] === 1) path += String.fromCharCode(code)
        // Control characters: NUL cuts C strings, and tabs or separators are trimmed from segments by some routers (`/admin%09/x`).
        else if (code < 0x20 || code === 0x7f) return refusals.nul
        else if ((code === 0x2f || code === 0x5c) && !keepEscapedSlashes) return refusals.escapedSlash
        else path += rawPath.slice(i, i + 3)
        i += 2
      } else if (c === 92) {
        if (!keepBackslashes) return refusals.backslash
        path += '\\'
      } else if (c === 59) {
        if (!keepParameters) return refusals.pathParameter
        path += ';'
      } else if (c === 35) {
        return refusals.fragment
      } else if (!(mergeSlashes && path.endsWith('/'))) {
        path += '/' // (a second `/` of `//` adds nothing when merging)
      }
    }
    path += rawPath.slice(run)

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

/** The byte of the two hex digits at `at`, or -1. */
function hexByte (text: string, at: number): number {
  const hi = hexDigit(text.charCodeAt(at))
  const lo = hexDigit(text.charCodeAt(at + 1))
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo
}

function hexDigit (c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  if (c >= 65 && c <= 70) return c - 55
  if (c >= 97 && c <= 102) return c - 87
  return -1
}

function asciiLowerCase (text: string): string {
  return text.replace(/[A-Z]+/g, s => s.toLowerCase())
}
