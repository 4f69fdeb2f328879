#!/usr/bin/env node
// portico start | check | routes — every command finds its config the same
// way: --config FILE, else $PORTICO_CONFIG, else config/gateway.yaml.

import { parseArgs } from 'node:util'
import { loadGatewayConfig } from '../extensions/load-config.js'
import { ConfigError, formatProblem, displayFile } from '../config/problems.js'
import { describeTarget } from '../gateway/route-plan.js'
import type { GatewayConfig } from '../config/types.js'
import { parseDuration, DURATION_HINT } from '../config/units.js'
import { createSigner } from 'fast-jwt'
import { readFileSync } from 'node:fs'

const HELP: Record<string, string> = {
  main: `Usage: portico <command> [options]

Commands:
  start    run the gateway
  check    validate the configuration and exit
  routes   print the route table
  token    print a signed JWT for development and demos
  events   events tail --stream NAME: print a stream's events as they arrive

Run "portico <command> --help" for a command's options;
"portico --version" prints the version.`,
  start: `Usage: portico start [--config FILE] [--demo] [--watch]

Runs the gateway. Prints one line with the listening addresses when ready.
SIGHUP reloads the config (an invalid one is logged and the old one kept).
  --config FILE  gateway config (default: $PORTICO_CONFIG or config/gateway.yaml)
  --demo         also start the demo upstream services (users, orders, catalog)
  --watch        reload when a config, policies or routes file changes
Exit codes: 0 after a clean shutdown (SIGTERM), 1 on a config error or failed start.`,
  check: `Usage: portico check [--config FILE]

Validates everything the gateway would load. Prints a one-line summary and
exits 0, or prints one line per problem (FILE:LINE: field: what is wrong) and
exits 1.`,
  routes: `Usage: portico routes [--config FILE]

Prints the route table: method, path, policy, target, id. Exit 1 on a config error.`,
  token: `Usage: portico token --sub ID [--roles a,b] [--scope "x y"] [--ttl 1h] [--config FILE]

Prints a JWT signed with the configured HS secret (auth.jwt.secret), with
iss/aud set when the config checks them. For development and demos.
  --sub ID       the subject (required)
  --roles a,b    roles, put in the configured rolesClaim
  --scope "x y"  space-separated scopes (the scope claim)
  --ttl 1h       lifetime (default 1h)
Exit 1 when the config has no HS secret or no HS algorithm allowed.`,
  events: `Usage: portico events tail --stream NAME [--from-start] [--config FILE]

Prints each event appended to the Redis stream NAME (by publish and command
routes) as one JSON line, as it arrives; --from-start prints the stream's
existing entries first. Reads the Redis of the config's redis.url. Stops on
SIGINT/SIGTERM (exit 0); exit 1 when no Redis is configured or it cannot
be reached (one line on stderr saying why).`,
}

const OPTIONS = {
  config: { type: 'string' },
  demo: { type: 'boolean' },
  watch: { type: 'boolean' },
  sub: { type: 'string' },
  roles: { type: 'string' },
  scope: { type: 'string' },
  ttl: { type: 'string' },
  stream: { type: 'string' },
  'from-start': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

export async function main (argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    console.log(HELP.main)
    return command === undefined ? 2 : 0
  }
  if (command === '--version' || command === '-v') {
    console.log(packageVersion())
    return 0
  }
  if (!(command in HELP) || command === 'main') {
    console.error(`portico: unknown command "${command}"\n\n${HELP.main}`)
    return 2
  }
  let values: { config?: string, demo?: boolean, watch?: boolean, help?: boolean, sub?: string, roles?: string, scope?: string, ttl?: string, stream?: string, 'from-start'?: boolean }
  let positionals: string[]
  try {
    ({ values, positionals } = parseArgs({ args: rest, options: OPTIONS, strict: true, allowPositionals: command === 'events' }))
  } catch (err) {
    console.error(`portico ${command}: ${(err as Error).message}\n\n${HELP[command]}`)
    return 2
  }
  if (values.help === true) { console.log(HELP[command]); return 0 }
  for (const flag of ['demo', 'watch'] as const) {
    if (values[flag] === true && command !== 'start') {
      console.error(`portico ${command}: --${flag} is only for start`)
      return 2
    }
  }
  const tokenOnly = (['sub', 'roles', 'scope', 'ttl'] as const).filter(k => values[k] !== undefined)
  if (command !== 'token' && tokenOnly.length > 0) {
    console.error(`portico ${command}: --${tokenOnly[0]} is only for token`)
    return 2
  }
  const configFile = values.config ?? process.env.PORTICO_CONFIG ?? 'config/gateway.yaml'
  switch (command) {
    case 'check': return await check(configFile)
    case 'routes': return await routes(configFile)
    case 'token': return await token(configFile, values)
    case 'events': {
      if (positionals[0] !== 'tail' || positionals.length !== 1 || values.stream === undefined || values.stream === '') {
        console.error(`portico events: expected "events tail --stream NAME"\n\n${HELP.events}`)
        return 2
      }
      return await tailEvents(configFile, values.stream, values['from-start'] === true)
    }
    default: return await start(configFile, values.demo === true, values.watch === true)
  }
}

