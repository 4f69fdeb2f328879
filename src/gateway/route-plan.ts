// A route definition becomes a plan once, at config load: policy compiled,
// templates parsed, service client resolved, handler built. Nothing here
// runs per request.

import type { FastifyBaseLogger, FastifyRequest, RouteHandlerMethod } from 'fastify'
import type { GatewayConfig, HttpMethod, RateLimitConfig, RouteCacheConfig, RouteConfig, RouteSchema } from '../config/types.js'
import type { ServiceClient } from '../upstream/client.js'
import type { CompiledPolicy } from '../pipeline/auth/policy.js'
import { compilePathTemplate, compileValueTemplate, type ValueFiller } from '../util/template.js'
import { createBufferedProxy, createProxyCall, createProxyHandler, type ProxyPlan } from '../targets/proxy.js'
import { withSuccessHooks, type SuccessHooks } from '../pipeline/success-hooks.js'
import { createCommandHandler } from '../targets/command.js'
import type { EventPublisher } from '../events/publisher.js'
import { createAggregateHandler, createAggregateProducer } from '../targets/aggregate.js'
import { createCachedHandler, type Producer } from '../pipeline/cache.js'
import { fillContext } from '../targets/fill-context.js'
import type { CacheLayer } from '../cache/layer.js'
import { proxyTrust, type ForwardOptions } from '../targets/forward-headers.js'
import type { RouteStageHooks } from '../extensions/stages.js'

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
    ...(route.plugins?.upstreamRequest !== undefined ? { upstreamRequest: route.plugins.upstreamRequest } : {}),
  }
  const client = (service: string): ServiceClient => {
    const c = ctx.clients.get(service)
    if (c === undefined) throw new Error(`route ${route.id}: unknown service ${service}`) // excluded by validation
    return c
  }
  const { uncached, produce } = compileTarget(route, ctx, forward, client)
  const handler = route.cache === undefined || produce === undefined
    ? uncached
    : createCachedHandler(produce, {
      routeId: route.id,
      scope: route.cache.scope,
      vary: route.cache.vary,
      ttl: route.cache.ttl,
      staleWhileRevalidate: route.cache.staleWhileRevalidate,
      staleIfError: route.cache.staleIfError,
      tags: route.cache.tags.map(compileValueTemplate),
    }, ctx.cache, uncached, ctx.log)
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
    handler,
  }
}

function publisher (ctx: PlanContext, routeId: string): EventPublisher {
  if (ctx.events === undefined) throw new Error(`route ${routeId}: no event sink`) // excluded by validation
  return ctx.events
}

/** The handler for the route's target, and (for a cached route) what produces a storable answer. */
function compileTarget (route: RouteConfig, ctx: PlanContext, forward: ForwardOptions, client: (service: string) => ServiceClient): { uncached: RouteHandlerMethod, produce?: Producer } {
  const target = route.target
  switch (target.kind) {
    case 'proxy': {
      const proxyPlan: ProxyPlan = {
        client: client(target.service),
        ...(target.path !== undefined ? { fillPath: compilePathTemplate(target.path), templateHasQuery: target.path.includes('?') } : {}),
        forward,
      }
      const hooks: SuccessHooks = {}
      if (route.invalidates !== undefined) {
        const invalidate = ctx.cache.invalidator(route.invalidates.map(compileValueTemplate), route.id)
        hooks.invalidate = async (request: FastifyRequest) => { await invalidate(fillContext(request)) }
      }
      if (route.publish !== undefined) {
        hooks.publish = { ...route.publish, routeId: route.id, publisher: publisher(ctx, route.id) }
      }
      // Both handlers reach the upstream through the one hooked call: a cache MISS, BYPASS or
      // refresh invalidates and publishes exactly as the uncached path does.
      const call = withSuccessHooks(createProxyCall(proxyPlan), hooks, proxyPlan.client)
      return { uncached: createProxyHandler(call), produce: createBufferedProxy(call, proxyPlan.client) }
    }
    case 'aggregate': {
      const aggregatePlan = {
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
      }
      return { uncached: createAggregateHandler(aggregatePlan), produce: createAggregateProducer(aggregatePlan) }
    }
    case 'command': {
      const uncached = createCommandHandler({
        routeId: route.id,
        stream: target.stream,
        type: target.type,
        ...(target.statusPath !== undefined ? { statusPath: target.statusPath } : {}),
        idempotencyWindow: ctx.config.events.idempotencyWindow,
        publisher: publisher(ctx, route.id),
      })
      // No storable answer: validation refuses `cache` on a command route.
      return { uncached }
    }
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
