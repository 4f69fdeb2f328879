// The admin listener: a separate Fastify instance on its own port (127.0.0.1
// by default), so operational endpoints are never reachable through the
// public one. With `admin.token` set, /admin/* requires it as a Bearer token,
// compared in constant time.

import Fastify, { LogController, type FastifyInstance, type FastifyRequest } from 'fastify'
import { createHash, timingSafeEqual } from 'node:crypto'
import { GatewayError } from '../util/errors.js'
import requestId, { genRequestId } from '../../plugins/request-id.js'
import errorHandler from '../../plugins/error-handler.js'
import type { GatewayConfig, PolicyConfig } from '../config/types.js'
import { compileRouteValidator } from '../pipeline/validation/validators.js'
import { STATUS_PAGE } from './status-page.js'

/**
 * `gateway` is the app serving now; a function when a reload may replace it
 * (the admin listener then always shows the current config's state).
 */
export async function buildAdminApp (gatewayOrGetter: FastifyInstance | (() => FastifyInstance)): Promise<FastifyInstance> {
  const current = typeof gatewayOrGetter === 'function' ? gatewayOrGetter : () => gatewayOrGetter
  const gateway = current()
  const app = Fastify({ loggerInstance: gateway.log.child({ listener: 'admin' }), genReqId: genRequestId, requestIdHeader: false, logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'requestId' }) })
  // Admin bodies are validated as sent: no type coercion, no silently dropped fields.
  app.setValidatorCompiler(compileRouteValidator)
  await app.register(requestId)
  await app.register(errorHandler)

  // The token is read from the current config on each call, so a reload can rotate it.
  app.addHook('onRequest', adminTokenHook(() => current().gatewayConfig.admin.token))

  app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(STATUS_PAGE))

  app.get('/metrics', async (_request, reply) => {
    const registry = current().metrics.registry
    return reply.type(registry.contentType).send(await registry.metrics())
  })

  app.get('/admin/config', async () => effectiveConfig(current().gatewayConfig))

  app.get('/admin/breakers', async () => [...current().serviceClients.values()].map(c => ({
    ...c.breaker.snapshot(),
    instances: c.balancer.health(),
  })))

  app.get('/admin/routes', async () => current().routePlans.map(p => ({
    id: p.id,
    methods: p.methods,
    path: p.path,
    policy: p.policy.name,
    target: p.target,
    ...(p.rateLimit !== undefined ? { rateLimit: p.rateLimit } : {}),
    ...(p.cache !== undefined ? { cache: p.cache } : {}),
    ...(p.plugins !== undefined ? { plugins: p.plugins.names } : {}),
  })))

  app.post('/admin/cache/purge', {
    schema: {
      body: {
        type: 'object',
        additionalProperties: false,
        properties: { tags: { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 }, all: { const: true } },
        oneOf: [{ required: ['tags'] }, { required: ['all'] }],
      },
    },
  }, async (request) => {
    const body = request.body as { tags?: string[], all?: true }
    try {
      // Through the cache layer, so reads in flight when the purge lands do not store their older answers.
      const purged = await current().cacheLayer.purge(body.all === true ? { all: true } : { tags: body.tags ?? [] })
      return { purged }
    } catch (err) {
      throw new GatewayError('INTERNAL_ERROR', 'the cache store could not be purged', { cause: err })
    }
  })

  return app
}

/** Requires `Authorization: Bearer <token>` on /admin/* when a token is set (constant-time compare). */
export function adminTokenHook (token: () => string): (request: FastifyRequest) => Promise<void> {
  return async (request) => {
    const expected = token()
    if (expected === '') return
    // The matched route too, not just the raw URL: the router decodes `/%61dmin/...` to an /admin/ route.
    if (!request.url.startsWith('/admin/') && request.routeOptions.url?.startsWith('/admin/') !== true) return
    const given = request.headers.authorization
    if (typeof given !== 'string' || !timingSafeEqual(digest(given), digest(`Bearer ${expected}`))) {
      throw new GatewayError('UNAUTHENTICATED', 'the admin API requires the admin token', { headers: { 'www-authenticate': 'Bearer realm="portico-admin"' } })
    }
  }
}

/** The config as the gateway runs it, with every secret replaced by "***". */
export function effectiveConfig (config: GatewayConfig): unknown {
  const { jwt, apiKeys } = config.auth
  return {
    file: config.file,
    files: config.files,
    server: config.server,
    admin: { ...config.admin, token: mask(config.admin.token) },
    redis: { ...config.redis, url: maskUrl(config.redis.url) },
    cache: config.cache,
    events: config.events,
    auth: {
      ...(jwt !== undefined ? { jwt: { ...jwt, secret: mask(jwt.secret), ...(jwt.publicKey !== undefined ? { publicKey: '(PEM, ' + String(jwt.publicKeyFile) + ')' } : {}) } } : {}),
      ...(apiKeys !== undefined ? { apiKeys: { header: apiKeys.header, keys: apiKeys.keys.map(k => ({ ...k, key: '***' })) } } : {}),
    },
    policies: Object.fromEntries([...config.policies].map(([name, policy]) => [name, shownPolicy(policy)])),
    services: Object.fromEntries(config.services),
    routes: config.routes.map(r => r.plugins === undefined ? r : { ...r, plugins: r.plugins.names }),
  }
}

/** A policy's kind and rules; what it verifies with (auth.jwt, auth.apiKeys) is shown, masked, under auth. */
function shownPolicy ({ name, auth, roles, scopes, claims, forwardAuthorization, rateLimit }: PolicyConfig): unknown {
  return { name, auth, roles, scopes, claims, forwardAuthorization, ...(rateLimit !== undefined ? { rateLimit } : {}) }
}

function mask (secret: string | undefined): string | undefined {
  return secret === undefined ? undefined : secret === '' ? '' : '***'
}

/** A Redis URL without its password. */
function maskUrl (url: string): string {
  return url.replace(/\/\/([^@/]*)@/, (_all, cred: string) => `//${cred.includes(':') ? cred.slice(0, cred.indexOf(':') + 1) + '***' : '***'}@`)
}

function digest (text: string): Buffer {
  return createHash('sha256').update(text).digest()
}
