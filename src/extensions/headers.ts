// The `headers` plugin: set, remove and rename the headers a route sends
// upstream and the headers its client gets back. Values are templates filled
// from the request. The gateway's own headers (identity, forwarding,
// connection) cannot be touched: such a config is refused at load.

import type { FastifyReply, FastifyRequest } from 'fastify'
import { compileValueTemplate, TemplateError, type ValueFiller } from '../util/template.js'
import { fillContext } from '../targets/fill-context.js'
import { gatewayOwnedDownstream, gatewayOwnedUpstream, headerSafe } from '../targets/forward-headers.js'
import type { FieldPath } from '../config/problems.js'
import { PluginConfigError, type GatewayPlugin, type RouteContext, type StageHooks, type UpstreamHeaders } from './plugin.js'

interface Rules {
  set?: Record<string, string>
  remove?: string[]
  rename?: Record<string, string>
}

export interface HeadersConfig {
  /** What the upstream gets. */
  request?: Rules
  /** What the client gets. */
  response?: Rules
}

const headerName = { type: 'string', pattern: '^[A-Za-z0-9-]+$', 'x-message': 'must be a header name' }

const rules = {
  type: 'object',
  additionalProperties: false,
  properties: {
    set: { type: 'object', propertyNames: headerName, additionalProperties: { type: 'string' } },
    remove: { type: 'array', items: headerName },
    rename: { type: 'object', propertyNames: headerName, additionalProperties: headerName },
  },
}

/** Rules compiled: names lower-cased, values as fillers. Applied remove → rename → set. */
interface CompiledRules {
  remove: string[]
  rename: Array<[string, string]>
  set: Array<[string, ValueFiller]>
}

export const headersPlugin: GatewayPlugin<HeadersConfig> = {
  name: 'headers',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    minProperties: 1,
    properties: { request: rules, response: rules },
  },
  compile (config, route) {
    const problems: Array<{ path: FieldPath, message: string }> = []
    const up = config.request !== undefined ? compileRules(config.request, 'request', route, problems) : undefined
    const down = config.response !== undefined ? compileRules(config.response, 'response', route, problems) : undefined
    if (problems.length > 0) throw new PluginConfigError(problems)
    const hooks: StageHooks = {}
    if (up !== undefined) hooks.upstreamRequest = upstreamEditor(up)
    if (down !== undefined) hooks.onResponse = responseEditor(down)
    return hooks
  },
}

function compileRules (r: Rules, side: 'request' | 'response', route: RouteContext, problems: Array<{ path: FieldPath, message: string }>): CompiledRules {
  const owned = side === 'request' ? gatewayOwnedUpstream : gatewayOwnedDownstream
  const refuse = (path: FieldPath, name: string): void => {
    problems.push({
      path,
      message: side === 'request'
        ? `"${name}" is set by the gateway itself (identity, forwarding or connection header); a plugin may not change it`
        : `"${name}" is a connection or framing header the gateway controls; a plugin may not change it`,
    })
  }
  const out: CompiledRules = { remove: [], rename: [], set: [] }
  for (const [i, name] of (r.remove ?? []).entries()) {
    const lower = name.toLowerCase()
    if (owned(lower)) refuse([side, 'remove', i], lower)
    else out.remove.push(lower)
  }
  for (const [from, to] of Object.entries(r.rename ?? {})) {
    const a = from.toLowerCase()
    const b = to.toLowerCase()
    if (owned(a)) refuse([side, 'rename', from], a)
    else if (owned(b)) refuse([side, 'rename', from], b)
    else if (a !== b) out.rename.push([a, b])
  }
  for (const [name, value] of Object.entries(r.set ?? {})) {
    const lower = name.toLowerCase()
    if (owned(lower)) { refuse([side, 'set', name], lower); continue }
    const bad = templateProblem(value, route)
    if (bad !== undefined) { problems.push({ path: [side, 'set', name], message: bad }); continue }
    out.set.push([lower, compileValueTemplate(value)])
  }
  return out
}

function templateProblem (value: string, route: RouteContext): string | undefined {
  try {
    compileValueTemplate(value)
  } catch (err) {
    if (err instanceof TemplateError) return err.message
    throw err
  }
  for (const m of value.matchAll(/\{\s*params\.([^{}\s]+)\s*\}/g)) {
    if (!route.params.has(m[1])) {
      if (route.routeId === '') return `{params.${m[1]}} needs a route: set this rule in the route's own plugins`
      return m[1] === '*' ? '{params.*} needs a route path ending in "*"' : `{params.${m[1]}} is not a parameter of the route path ${route.path}`
    }
  }
  return undefined
}

// A value that fills to "" removes the header rather than sending it empty, so a
// client's own copy of a header the config sets never survives.
function upstreamEditor (rules: CompiledRules): (request: FastifyRequest, headers: UpstreamHeaders) => void {
  return function editUpstreamHeaders (request, headers) {
    for (const name of rules.remove) delete headers[name]
    for (const [from, to] of rules.rename) {
      // Own properties only: a header named like an Object.prototype member (`constructor`) is absent, not a function.
      if (!Object.hasOwn(headers, from)) continue
      const value = headers[from]
      delete headers[from]
      headers[to] = value
    }
    if (rules.set.length === 0) return
    const ctx = fillContext(request)
    for (const [name, fill] of rules.set) {
      const value = fill(ctx)
      if (value === '') delete headers[name]
      else headers[name] = headerSafe(value)
    }
  }
}

function responseEditor (rules: CompiledRules): (request: FastifyRequest, reply: FastifyReply) => void {
  return function editResponseHeaders (request, reply) {
    for (const name of rules.remove) reply.removeHeader(name)
    for (const [from, to] of rules.rename) {
      const value = reply.getHeader(from)
      if (typeof value !== 'string' && typeof value !== 'number' && !Array.isArray(value)) continue
      reply.removeHeader(from)
      reply.header(to, value)
    }
    if (rules.set.length === 0) return
    const ctx = fillContext(request)
    for (const [name, fill] of rules.set) {
      const value = fill(ctx)
      if (value === '') reply.removeHeader(name)
      else reply.header(name, headerSafe(value))
    }
  }
}
