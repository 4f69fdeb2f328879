// The in-run baselines: plain building blocks with no logging, auth or
// limits, so every round compares Portico with what they do on the same
// machine at the same moment.
//   /bare     Fastify + @fastify/http-proxy (the baseline every ratio is to)
//   /naive-3  a plain Fastify route making three parallel undici Pool calls
//             and merging their bodies (what an aggregate costs written by hand)
//   /compress @fastify/http-proxy to the 1 MB JSON of the node upstream (argv[4])
//             with @fastify/compress, configured as the gateway's compress-1mb
//             route (gzip, threshold 1 KiB, zlib's default level), in its own
//             scope so /bare carries no compression hook

import Fastify from 'fastify'
import proxy from '@fastify/http-proxy'
import compress from '@fastify/compress'
import { Pool } from 'undici'

const [port, upstream, bigUpstream] = [Number(process.argv[2]), process.argv[3], process.argv[4] ?? process.argv[3]]
const app = Fastify({ logger: false })
await app.register(proxy, { upstream, prefix: '/bare', rewritePrefix: '/json' })
await app.register(async function compressed (scope) {
  await scope.register(compress, { encodings: ['gzip'], threshold: 1024 })
  await scope.register(proxy, { upstream: bigUpstream, prefix: '/compress', rewritePrefix: '/big' })
})

const pool = new Pool(upstream, { connections: 128 })
async function part (): Promise<string> {
  const res = await pool.request({ method: 'GET', path: '/json' })
  return await res.body.text()
}
app.get('/naive-3', async (_request, reply) => {
  const [a, b, c] = await Promise.all([part(), part(), part()])
  return await reply.type('application/json').send(`{"a":${a},"b":${b},"c":${c}}`)
})

await app.listen({ port, host: '127.0.0.1' })
console.log(`ready ${port}`)
process.on('SIGTERM', () => { app.close().then(async () => { await pool.close(); process.exit(0) }, () => process.exit(1)) })
