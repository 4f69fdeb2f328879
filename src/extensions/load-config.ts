// Loading a config with its extensions: the plugin modules it names are
// imported first (an import is asynchronous, the rest of loading is not), then
// the config is validated with every route's plugin entries checked against
// their plugin's schema and compiled into that route's stage hooks.

import { statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import AjvModule, { type ValidateFunction } from 'ajv'
import { loadConfigSource, type SourceMap } from '../config/load.js'
import { displayFile, type ConfigProblem, type FieldPath } from '../config/problems.js'
import { loadConfig, type LoadResult } from '../config/index.js'
import { schemaProblems } from '../config/schema-errors.js'
import { headersPlugin } from './headers.js'
import { ipFilterPlugin } from './ip-filter.js'
import { notAPlugin, PluginConfigError, PluginRegistry, refuse, type GatewayPlugin, type RouteContext } from './plugin.js'
import { routeStageHooks, type NamedHooks, type RouteStageHooks } from './stages.js'

export const BUILT_IN_PLUGINS: GatewayPlugin[] = [headersPlugin, ipFilterPlugin]

const Ajv = AjvModule.default
// Plugin schemas are written by others: unknown keywords are theirs to use, not errors.
const ajv = new Ajv({ allErrors: true, verbose: true, strict: false, allowUnionTypes: true })
const validators = new WeakMap<GatewayPlugin, ValidateFunction>()

/** loadConfig, with the plugins the config uses compiled onto its routes. */
export async function loadGatewayConfig (file: string, env: NodeJS.ProcessEnv = process.env): Promise<LoadResult> {
  const registry = new PluginRegistry()
  for (const plugin of BUILT_IN_PLUGINS) registry.register(plugin, 'built in')
  const source = loadConfigSource(file, env)
  const loaded = source.fatal ? { problems: [], files: [] } : await importExtensions(source.raw, source.map, source.file, registry)
  const hooks: Array<RouteStageHooks | undefined> = []
  const result = loadConfig(file, env, (raw, map) => [
    ...loaded.problems,
    ...checkPlugins(raw as RawWithPlugins, map, registry, hooks, loaded.problems.length > 0),
  ])
  result.config.routes.forEach((route, i) => {
    const h = hooks[i]
    if (h !== undefined) route.plugins = h
  })
  // A changed plugin file is a changed config (watch mode reloads it).
  result.config.files.push(...loaded.files)
  return result
}

async function importExtensions (raw: Record<string, unknown>, map: SourceMap, main: string, registry: PluginRegistry): Promise<{ problems: ConfigProblem[], files: string[] }> {
  const problems: ConfigProblem[] = []
  const files: string[] = []
  const list = raw.extensions
  if (!Array.isArray(list)) return { problems, files } // the schema reports a wrong type
  for (const [i, ref] of list.entries()) {
    if (typeof ref !== 'string' || ref === '') continue
    const at = (message: string): void => { problems.push({ ...map.locate(['extensions', i]), message }) }
    const path = resolve(dirname(main), ref)
    let version: number
    try {
      version = statSync(path).mtimeMs
    } catch {
      at(`file not found: ${displayFile(path)}`)
      continue
    }
    files.push(path)
    let mod: { default?: unknown }
    try {
      // The modification time in the URL makes a reload import the file's new content, not the cached module.
      mod = await import(`${pathToFileURL(path).href}?v=${version}`) as { default?: unknown }
    } catch (err) {
      at(`${displayFile(path)} could not be loaded: ${firstLine(err)}`)
      continue
    }
    const exported = mod.default
    if (exported === undefined) { at(`${displayFile(path)} has no default export (export default a plugin, or a list of them)`); continue }
    for (const candidate of Array.isArray(exported) ? exported : [exported]) {
      const wrong = notAPlugin(candidate)
      if (wrong !== undefined) { at(`the default export of ${displayFile(path)} ${wrong}`); continue }
      const plugin = candidate as GatewayPlugin
      try {
        validatorFor(plugin)
      } catch (err) {
        at(`plugin "${plugin.name}" in ${displayFile(path)} has an invalid configSchema: ${firstLine(err)}`)
        continue
      }
      const taken = registry.register(plugin, displayFile(path))
      if (taken !== undefined) at(taken)
    }
  }
  return { problems, files }
}

function firstLine (err: unknown): string {
  return String(err instanceof Error ? err.message : err).split('\n')[0]
}

function validatorFor (plugin: GatewayPlugin): ValidateFunction {
  let v = validators.get(plugin)
  if (v === undefined) {
    v = ajv.compile(plugin.configSchema)
    validators.set(plugin, v)
  }
  return v
}

interface RawWithPlugins {
  plugins?: unknown
  routes?: Array<{ id?: unknown, path?: unknown, plugins?: unknown }>
}

interface Entry { name: string, config: unknown, at: FieldPath }

/**
 * Every plugin entry (gateway-wide, then each route's) checked against its
 * plugin's schema; each route's effective set compiled into hooks[i]. A
 * route's own entry replaces a gateway-wide one of the same name.
 */
function checkPlugins (raw: RawWithPlugins, map: SourceMap, registry: PluginRegistry, hooks: Array<RouteStageHooks | undefined>, extensionsFailed: boolean): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const at = (path: FieldPath, message: string): void => { problems.push({ ...map.locate(path), message }) }

  /** The entries of a `plugins:` map that name a known plugin and pass its schema. */
  const usable = (plugins: unknown, base: FieldPath): Entry[] => {
    if (plugins === null || typeof plugins !== 'object' || Array.isArray(plugins)) {
      if (plugins !== undefined) at(base, 'must be a map of plugin name → its settings')
      return []
    }
    const out: Entry[] = []
    for (const [name, config] of Object.entries(plugins)) {
      const here = [...base, name]
      const plugin = registry.get(name)
      if (plugin === undefined) {
        at(here, `unknown plugin "${name}" (known: ${registry.names().join(', ')})${extensionsFailed ? '; an extension failed to load, see above' : ''}`)
        continue
      }
      const validate = validatorFor(plugin)
      if (!validate(config)) {
        const prefix = here.map(p => '/' + String(p).replace(/~/g, '~0').replace(/\//g, '~1')).join('')
        const errors = (validate.errors ?? []).map(e => ({ ...e, instancePath: prefix + e.instancePath }))
        problems.push(...schemaProblems(errors, raw, map))
        continue
      }
      out.push({ name, config, at: here })
    }
    return out
  }

  const compile = (entry: Entry, context: RouteContext): NamedHooks | undefined => {
    try {
      return { name: entry.name, hooks: registry.get(entry.name)!.compile(entry.config, context) }
    } catch (err) {
      if (err instanceof PluginConfigError) {
        for (const p of err.problems) at([...entry.at, ...p.path], p.message)
      } else {
        const where = context.routeId === '' ? '' : ` for route ${context.routeId}`
        at(entry.at, `plugin "${entry.name}" could not be set up${where}: ${firstLine(err)}`)
      }
      return undefined
    }
  }

  // A gateway-wide entry is checked once on its own (even where every route
  // replaces it), with no route: it cannot rely on one route's parameters.
  const gatewayWide = usable(raw.plugins, ['plugins']).filter(entry => compile(entry, GATEWAY_WIDE) !== undefined)
  const routes = Array.isArray(raw.routes) ? raw.routes : []
  routes.forEach((route, i) => {
    const own = usable(route.plugins, ['routes', i, 'plugins'])
    const effective = [...gatewayWide.filter(g => !own.some(o => o.name === g.name)), ...own]
    if (effective.length === 0) return
    const context = routeContext(route)
    const compiled: NamedHooks[] = []
    for (const entry of effective) {
      const c = compile(entry, context)
      if (c !== undefined) compiled.push(c)
    }
    hooks[i] = routeStageHooks(compiled)
  })
  return problems
}

/** The context a gateway-wide entry is checked in: no route, so no parameters. */
const GATEWAY_WIDE: RouteContext = { routeId: '', path: '', params: new Set(), refuse }

function routeContext (route: { id?: unknown, path?: unknown }): RouteContext {
  const path = typeof route.path === 'string' ? route.path : ''
  const params = new Set<string>()
  for (const m of path.matchAll(/:([A-Za-z0-9_]+)/g)) params.add(m[1])
  if (path.endsWith('*')) params.add('*')
  return { routeId: String(route.id), path, params, refuse }
}
