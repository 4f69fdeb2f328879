// The process's public server, made from `server.tls` / `server.http2`:
// node:http without tls; node:https with tls; with http2 as well, one
// node:http2 secure server that offers h2 and http/1.1 by ALPN on the same
// port (`allowHTTP1`). Requests of both protocols reach the same handler
// (the current gateway app, src/main/server.ts); Fastify tells them apart
// by the request's httpVersionMajor, so an app swap on reload works the
// same for both.
//
// A reload re-reads the certificate files (src/config/tls.ts checked them):
// setSecureContext gives new handshakes the new pair and CAs while open
// connections keep the session they negotiated. Switching TLS or HTTP/2 on
// or off, or moving a port, needs a restart.

import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createSecureServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from 'node:http2'
import type { Server as NetServer } from 'node:net'
import type { TLSSocket, SecureContextOptions, TlsOptions } from 'node:tls'
import type { FastifyBaseLogger } from 'fastify'
import type { ServerConfig } from '../config/types.js'
import type { TlsSettings } from '../config/tls.js'
import { answerClientError, serverOptions } from '../gateway/http-edge.js'

export type EdgeRequest = IncomingMessage | Http2ServerRequest
export type EdgeResponse = ServerResponse | Http2ServerResponse
export type EdgeHandler = (req: EdgeRequest, res: EdgeResponse) => void

/**
 * Streams one client may have open at once on an HTTP/2 connection. Node's
 * default is 2^32-1; one connection could then keep the gateway busy with
 * any number of upstream calls. 128, as nginx.
 */
const MAX_CONCURRENT_STREAMS = 128

export interface EdgeServer {
  /** Listens, closes, reports its address. */
  readonly server: NetServer
  readonly scheme: 'http' | 'https'
  /** Closes HTTP/1.1 keep-alive connections with no request in flight. */
  closeIdleConnections: () => void
  /** Stopping: every HTTP/2 session gets GOAWAY; its open streams finish, new ones go elsewhere. */
  goAway: () => void
  /** Applies a reloaded config's TLS files and timeouts; throws when Node refuses the new pair (the old one stays). */
  reload: (next: ServerConfig, log: FastifyBaseLogger) => void
}

/** Whether a response is an HTTP/2 stream's (no `connection` header, no socket of its own). */
export function isHttp2Response (res: EdgeResponse): res is Http2ServerResponse {
  return 'stream' in res
}

export function createEdgeServer (config: ServerConfig, handler: EdgeHandler): EdgeServer {
  const tls = config.tls
  const httpOptions = serverOptions(config.headersTimeout, config.requestTimeout)
  let server: HttpServer | Http2SecureServer
  const sessions = new Set<Http2Session>()
  if (tls === undefined) {
    server = createHttpServer(httpOptions, handler as (req: IncomingMessage, res: ServerResponse) => void)
  } else if (!config.http2) {
    server = createHttpsServer({ ...httpOptions, ...tlsOptions(tls, config) }, handler as (req: IncomingMessage, res: ServerResponse) => void)
  } else {
    const h2 = createSecureServer({ ...tlsOptions(tls, config), allowHTTP1: true, settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS } }, handler)
    // Node's HTTP/1.1 fallback reads these from the server; its default check interval is 30 s.
    ;(h2 as unknown as { connectionsCheckingInterval: number }).connectionsCheckingInterval = httpOptions.connectionsCheckingInterval ?? 1000
    h2.on('session', (session: Http2Session) => {
      sessions.add(session)
      session.once('close', () => { sessions.delete(session) })
      // An idle HTTP/2 connection goes like an idle keep-alive one.
      session.setTimeout(config.keepAliveTimeout, () => { session.close() })
    })
    // Node's http2 server reports handshake failures as clientError, which
    // would answer them in HTTP/1.1 on a socket that never became TLS.
    h2.removeAllListeners('tlsClientError')
    server = h2
  }
  server.on('clientError', answerClientError)
  if (tls !== undefined) {
    server.on('tlsClientError', (_err: Error, socket: TLSSocket) => { socket.destroy() })
    // The peer certificate, and so an mtls identity, is fixed for the connection's life.
    server.on('secureConnection', (socket: TLSSocket) => { socket.disableRenegotiation() })
  }
  // Node answers `Expect: 100-continue` at once unless someone listens;
  // the gateway writes the 100 itself once auth and limits passed (src/pipeline/expect-continue.ts).
  server.on('checkContinue', (req: EdgeRequest, res: EdgeResponse) => { server.emit('request', req, res) })
  applyTimeouts(server, config)

  let current = tls
  return {
    server,
    scheme: tls === undefined ? 'http' : 'https',
    closeIdleConnections: () => { (server as HttpServer).closeIdleConnections() },
    goAway: () => { for (const s of sessions) s.close() },
    reload: (next, log) => {
      if ((next.tls === undefined) !== (tls === undefined) || next.http2 !== config.http2) {
        log.warn('server.tls and server.http2 switched on or off take effect at the next restart')
      }
      if (next.redirectHttpPort !== config.redirectHttpPort) log.warn('server.redirectHttpPort changes take effect at the next restart')
      applyTimeouts(server, next)
      if (current === undefined || next.tls === undefined || sameTls(current, next.tls)) return
      const secure = server as unknown as { setSecureContext: (o: SecureContextOptions) => void, requestCert: boolean, rejectUnauthorized: boolean }
      secure.setSecureContext(secureContext(next.tls))
      // Read by Node for each new connection.
      secure.requestCert = next.tls.clientCa !== undefined
      secure.rejectUnauthorized = next.tls.requireClientCert
      current = next.tls
      log.info({ cert: next.tls.cert, clientCa: next.tls.clientCa }, 'TLS certificates reloaded: new connections use them')
    },
  }
}

function sameTls (a: TlsSettings, b: TlsSettings): boolean {
  return a.pem.equals(b.pem) && a.minVersion === b.minVersion && a.requireClientCert === b.requireClientCert
}

function secureContext (tls: TlsSettings): SecureContextOptions {
  return {
    cert: tls.pem.cert,
    key: tls.pem.key,
    minVersion: tls.minVersion,
    ...(tls.pem.ca !== undefined ? { ca: tls.pem.ca } : {}),
  }
}

function tlsOptions (tls: TlsSettings, config: ServerConfig): TlsOptions {
  return {
    ...secureContext(tls),
    // A client that connects and never finishes its handshake is let go like
    // one that never finishes its headers (Node's default waits 120 s).
    handshakeTimeout: config.headersTimeout > 0 ? config.headersTimeout : 10_000,
    // With clientCa: ask every client for a certificate. requireClientCert:
    // no valid one, no session; otherwise the handshake completes and an
    // `auth: mtls` route answers 401 (socket.authorized is false).
    requestCert: tls.clientCa !== undefined,
    rejectUnauthorized: tls.requireClientCert,
  }
}

function applyTimeouts (server: HttpServer | Http2SecureServer, config: ServerConfig): void {
  const s = server as unknown as HttpServer
  s.keepAliveTimeout = config.keepAliveTimeout
  s.requestTimeout = config.requestTimeout
  s.headersTimeout = config.headersTimeout
}
