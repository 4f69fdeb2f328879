// Request ids: a client's `x-request-id` is kept when it is safe to log and
// forward (1–128 of [A-Za-z0-9._-]); otherwise the gateway makes one. The id
// goes back on every response, error or not, and upstream on every call.

import fp from 'fastify-plugin'
import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'

const SAFE_ID = /^[A-Za-z0-9._-]{1,128}$/

export function genRequestId (req: IncomingMessage): string {
  const given = req.headers['x-request-id']
  return typeof given === 'string' && SAFE_ID.test(given) ? given : randomUUID()
}

export default fp(async function requestId (app) {
  // Callback style: cheaper than an async hook on every request.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    done()
  })
}, { name: 'portico-request-id' })
