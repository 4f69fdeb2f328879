// Authentication and authorization (pipeline steps 3 and 4). Each route's
// compiled policy is attached once, in onRoute, as an onRequest hook; per
// request the hook only runs the precompiled functions.

import fp from 'fastify-plugin'
import type { onRequestAsyncHookHandler } from 'fastify'
import type { CompiledPolicy } from '../src/compile/policy.js'
import '../src/identity.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route's compiled policy. */
    policy?: CompiledPolicy
  }
}

export default fp(async function auth (app) {
  app.addHook('onRoute', (route) => {
    const policy = route.config?.policy
    if (policy === undefined || policy.auth === 'none') return
    const hook: onRequestAsyncHookHandler = async function authenticate (request) {
      const identity = await policy.authenticate(request)
      if (identity === undefined) return
      policy.authorize(identity)
      request.auth = identity
    }
    const existing = route.onRequest
    route.onRequest = existing === undefined ? [hook] : Array.isArray(existing) ? [...existing, hook] : [existing, hook]
  })
}, { name: 'portico-auth' })
