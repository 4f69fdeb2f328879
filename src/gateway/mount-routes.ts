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
//
// What each route does to a request, and in which order, is its pipeline
// (src/gateway/pipeline.ts), built once per route and mounted on each of its paths.

import type { FastifyInstance } from 'fastify'
import FindMyWay from 'find-my-way'
import { jsonKeepingRaw, streamingBodyParser } from '../pipeline/body.js'
import type { RoutePlan } from './route-plan.js'
import { pipelineRoute, routePipeline, type RoutePipeline } from './pipeline.js'
import { mountCors, type CorsPolicy } from '../pipeline/cors.js'

export interface MountOptions {
  plans: RoutePlan[]
  bodyLimit: number
  /** As the app's router: variants are checked for conflicts the same way. */
  caseSensitive?: boolean
  /** The gateway-wide CORS policy (for answers no route gives); each route's own is on its plan. */
  cors?: CorsPolicy
}


export async function mountRoutes (app: FastifyInstance, opts: MountOptions): Promise<void> {
  const mounts = routeMounts(opts.plans, opts.caseSensitive ?? true)
  const pipelines = new Map<RoutePlan, RoutePipeline>()
  for (const plan of opts.plans) pipelines.set(plan, routePipeline(app, plan))
  const route = (m: Mount): ReturnType<typeof pipelineRoute> => pipelineRoute(pipelines.get(m.plan)!, m.url, m.methods)
  // Preflights are looked up on the same paths (variants included) the routes are mounted on.
  mountCors(app, mounts.map(m => ({ url: m.url, methods: m.methods, policy: m.plan.cors })), opts.cors, opts.caseSensitive ?? true)
  await app.register(async function streamedBodies (scope) {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', streamingBodyParser(opts.bodyLimit))
    for (const m of mounts) if (m.plan.body === 'stream') scope.route(route(m))
  })
  await app.register(async function validatedBodies (scope) {
    const parse = scope.getDefaultJsonParser('error', 'error')
    scope.removeAllContentTypeParsers()
    const json = jsonKeepingRaw(parse)
    scope.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: opts.bodyLimit }, json)
    scope.addContentTypeParser(/^application\/[a-z0-9.+-]+\+json$/, { parseAs: 'buffer', bodyLimit: opts.bodyLimit }, json)
    for (const m of mounts) if (m.plan.body === 'json') scope.route(route(m))
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
