// The benchmark's upstream, in its own process: a fixed 1 KiB JSON answer on
// /json, the same after 50 ms on /slow. Prints "ready" when listening.

import { createServer } from 'node:http'

const port = Number(process.argv[2] ?? 0)
const item = { id: 'p-100', name: 'Trail shoes', price: 89.9, stock: 12, tags: ['outdoor', 'running'] }
const body = Buffer.from(JSON.stringify({ items: Array.from({ length: 9 }, (_, i) => ({ ...item, id: `p-${i}` })) }).padEnd(1024, ' '))
const headers = { 'content-type': 'application/json', 'content-length': String(body.length) }

const server = createServer((req, res) => {
  if (req.url?.startsWith('/slow') === true) {
    setTimeout(() => { res.writeHead(200, headers); res.end(body) }, 50)
    return
  }
  res.writeHead(200, headers)
  res.end(body)
})
server.keepAliveTimeout = 60_000
server.listen(port, '127.0.0.1', () => {
  const address = server.address()
  console.log(`ready ${typeof address === 'object' && address !== null ? address.port : port}`)
})
process.on('SIGTERM', () => { server.closeAllConnections(); server.close(() => process.exit(0)) })
