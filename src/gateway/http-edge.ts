// What the HTTP server itself answers, before any route sees a request:
// errors found by Node's parser (a malformed header line, headers over the
// limit, a slow client's timeout) as problem+json like every other gateway
// error, and how often the server looks for clients past their timeouts.
// Used by the process's server (src/main/server.ts) and by an app that listens on
// its own (src/gateway/app.ts).

import { randomUUID } from 'node:crypto'
import { STATUS_CODES, type Server, type ServerOptions } from 'node:http'
import type { Duplex } from 'node:stream'
import { GatewayError, problemBody, type ErrorCode } from '../util/errors.js'

/** llhttp's reasons are fixed phrases; anything else is not echoed. */
const SAFE_REASON = /^[A-Za-z0-9 .,'-]{1,80}$/

const ANSWERED = Symbol('portico.clientErrorAnswered')

type ClientSocket = Duplex & {
  [ANSWERED]?: true
  /** The response Node is writing on this socket, if any. */
  _httpMessage?: { headersSent?: boolean } | null
}

/**
 * A `clientError` listener: answers in raw HTTP/1.1 on the socket (there is
 * no request object) and closes the connection.
 */
export function answerClientError (err: Error & { code?: string, reason?: unknown }, socket: Duplex): void {
  const s = socket as ClientSocket
  // Node reports the same broken connection again for later bytes: answer once.
  if (s[ANSWERED] === true) return
  s[ANSWERED] = true
  if (err.code === 'ECONNRESET' || !s.writable || s._httpMessage?.headersSent === true) {
    // Nobody to answer, or a response already under way: the bytes would corrupt it.
    s.destroy()
    return
  }
  const error = gatewayErrorFor(err)
  const requestId = randomUUID()
  const body = JSON.stringify(problemBody(error, requestId))
  s.end(`HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? ''}\r\n` +
    'content-type: application/problem+json\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    `x-request-id: ${requestId}\r\n` +
    'connection: close\r\n\r\n' + body)
  // A client that keeps the connection open after the answer is not waited for.
  setTimeout(destroySocket, 1000, s).unref()
}

function destroySocket (socket: Duplex): void {
  socket.destroy()
}

function gatewayErrorFor (err: Error & { code?: string, reason?: unknown }): GatewayError {
  let code: ErrorCode = 'BAD_REQUEST'
  let detail: string
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    code = 'REQUEST_TIMEOUT'
    detail = 'the request was not received within the server\'s time limit'
  } else if (err.code === 'HPE_HEADER_OVERFLOW') {
    code = 'HEADERS_TOO_LARGE'
    detail = 'the request\'s header fields exceed the server\'s limit'
  } else {
    const reason = typeof err.reason === 'string' && SAFE_REASON.test(err.reason) ? `: ${err.reason.toLowerCase()}` : ''
    detail = `the request is not valid HTTP/1.1${reason}`
  }
  return new GatewayError(code, detail)
}

/**
 * How often Node looks for connections past headersTimeout/requestTimeout
 * (Node's default is every 30 s, so a 2 s headersTimeout fired after 29 s).
 * A quarter of the shorter timeout, between 100 ms and 1 s: a slow client is
 * cut within a second of its limit. Node fixes it when the server is made,
 * so it is computed from the configuration at start.
 */
export function connectionsCheckingInterval (headersTimeout: number, requestTimeout: number): number {
  const shorter = Math.min(...[headersTimeout, requestTimeout].filter(ms => ms > 0))
  if (!Number.isFinite(shorter)) return 1000
  return Math.max(100, Math.min(1000, Math.floor(shorter / 4)))
}

/** Options for the gateway's HTTP server. */
export function serverOptions (headersTimeout: number, requestTimeout: number): ServerOptions {
  return {
    connectionsCheckingInterval: connectionsCheckingInterval(headersTimeout, requestTimeout),
    // A missing Host is refused by the framing check (plugins/request-framing.ts)
    // as problem+json; Node's own refusal is a bare 400.
    requireHostHeader: false,
  }
}

/**
 * Node answers `Expect: 100-continue` with `100 Continue` at once unless the
 * server listens for checkContinue. The request is handled as any other; the
 * 100 is written once it has passed auth and rate limits, just before its
 * body is read (src/pipeline/expect-continue.ts).
 */
export function deferContinue (server: Server): void {
  server.on('checkContinue', (req, res) => { server.emit('request', req, res) })
}
