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
  // HTTP/2 carries the authority in :authority, not Host.
  if (req.httpVersionMajor !== 1) return undefined
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
  const port = host.slice(host.lastIndexOf(':') + 1)
  // Only a port of exactly five digits can be too large. A tail from inside an
  // IPv6 literal ("ffff]") sorts above '99999', so it is never taken for one.
  return port.length === 5 && port > '65535' && port <= '99999'
}

export default fp(async function requestFraming (app) {
  app.addHook('onRequest', (request, _reply, done) => {
    const problem = framingProblem(request.raw)
    // A client this confused about framing gets no second request on the connection.
    done(problem === undefined ? undefined : new GatewayError('BAD_REQUEST', problem, { headers: { connection: 'close' } }))
  })
}, { name: 'portico-request-framing' })