/** The version in package.json, read where the build put this file (dist/src/main/cli.js). */
function packageVersion (): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

async function load (configFile: string): Promise<{ config: GatewayConfig, lines: string[] } | number> {
  try {
    const { config, warnings } = await loadGatewayConfig(configFile)
    return { config, lines: warnings.map(formatProblem) }
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const p of err.problems) console.log(formatProblem(p))
      return 1
    }
    throw err
  }
}

async function check (configFile: string): Promise<number> {
  const loaded = await load(configFile)
  if (typeof loaded === 'number') return loaded
  const { config, lines } = loaded
  for (const line of lines) console.log(line)
  console.log(`${displayFile(config.file)}: OK — ${config.routes.length} routes, ${config.services.size} services, ${config.policies.size} policies` +
    (lines.length > 0 ? `, ${lines.length} warnings` : ''))
  return 0
}

async function routes (configFile: string): Promise<number> {
  const loaded = await load(configFile)
  if (typeof loaded === 'number') return loaded
  const rows = [['METHOD', 'PATH', 'POLICY', 'TARGET', 'ID']]
  for (const r of loaded.config.routes) rows.push([r.methods.join(','), r.path, r.policy, describeTarget(r), r.id])
  const widths = rows[0].map((_, i) => Math.max(...rows.map(row => row[i].length)))
  for (const row of rows) console.log(row.map((cell, i) => i === row.length - 1 ? cell : cell.padEnd(widths[i])).join('  '))
  return 0
}

async function token (configFile: string, opts: { sub?: string, roles?: string, scope?: string, ttl?: string }): Promise<number> {
  if (opts.sub === undefined || opts.sub === '') {
    console.error(`portico token: --sub is required\n\n${HELP.token}`)
    return 2
  }
  const ttl = parseDuration(opts.ttl ?? '1h')
  if (ttl === undefined || ttl === 0) {
    console.error(`portico token: --ttl ${DURATION_HINT}`)
    return 2
  }
  const loaded = await load(configFile)
  if (typeof loaded === 'number') return loaded
  const jwt = loaded.config.auth.jwt
  const algorithm = jwt?.algorithms.find(a => a.startsWith('HS'))
  if (jwt?.secret === undefined || algorithm === undefined) {
    console.error(`portico token: ${displayFile(loaded.config.file)} has no HS secret to sign with (auth.jwt.secret with an HS algorithm in auth.jwt.algorithms); tokens for RS/ES keys come from your identity provider`)
    return 1
  }
  const claims: Record<string, unknown> = {}
  if (opts.roles !== undefined) claims[jwt.rolesClaim] = opts.roles.split(',').map(r => r.trim()).filter(r => r !== '')
  if (opts.scope !== undefined) claims.scope = opts.scope
  const sign = createSigner({
    key: jwt.secret,
    algorithm,
    sub: opts.sub,
    expiresIn: ttl,
    ...(jwt.issuer !== undefined ? { iss: jwt.issuer[0] } : {}),
    ...(jwt.audience !== undefined ? { aud: jwt.audience[0] } : {}),
  })
  console.log(sign(claims))
  return 0
}

async function tailEvents (configFile: string, stream: string, fromStart: boolean): Promise<number> {
  const loaded = await load(configFile)
  if (typeof loaded === 'number') return loaded
  const { config } = loaded
  if (config.redis.url === '') {
    console.error(`portico events: ${displayFile(config.file)} has no redis.url; event streams live in Redis (the memory sink is inside the gateway process)`)
    return 1
  }
  const { tail } = await import('../events/tail.js')
  return await tail(config.redis.url, stream, fromStart)
}

async function start (configFile: string, demo: boolean, watch: boolean): Promise<number> {
  const { startGateway, handleSignals, readyLine } = await import('./server.js')
  const { isWorker, runPrimary } = await import('./cluster.js')
  const worker = isWorker()
  try {
    if (!worker) {
      const loaded = await load(configFile)
      if (typeof loaded === 'number') return loaded
      if (loaded.config.server.workers > 1) {
        for (const line of loaded.lines) console.error(line)
        await runPrimary({ config: loaded.config, workers: loaded.config.server.workers, demo })
        return -1 // keep running
      }
    }
    // A worker never starts the demo services: the primary did, once.
    const gw = await startGateway({ configFile, demo: demo && !worker, watch, worker })
    handleSignals(gw)
    if (!worker) console.log(readyLine(gw))
    return -1 // keep running
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const p of err.problems) console.error(formatProblem(p))
      return 1
    }
    const e = err as NodeJS.ErrnoException
    console.error(`portico start: ${e.code === 'EADDRINUSE' ? `address in use (${e.message})` : e.message}`)
    return 1
  }
}

main(process.argv.slice(2)).then(code => {
  if (code >= 0) process.exitCode = code
}, (err: unknown) => {
  console.error(`portico: ${(err as Error).message}`)
  process.exitCode = 1
})
