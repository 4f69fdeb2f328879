// Mounts the compiled route plans on Fastify, in two encapsulated scopes:
// routes whose body is streamed through untouched (the only parser passes the
// stream on), and routes with a body schema, whose only parser is JSON (so
// any other content type is a 415).

import type { FastifyInstance, RouteOptions } from 'fastify'
import { jsonKeepingRaw, streamingBodyParser } from './compile/body.js'
import type { RoutePlan } from './compile/route-plan.js'
import { routeRateLimit } from '../plugins/rate-limit.js'

export interface MountOptions {
  plans: RoutePlan[]
  bodyLimit: number
}


export async function mountRoutes (app: FastifyInstance, opts: MountOptions): Promise<void> {
  await app.register(async function streamedBodies (scope) {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', streamingBodyParser(opts.bodyLimit))
    for (const plan of opts.plans) if (plan.body === 'stream') scope.route(routeOptions(plan))
  })
  await app.register(async function validatedBodies (scope) {
    const parse = scope.getDefaultJsonParser('error', 'error')
    scope.removeAllContentTypeParsers()
    const json = jsonKeepingRaw(parse)
    scope.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: opts.bodyLimit }, json)
    scope.addContentTypeParser(/^application\/[a-z0-9.+-]+\+json$/, { parseAs: 'buffer', bodyLimit: opts.bodyLimit }, json)
    for (const plan of opts.plans) if (plan.body === 'json') scope.route(routeOptions(plan))
  })
}

function routeOptions (plan: RoutePlan): RouteOptions {
  return {
    method: plan.methods,
    url: plan.path,
    config: {
      routeId: plan.id,
      policy: plan.policy,
      ...(plan.rateLimit !== undefined ? { rateLimit: routeRateLimit(plan.rateLimit) } : {}),
    },
    ...(plan.schema !== undefined ? { schema: plan.schema } : {}),
    handler: plan.handler,
  }
}
