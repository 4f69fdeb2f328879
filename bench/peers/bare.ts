// The in-run baseline: a bare Fastify app with @fastify/http-proxy and no
// logging, auth or limits, so every round compares Portico with what the
// plain building blocks do on the same machine at the same moment.

import Fastify from 'fastify'
import proxy from '@fastify/http-proxy'

const [port, upstream] = [Number(process.argv[2]), process.argv[3]]
const app = Fastify({ logger: false })
await app.register(proxy, { upstream, prefix: '/bare', rewritePrefix: '/json' })
await app.listen({ port, host: '127.0.0.1' })
console.log(`ready ${port}`)
process.on('SIGTERM', () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
