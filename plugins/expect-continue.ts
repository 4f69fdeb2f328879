// `Expect: 100-continue` is answered with `100 Continue` only once the
// request has passed authentication, authorization and its rate limit, just
// before its body is read: a client is never invited to upload a body the
// gateway is about to refuse. (The server defers Node's automatic 100, see
// src/http-edge.ts deferContinue.) Register after the rate limit: the hook
// is appended to each route's preParsing hooks, which run in order.

import fp from 'fastify-plugin'
import type { preParsingHookHandler } from 'fastify'
import type { IncomingMessage } from 'node:http'

/** RFC 9110: no 100 to an HTTP/1.0 client. */
function isHttp10 (req: IncomingMessage): boolean {
  return req.httpVersionMajor === 1 && req.httpVersionMinor === 0
}

const sendContinue: preParsingHookHandler = function sendContinue (request, reply, payload, done) {
  const expect = request.headers.expect
  if (expect !== undefined && expect.toLowerCase() === '100-continue' && !reply.raw.headersSent && !isHttp10(request.raw)) reply.raw.writeContinue()
  done(null, payload)
}

export default fp(async function expectContinue (app) {
  app.addHook('onRoute', (route) => {
    const existing = route.preParsing
    route.preParsing = existing === undefined ? [sendContinue] : Array.isArray(existing) ? [...existing, sendContinue] : [existing, sendContinue]
  })
}, { name: 'portico-expect-continue' })
