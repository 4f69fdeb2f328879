// buildGateway(config): one Fastify instance with the gateway-wide plugins
// (request id, framing and request-target refusal, access log, metrics,
// tracing, the error handler, health; plus the rate-limit store), the service
// clients, and the compiled routes mounted. Registration order is not request
// order: what a request passes through, in order, is src/gateway/pipeline.ts.

import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { GatewayConfig } from '../config/types.js'
import type { ServiceClient } from '../upstream/client.js'
import { SharedResources } from './shared-resources.js'
import { compileRoutePlan, type RoutePlan } from './route-plan.js'
import { compilePolicy, type AuthDeps, type CompiledPolicy } from '../pipeline/auth/policy.js'
import { createTokenVerifier } from '../pipeline/auth/jwt.js'
import { createApiKeyLookup } from '../pipeline/auth/api-key.js'
import type { RedisConnection } from '../redis/connection.js'
import { mountRoutes } from './mount-routes.js'
import { CacheLayer } from '../cache/layer.js'
import { EventPublisher } from '../events/publisher.js'
import { RedisEventSink } from '../events/redis-sink.js'
import requestId, { genRequestId } from '../../plugins/request-id.js'
import requestTarget from '../../plugins/request-target.js'
import { targetRewriteUrl } from '../pipeline/paths/request-target.js'
import errorHandler, { sendProblem, toGatewayError } from '../../plugins/error-handler.js'
import { compileRouteValidator } from '../pipeline/validation/validators.js'
import accessLog from '../../plugins/access-log.js'
import rateLimit from '../pipeline/rate-limit/stage.js'
import health from '../../plugins/health.js'
import metricsPlugin from '../../plugins/metrics.js'
import tracingPlugin from '../../plugins/tracing.js'
import requestFraming from '../../plugins/request-framing.js'
import { answerClientError, deferContinue, serverOptions } from './http-edge.js'
import type { GatewayMetrics } from '../observability/metrics.js'
import { compileCors } from '../pipeline/cors.js'
import { compileCompression } from '../pipeline/compression.js'
import { cancelWhenClientGone } from '../targets/target.js'

export interface BuildOptions {
  /** A pino logger; absent: logging off (tests). */
  logger?: FastifyBaseLogger
  /** Resources kept across reloads (src/main/server.ts); absent: the app owns its own. */
  shared?: SharedResources
  /** Serve through a server the caller owns (hot reload swaps apps behind it). */
  serverFactory?: FastifyServerOptions['serverFactory']
}

declare module 'fastify' {
  interface FastifyInstance {
    gatewayConfig: GatewayConfig
    routePlans: RoutePlan[]
    serviceClients: Map<string, ServiceClient>
    cacheLayer: CacheLayer
    /** undefined when no publish/command route can exist (no sink). */
    events: EventPublisher | undefined
    metrics: GatewayMetrics
  }
}

