// Refuses, before any policy, rate limit or handler runs, a request whose
// target the router-side rewrite (src/pipeline/paths/request-target.ts) marked as
// refused: an encoded or raw slash variant, a `;` parameter, a dot segment,
// an absolute-form naming another host.

import fp from 'fastify-plugin'
import { GatewayError } from '../src/util/errors.js'
import { refusedTarget } from '../src/pipeline/paths/request-target.js'

export default fp(async function requestTarget (app) {
  // Callback style: this runs on every request.
  app.addHook('onRequest', (request, reply, done) => {
    const refused = refusedTarget(request.raw)
    if (refused === undefined) { done(); return }
    done(new GatewayError('BAD_REQUEST', refused))
  })
}, { name: 'portico-request-target' })
