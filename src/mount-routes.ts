// Mounts the compiled route plans on Fastify. Proxy routes live in their own
// encapsulated scope whose only body parser streams the body through untouched.

import type { FastifyInstance } from 'fastify'
import { streamingBodyParser } from './compile/body.js'
import type { RoutePlan } from './compile/route-plan.js'

export interface MountOptions {
  plans: RoutePlan[]
  bodyLimit: number
}

export async function mountRoutes (app: FastifyInstance, opts: MountOptions): Promise<void> {
  await app.register(async function proxyScope (scope) {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', streamingBodyParser(opts.bodyLimit))
    for (const plan of opts.plans) {
      scope.route({
        method: plan.methods,
        url: plan.path,
        config: { routeId: plan.id },
        handler: plan.handler,
      })
    }
  })
}
