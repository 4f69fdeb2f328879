// A route definition becomes a plan once, at config load: policy compiled,
// templates parsed, service client resolved, handler built. Nothing here
// runs per request.

import type { FastifyBaseLogger, FastifyRequest, RouteHandlerMethod } from 'fastify'
import type { GatewayConfig, HttpMethod, RateLimitConfig, RouteCacheConfig, RouteConfig, RouteSchema } from '../config/types.js'
import type { ServiceClient } from '../upstream/client.js'
import type { CompiledPolicy } from '../pipeline/auth/policy.js'
import { compilePathTemplate, compileValueTemplate, type ValueFiller } from '../util/template.js'
import { createProxyTarget } from '../targets/proxy.js'
import { withSuccessHooks, type SuccessHooks } from '../pipeline/success-hooks.js'
import { createCommandTarget } from '../targets/command.js'
import type { EventPublisher } from '../events/publisher.js'
import { createAggregateTarget } from '../targets/aggregate.js'
import { targetHandler, type Target } from '../targets/target.js'
import { createCachedHandler } from '../pipeline/cache.js'
import { fillContext } from '../targets/fill-context.js'
import type { CacheLayer } from '../cache/layer.js'
import { proxyTrust, type ForwardOptions } from '../targets/forward-headers.js'
import type { RouteStageHooks } from '../extensions/stages.js'
import { routeCorsPolicy, type CorsPolicy } from '../pipeline/cors.js'

export interface RoutePlan {
  id: string
  methods: HttpMethod[]
  path: string
  policy: CompiledPolicy
  rateLimit?: RateLimitConfig
  cache?: RouteCacheConfig
  schema?: RouteSchema
  /** `json`: the body is parsed (to validate it) but its raw bytes are forwarded; `stream`: piped through. */
  body: 'stream' | 'json'
  /** What `portico routes` and the admin API show as the target. */
  target: string
  /** The route's plugin hooks, mounted as its own onRequest and onSend hooks. */
  plugins?: RouteStageHooks
  /** The route's CORS (its own, `false`, or the gateway's); absent: none configured. */
  cors?: CorsPolicy
  handler: RouteHandlerMethod
}

export interface PlanContext {
  config: GatewayConfig
  clients: Map<string, ServiceClient>
  policies: Map<string, CompiledPolicy>
  cache: CacheLayer
  events?: EventPublisher
  log: FastifyBaseLogger
}

export function compileRoutePlan (route: RouteConfig, ctx: PlanContext): RoutePlan {
  const policy = ctx.policies.get(route.policy)
  if (policy === undefined) throw new Error(`route ${route.id}: unknown policy ${route.policy}`) // excluded by validation
  const forward: ForwardOptions = {
    forwardAuthorization: policy.forwardAuthorization,
    trustProxy: proxyTrust(ctx.config.server.trustProxy),
    ...(policy.credentialHeader !== undefined ? { credentialHeader: policy.credentialHeader } : {}),
    // The gateway compresses cached answers itself, from one stored identity copy.
    ...(route.cache !== undefined && ctx.config.server.compression !== undefined && !route.cache.vary.includes('accept-encoding') ? { acceptEncoding: 'identity' } : {}),
    ...(route.plugins?.upstreamRequest !== undefined ? { upstreamRequest: route.plugins.upstreamRequest } : {}),
  }
  const client = (service: string): ServiceClient => {
    const c = ctx.clients.get(service)
    if (c === undefined) throw new Error(`route ${route.id}: unknown service ${service}`) // excluded by validation
    return c
  }
  // The target, then the stages that wrap any target: success hooks around its call, the cache in front.
  const target = withSuccessHooks(compileTarget(route, ctx, forward, client), successHooks(route, ctx))
  const handler = route.cache === undefined || !target.cacheable
    ? targetHandler(target)
    : createCachedHandler(target, {
      routeId: route.id,
      scope: route.cache.scope,
      vary: route.cache.vary,
      ttl: route.cache.ttl,
      staleWhileRevalidate: route.cache.staleWhileRevalidate,
      staleIfError: route.cache.staleIfError,
      tags: route.cache.tags.map(compileValueTemplate),
    }, ctx.cache, ctx.log)
  const cors = routeCorsPolicy(route, ctx.config.cors)
  return {
    id: route.id,
    // A GET route answers HEAD too, forwarded as HEAD (not as a GET with the body dropped).
    methods: route.methods.includes('GET') && !route.methods.includes('HEAD') ? [...route.methods, 'HEAD'] : route.methods,
    path: route.path,
    policy,
    ...(route.rateLimit !== undefined ? { rateLimit: route.rateLimit } : {}),
    ...(route.cache !== undefined ? { cache: route.cache } : {}),
    ...(route.schema !== undefined ? { schema: route.schema } : {}),
    // The body is parsed (and its raw bytes kept) when it is validated or becomes an event.
    body: route.schema?.body !== undefined || route.target.kind === 'command' || route.publish?.from === 'request' ? 'json' : 'stream',
    target: describeTarget(route),
    ...(route.plugins !== undefined ? { plugins: route.plugins } : {}),
    ...(cors !== undefined ? { cors } : {}),
    handler,
  }
}

