// What happens to a request, in order. Each route plan (src/gateway/route-plan.ts)
// becomes its pipeline once, at config load; per request Fastify only runs the
// hooks listed here, in the order of its lifecycle
// (onRequest → preParsing → body parsing → validation → handler → onSend).
//
// Gateway-wide, before any route's own stages (registered in src/gateway/app.ts; as
// app-level hooks they run before the route's):
//    1. request id               plugins/request-id.ts (genReqId picks it; an onRequest hook echoes it)
//    2. path normalisation       src/pipeline/paths/request-target.ts + src/pipeline/paths/normalise.ts (Fastify rewriteUrl)
//       and match                Fastify's router; no match → 404 in plugins/error-handler.ts
//    3. framing, request target  plugins/request-framing.ts, plugins/request-target.ts (onRequest:
//                                a bad Host/version or request-target form is refused)
//       access log, metrics,     plugins/access-log.ts, plugins/metrics.ts, plugins/tracing.ts
//       tracing                  (they observe; they refuse nothing)
//    3b. CORS preflight          src/pipeline/cors.ts (mountCors, from mount-routes.ts; onRequest: answered
//                                with 204 here, so no route stage runs and no upstream sees it)
//
// Per route, built by routePipeline below:
//    4. pre-auth plugin hooks    src/extensions/stages.ts              onRequest   (e.g. ip-filter → 403)
//    5. authenticate, authorize  src/pipeline/auth/stage.ts            onRequest   (→ 401 / 403)
//    6. rate limit               src/pipeline/rate-limit/stage.ts      preParsing  (→ 429; after auth: a `user` key needs the identity)
//    7. 100-continue             src/pipeline/expect-continue.ts       preParsing  (only once 4–6 passed, before the body is read)
//    8. body parsing             src/pipeline/body.ts                  content-type parsers of the route's scope (src/gateway/mount-routes.ts)
//    9. validate                 src/pipeline/validation/validators.ts Fastify validation of plan.schema (→ 400)
//   10. cache                    src/pipeline/cache.ts                 handler     (HIT answers here)
//   11. target                   src/targets/proxy.ts · aggregate.ts · command.ts: each a Target (src/targets/target.ts),
//                                one call that yields the answer as a value; sendAnswer sends it
//   12. success hooks            src/pipeline/success-hooks.ts         (invalidate, publish; around the target's call, after a 2xx)
//       (10–12 are one handler, composed in src/gateway/route-plan.ts: cache(successHooks(target)))
//   13. response plugin hooks    src/extensions/stages.ts              onSend      (every answer, errors and HITs too)
//   13b. CORS headers            src/pipeline/cors.ts                  onSend      (every answer; after the plugins, so the policy wins over upstream and plugins)
//   13c. compression             src/pipeline/compression.ts           onSend      (last: encodes what would be sent)
//   14. errors                   plugins/error-handler.ts              (any stage's throw → problem+json)

import type { FastifyInstance, onRequestAsyncHookHandler, onSendHookHandler, preParsingHookHandler, RouteHandlerMethod, RouteOptions } from 'fastify'
import type { RoutePlan } from './route-plan.js'
import type { RouteSchema } from '../config/types.js'
import { authStage } from '../pipeline/auth/stage.js'
import { rateLimitStage } from '../pipeline/rate-limit/stage.js'
import { sendContinue } from '../pipeline/expect-continue.js'
import { corsResponseStage } from '../pipeline/cors.js'

/** A route's stages as Fastify hooks, built once per route and mounted on each of its paths. */
export interface RoutePipeline {
  routeId: string
  onRequest: onRequestAsyncHookHandler[]
  preParsing: preParsingHookHandler[]
  schema?: RouteSchema
  handler: RouteHandlerMethod
  onSend: onSendHookHandler[]
}

/** `app` must have the rate-limit store plugin (src/pipeline/rate-limit/stage.ts) registered: it backs stage 6. */
export function routePipeline (app: FastifyInstance, plan: RoutePlan): RoutePipeline {
  const onRequest: onRequestAsyncHookHandler[] = []
  const preParsing: preParsingHookHandler[] = []
  const onSend: onSendHookHandler[] = []

  // 4. pre-auth plugin hooks: a refusal here costs no token check and no rate-limit count.
  if (plan.plugins?.onRequest !== undefined) onRequest.push(plan.plugins.onRequest)
  // 5. authenticate, authorize.
  const auth = authStage(plan.policy)
  if (auth !== undefined) onRequest.push(auth)
  // 6. rate limit: counts only requests that passed 4 and 5.
  if (plan.rateLimit !== undefined) preParsing.push(rateLimitStage(app, plan.id, plan.rateLimit))
  // 7. 100-continue: the client is invited to send its body only now.
  preParsing.push(sendContinue)
  // 8, 9. body parsing and validation: Fastify's, from plan.schema (the parsers are per scope, see mount-routes.ts).
  // 10–12. cache → target → success hooks: plan.handler.
  // 13. response plugin hooks.
  if (plan.plugins?.onSend !== undefined) onSend.push(plan.plugins.onSend)
  // 13b. CORS headers, per request (never part of a cache entry).
  if (plan.cors !== undefined) onSend.push(corsResponseStage(plan.cors))
  // 13c. Compression, last: it encodes exactly what would be sent.
  if (app.compression !== undefined) onSend.push(app.compression.onSend)

  return {
    routeId: plan.id,
    onRequest,
    preParsing,
    ...(plan.schema !== undefined ? { schema: plan.schema } : {}),
    handler: plan.handler,
    onSend,
  }
}

/** Fastify route options mounting one pipeline on one path (a route may own more than one, see mount-routes.ts). */
export function pipelineRoute (pipeline: RoutePipeline, url: string, methods: RoutePlan['methods']): RouteOptions {
  return {
    method: methods,
    url,
    config: { routeId: pipeline.routeId },
    ...(pipeline.schema !== undefined ? { schema: pipeline.schema } : {}),
    // Copies: Fastify and onRoute hooks may edit a route's hook arrays, and the paths of a route share one pipeline.
    ...(pipeline.onRequest.length > 0 ? { onRequest: [...pipeline.onRequest] } : {}),
    ...(pipeline.preParsing.length > 0 ? { preParsing: [...pipeline.preParsing] } : {}),
    ...(pipeline.onSend.length > 0 ? { onSend: [...pipeline.onSend] } : {}),
    handler: pipeline.handler,
  }
}
