// Builds a gateway from YAML written to a temp dir, closed in the test's teardown.

import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { loadGatewayConfig } from '../../src/extensions/load-config.js'
import { buildGateway } from '../../src/gateway/app.js'

interface Teardown { teardown: (fn: () => unknown) => void }

/** Writes files (relative path → content) into a fresh temp dir; returns the dir. */
export function writeConfigFiles (files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'portico-test-'))
  for (const [name, content] of Object.entries(files)) {
    const path = join(dir, name)
    mkdirSync(dirname(path), { recursive: true })
    writeFileSync(path, content)
  }
  return dir
}

/** Loads `gateway.yaml` from the given files and builds the app (not listening). */
export async function buildFromFiles (t: Teardown, files: Record<string, string>, env: NodeJS.ProcessEnv = {}): Promise<FastifyInstance> {
  const dir = writeConfigFiles(files)
  const { config } = await loadGatewayConfig(join(dir, 'gateway.yaml'), env)
  const app = await buildGateway(config)
  t.teardown(async () => { await app.close() })
  return app
}

/** A gateway.yaml with one service and the given routes (YAML list text). */
export function simpleConfig (serviceUrl: string, routes: string, extra = ''): string {
  return `services:
  backend:
    urls: [${serviceUrl}]
    timeout: 1s
policies:
  public: { auth: none }
${extra}
routes:
${routes}
`
}
