// `Expect: 100-continue` is answered with `100 Continue` only once the
// request has passed authentication, authorization and its rate limit, just
// before its body is read: a client is never invited to upload a body the
// gateway is about to refuse. (The server defers Node's automatic 100, see
// src/gateway/http-edge.ts deferContinue.) src/gateway/pipeline.ts places it in each
// route's preParsing hooks after the rate limit; they run in order.

import type { preParsingHookHandler } from 'fastify'
import type { IncomingMessage } from 'node:http'

/** RFC 9110: no 100 to an HTTP/1.0 client. */
function isHttp10 (req: IncomingMessage): boolean {
  return req.httpVersionMajor === 1 && req.httpVersionMinor === 0
}

/** Node's own test for a 100-continue expectation (an Expect list may hold other tokens). */
const EXPECTS_CONTINUE = /(?:^|\W)100-continue(?:$|\W)/i

export const sendContinue: preParsingHookHandler = function sendContinue (request, reply, payload, done) {
  const expect = request.headers.expect
  if (expect !== undefined && EXPECTS_CONTINUE.test(expect) && !reply.raw.headersSent && !isHttp10(request.raw)) reply.raw.writeContinue()
  done(null, payload)
}
