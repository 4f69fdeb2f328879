// loadConfig: a config file to a GatewayConfig, in the stages the folder's
// files are named after: load.ts (YAML and the files it names, with a source
// map), schema-errors.ts (the schema), validate.ts (cross-references),
// normalize.ts (defaults filled in, units parsed). Every problem is collected
// and reported at once, each as FILE:LINE: field: message.

import { loadConfigSource, type SourceMap } from './load.js'
import { ConfigError, type ConfigProblem } from './problems.js'
import type { RawConfig } from './schema.js'
import { checkSchema } from './schema-errors.js'
import { checkConfig, checkEnvPort } from './validate.js'
import { normalize } from './normalize.js'
import type { GatewayConfig } from './types.js'

export interface LoadResult {
  config: GatewayConfig
  warnings: ConfigProblem[]
}

/**
 * Checks run after the built-in ones on the same loaded source (the
 * extensions' plugin configs), so their problems are reported together.
 */
export type ExtraCheck = (raw: unknown, map: SourceMap) => ConfigProblem[]

/**
 * Loads and validates a config file; throws ConfigError listing every problem.
 * Plugin entries are only checked through `extra`: the gateway and the CLI load
 * through loadGatewayConfig (src/extensions/load-config.ts), which passes it.
 */
export function loadConfig (file: string, env: NodeJS.ProcessEnv = process.env, extra?: ExtraCheck): LoadResult {
  const { raw: loaded, map, problems, fatal, file: main } = loadConfigSource(file, env)
  if (fatal) throw new ConfigError(problems)
  // A field an earlier stage already faulted (an unset variable, a schema
  // error) is not reported again by a later one, less clearly.
  const add = (found: ConfigProblem[]): void => {
    const earlier = [...problems]
    problems.push(...found.filter(c => !earlier.some(f => c.path === f.path || c.path.startsWith(f.path + '.') || c.path.startsWith(f.path + '['))))
  }
  const schema = checkSchema(loaded, map)
  add(schema.problems)
  // Past the schema the data has its shape; with schema errors the
  // cross-checks still run, for the problems they can find.
  const raw = loaded as RawConfig
  const publicKeys = new Map<string, string>()
  try {
    add(checkConfig(raw, { map, file: main, publicKeys }))
    if (extra !== undefined) add(extra(raw, map))
  } catch (err) {
    // Cross-checks assume the schema's shape; with schema errors they may
    // trip over malformed data, and the schema errors already say why.
    if (schema.fits) throw err
  }
  add(checkEnvPort(env, map))
  const all = dedupe(problems)
  if (all.some(p => p.warning !== true)) throw new ConfigError(all)
  return { config: normalize(raw, { map, file: main, env, publicKeys }), warnings: all }
}

function dedupe (problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>()
  return problems.filter(p => {
    const key = `${p.file}:${p.line}:${p.path}:${p.message}`
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}
