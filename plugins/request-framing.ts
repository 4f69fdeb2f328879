// Request framing RFC 9112 refuses, answered 400 before routing: a request
// line without an HTTP version (Node accepts it as HTTP/0.9), more than one
// Host header (Node keeps only the first, an upstream or a cache may take
// another), a Host that is not host[:port], or none on HTTP/1.1.

import fp from 'fastify-plugin'
import type { IncomingMessage } from 'node:http'
import { GatewayError } from '../src/util/errors.js'

/** RFC 3986 host (IP-literal, IPv4 or reg-name) and optional port. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[A-Za-z0-9._~!$&'()*+,;=:-]+\]|(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})+)(?::[0-9]{0,5})?$/

/** Why the request's framing is refused, or undefined when it is fine. */
export function framingProblem (req: IncomingMessage): string | undefined {
  if (req.httpVersionMajor === 0) return 'the request line has no HTTP version'
  // HTTP/2 carries the authority in :authority; a Host beside it must name
  // the same (RFC 9113 §8.3.1), or Host (which Fastify prefers) would pass
  // another authority on as x-forwarded-host than the one the stream names.
  if (req.httpVersionMajor !== 1) return http2AuthorityProblem(req)
  const raw = req.rawHeaders
  let hosts = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    if (name.length === 4 && name.toLowerCase() === 'host') hosts++
  }
  if (hosts > 1) return 'more than one Host header'
  const host = req.headers.host
  if (host === undefined) return req.httpVersionMinor >= 1 ? 'an HTTP/1.1 request needs a Host header' : undefined
  if (!HOST.test(host) || portTooLarge(host)) return 'the Host header is not a valid host[:port]'
  return undefined
}

/** A five-digit port above 65535 (the grammar allows the digits; no TCP port has them). */
function portTooLarge (host: string): boolean {
  const colon = host.lastIndexOf(':')
  // Only a port of exactly five digits can be too large (most Hosts stop here, without a slice).
  if (colon === -1 || host.length - colon !== 6) return false
  // A tail from inside an IPv6 literal ("ffff]") sorts above '99999', so it is never taken for one.
  const port = host.slice(colon + 1)
  return port > '65535' && port <= '99999'
}

function http2AuthorityProblem (req: IncomingMessage): string | undefined {
  const host = req.headers.host
  if (host === undefined) return undefined
  const authority = req.headers[':authority']
  if (typeof authority === 'string' && authority.toLowerCase() !== host.toLowerCase()) return 'the Host header names another authority than :authority'
  if (!HOST.test(host) || portTooLarge(host)) return 'the Host header is not a valid host[:port]'
  return undefined
}

export default fp(async function requestFraming (app) {
  app.addHook('onRequest', (request, _reply, done) => {
    const problem = framingProblem(request.raw)
    if (problem === undefined) { done(); return }
    // A client this confused about framing gets no second request on the
    // connection (over HTTP/2 only the stream ends: there is no such header).
    done(new GatewayError('BAD_REQUEST', problem, request.raw.httpVersionMajor === 2 ? {} : { headers: { connection: 'close' } }))
  })
}, { name: 'portico-request-framing' })