/**
 * After a target's 2xx: invalidate the route's tags, publish its event. Any
 * target may carry them; validation keeps them where they mean something
 * (publish on proxy routes, no invalidation on reads or async commands).
 */
function successHooks (route: RouteConfig, ctx: PlanContext): SuccessHooks {
  const hooks: SuccessHooks = {}
  if (route.invalidates !== undefined) {
    const invalidate = ctx.cache.invalidator(route.invalidates.map(compileValueTemplate), route.id)
    hooks.invalidate = async (request: FastifyRequest) => { await invalidate(fillContext(request)) }
  }
  if (route.publish !== undefined) {
    hooks.publish = { ...route.publish, routeId: route.id, publisher: publisher(ctx, route.id) }
  }
  return hooks
}

function publisher (ctx: PlanContext, routeId: string): EventPublisher {
  if (ctx.events === undefined) throw new Error(`route ${routeId}: no event sink`) // excluded by validation
  return ctx.events
}

/** The route's target, built once: what answers it when no cache does. One case per target kind. */
function compileTarget (route: RouteConfig, ctx: PlanContext, forward: ForwardOptions, client: (service: string) => ServiceClient): Target {
  const target = route.target
  switch (target.kind) {
    case 'proxy':
      return createProxyTarget({
        client: client(target.service),
        ...(target.path !== undefined ? { fillPath: compilePathTemplate(target.path), templateHasQuery: target.path.includes('?') } : {}),
        forward,
      })
    case 'aggregate':
      return createAggregateTarget({
        forward,
        parts: target.parts.map(part => ({
          name: part.name,
          client: client(part.service),
          fillPath: compilePathTemplate(part.path),
          query: Object.entries(part.query).map(([k, v]): [string, ValueFiller] => [k, compileValueTemplate(v)]),
          headers: Object.entries(part.headers).map(([k, v]): [string, ValueFiller] => [k, compileValueTemplate(v)]),
          timeout: part.timeout,
          optional: part.optional,
          fallbackJson: JSON.stringify(part.fallback ?? null),
          ...(part.pick !== undefined ? { pick: part.pick } : {}),
        })),
      })
    case 'command':
      return createCommandTarget({
        routeId: route.id,
        stream: target.stream,
        type: target.type,
        ...(target.statusPath !== undefined ? { statusPath: target.statusPath } : {}),
        idempotencyWindow: ctx.config.events.idempotencyWindow,
        publisher: publisher(ctx, route.id),
      })
  }
}

export function describeTarget (route: RouteConfig): string {
  const target = route.target
  switch (target.kind) {
    case 'proxy': return `proxy ${target.service} ${target.path ?? '(same path)'}`
    case 'command': return `command → stream ${target.stream}`
    case 'aggregate': return `aggregate ${target.parts.map(p => `${p.name}=${p.service}${p.optional ? '?' : ''}`).join(' ')}`
  }
}
