// Small in-process upstream services behind `portico start --demo`, so the
// demo config answers curl with no other setup. Each listens where the
// config's `services.<name>.urls[0]` says, so ports are written only once.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { GatewayConfig } from '../src/config/types.js'

type Handler = (req: IncomingMessage, url: URL, body: unknown) => { status: number, body: unknown }

const users = new Map([
  ['alice', { id: 'alice', name: 'Alice Liddell', email: 'alice@example.com', tier: 'gold' }],
  ['bob', { id: 'bob', name: 'Bob Builder', email: 'bob@example.com', tier: 'silver' }],
])

const products = [
  { id: 'p-100', name: 'Trail shoes', price: 89.9, stock: 12 },
  { id: 'p-200', name: 'Rain jacket', price: 129, stock: 4 },
  { id: 'p-300', name: 'Headlamp', price: 34.5, stock: 40 },
]

const orders: Array<{ id: string, user: string, sku: string, qty: number, at: string }> = [
  { id: 'o-1', user: 'alice', sku: 'p-100', qty: 1, at: '2026-01-05T10:00:00.000Z' },
]

const SERVICES: Record<string, Handler> = {
  users (req, url) {
    const m = /^\/users\/([^/]+)$/.exec(url.pathname)
    if (req.method === 'GET' && url.pathname === '/users') return { status: 200, body: [...users.values()] }
    if (req.method === 'GET' && m !== null) {
      const user = users.get(decodeURIComponent(m[1]))
      return user !== undefined ? { status: 200, body: user } : { status: 404, body: { error: 'no such user' } }
    }
    return { status: 404, body: { error: 'not found' } }
  },
  orders (req, url, body) {
    if (req.method === 'GET' && url.pathname === '/orders') {
      const user = url.searchParams.get('user')
      return { status: 200, body: orders.filter(o => user === null || o.user === user) }
    }
    if (req.method === 'POST' && url.pathname === '/orders') {
      const b = (body ?? {}) as { sku?: string, qty?: number }
      const order = { id: `o-${orders.length + 1}`, user: String(req.headers['x-auth-sub'] ?? 'anonymous'), sku: String(b.sku), qty: Number(b.qty ?? 1), at: new Date().toISOString() }
      orders.push(order)
      return { status: 201, body: order }
    }
    return { status: 404, body: { error: 'not found' } }
  },
  // The write side of the catalog (CQRS): it changes the data the read
  // service serves, as a projection fed by its events would.
  'catalog-write' (req, url, body) {
    const m = /^\/products\/([^/]+)$/.exec(url.pathname)
    if (req.method === 'PUT' && m !== null) {
      const p = products.find(x => x.id === decodeURIComponent(m[1]))
      if (p === undefined) return { status: 404, body: { error: 'no such product' } }
      const b = (body ?? {}) as { price?: number, stock?: number }
      if (typeof b.price === 'number') p.price = b.price
      if (typeof b.stock === 'number') p.stock = b.stock
      return { status: 200, body: p }
    }
    return { status: 404, body: { error: 'not found' } }
  },
  'catalog-read' (req, url) {
    const m = /^\/products\/([^/]+)$/.exec(url.pathname)
    if (url.pathname === '/products') return { status: 200, body: products }
    if (m !== null) {
      const p = products.find(x => x.id === decodeURIComponent(m[1]))
      return p !== undefined ? { status: 200, body: p } : { status: 404, body: { error: 'no such product' } }
    }
    const recs = /^\/recs\/([^/]+)$/.exec(url.pathname)
    if (recs !== null) return { status: 200, body: { user: decodeURIComponent(recs[1]), items: products.slice(0, 2).map(p => p.id) } }
    // Shows exactly what reached the upstream: handy to see the forwarding rules.
    if (url.pathname.startsWith('/echo')) {
      return { status: 200, body: { method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers } }
    }
    return { status: 404, body: { error: 'not found' } }
  },
}

export interface DemoServices {
  names: string[]
  close: () => Promise<void>
}

export async function startDemoServices (config: GatewayConfig): Promise<DemoServices> {
  const servers: Server[] = []
  const names: string[] = []
  for (const [name, handler] of Object.entries(SERVICES)) {
    const svc = config.services.get(name)
    if (svc === undefined) continue
    const url = new URL(svc.urls[0])
    const server = createServer((req, res) => { serve(handler, req, res) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(Number(url.port), url.hostname, () => { resolve() })
    })
    servers.push(server)
    names.push(`${name} ${url.origin}`)
  }
  return {
    names,
    close: async () => { await Promise.all(servers.map(s => new Promise(resolve => { s.closeAllConnections(); s.close(resolve) }))) },
  }
}

function serve (handler: Handler, req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    let body: unknown
    try { body = chunks.length > 0 ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined } catch { body = undefined }
    const out = handler(req, new URL(req.url ?? '/', 'http://demo'), body)
    const text = JSON.stringify(out.body)
    res.writeHead(out.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
    res.end(req.method === 'HEAD' ? undefined : text)
  })
}
