// The in-run baseline for the TLS scenarios: Fastify + @fastify/http-proxy
// over TLS, with HTTP/2 and HTTP/1.1 on one port (ALPN), configured as the
// gateway's TLS listener is (server.tls + server.http2). No logging, auth or
// limits: what TLS termination and proxying cost with the plain building blocks.

import Fastify from 'fastify'
import proxy from '@fastify/http-proxy'
import { readFileSync } from 'node:fs'

const [port, upstream, certFile, keyFile] = [Number(process.argv[2]), process.argv[3], process.argv[4], process.argv[5]]
const app = Fastify({
  logger: false,
  http2: true,
  https: { allowHTTP1: true, cert: readFileSync(certFile), key: readFileSync(keyFile), minVersion: 'TLSv1.2' },
})
await app.register(proxy, { upstream, prefix: '/bare', rewritePrefix: '/json' })

await app.listen({ port, host: '127.0.0.1' })
console.log(`ready ${port}`)
process.on('SIGTERM', () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
