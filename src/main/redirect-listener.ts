// `server.redirectHttpPort`: a plain-HTTP listener that serves nothing and
// sends every request to https:// on the TLS port with 308 (method and body
// kept, unlike 301/302). The location's host is the request's Host name (its
// own port dropped): a Host that is missing, repeated, or not a plain DNS
// name or IP address is answered 400 rather than turned into a location, so
// no request can make the gateway point a client at `https:///evil` or
// `https://user@evil` or a scheme-relative `//evil`.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { isIPv4, isIPv6, type AddressInfo } from 'node:net'
import { randomUUID } from 'node:crypto'
import { GatewayError, PROBLEM_CONTENT_TYPE, problemBody } from '../util/errors.js'
import { answerClientError, serverOptions } from '../gateway/http-edge.js'
import type { ServerConfig } from '../config/types.js'

/** A DNS name (labels of letters, digits and inner hyphens, optional final dot), at most 253 characters. */
const DNS_NAME = /^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/
const ABSOLUTE = /^https?:\/\/([^/?#]*)([^#]*)/i
/** Bytes a location may not carry as they are (controls, spaces, non-ASCII); `%` stays, it already encodes. */
const UNSAFE_IN_LOCATION = /[^\x21-\x7e]/g

/** Node's parser hands the target over as latin1, one character per byte: each is encoded as that byte. */
function percentByte (c: string): string {
  return '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')
}

/** The host name of a Host value (port dropped), or undefined when it is not a name or address. */
export function hostName (host: string): string | undefined {
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(host)
  if (bracketed !== null) return isIPv6(bracketed[1]) ? `[${bracketed[1].toLowerCase()}]` : undefined
  const m = /^([^:]*)(?::(\d{1,5}))?$/.exec(host)
  if (m === null) return undefined
  const name = m[1]
  if (isIPv4(name) || DNS_NAME.test(name)) return name.toLowerCase()
  return undefined
}

/**
 * Where a request is sent: `https://NAME[:PORT]/path?query`, or a reason to
 * answer 400. The authority comes from an absolute-form target when there is
 * one (RFC 9112 §3.2.2), else from Host; the port is the TLS port, omitted
 * when it is 443.
 */
export function redirectLocation (target: string, hosts: string[], tlsPort: number): string | GatewayError {
  let authority: string | undefined
  let path: string
  const absolute = ABSOLUTE.exec(target)
  if (absolute !== null) {
    authority = absolute[1]
    path = absolute[2] === '' || absolute[2].startsWith('?') ? '/' + absolute[2] : absolute[2]
  } else if (target.startsWith('/')) {
    if (hosts.length > 1) return new GatewayError('BAD_REQUEST', 'more than one Host header')
    authority = hosts[0]
    path = target
  } else {
    return new GatewayError('BAD_REQUEST', 'the request target must be a path (or an absolute http:// URL)')
  }
  if (authority === undefined || authority === '') return new GatewayError('BAD_REQUEST', 'a Host header naming this server is required to redirect to https')
  const name = hostName(authority)
  if (name === undefined) return new GatewayError('BAD_REQUEST', 'the Host header is not a host name or IP address (with an optional port)')
  const port = tlsPort === 443 ? '' : `:${tlsPort}`
  return `https://${name}${port}${path.replace(UNSAFE_IN_LOCATION, percentByte)}`
}

export interface RedirectListener {
  server: Server
  address: () => AddressInfo
  close: () => Promise<void>
}

export async function startRedirectListener (config: ServerConfig, tlsPort: number): Promise<RedirectListener> {
  const server = createServer(serverOptions(config.headersTimeout, config.requestTimeout), (req, res) => { answerRedirect(req, res, tlsPort) })
  server.keepAliveTimeout = config.keepAliveTimeout
  server.headersTimeout = config.headersTimeout
  server.requestTimeout = config.requestTimeout
  server.on('clientError', answerClientError)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.redirectHttpPort, config.host, () => { server.off('error', reject); resolve() })
  })
  return {
    server,
    address: () => server.address() as AddressInfo,
    close: async () => {
      await new Promise<void>(resolve => {
        server.close(() => { resolve() })
        server.closeIdleConnections()
      })
    },
  }
}

function answerRedirect (req: IncomingMessage, res: ServerResponse, tlsPort: number): void {
  const hosts: string[] = []
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === 'host') hosts.push(raw[i + 1])
  const location = redirectLocation(req.url ?? '/', hosts, tlsPort)
  // A body is not read: the client sends it again to the location.
  if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) res.shouldKeepAlive = false
  req.resume()
  if (typeof location === 'string') {
    res.writeHead(308, { location, 'content-length': 0 })
    res.end()
    return
  }
  const requestId = randomUUID()
  const body = JSON.stringify(problemBody(location, requestId))
  res.writeHead(location.status, { 'content-type': PROBLEM_CONTENT_TYPE, 'content-length': Buffer.byteLength(body), 'x-request-id': requestId, connection: 'close' })
  res.end(req.method === 'HEAD' ? undefined : body)
}