export async function buildGateway (config: GatewayConfig, opts: BuildOptions = {}): Promise<FastifyInstance> {
  const { server } = config
  const app = Fastify({
    ...(opts.logger !== undefined ? { loggerInstance: opts.logger } : { logger: false }),
    ...(opts.serverFactory !== undefined ? { serverFactory: opts.serverFactory } : { http: serverOptions(server.headersTimeout, server.requestTimeout) }),
    // Parser errors (bad header line, 431, a slow client's 408) as problem+json.
    clientErrorHandler: answerClientError,
    // Fastify's per-request lines are off: plugins/access-log writes one line per request instead.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'requestId' }),
    genReqId: genRequestId,
    requestIdHeader: false,
    bodyLimit: server.bodyLimit,
    // Fastify accepts a hop count at runtime; its types only list the other forms.
    trustProxy: server.trustProxy as boolean,
    keepAliveTimeout: server.keepAliveTimeout,
    requestTimeout: server.requestTimeout,
    exposeHeadRoutes: false,
    return503OnClosing: true,
    // Routes are matched on the normalised path (src/pipeline/paths/normalise.ts), which is also what is forwarded.
    rewriteUrl: targetRewriteUrl(server.paths),
    routerOptions: { maxParamLength: 500, caseSensitive: !server.paths.caseInsensitive },
    // Malformed URLs and over-long params are answered as problem+json too.
    frameworkErrors: (err, request, reply) => {
      reply.header('x-request-id', request.id)
      return sendProblem(request, reply, toGatewayError(err))
    },
  })
  app.setValidatorCompiler(compileRouteValidator)
  app.server.headersTimeout = server.headersTimeout
  if (opts.serverFactory === undefined) deferContinue(app.server)

  // Resources that outlive one config; a gateway built alone owns and closes them.
  const shared = opts.shared ?? new SharedResources(app.log)
  if (opts.shared === undefined) app.addHook('onClose', async () => { await shared.closeAll() })
  const tracing = shared.useTracing(config.tracing.otlpUrl, config.tracing.serviceName)
  const redis: RedisConnection | undefined = config.redis.url !== '' ? shared.redis(config.redis.url) : undefined
  const metrics = shared.metrics
  const clients = new Map<string, ServiceClient>()
  for (const svc of config.services.values()) clients.set(svc.name, shared.serviceClient(svc))

  const policies = compilePolicies(config)
  const cache = redis !== undefined
    ? new CacheLayer(shared.redisCacheStore(redis, config.redis.url, config.redis.keyPrefix, config.cache), app.log, config.cache.timeout, redis)
    : new CacheLayer(shared.memoryCacheStore(config.cache), app.log, config.cache.timeout)
  const sink = config.events.sink === 'redis' && redis !== undefined
    ? new RedisEventSink(redis, config.events.maxLen, config.redis.keyPrefix)
    : config.events.sink === 'memory' ? shared.memoryEventSink(config.events.maxLen) : undefined
  const events = sink !== undefined ? new EventPublisher(sink, app.log, config.events.publishRetries, 50, shared.eventCounters) : undefined
  const plans = config.routes.map(route => compileRoutePlan(route, { config, clients, policies, cache, log: app.log, ...(events !== undefined ? { events } : {}) }))
  app.decorate('gatewayConfig', config)
  app.decorate('routePlans', plans)
  app.decorate('serviceClients', clients)
  app.decorate('cacheLayer', cache)
  app.decorate('events', events)
  app.decorate('metrics', metrics)
  app.decorate('compression', server.compression !== undefined ? compileCompression(server.compression) : undefined)

  await app.register(requestId)
  await app.register(errorHandler)
  // Framing first (Host, version), then the request target that may be compared with Host.
  await app.register(requestFraming)
  await app.register(requestTarget)
  await app.register(accessLog)
  // A client that hangs up cancels the upstream call it waits for (src/targets/target.ts).
  app.addHook('onRequestAbort', cancelWhenClientGone)
  await app.register(metricsPlugin, { metrics })
  if (tracing !== undefined) await app.register(tracingPlugin, { tracing })
  // Only the rate-limit store and decorator: each route's hook is placed by its pipeline.
  await app.register(rateLimit, { ...(redis !== undefined ? { redis } : {}), keyPrefix: config.redis.keyPrefix })
  await app.register(health, {
    routes: plans.length,
    dependencies: () => ({ redis: redis?.state() ?? 'not configured', cache: cache.store.kind, events: sink?.kind ?? 'not configured' }),
  })
  await mountRoutes(app, { plans, bodyLimit: server.bodyLimit, caseSensitive: !server.paths.caseInsensitive, ...(config.cors !== undefined ? { cors: compileCors(config.cors) } : {}) })
  return app
}

function compilePolicies (config: GatewayConfig): Map<string, CompiledPolicy> {
  const apiKeys = config.auth.apiKeys
  const deps: AuthDeps = {
    // Every policy of a kind verifies with the gateway's one section for it: one verifier, one lookup.
    tokenVerifier: builtOnce(createTokenVerifier),
    apiKeyLookup: builtOnce(keys => createApiKeyLookup(keys.keys)),
    ...(apiKeys !== undefined ? { credentialHeader: apiKeys.header } : {}),
  }
  const out = new Map<string, CompiledPolicy>()
  for (const policy of config.policies.values()) out.set(policy.name, compilePolicy(policy, deps))
  return out
}

/** `make`, called at most once per argument. */
function builtOnce<A extends object, R> (make: (arg: A) => R): (arg: A) => R {
  const built = new WeakMap<A, R>()
  return arg => {
    let r = built.get(arg)
    if (r === undefined) { r = make(arg); built.set(arg, r) }
    return r
  }
}
