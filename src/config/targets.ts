// What a route answers with: each target kind's schema (a key of the route,
// `proxy:`, `aggregate:`, `command:`), its normalised form (one member of
// RouteTarget, told apart by `kind`) and the one function that turns the
// route's raw key into it. The cross-checks a kind needs (known services,
// methods) are in validate.ts; the handler it compiles to in
// src/gateway/route-plan.ts.
//
// Adding a kind (say `websocket`): here, its schema in TARGET_SCHEMAS, a
// RouteTarget member and a branch in normalizeTarget; its key in the route
// schema (RouteConfigSchema in schema.ts); its cross-checks in validate.ts
// (checkRoutes); a case in compileTarget and describeTarget
// (src/gateway/route-plan.ts), which the compiler asks for.

import { Type, Strict, Dict, Duration, Name, AbsolutePath, type Static } from './schema-kit.js'
import { parseDuration } from './units.js'

export const ProxyTargetSchema = Strict({
  service: Type.String(),
  path: Type.Optional(AbsolutePath()),
})

export const AggregatePartSchema = Strict({
  service: Type.String(),
  path: AbsolutePath(),
  query: Type.Optional(Dict(Type.String())),
  headers: Type.Optional(Dict(Type.String(), { propertyNames: { pattern: '^[A-Za-z0-9-]+$' } })),
  timeout: Type.Optional(Duration()),
  optional: Type.Optional(Type.Boolean()),
  fallback: Type.Optional(Type.Unknown()),
  pick: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
})

export const AggregateTargetSchema = Dict(AggregatePartSchema, { minProperties: 1, propertyNames: Name() })

export const CommandTargetSchema = Strict({
  stream: Type.String({ minLength: 1 }),
  type: Type.Optional(Type.String({ minLength: 1 })),
  statusPath: Type.Optional(AbsolutePath()),
})

/** Each target kind's route key and schema, in the order messages list them ("needs a target: proxy or aggregate or command"). */
export const TARGET_SCHEMAS = { proxy: ProxyTargetSchema, aggregate: AggregateTargetSchema, command: CommandTargetSchema }
export type TargetKind = keyof typeof TARGET_SCHEMAS
export const TARGET_KINDS = Object.keys(TARGET_SCHEMAS) as TargetKind[]

/** A route's target keys as written (a valid route has exactly one). */
export type RawTargets = { [K in TargetKind]?: Static<typeof TARGET_SCHEMAS[K]> }

// ---- normalised --------------------------------------------------------------

export interface ProxyTarget {
  kind: 'proxy'
  service: string
  /** Upstream path template; absent: the incoming path is forwarded unchanged. */
  path?: string
}

export interface AggregatePartConfig {
  name: string
  service: string
  path: string
  query: Record<string, string>
  /** Lower-cased names. */
  headers: Record<string, string>
  /** The part's own timeout, else its service's. */
  timeout: number
  optional: boolean
  fallback: unknown
  pick?: string[]
}

export interface AggregateTarget {
  kind: 'aggregate'
  /** In declaration order. */
  parts: AggregatePartConfig[]
}

export interface CommandTarget {
  kind: 'command'
  stream: string
  /** The event type; defaults to the route id. */
  type: string
  statusPath?: string
}

export type RouteTarget = ProxyTarget | AggregateTarget | CommandTarget

export interface TargetContext {
  routeId: string
  /** A service's timeout (an aggregate part without its own takes it). */
  serviceTimeout: (service: string) => number
}

/** The route's one target key as a RouteTarget. Only called on a validated route. */
export function normalizeTarget (raw: RawTargets, ctx: TargetContext): RouteTarget {
  const { proxy, aggregate, command } = raw
  if (proxy !== undefined) return { kind: 'proxy', service: proxy.service, ...(proxy.path !== undefined ? { path: proxy.path } : {}) }
  if (aggregate !== undefined) return { kind: 'aggregate', parts: Object.entries(aggregate).map(([name, p]) => normalizePart(name, p, ctx)) }
  if (command !== undefined) {
    return { kind: 'command', stream: command.stream, type: command.type ?? ctx.routeId, ...(command.statusPath !== undefined ? { statusPath: command.statusPath } : {}) }
  }
  // validate.ts refuses a route without exactly one target before anything is normalised.
  throw new Error(`route ${ctx.routeId} has no target`)
}

function normalizePart (name: string, p: Static<typeof AggregatePartSchema>, ctx: TargetContext): AggregatePartConfig {
  return {
    name,
    service: p.service,
    path: p.path,
    query: p.query ?? {},
    headers: Object.fromEntries(Object.entries(p.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
    timeout: parseDuration(p.timeout) ?? ctx.serviceTimeout(p.service),
    optional: p.optional ?? false,
    fallback: p.fallback ?? null,
    ...(p.pick !== undefined ? { pick: p.pick } : {}),
  }
}
