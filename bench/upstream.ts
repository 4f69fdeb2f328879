// The benchmark's upstream, in its own process: a fixed 1 KiB JSON answer on
// /json, the same after 50 ms on /slow, and 1 MB of JSON on /big (for
// compress-1mb: records of ids, names, numbers and text, which compress
// about as real API answers do). Prints "ready" when listening.

import { createServer } from 'node:http'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const port = Number(process.argv[2] ?? 0)
// The same 1 KiB body nginx serves when it is the upstream (bench/upstream-body.json).
const body = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'upstream-body.json'))
const headers = { 'content-type': 'application/json', 'content-length': String(body.length) }
const big = bigJson(1024 * 1024)
const bigHeaders = { 'content-type': 'application/json', 'content-length': String(big.length) }

/** Deterministic JSON of `bytes` bytes (padded with spaces to the exact size). */
function bigJson (bytes: number): Buffer {
  const items: string[] = []
  let size = 2
  for (let i = 0; size < bytes - 256; i++) {
    const item = JSON.stringify({ id: i, sku: `SKU-${(i * 7919) % 100000}`, name: `Product ${i}`, price: ((i * 2654435761) % 100000) / 100, stock: (i * 31) % 500, tags: [`tag${i % 17}`, `cat${i % 11}`], description: `Item ${i} of the catalogue, batch ${(i * 40503) % 9973}` })
    items.push(item)
    size += item.length + 1
  }
  const text = `[${items.join(',')}]`
  return Buffer.from(text + ' '.repeat(Math.max(0, bytes - Buffer.byteLength(text))))
}

const server = createServer((req, res) => {
  if (req.url?.startsWith('/slow') === true) {
    setTimeout(() => { res.writeHead(200, headers); res.end(body) }, 50)
    return
  }
  if (req.url?.startsWith('/big') === true) {
    res.writeHead(200, bigHeaders)
    res.end(big)
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
