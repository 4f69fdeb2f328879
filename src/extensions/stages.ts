// A route's compiled plugins folded into one hook per stage, so the route
// pays one call per stage it uses and nothing for the stages it does not.

import type { FastifyReply, FastifyRequest } from 'fastify'
import type { StageHooks } from './plugin.js'
import type { RouteStageHooks } from '../config/route-hooks.js'

export type { RouteStageHooks }

export interface NamedHooks { name: string, hooks: StageHooks }

/** Undefined when no plugin has a hook at all. */
export function routeStageHooks (compiled: NamedHooks[]): RouteStageHooks | undefined {
  const out: RouteStageHooks = { names: compiled.map(c => c.name) }
  const onRequest = compiled.filter(c => c.hooks.onRequest !== undefined).map(c => c.hooks.onRequest!)
  if (onRequest.length > 0) {
    out.onRequest = async function pluginsOnRequest (request: FastifyRequest) {
      for (const hook of onRequest) await hook(request)
    }
  }
  const upstream = compiled.filter(c => c.hooks.upstreamRequest !== undefined).map(c => c.hooks.upstreamRequest!)
  if (upstream.length === 1) out.upstreamRequest = upstream[0]
  else if (upstream.length > 1) {
    out.upstreamRequest = function pluginsUpstreamRequest (request, headers) {
      for (const hook of upstream) hook(request, headers)
    }
  }
  const onResponse = compiled.filter(c => c.hooks.onResponse !== undefined).map(c => ({ name: c.name, hook: c.hooks.onResponse! }))
  if (onResponse.length > 0) {
    out.onSend = async function pluginsOnResponse (request: FastifyRequest, reply: FastifyReply, payload: unknown) {
      for (const { name, hook } of onResponse) {
        // The answer is already decided; a failing header edit must not turn it
        // into an error (an error answer would run this same hook again).
        try { hook(request, reply) } catch (err) { request.log.error({ plugin: name, err: { message: (err as Error).message } }, 'plugin response hook failed') }
      }
      return payload
    }
  }
  return out.onRequest === undefined && out.upstreamRequest === undefined && out.onSend === undefined ? undefined : out
}
