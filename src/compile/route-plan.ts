// A route definition becomes a plan once, at config load: templates parsed,
// service client resolved, handler built. Nothing here runs per request.

import type { RouteHandlerMethod } from 'fastify'
import type { GatewayConfig, HttpMethod, RouteConfig } from '../config/types.js'
import type { ServiceClient } from '../upstream/client.js'
import { compilePathTemplate } from './template.js'
import { createProxyHandler } from '../handlers/proxy.js'

export interface RoutePlan {
  id: string
  methods: HttpMethod[]
  path: string
  policy: string
  /** What `portico routes` and the admin API show as the target. */
  target: string
  handler: RouteHandlerMethod
}

export interface PlanContext {
  config: GatewayConfig
  clients: Map<string, ServiceClient>
}

export function compileRoutePlan (route: RouteConfig, ctx: PlanContext): RoutePlan {
  if (route.proxy === undefined) throw new Error(`route ${route.id} has no target`) // excluded by validation
  const client = ctx.clients.get(route.proxy.service)
  if (client === undefined) throw new Error(`route ${route.id}: unknown service ${route.proxy.service}`)
  const handler = createProxyHandler({
    client,
    ...(route.proxy.path !== undefined ? { fillPath: compilePathTemplate(route.proxy.path) } : {}),
    forward: { forwardAuthorization: false, trustProxy: ctx.config.server.trustProxy !== false },
  })
  return {
    id: route.id,
    // A GET route answers HEAD too, forwarded as HEAD (not as a GET with the body dropped).
    methods: route.methods.includes('GET') && !route.methods.includes('HEAD') ? [...route.methods, 'HEAD'] : route.methods,
    path: route.path,
    policy: route.policy,
    target: describeTarget(route),
    handler,
  }
}

export function describeTarget (route: RouteConfig): string {
  if (route.proxy !== undefined) return `proxy ${route.proxy.service} ${route.proxy.path ?? '(same path)'}`
  return '-'
}
