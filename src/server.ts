// Runs the gateway as a process: load config, (demo upstreams), listen, and
// handle SIGTERM/SIGINT with a bounded graceful shutdown.

import pino from 'pino'
import type { FastifyInstance } from 'fastify'
import { loadConfig } from './config/validate.js'
import { buildGateway } from './app.js'
import { buildAdminApp } from './admin.js'
import type { AddressInfo } from 'node:net'
import { formatProblem, displayFile } from './config/problems.js'
import type { GatewayConfig } from './config/types.js'

export interface StartOptions {
  configFile: string
  demo: boolean
}

export interface RunningGateway {
  app: FastifyInstance
  config: GatewayConfig
  addresses: string[]
  stop: () => Promise<void>
}

export async function startGateway (opts: StartOptions): Promise<RunningGateway> {
  const logger = pino({ level: process.env.LOG_LEVEL ?? 'info', base: { pid: process.pid } })
  const { config, warnings } = loadConfig(opts.configFile)
  for (const w of warnings) logger.warn(formatProblem(w))
  let closeDemo = async (): Promise<void> => {}
  if (opts.demo) {
    const { startDemoServices } = await import('../demo/services.js')
    const demo = await startDemoServices(config)
    closeDemo = demo.close
    logger.info({ services: demo.names }, 'demo upstream services started')
  }
  const app = await buildGateway(config, { logger })
  try {
    await app.listen({ host: config.server.host, port: config.server.port, listenTextResolver: (address) => `listening on ${address}` })
  } catch (err) {
    await app.close()
    await closeDemo()
    throw err
  }
  const addresses = app.addresses().map(formatAddress)
  let admin: FastifyInstance | undefined
  if (config.admin.port > 0) {
    admin = await buildAdminApp(app)
    try {
      await admin.listen({ host: config.admin.host, port: config.admin.port, listenTextResolver: (address) => `admin listening on ${address}` })
    } catch (err) {
      await admin.close()
      await app.close()
      await closeDemo()
      throw err
    }
    addresses.push(...admin.addresses().map(a => `${formatAddress(a)} (admin)`))
  }
  return {
    app,
    config,
    addresses,
    stop: async () => {
      // app.close() closes idle keep-alive connections only once; a connection
      // that finishes its last request while draining would then hold the
      // server open until keepAliveTimeout. Close each as soon as it goes idle.
      const sweep = setInterval(() => { app.server.closeIdleConnections() }, 100)
      try {
        await Promise.all([app.close(), admin?.close()])
      } finally {
        clearInterval(sweep)
      }
      await closeDemo()
    },
  }
}

/** Stop accepting, let in-flight requests finish (at most shutdownTimeout), exit. */
export function handleSignals (gw: RunningGateway): void {
  let stopping = false
  const shutdown = (signal: string): void => {
    if (stopping) return
    stopping = true
    gw.app.log.info({ signal }, 'shutting down: no new connections, finishing requests in flight')
    const force = setTimeout(() => {
      gw.app.log.warn({ timeoutMs: gw.config.server.shutdownTimeout }, 'shutdown timeout: exiting with requests still in flight')
      process.exit(1)
    }, gw.config.server.shutdownTimeout)
    force.unref()
    gw.stop().then(() => {
      gw.app.log.info('stopped')
      process.exit(0)
    }, (err: unknown) => {
      gw.app.log.error({ err }, 'error while stopping')
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => { shutdown('SIGTERM') })
  process.on('SIGINT', () => { shutdown('SIGINT') })
}

function formatAddress (a: string | AddressInfo): string {
  return typeof a === 'string' ? a : `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`
}

export function readyLine (gw: RunningGateway): string {
  return `portico listening on ${gw.addresses.join(', ')} (${gw.config.routes.length} routes from ${displayFile(gw.config.file)})`
}
