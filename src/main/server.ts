// Runs the gateway as a process. The process owns one HTTP server; behind it
// sits the current gateway app (one config). A reload (SIGHUP, or --watch
// noticing a changed file) builds a new app from the new config and swaps it
// in atomically: new requests go to the new app, requests in flight finish
// on the one they started with, no connection is dropped, and services whose
// settings did not change keep their pools, breakers and health (see
// shared-resources.ts). An invalid new config is logged line by line and the
// old one keeps serving. SIGTERM/SIGINT: stop accepting, close idle
// keep-alive connections, answer what is in flight with `connection: close`,
// exit as soon as drained (at most server.shutdownTimeout).

import { createServer } from 'node:http'
import { watch, type FSWatcher } from 'node:fs'
import { dirname } from 'node:path'
import type { AddressInfo, Server as NetServer } from 'node:net'
import pino from 'pino'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { loadGatewayConfig } from '../extensions/load-config.js'
import { buildGateway } from '../gateway/app.js'
import { buildAdminApp } from '../admin/admin-app.js'
import { ConfigError, formatProblem, displayFile } from '../config/problems.js'
import type { GatewayConfig } from '../config/types.js'
import { SharedResources } from '../gateway/shared-resources.js'
import { serveWorker } from './cluster.js'
import { AggregatorRegistry } from 'prom-client'
import { createEdgeServer, isHttp2Response, type EdgeRequest, type EdgeResponse } from './edge-server.js'
import { startRedirectListener, type RedirectListener } from './redirect-listener.js'

export interface StartOptions {
  configFile: string
  demo: boolean
  /** Reload when a config file changes. */
  watch?: boolean
  /** A node:cluster worker: the primary runs the admin listener and relays to us. */
  worker?: boolean
}

type Handler = (req: EdgeRequest, res: EdgeResponse) => void

const GENERATION = Symbol('portico.generation')
type TrackedResponse = EdgeResponse & { [GENERATION]?: Generation }

/** A response closed: its generation has one request fewer in flight. */
function settle (this: TrackedResponse): void {
  const gen = this[GENERATION]
  if (gen === undefined) return
  this[GENERATION] = undefined
  gen.inflight.delete(this)
  if (gen.inflight.size === 0) gen.onDrained?.()
}

/**
 * Once stopping, a response closes its connection when done: `connection:
 * close` if its headers are still to be written, else its socket ends after
 * the last byte. A keep-alive client then reconnects elsewhere instead of
 * sending its next request to a gateway that is going away.
 */
function closeWhenDone (res: EdgeResponse): void {
  // HTTP/2 has no connection header: its session gets GOAWAY (EdgeServer.goAway).
  if (isHttp2Response(res)) return
  if (!res.headersSent) {
    res.shouldKeepAlive = false
    res.setHeader('connection', 'close')
    return
  }
  const socket = res.socket
  if (socket !== null) res.once('finish', () => { socket.end() })
}

/** One config's app, and the requests it is still serving. */
interface Generation {
  app: FastifyInstance
  config: GatewayConfig
  handler: Handler
  inflight: Set<EdgeResponse>
  onDrained?: () => void
}

export interface RunningGateway {
  /** The app serving new requests now. */
  readonly app: FastifyInstance
  readonly config: GatewayConfig
  addresses: string[]
  /** Re-reads the config; resolves to false (old config kept) when it is invalid. */
  reload: () => Promise<boolean>
  stop: () => Promise<void>
  log: FastifyBaseLogger
}

