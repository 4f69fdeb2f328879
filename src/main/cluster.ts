// `server.workers: N | auto`: node:cluster. The primary forks N workers that
// share the public port, forwards SIGHUP (reload) and SIGTERM (drain) to
// them, replaces a worker that dies, and prints the ready line once every
// worker listens. With Redis configured, rate limits and the cache are shared
// by all workers (and all instances); without it each worker has its own.
//
// The admin listener runs in the primary: /metrics aggregates every
// worker's registry (prom-client's AggregatorRegistry); GET /admin/* is
// answered by one worker over IPC; POST /admin/cache/purge goes to all of
// them (each may hold its own memory cache).

import cluster, { type Worker } from 'node:cluster'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import pino from 'pino'
import { AggregatorRegistry } from 'prom-client'
import type { GatewayConfig } from '../config/types.js'
import { adminTokenHook } from '../admin/admin-app.js'
import { displayFile } from '../config/problems.js'
import { STATUS_PAGE } from '../admin/status-page.js'

const READY = 'portico:ready'
const ADMIN_REQ = 'portico:admin'
const ADMIN_RES = 'portico:admin-res'

interface AdminRequest { type: typeof ADMIN_REQ, id: number, method: string, url: string, payload?: string, headers: Record<string, string> }
interface AdminResponse { type: typeof ADMIN_RES, id: number, statusCode: number, headers: Record<string, string>, body: string }

export interface PrimaryOptions {
  config: GatewayConfig
  workers: number
  demo: boolean
}

export async function runPrimary (opts: PrimaryOptions): Promise<void> {
  const { config } = opts
  const log = pino({ level: process.env.LOG_LEVEL ?? 'info', base: { pid: process.pid, role: 'primary' } })
  let closeDemo = async (): Promise<void> => {}
  if (opts.demo) {
    const { startDemoServices } = await import('../../demo/services.js')
    const demo = await startDemoServices(config)
    closeDemo = demo.close
    log.info({ services: demo.names }, 'demo upstream services started')
  }

  let stopping = false
  const ready = new Set<number>()
  let announced = false
  let address = ''
  const fork = (): Worker => cluster.fork({ PORTICO_WORKER: '1' })

  cluster.on('message', (worker, message: { type?: string, addresses?: string[] }) => {
    if (message?.type !== READY) return
    ready.add(worker.id)
    // The public listener, and the https redirect one when configured.
    if (message.addresses !== undefined && message.addresses.length > 0) address = message.addresses.join(', ')
    if (!announced && ready.size >= opts.workers) {
      announced = true
      const adminNote = admin !== undefined ? `, ${adminAddress} (admin)` : ''
      console.log(`portico listening on ${address}${adminNote} (${opts.workers} workers, ${config.routes.length} routes from ${displayFile(config.file)})`)
    }
  })
  cluster.on('exit', (worker, code, signal) => {
    ready.delete(worker.id)
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) void finish()
      return
    }
    log.error({ worker: worker.process.pid, code, signal }, 'worker died; starting a replacement')
    setTimeout(fork, 500).unref()
  })

  let admin: FastifyInstance | undefined
  let adminAddress = ''
  if (config.admin.port > 0) {
    admin = await buildAdminRelay(config, log)
    await admin.listen({ host: config.admin.host, port: config.admin.port, listenTextResolver: (a) => `admin listening on ${a}` })
    adminAddress = `http://${config.admin.host}:${config.admin.port}`
  }
  for (let i = 0; i < opts.workers; i++) fork()

  const finish = async (): Promise<void> => {
    await admin?.close()
    await closeDemo()
    log.info('all workers stopped')
    process.exit(0)
  }
  const forward = (signal: NodeJS.Signals): void => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal)
  }
  process.on('SIGHUP', () => { log.info('reloading config in every worker'); forward('SIGHUP') })
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'stopping workers')
    forward('SIGTERM')
    setTimeout(() => { log.warn('workers did not stop in time'); process.exit(1) }, config.server.shutdownTimeout + 2000).unref()
    if (Object.keys(cluster.workers ?? {}).length === 0) void finish()
  }
  process.on('SIGTERM', () => { stop('SIGTERM') })
  process.on('SIGINT', () => { stop('SIGINT') })
}

/** The primary's admin listener: aggregated metrics, admin calls relayed to workers. */
async function buildAdminRelay (config: GatewayConfig, log: pino.Logger): Promise<FastifyInstance> {
  const app = Fastify({ loggerInstance: log.child({ listener: 'admin' }) as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) })
  const aggregator = new AggregatorRegistry()
  app.addHook('onRequest', adminTokenHook(() => config.admin.token))
  app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(STATUS_PAGE))
  app.get('/metrics', async (_request, reply) => reply.type(aggregator.contentType).send(await aggregator.clusterMetrics()))
  app.get('/admin/*', async (request, reply) => {
    const worker = Object.values(cluster.workers ?? {}).find(w => w !== undefined)
    if (worker === undefined) return await reply.code(503).send({ error: 'no worker is running' })
    const res = await askWorker(worker, request.method, request.url)
    return await reply.code(res.statusCode).headers(res.headers).send(res.body)
  })
  app.post('/admin/cache/purge', async (request, reply) => {
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)
    const answers = await Promise.all(workers.map(async w => await askWorker(w, 'POST', request.url, JSON.stringify(request.body))))
    const failed = answers.find(a => a.statusCode !== 200)
    if (failed !== undefined) return await reply.code(failed.statusCode).headers(failed.headers).send(failed.body)
    const purged = answers.reduce((sum, a) => sum + Number((JSON.parse(a.body) as { purged?: number }).purged ?? 0), 0)
    return { purged, workers: answers.length }
  })
  return app
}

let nextId = 0
async function askWorker (worker: Worker, method: string, url: string, payload?: string): Promise<AdminResponse> {
  const id = nextId++
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { worker.off('message', onMessage); reject(new Error('worker did not answer the admin call')) }, 5000)
    const onMessage = (message: AdminResponse): void => {
      if (message?.type !== ADMIN_RES || message.id !== id) return
      clearTimeout(timer)
      worker.off('message', onMessage)
      resolve(message)
    }
    worker.on('message', onMessage)
    const req: AdminRequest = { type: ADMIN_REQ, id, method, url, headers: payload !== undefined ? { 'content-type': 'application/json' } : {}, ...(payload !== undefined ? { payload } : {}) }
    worker.send(req)
  })
}

/** In a worker: announce readiness, and answer admin calls relayed by the primary with the worker's own admin app. */
export function serveWorker (addresses: string[], admin: () => Promise<FastifyInstance>): void {
  process.send?.({ type: READY, addresses })
  let app: Promise<FastifyInstance> | undefined
  process.on('message', (message: AdminRequest) => {
    if (message?.type !== ADMIN_REQ) return
    app ??= admin()
    void app.then(async a => await a.inject({ method: message.method as 'GET', url: message.url, headers: message.headers, ...(message.payload !== undefined ? { payload: message.payload } : {}) }))
      .then(res => {
        const headers: Record<string, string> = {}
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string' && k !== 'content-length' && k !== 'connection') headers[k] = v
        process.send?.({ type: ADMIN_RES, id: message.id, statusCode: res.statusCode, headers, body: res.body } satisfies AdminResponse)
      }, (err: unknown) => {
        process.send?.({ type: ADMIN_RES, id: message.id, statusCode: 500, headers: {}, body: JSON.stringify({ error: (err as Error).message }) } satisfies AdminResponse)
      })
  })
}

export const isWorker = (): boolean => cluster.isWorker && process.env.PORTICO_WORKER === '1'
