// The authentication and authorization stage: a route's compiled policy
// (src/pipeline/auth/policy.ts) becomes one onRequest hook, built once per route at
// config load (src/gateway/pipeline.ts places it); per request the hook only
// runs the precompiled functions.

import type { onRequestAsyncHookHandler } from 'fastify'
import type { CompiledPolicy } from './policy.js'
import './identity.js'

/** Undefined for a route whose policy authenticates nobody (`auth: none`). */
export function authStage (policy: CompiledPolicy): onRequestAsyncHookHandler | undefined {
  if (policy.auth === 'none') return undefined
  return async function authenticate (request) {
    const identity = await policy.authenticate(request)
    if (identity === undefined) return
    policy.authorize(identity)
    request.auth = identity
  }
}