export async function startGateway (opts: StartOptions): Promise<RunningGateway> {
  const log = pino({ level: process.env.LOG_LEVEL ?? 'info', base: { pid: process.pid } })
  const first = await loadGatewayConfig(opts.configFile)
  for (const w of first.warnings) log.warn(formatProblem(w))
  const shared = new SharedResources(log)

  let closeDemo = async (): Promise<void> => {}
  if (opts.demo) {
    const { startDemoServices } = await import('../../demo/services.js')
    const demo = await startDemoServices(first.config)
    closeDemo = demo.close
    log.info({ services: demo.names }, 'demo upstream services started')
  }

  let current = await buildGeneration(first.config, shared, log)
  /** Generations with requests in flight: the current one and any still draining after a reload. */
  const serving = new Set<Generation>([current])
  let stopping = false
  // http, https, or https with h2 beside http/1.1 (server.tls, server.http2).
  const edge = createEdgeServer(first.config.server, (req, res) => {
    const gen = current
    gen.inflight.add(res)
    // One shared listener (no closure per request); the response remembers its generation.
    ;(res as TrackedResponse)[GENERATION] = gen
    res.on('close', settle)
    // A request that arrived on a kept-alive connection after SIGTERM.
    if (stopping) closeWhenDone(res)
    gen.handler(req, res)
  })
  const server = edge.server

  let admin: FastifyInstance | undefined
  let redirect: RedirectListener | undefined
  const addresses: string[] = []
  try {
    await listen(server, first.config.server.host, first.config.server.port)
    addresses.push(formatAddress(server.address(), edge.scheme))
    log.info(`listening on ${addresses[0]}`)
    if (first.config.server.redirectHttpPort > 0) {
      redirect = await startRedirectListener(first.config.server, (server.address() as AddressInfo).port)
      addresses.push(`${formatAddress(redirect.address())} (redirects to https)`)
    }
    if (opts.worker === true) {
      // Constructing one registers prom-client's worker-side IPC listener, which
      // answers the primary's aggregated /metrics from this worker's registry.
      void new AggregatorRegistry()
      AggregatorRegistry.setRegistries([shared.metrics.registry])
      serveWorker(addresses, async () => await buildAdminApp(() => current.app))
    } else if (first.config.admin.port > 0) {
      admin = await buildAdminApp(() => current.app)
      await admin.listen({ host: first.config.admin.host, port: first.config.admin.port, listenTextResolver: (address) => `admin listening on ${address}` })
      addresses.push(...admin.addresses().map(a => `${formatAddress(a)} (admin)`))
    }
  } catch (err) {
    server.close()
    await redirect?.close()
    await admin?.close()
    await current.app.close()
    await shared.closeAll()
    await closeDemo()
    throw err
  }

  let reloading: Promise<boolean> | undefined
  async function reload (): Promise<boolean> {
    // Reloads in a burst (an editor writing several files) run one after another.
    const previous = reloading
    reloading = (async () => {
      await previous
      return await swap()
    })()
    return await reloading
  }

  async function swap (): Promise<boolean> {
    let next: Generation
    try {
      const loaded = await loadGatewayConfig(opts.configFile)
      for (const w of loaded.warnings) log.warn(formatProblem(w))
      const old = current.config.server
      const now = loaded.config.server
      if (old.host !== now.host || old.port !== now.port) log.warn('server.host/port changes take effect at the next restart')
      next = await buildGeneration(loaded.config, shared, log)
      try {
        // Re-read certificate files: new handshakes get them, open connections keep theirs.
        edge.reload(now, log)
      } catch (err) {
        await next.app.close()
        throw err
      }
    } catch (err) {
      if (err instanceof ConfigError) {
        for (const p of err.problems) log.error(formatProblem(p))
        log.error(`config reload rejected (${err.problems.length} problems); still serving the previous config`)
      } else {
        log.error({ err }, 'config reload failed; still serving the previous config')
      }
      return false
    }
    const old = current
    current = next
    serving.add(next)
    log.info({ routes: next.config.routes.length }, 'config reloaded')
    // The old app closes when its last request finishes (bounded); then
    // whatever the new config no longer names is closed too.
    void drain(old, next.config.server.shutdownTimeout).then(async () => {
      serving.delete(old)
      await old.app.close()
      await shared.releaseUnused(new Set(next.config.services.keys()), next.config.redis.url)
    })
    return true
  }

  let watcher: FSWatcher[] = []
  if (opts.watch === true) watcher = watchFiles(() => current.config.files, () => { void reload() }, log)

  return {
    get app () { return current.app },
    get config () { return current.config },
    addresses,
    reload,
    log,
    stop: async () => {
      for (const w of watcher) w.close()
      stopping = true
      for (const gen of serving) for (const res of gen.inflight) closeWhenDone(res)
      await new Promise<void>(resolve => {
        server.close(() => { resolve() })
        // Keep-alive connections go as soon as they are idle, not at their timeout.
        edge.closeIdleConnections()
        edge.goAway()
        const sweep = setInterval(() => { edge.closeIdleConnections() }, 100)
        server.once('close', () => { clearInterval(sweep) })
      })
      await Promise.all([current.app.close(), admin?.close(), redirect?.close()])
      await shared.closeAll()
      await closeDemo()
    },
  }
}

