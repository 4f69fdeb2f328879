// `auth: mtls`: the client certificate the TLS handshake verified against
// server.tls.clientCa is the identity. sub = its subject CN; the SHA-256 of
// its DER goes upstream as x-auth-cert-fingerprint. The peer certificate is
// fixed for a connection (renegotiation is refused, src/main/edge-server.ts),
// so it is read and checked once per connection, not once per request.
//
// Over HTTP/1.1 the request's socket is the TLS socket; over HTTP/2 it is a
// per-stream stand-in for the session's socket, so the connection is keyed
// by the session.

import { createHash } from 'node:crypto'
import type { TLSSocket } from 'node:tls'
import type { FastifyRequest } from 'fastify'
import { GatewayError } from '../../util/errors.js'
import { CERT_SUBJECT_NAME } from '../../config/tls.js'
import type { Identity } from './identity.js'

/** Why a connection's certificate is no identity: the 401's detail. */
class Refusal {
  constructor (readonly detail: string) {}
}

const byConnection = new WeakMap<object, Identity | Refusal>()

/** The identity of the request's verified client certificate; throws 401 UNAUTHENTICATED without one. */
export function clientCertIdentity (request: FastifyRequest): Identity {
  const raw = request.raw as FastifyRequest['raw'] & { stream?: { session?: object } }
  const connection: object = raw.stream?.session ?? raw.socket
  let found = byConnection.get(connection)
  if (found === undefined) {
    found = identify(raw.socket as Partial<TLSSocket>)
    byConnection.set(connection, found)
  }
  // A new error each time: the error handler's reply must not share state across requests.
  if (found instanceof Refusal) throw new GatewayError('UNAUTHENTICATED', found.detail)
  return found
}

function identify (socket: Partial<TLSSocket>): Identity | Refusal {
  if (socket.encrypted !== true || typeof socket.getPeerCertificate !== 'function') {
    return refused('a client certificate is required: connect over TLS and present one')
  }
  const cert = socket.getPeerCertificate()
  // Node gives an empty object when the client sent no certificate.
  if (cert === null || cert.raw === undefined) return refused('a client certificate is required')
  if (socket.authorized !== true) return refused(notVerified(socket.authorizationError))
  const cn = cert.subject?.CN as unknown
  // Several CNs come as an array: which one is the identity would be a guess.
  if (typeof cn !== 'string' || !CERT_SUBJECT_NAME.test(cn)) {
    return refused('the client certificate\'s subject must hold one CN of letters, digits, ".", "_", "-", "@" and inner spaces')
  }
  const fingerprint = createHash('sha256').update(cert.raw).digest('hex')
  return { sub: cn, roles: [], scopes: [], claims: { sub: cn }, certFingerprint: fingerprint }
}

/** OpenSSL's verification codes a client may be told; anything else is "not trusted". */
function notVerified (reason: Error | string | undefined): string {
  const code = typeof reason === 'string' ? reason : (reason as (Error & { code?: string }) | undefined)?.code ?? String(reason)
  if (code === 'CERT_HAS_EXPIRED') return 'the client certificate has expired'
  if (code === 'CERT_NOT_YET_VALID') return 'the client certificate is not valid yet'
  return 'the client certificate is not signed by a CA this gateway trusts'
}

function refused (detail: string): Refusal {
  return new Refusal(detail)
}
