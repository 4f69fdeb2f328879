// A real socket to the gateway, for what app.inject cannot show: raw paths
// (inject normalizes `..` and `%2e%2e` through the URL parser), chunked
// bodies, x-forwarded-* from a real peer.

import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'

/** Listens on 127.0.0.1, a free port; the app is closed by the caller's teardown. */
export async function listen (app: FastifyInstance): Promise<number> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  return (app.server.address() as AddressInfo).port
}

export interface RawResponse {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
}

export interface RawRequest {
  method?: string
  /** Sent exactly as given: no normalization of dot segments or escapes. */
  path: string
  headers?: OutgoingHttpHeaders
  /** A Buffer is sent with content-length; a list of chunks is sent chunked. */
  body?: Buffer | Buffer[]
}

export async function rawRequest (port: number, req: RawRequest): Promise<RawResponse> {
  return await new Promise((resolve, reject) => {
    const chunked = Array.isArray(req.body)
    const headers: OutgoingHttpHeaders = { ...req.headers }
    if (req.body !== undefined && !chunked) headers['content-length'] = (req.body as Buffer).length
    const out = httpRequest({ host: '127.0.0.1', port, method: req.method ?? 'GET', path: req.path, headers, agent: false }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }) })
      res.on('error', reject)
    })
    out.on('error', reject)
    if (chunked) {
      for (const c of req.body as Buffer[]) out.write(c)
      out.end()
    } else {
      out.end(req.body)
    }
  })
}
