// The benchmark's upstream, in its own process: a fixed 1 KiB JSON answer on
// /json, the same after 50 ms on /slow. Prints "ready" when listening.

import { createServer } from 'node:http'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const port = Number(process.argv[2] ?? 0)
// The same 1 KiB body nginx serves when it is the upstream (bench/upstream-body.json).
const body = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'upstream-body.json'))
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
