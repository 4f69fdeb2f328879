// Real upstream HTTP servers for tests: each test starts one on 127.0.0.1 with
// the behaviour it needs and reads back what reached it.

import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface SeenRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
  body: Buffer
}

export interface Upstream {
  url: string
  port: number
  /** Every request that reached this server, in order. */
  seen: SeenRequest[]
  hits: () => number
  close: () => Promise<void>
}

export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void | Promise<void>

/** Answers JSON describing the request it got (method, url, headers, body as text). */
export const echo: UpstreamHandler = (req, res, body) => {
  const text = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: body.toString('utf8') })
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(text)
}

export async function startUpstream (handler: UpstreamHandler = echo): Promise<Upstream> {
  const seen: SeenRequest[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body })
      Promise.resolve(handler(req, res, body)).catch(() => { res.destroy() })
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    hits: () => seen.length,
    close: async () => {
      server.closeAllConnections()
      await new Promise(resolve => server.close(resolve))
    },
  }
}

interface Teardown { teardown: (fn: () => unknown) => void }

/** Starts an upstream for one test and closes it in that test's teardown. */
export async function upstream (t: Teardown, handler: UpstreamHandler = echo): Promise<Upstream> {
  const up = await startUpstream(handler)
  t.teardown(up.close)
  return up
}

/** Answers every request with the same status, content type and body. */
export function reply (status: number, contentType: string, body: string): UpstreamHandler {
  return (_req, res) => {
    res.writeHead(status, { 'content-type': contentType })
    res.end(body)
  }
}

/** A port that was free a moment ago and has nothing listening now (for connection-refused cases). */
export async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await new Promise(resolve => server.close(resolve))
  return port
}
