// A route definition becomes a plan once, at config load: policy compiled,
// templates parsed, service client resolved, handler built. Nothing here
// runs per request.

import type { RouteHandlerMethod } from 'fastify'
import type { GatewayConfig, HttpMethod, RateLimitConfig, RouteConfig, RouteSchema } from '../config/types.js'
import type { ServiceClient } from '../upstream/client.js'
import type { CompiledPolicy } from './policy.js'
import { compilePathTemplate } from './template.js'
import { createProxyHandler } from '../handlers/proxy.js'

export interface RoutePlan {
  id: string
  methods: HttpMethod[]
  path: string
  policy: CompiledPolicy
  rateLimit?: RateLimitConfig
  schema?: RouteSchema
  /** `json`: the body is parsed (to validate it) but its raw bytes are forwarded; `stream`: piped through. */
  body: 'stream' | 'json'
  /** What `portico routes` and the admin API show as the target. */
  target: string
  handler: RouteHandlerMethod
}

export interface PlanContext {
  config: GatewayConfig
  clients: Map<string, ServiceClient>
  policies: Map<string, CompiledPolicy>
}

export function compileRoutePlan (route: RouteConfig, ctx: PlanContext): RoutePlan {
  const policy = ctx.policies.get(route.policy)
  if (policy === undefined) throw new Error(`route ${route.id}: unknown policy ${route.policy}`) // excluded by validation
  if (route.proxy === undefined) throw new Error(`route ${route.id} has no target`) // excluded by validation
  const client = ctx.clients.get(route.proxy.service)
  if (client === undefined) throw new Error(`route ${route.id}: unknown service ${route.proxy.service}`)
  const handler = createProxyHandler({
    client,
    ...(route.proxy.path !== undefined ? { fillPath: compilePathTemplate(route.proxy.path), templateHasQuery: route.proxy.path.includes('?') } : {}),
    forward: {
      forwardAuthorization: policy.forwardAuthorization,
      trustProxy: ctx.config.server.trustProxy !== false,
      ...(policy.credentialHeader !== undefined ? { credentialHeader: policy.credentialHeader } : {}),
    },
  })
  return {
    id: route.id,
    // A GET route answers HEAD too, forwarded as HEAD (not as a GET with the body dropped).
    methods: route.methods.includes('GET') && !route.methods.includes('HEAD') ? [...route.methods, 'HEAD'] : route.methods,
    path: route.path,
    policy,
    ...(route.rateLimit !== undefined ? { rateLimit: route.rateLimit } : {}),
    ...(route.schema !== undefined ? { schema: route.schema } : {}),
    body: route.schema?.body !== undefined ? 'json' : 'stream',
    target: describeTarget(route),
    handler,
  }
}

export function describeTarget (route: RouteConfig): string {
  if (route.proxy !== undefined) return `proxy ${route.proxy.service} ${route.proxy.path ?? '(same path)'}`
  return '-'
}
