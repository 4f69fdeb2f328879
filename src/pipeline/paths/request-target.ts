// The request target as the gateway routes and forwards it: always
// origin-form (`/path?query`), normalised (normalise.ts). An absolute-form
// target (`GET http://host/path`, RFC 9112 §3.2.2) is taken only when its
// authority is the Host header: the server must route by the target's
// authority, so a target naming another host than the one the client
// connected to is refused rather than forwarded for the upstream to believe.
// Asterisk-form (`OPTIONS *`) and anything else is refused.

import type { IncomingMessage } from 'node:http'
import type { PathRules } from '../../config/types.js'
import { compilePathNormaliser, PathRefused } from './normalise.js'

export type TargetRewriter = (target: string, host: string | undefined) => string | PathRefused

const ABSOLUTE = /^(https?):\/\/([^/?#]*)(.*)$/i
const AUTHORITY = /^[A-Za-z0-9\-._~!$&'()*+,;=]+(?::\d*)?$|^\[[0-9A-Fa-f:.]+\](?::\d*)?$/

const otherHost = new PathRefused('the request target names another host than the Host header')
const badAuthority = new PathRefused('the request target\'s authority is not a host[:port]')

export function compileRequestTarget (rules: PathRules): TargetRewriter {
  const normalisePath = compilePathNormaliser(rules)
  return function rewriteTarget (target, host) {
    if (target.charCodeAt(0) === 47 /* / */) return normalisePath(target)
    const m = ABSOLUTE.exec(target)
    if (m === null) return normalisePath(target) // refused: not origin-form
    const [, scheme, authority, rest] = m
    if (!AUTHORITY.test(authority)) return badAuthority
    if (host === undefined || comparableAuthority(authority, scheme) !== comparableAuthority(host, scheme)) return otherHost
    return normalisePath(rest === '' || rest.startsWith('?') ? '/' + rest : rest)
  }
}

/** Host names compare case-insensitively, and an explicit default port is the same as none. */
function comparableAuthority (authority: string, scheme: string): string {
  const a = authority.toLowerCase()
  const defaultPort = scheme.toLowerCase() === 'https' ? ':443' : ':80'
  if (a.endsWith(defaultPort)) return a.slice(0, -defaultPort.length)
  return a.endsWith(':') ? a.slice(0, -1) : a
}

/** Where a refused target's reason waits for the first onRequest hook (Fastify's rewriteUrl cannot answer itself). */
export const TARGET_REFUSED = Symbol('portico.targetRefused')

type MarkedRequest = IncomingMessage & { [TARGET_REFUSED]?: string }

/**
 * Fastify's `rewriteUrl`: the normalised target, or, when refused, the
 * target unchanged with the reason marked on the request (then refused with
 * 400 by refuseMarkedTargets before any policy or handler runs).
 */
export function targetRewriteUrl (rules: PathRules): (req: IncomingMessage) => string {
  const rewrite = compileRequestTarget(rules)
  return function rewriteUrl (req) {
    const target = req.url ?? '/'
    const out = rewrite(target, req.headers.host)
    if (typeof out === 'string') return out
    ;(req as MarkedRequest)[TARGET_REFUSED] = out.detail
    // The router must still find some path; a refused one never reaches a route's handler.
    return target.charCodeAt(0) === 47 ? target : '/'
  }
}

/** The reason a request's target was refused, if it was. */
export function refusedTarget (req: IncomingMessage): string | undefined {
  return (req as MarkedRequest)[TARGET_REFUSED]
}
