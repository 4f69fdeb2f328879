// The extension point: what a gateway plugin is, and the registry that names
// the plugins a config may use. A plugin is compiled once per route at config
// load into stage hooks; per request only those hooks run.

import type { FastifyReply, FastifyRequest } from 'fastify'
import type { FieldPath } from '../config/problems.js'
import { GatewayError, type ErrorCode } from '../util/errors.js'
import type { UpstreamHeaders } from '../config/route-hooks.js'

/** What a plugin learns about the route it is compiled for. */
export interface RouteContext {
  /** Empty when a gateway-wide entry is checked on its own, before it is compiled for each route. */
  routeId: string
  /** The route path as configured, e.g. `/users/:id` (empty with routeId). */
  path: string
  /** The names a `{params.X}` template may use on this route (`*` for a wildcard's rest). */
  params: ReadonlySet<string>
  /**
   * The error to throw from `onRequest` to refuse a request: the client gets
   * problem+json with this code (one of the gateway's, e.g. FORBIDDEN) and
   * detail. A module loaded from a file has no other way to reach GatewayError.
   */
  refuse: (code: ErrorCode, detail: string) => GatewayError
}

export function refuse (code: ErrorCode, detail: string): GatewayError {
  return new GatewayError(code, detail)
}

// Headers as they will be sent upstream (lower-case names); defined with the
// config types that carry them, re-exported here as part of the plugin API.
export type { UpstreamHeaders }

/**
 * What a compiled plugin does for one route, at fixed points of the request:
 * - `onRequest`: before authentication and rate limiting; throw a GatewayError to refuse.
 * - `upstreamRequest`: edits the headers of every request the route makes upstream
 *   (the proxied request, each aggregate part). Identity (`x-auth-*`), forwarding and
 *   connection headers are the gateway's: whatever a hook does to them is undone.
 * - `onResponse`: edits the response headers the client gets, just before they are sent
 *   (every answer of the route, errors and cache hits included). It must not throw.
 */
export interface StageHooks {
  onRequest?: (request: FastifyRequest) => void | Promise<void>
  upstreamRequest?: (request: FastifyRequest, headers: UpstreamHeaders) => void
  onResponse?: (request: FastifyRequest, reply: FastifyReply) => void
}

export interface GatewayPlugin<Config = any> {
  /** The key under `plugins:` that configures it. */
  name: string
  /** JSON Schema for its config, checked by `portico check` like any other key. */
  configSchema: object
  /** Called once per route that uses the plugin, at config load; throw PluginConfigError for a config it cannot use. */
  compile: (config: Config, route: RouteContext) => StageHooks
}

/** A plugin config the schema accepts but the plugin cannot use; each path is relative to the plugin's config. */
export class PluginConfigError extends Error {
  readonly problems: Array<{ path: FieldPath, message: string }>
  constructor (problems: Array<{ path: FieldPath, message: string }>) {
    super(problems.map(p => p.message).join('; '))
    this.name = 'PluginConfigError'
    this.problems = problems
  }
}

export const PLUGIN_NAME = /^[a-z][a-z0-9-]*$/

/** Plugins by name; where each came from, for duplicate-name messages. */
export class PluginRegistry {
  private readonly plugins = new Map<string, { plugin: GatewayPlugin, origin: string }>()

  /** Returns why the plugin cannot be registered, or undefined when it was. */
  register (plugin: GatewayPlugin, origin: string): string | undefined {
    const existing = this.plugins.get(plugin.name)
    if (existing !== undefined) return `plugin name "${plugin.name}" is already taken (${existing.origin})`
    this.plugins.set(plugin.name, { plugin, origin })
    return undefined
  }

  get (name: string): GatewayPlugin | undefined {
    return this.plugins.get(name)?.plugin
  }

  names (): string[] {
    return [...this.plugins.keys()]
  }
}

/** Why a module's export is not a plugin, or undefined when it is one. */
export function notAPlugin (value: unknown): string | undefined {
  if (value === null || typeof value !== 'object') return 'is not an object with name, configSchema and compile'
  const p = value as Partial<GatewayPlugin>
  if (typeof p.name !== 'string' || !PLUGIN_NAME.test(p.name)) return 'has no valid name (lower-case letters, digits and "-", starting with a letter)'
  if (p.configSchema === null || typeof p.configSchema !== 'object') return `plugin "${p.name}" has no configSchema object`
  if (typeof p.compile !== 'function') return `plugin "${p.name}" has no compile function`
  return undefined
}
