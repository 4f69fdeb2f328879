// Mounts the compiled route plans on Fastify, in two encapsulated scopes:
// routes whose body is streamed through untouched (the only parser passes the
// stream on), and routes with a body schema, whose only parser is JSON (so
// any other content type is a 415).
//
// A route path also owns its near variants, so that a protected route's
// root or trailing-slash form is never served by a broader route (an
// upstream that reads `/admin/` as `/admin` would serve it as the protected
// route): `X/*` also serves `X`, and `X` also serves `X/`, each with the same
// plan, unless the config declares that path itself.

import type { FastifyInstance, RouteOptions } from 'fastify'
import FindMyWay from 'find-my-way'
import { jsonKeepingRaw, streamingBodyParser } from './compile/body.js'
import type { RoutePlan } from './compile/route-plan.js'
import { routeRateLimit } from '../plugins/rate-limit.js'

export interface MountOptions {
  plans: RoutePlan[]
  bodyLimit: number
  /** As the app's router: variants are checked for conflicts the same way. */
  caseSensitive?: boolean
}


export async function mountRoutes (app: FastifyInstance, opts: MountOptions): Promise<void> {
  const mounts = routeMounts(opts.plans, opts.caseSensitive ?? true)
  await app.register(async function streamedBodies (scope) {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', streamingBodyParser(opts.bodyLimit))
    for (const m of mounts) if (m.plan.body === 'stream') scope.route(routeOptions(m.plan, m.url, m.methods))
  })
  await app.register(async function validatedBodies (scope) {
    const parse = scope.getDefaultJsonParser('error', 'error')
    scope.removeAllContentTypeParsers()
    const json = jsonKeepingRaw(parse)
    scope.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: opts.bodyLimit }, json)
    scope.addContentTypeParser(/^application\/[a-z0-9.+-]+\+json$/, { parseAs: 'buffer', bodyLimit: opts.bodyLimit }, json)
    for (const m of mounts) if (m.plan.body === 'json') scope.route(routeOptions(m.plan, m.url, m.methods))
  })
}

interface Mount { plan: RoutePlan, url: string, methods: RoutePlan['methods'] }

/** Every declared route, then each route's variant path for the methods no declared route takes on it. */
function routeMounts (plans: RoutePlan[], caseSensitive: boolean): Mount[] {
  const router = FindMyWay({ caseSensitive })
  const declared = new Set<string>()
  const key = (method: string, url: string): string => `${method} ${caseSensitive ? url : url.toLowerCase()}`
  const mounts: Mount[] = []
  for (const plan of plans) {
    mounts.push({ plan, url: plan.path, methods: plan.methods })
    for (const method of plan.methods) {
      router.on(method, plan.path, () => {})
      declared.add(key(method, plan.path))
    }
  }
  for (const plan of plans) {
    const url = variantPath(plan.path)
    if (url === undefined) continue
    // `X/` belongs to a declared `X/*` rather than to `X`; a declared path of the same shape keeps it too.
    const methods = plan.methods.filter(method => !(url.endsWith('/') && declared.has(key(method, `${url}*`))) && mayAdd(router, method, url))
    if (methods.length > 0) mounts.push({ plan, url, methods })
  }
  return mounts
}

function mayAdd (router: FindMyWay.Instance<FindMyWay.HTTPVersion.V1>, method: RoutePlan['methods'][number], url: string): boolean {
  try {
    router.on(method, url, () => {})
    return true
  } catch {
    return false
  }
}

/** `X/*` → `X`; `X` → `X/`; nothing for `/*`, `/` or a path already ending in `/`. */
function variantPath (path: string): string | undefined {
  if (path.endsWith('/*')) return path.length > 2 ? path.slice(0, -2) : undefined
  if (path.endsWith('/') || path.endsWith('*')) return undefined
  return path + '/'
}

function routeOptions (plan: RoutePlan, url: string, methods: RoutePlan['methods']): RouteOptions {
  return {
    method: methods,
    url,
    config: {
      routeId: plan.id,
      policy: plan.policy,
      ...(plan.rateLimit !== undefined ? { rateLimit: routeRateLimit(plan.rateLimit) } : {}),
    },
    ...(plan.schema !== undefined ? { schema: plan.schema } : {}),
    // Route-level onRequest hooks run before the authentication hook plugins/auth appends.
    ...(plan.plugins?.onRequest !== undefined ? { onRequest: [plan.plugins.onRequest] } : {}),
    ...(plan.plugins?.onSend !== undefined ? { onSend: [plan.plugins.onSend] } : {}),
    handler: plan.handler,
  }
}
