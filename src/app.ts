// buildGateway(config): one Fastify instance with the cross-cutting plugins in
// pipeline order, the service clients, and the compiled routes mounted.

import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { GatewayConfig } from './config/types.js'
import { createServiceClient, type ServiceClient } from './upstream/client.js'
import { compileRoutePlan, type RoutePlan } from './compile/route-plan.js'
import { mountRoutes } from './mount-routes.js'
import requestId, { genRequestId } from '../plugins/request-id.js'
import errorHandler from '../plugins/error-handler.js'
import accessLog from '../plugins/access-log.js'
import health from '../plugins/health.js'

export interface BuildOptions {
  /** A pino logger; absent: logging off (tests). */
  logger?: FastifyBaseLogger
}

declare module 'fastify' {
  interface FastifyInstance {
    gatewayConfig: GatewayConfig
    routePlans: RoutePlan[]
  }
}

export async function buildGateway (config: GatewayConfig, opts: BuildOptions = {}): Promise<FastifyInstance> {
  const { server } = config
  const app = Fastify({
    ...(opts.logger !== undefined ? { loggerInstance: opts.logger } : { logger: false }),
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
    routerOptions: { maxParamLength: 500 },
  })
  app.server.headersTimeout = server.headersTimeout

  const clients = new Map<string, ServiceClient>()
  for (const svc of config.services.values()) clients.set(svc.name, createServiceClient(svc))
  app.addHook('onClose', async () => { await Promise.all([...clients.values()].map(c => c.close())) })

  const plans = config.routes.map(route => compileRoutePlan(route, { config, clients }))
  app.decorate('gatewayConfig', config)
  app.decorate('routePlans', plans)

  await app.register(requestId)
  await app.register(errorHandler)
  await app.register(accessLog)
  await app.register(health, { routes: plans.length, dependencies: () => ({ redis: 'not configured' }) })
  await mountRoutes(app, { plans, bodyLimit: server.bodyLimit })
  return app
}