async function buildGeneration (config: GatewayConfig, shared: SharedResources, log: FastifyBaseLogger): Promise<Generation> {
  let handler: Handler | undefined
  const app = await buildGateway(config, {
    logger: log,
    shared,
    // The app never listens itself: the process's one server hands it requests.
    serverFactory: (h) => { handler = h as Handler; return createServer() },
  })
  await app.ready()
  if (handler === undefined) throw new Error('the gateway app did not expose its request handler')
  return { app, config, handler, inflight: new Set() }
}

async function drain (gen: Generation, timeout: number): Promise<void> {
  if (gen.inflight.size === 0) return
  await new Promise<void>(resolve => {
    const timer = setTimeout(resolve, timeout)
    gen.onDrained = () => { clearTimeout(timer); resolve() }
  })
}

async function listen (server: NetServer, host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve() })
  })
}

/** Watches every config file (and the routes directory, for added files); debounced. */
function watchFiles (files: () => string[], onChange: () => void, log: FastifyBaseLogger): FSWatcher[] {
  let timer: NodeJS.Timeout | undefined
  const fire = (): void => {
    clearTimeout(timer)
    timer = setTimeout(onChange, 200)
  }
  const targets = new Set<string>()
  for (const f of files()) { targets.add(f); targets.add(dirname(f)) }
  const watchers: FSWatcher[] = []
  for (const target of targets) {
    try {
      watchers.push(watch(target, { persistent: false }, fire))
    } catch (err) {
      log.warn({ target, err: (err as Error).message }, 'cannot watch for config changes')
    }
  }
  return watchers
}

/** SIGTERM/SIGINT drain and exit; SIGHUP reloads the config. */
export function handleSignals (gw: RunningGateway): void {
  let stopping = false
  const shutdown = (signal: string): void => {
    if (stopping) return
    stopping = true
    gw.log.info({ signal }, 'shutting down: no new connections, finishing requests in flight')
    const force = setTimeout(() => {
      gw.log.warn({ timeoutMs: gw.config.server.shutdownTimeout }, 'shutdown timeout: exiting with requests still in flight')
      process.exit(1)
    }, gw.config.server.shutdownTimeout)
    force.unref()
    gw.stop().then(() => {
      gw.log.info('stopped')
      process.exit(0)
    }, (err: unknown) => {
      gw.log.error({ err }, 'error while stopping')
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => { shutdown('SIGTERM') })
  process.on('SIGINT', () => { shutdown('SIGINT') })
  process.on('SIGHUP', () => {
    gw.log.info({ signal: 'SIGHUP' }, 'reloading config')
    void gw.reload()
  })
}

function formatAddress (a: string | AddressInfo | null, scheme = 'http'): string {
  if (a === null) return ''
  return typeof a === 'string' ? a : `${scheme}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`
}

export function readyLine (gw: RunningGateway): string {
  return `portico listening on ${gw.addresses.join(', ')} (${gw.config.routes.length} routes from ${displayFile(gw.config.file)})`
}
