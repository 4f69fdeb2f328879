// Response compression (server.compression, src/pipeline/compression.ts and
// accept-encoding.ts) through a real gateway to real upstreams: every
// compressed answer is decoded with zlib and compared with the upstream's
// exact bytes. Negotiation per RFC 9110 (q-values, `*`, case, duplicates,
// garbage, huge headers); what is left alone (small, other types, already
// encoded, HEAD/204/304/206, no-transform, problem documents); vary merging;
// streamed answers with backpressure and a client that walks away; cache HITs
// that do no compression work (memory and Redis); the config's errors; the
// real CLI with curl --compressed.
import t from 'tap'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { randomBytes } from 'node:crypto'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { brotliDecompressSync, gunzipSync, gzipSync } from 'node:zlib'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { buildFromFiles, writeConfigFiles } from '../helpers/gateway.js'
import { closedPort, upstream, type Upstream } from '../helpers/upstream.js'
import { listen } from '../helpers/http.js'
import { waitFor } from '../helpers/wait.js'
import { REDIS_URL, uniquePrefix } from '../helpers/redis.js'
import { buildIfStale, startConfiguredCli } from '../helpers/cli.js'
import { loadConfig } from '../../src/config/index.js'
import { ConfigError } from '../../src/config/problems.js'
import { choose, compileNegotiator, parseAcceptEncoding } from '../../src/pipeline/accept-encoding.js'
import type { CompressionEncoding } from '../../src/config/compression.js'

type Test = Parameters<Parameters<typeof t.test>[0]>[0]
const run = promisify(execFile)

// ---- bodies and upstreams ------------------------------------------------------

/** Deterministic JSON of about `bytes` bytes that compresses like real data (not one repeated byte). */
function jsonOf (bytes: number): Buffer {
  const items: string[] = []
  let size = 2
  for (let i = 0; size < bytes; i++) {
    const item = JSON.stringify({ id: i, name: `item-${i}`, price: (i * 7919) % 1000 / 10, tags: [`t${i % 13}`, `c${i % 7}`], note: `note ${(i * 2654435761) % 4294967296}` })
    items.push(item)
    size += item.length + 1
  }
  return Buffer.from(`[${items.join(',')}]`)
}

const BIG = jsonOf(20_000)
const SMALL = Buffer.from('{"ok":true}')

interface Answer { status?: number, headers?: Record<string, string>, body?: Buffer, chunked?: boolean }

/** An upstream answering per path from a table the test fills; chunked answers are written in 4 KiB pieces. */
async function tableUpstream (t: Test, table: Record<string, Answer>): Promise<Upstream> {
  return await upstream(t, (req, res) => {
    const a = table[(req.url ?? '').split('?')[0]] ?? { status: 404, body: Buffer.from('no') }
    const body = a.body ?? Buffer.alloc(0)
    const headers: Record<string, string> = { 'content-type': 'application/json', ...a.headers }
    if (a.chunked === true) {
      res.writeHead(a.status ?? 200, headers)
      for (let i = 0; i < body.length; i += 4096) res.write(body.subarray(i, i + 4096))
      res.end()
      return
    }
    if (a.status !== 204 && a.status !== 304) headers['content-length'] = String(body.length)
    res.writeHead(a.status ?? 200, headers)
    res.end(req.method === 'HEAD' ? undefined : body)
  })
}

const ON = '{ encodings: [br, gzip], threshold: 1kb }'

/** `compression` null: no server.compression block (off). */
function gatewayYaml (serviceUrl: string, compression: string | null, extra = ''): string {
  return `${compression !== null ? `server:\n  compression: ${compression}\n` : ''}services:
  backend: { urls: [${serviceUrl}], timeout: 2s }
policies:
  public: { auth: none }
${extra}
routes:
  - { id: any, method: [GET, POST], path: /api/*, policy: public, proxy: { service: backend, path: "/{params.*}" } }
  - { id: cached, path: /cached/*, policy: public, cache: { ttl: 1m }, proxy: { service: backend, path: "/{params.*}" } }
  - id: agg
    path: /agg
    policy: public
    aggregate:
      a: { service: backend, path: /big }
      b: { service: backend, path: /big }
`
}

async function gateway (t: Test, up: Upstream, compression: string | null = ON, extra = ''): Promise<FastifyInstance> {
  const app = await buildFromFiles(t, { 'gateway.yaml': gatewayYaml(up.url, compression, extra) })
  await app.ready()
  return app
}

async function get (app: FastifyInstance, url: string, acceptEncoding?: string | string[], method: 'GET' | 'HEAD' = 'GET'): Promise<LightMyRequestResponse> {
  return await app.inject({ method, url, headers: acceptEncoding !== undefined ? { 'accept-encoding': acceptEncoding } : {} })
}

function decode (res: { headers: Record<string, unknown>, rawPayload?: Buffer }, raw = res.rawPayload ?? Buffer.alloc(0)): Buffer {
  const enc = res.headers['content-encoding']
  if (enc === 'gzip') return gunzipSync(raw)
  if (enc === 'br') return brotliDecompressSync(raw)
  return raw
}

/** The answer came encoded as `encoding`, decodes to exactly `body`, with a length that fits. */
function expectEncoded (t: Test, res: LightMyRequestResponse, encoding: CompressionEncoding, body: Buffer, label: string): void {
  t.equal(res.statusCode, 200, `${label}: 200`)
  t.equal(res.headers['content-encoding'], encoding, `${label}: content-encoding ${encoding}`)
  t.equal(res.headers.vary, 'accept-encoding', `${label}: vary`)
  t.ok(decode(res).equals(body), `${label}: decodes to the upstream's exact bytes`)
  t.ok(res.rawPayload.length < body.length, `${label}: smaller than the original`)
  if (res.headers['content-length'] !== undefined) t.equal(Number(res.headers['content-length']), res.rawPayload.length, `${label}: content-length is the encoded length`)
}

function expectIdentity (t: Test, res: LightMyRequestResponse, body: Buffer, label: string, vary: string | undefined): void {
  t.equal(res.headers['content-encoding'], undefined, `${label}: no content-encoding`)
  t.ok(res.rawPayload.equals(body), `${label}: the upstream's exact bytes`)
  t.equal(res.headers.vary, vary, `${label}: vary ${vary ?? 'absent'}`)
  if (res.headers['content-length'] !== undefined) t.equal(Number(res.headers['content-length']), body.length, `${label}: content-length unchanged`)
}

// ---- negotiation -----------------------------------------------------------------

t.test('accept-encoding negotiation (RFC 9110 §12.5.3), br preferred over gzip by the server', async t => {
  const offered: CompressionEncoding[] = ['br', 'gzip']
  const cases: Array<[string, CompressionEncoding | undefined]> = [
    ['gzip', 'gzip'],
    ['br', 'br'],
    ['gzip, br', 'br'], // equal q: the server's order
    ['gzip, deflate, br, zstd', 'br'],
    ['br;q=0.5, gzip;q=1', 'gzip'], // the client's q-values come first
    ['br;q=0.5, gzip', 'gzip'],
    ['gzip;q=0', undefined],
    ['gzip;q=0, br;q=0', undefined],
    ['gzip;q=0.001, br;q=0', 'gzip'],
    ['br;q=0.000, gzip;q=0.0', undefined],
    ['*', 'br'],
    ['*;q=0', undefined],
    ['gzip;q=0, *', 'br'], // `*` is every coding not named
    ['br;q=0, *;q=0.1', 'gzip'],
    ['identity', undefined],
    ['identity;q=0', undefined], // nothing acceptable: identity all the same
    ['identity;q=0, *;q=0', undefined],
    ['GZIP', 'gzip'],
    ['Br ; Q=0.9', 'br'],
    ['   gzip   ,   ', 'gzip'],
    ['\tgzip\t;\tq=0.5', 'gzip'],
    ['gzip, gzip;q=0', undefined], // named twice: the lower q stands
    ['gzip;q=0, gzip', undefined],
    ['br;q=0.2, br;q=0.9, gzip;q=0.5', 'gzip'],
    ['x-gzip', 'gzip'],
    ['gzip;q=1.5', undefined], // out of range: the element is ignored
    ['gzip;q=-1', undefined],
    ['gzip;q=abc', undefined],
    ['gzip;q=0.1234', undefined], // more than three decimals
    ['gzip;q=', undefined],
    ['gzip;q', undefined],
    ['gzip;q=1.0, br;q=nope', 'gzip'],
    ['gzip;level=9', 'gzip'], // a parameter that is not q: ignored
    ['gzip;;', 'gzip'],
    [';q=1', undefined],
    [',,,', undefined],
    ['g z i p', undefined],
    ['gzip\u0000', undefined],
    ['"gzip"', undefined],
    ['deflate', undefined],
    ['zstd;q=1, compress', undefined],
    ['', undefined],
  ]
  for (const [header, expected] of cases) t.equal(choose(offered, header), expected, JSON.stringify(header))
  t.equal(choose(['gzip', 'br'], 'gzip, br'), 'gzip', 'the server order decides ties ([gzip, br])')
  t.equal(choose(['gzip'], 'br'), undefined, 'only what the server offers')

  const negotiate = compileNegotiator(offered)
  t.equal(negotiate(undefined), undefined, 'no header: identity')
  t.equal(negotiate(['gzip;q=0', 'br']), 'br', 'repeated headers read as one list')
  t.equal(negotiate('gzip'), 'gzip', 'remembered values answer the same')
  t.equal(negotiate('gzip'), 'gzip')
  const huge = 'x,'.repeat(20_000) + 'gzip'
  const started = process.hrtime.bigint()
  t.equal(negotiate(huge), 'gzip', 'a 40 kB header is read to its end')
  t.ok(Number(process.hrtime.bigint() - started) / 1e6 < 200, 'in linear time')
  t.equal(negotiate(`${'gzip;q=0.5;'.repeat(2000)}`), undefined, 'a pile of parameters: ignored, no crash')
  t.same([...parseAcceptEncoding('GZip;q=0.3, *;q=0.1, br').entries()], [['gzip', 0.3], ['*', 0.1], ['br', 1]], 'the parsed weights')
})

// ---- what is compressed ------------------------------------------------------------

t.test('an allowlisted answer above the threshold: br or gzip as negotiated, identity otherwise, vary always', async t => {
  const up = await tableUpstream(t, { '/big': { body: BIG }, '/text': { body: BIG, headers: { 'content-type': 'text/html; charset=utf-8' } }, '/svg': { body: BIG, headers: { 'content-type': 'IMAGE/SVG+XML' } }, '/ld': { body: BIG, headers: { 'content-type': 'application/ld+json' } } })
  const app = await gateway(t, up)
  expectEncoded(t, await get(app, '/api/big', 'gzip'), 'gzip', BIG, 'gzip')
  expectEncoded(t, await get(app, '/api/big', 'gzip, deflate, br'), 'br', BIG, 'br')
  expectEncoded(t, await get(app, '/api/big', 'br;q=0.5, gzip;q=1'), 'gzip', BIG, 'q-values')
  expectIdentity(t, await get(app, '/api/big'), BIG, 'no accept-encoding', 'accept-encoding')
  expectIdentity(t, await get(app, '/api/big', 'gzip;q=0, br;q=0'), BIG, 'refuses both', 'accept-encoding')
  expectIdentity(t, await get(app, '/api/big', 'deflate'), BIG, 'only deflate', 'accept-encoding')
  expectIdentity(t, await get(app, '/api/big', 'identity;q=0'), BIG, 'identity;q=0 and nothing else: identity', 'accept-encoding')
  expectEncoded(t, await get(app, '/api/text', 'gzip'), 'gzip', BIG, 'text/html with a charset')
  expectEncoded(t, await get(app, '/api/svg', 'gzip'), 'gzip', BIG, 'image/svg+xml in capitals')
  expectEncoded(t, await get(app, '/api/ld', 'br'), 'br', BIG, 'application/*+json')
  const hostile = ['', ',', 'gzip;q=2', 'br;q=1;q=0', '*;q=0.5, gzip;q=0.6', 'GZIP ; Q = 1', 'a'.repeat(8000), `${'gzip;q=0,'.repeat(500)}br`, '\u00ffgzip']
  for (const h of hostile) {
    const res = await get(app, '/api/big', h)
    t.equal(res.statusCode, 200, `${JSON.stringify(h.slice(0, 40))}: 200`)
    t.ok(decode(res).equals(BIG), `${JSON.stringify(h.slice(0, 40))}: decodes to the upstream's bytes (${String(res.headers['content-encoding'] ?? 'identity')})`)
  }
})

t.test('left unchanged: below the threshold, types outside the allowlist, no content type, problem documents, event streams', async t => {
  const png = Buffer.alloc(20_000, 7)
  const up = await tableUpstream(t, {
    '/small': { body: SMALL },
    '/edge': { body: jsonOf(1024).subarray(0, 1023) },
    '/exact': { body: Buffer.concat([Buffer.from('"'), Buffer.alloc(1022, 97), Buffer.from('"')]) },
    '/png': { body: png, headers: { 'content-type': 'image/png' } },
    '/octets': { body: png, headers: { 'content-type': 'application/octet-stream' } },
    '/none': { body: BIG, headers: { 'content-type': '' } },
    '/problem': { status: 422, body: BIG, headers: { 'content-type': 'application/problem+json' } },
    '/events': { body: BIG, headers: { 'content-type': 'text/event-stream' } },
    '/garbage-type': { body: BIG, headers: { 'content-type': ';;/;' } },
  })
  const app = await gateway(t, up)
  expectIdentity(t, await get(app, '/api/small', 'gzip'), SMALL, 'below the threshold', undefined)
  expectIdentity(t, await get(app, '/api/edge', 'gzip'), jsonOf(1024).subarray(0, 1023), 'threshold - 1 byte', undefined)
  expectEncoded(t, await get(app, '/api/exact', 'gzip'), 'gzip', Buffer.concat([Buffer.from('"'), Buffer.alloc(1022, 97), Buffer.from('"')]), 'exactly the threshold')
  expectIdentity(t, await get(app, '/api/png', 'gzip, br'), png, 'image/png', undefined)
  expectIdentity(t, await get(app, '/api/octets', 'gzip, br'), png, 'application/octet-stream', undefined)
  expectIdentity(t, await get(app, '/api/none', 'gzip'), BIG, 'no content type', undefined)
  const problem = await get(app, '/api/problem', 'gzip')
  t.equal(problem.statusCode, 422)
  expectIdentity(t, problem, BIG, 'an upstream problem document', undefined)
  expectIdentity(t, await get(app, '/api/events', 'gzip'), BIG, 'text/event-stream', undefined)
  expectIdentity(t, await get(app, '/api/garbage-type', 'gzip'), BIG, 'a content type that is no media type', undefined)
})

t.test('gateway-made errors are never compressed, whatever their size', async t => {
  const up = await tableUpstream(t, {})
  const dead = await closedPort()
  const app = await gateway(t, up)
  const longPath = '/nowhere/' + 'x'.repeat(3000)
  const notFound = await get(app, longPath, 'gzip, br')
  t.equal(notFound.statusCode, 404)
  t.ok(notFound.rawPayload.length > 1024, 'a problem document above the threshold')
  t.equal(notFound.headers['content-encoding'], undefined, '404 ROUTE_NOT_FOUND: identity')
  t.equal(notFound.json<{ code: string }>().code, 'ROUTE_NOT_FOUND')
  const deadApp = await buildFromFiles(t, { 'gateway.yaml': gatewayYaml(`http://127.0.0.1:${dead}`, '{ threshold: 10 }') })
  const failed = await get(deadApp, '/api/x' + 'y'.repeat(2000), 'gzip')
  t.equal(failed.statusCode, 502)
  t.equal(failed.headers['content-encoding'], undefined, '502 UPSTREAM_ERROR on a route: identity')
  t.equal(failed.headers.vary, undefined, 'and no vary')
  t.equal(failed.json<{ code: string }>().code, 'UPSTREAM_ERROR')
})

t.test('vary is merged with the upstream\'s, never duplicated', async t => {
  const up = await tableUpstream(t, {
    '/origin': { body: BIG, headers: { vary: 'Origin' } },
    '/already': { body: BIG, headers: { vary: 'Origin, Accept-Encoding' } },
    '/star': { body: BIG, headers: { vary: '*' } },
  })
  const app = await gateway(t, up)
  for (const ae of ['gzip', undefined]) {
    const label = ae ?? 'identity'
    t.equal((await get(app, '/api/origin', ae)).headers.vary, 'Origin, accept-encoding', `${label}: appended`)
    t.equal((await get(app, '/api/already', ae)).headers.vary, 'Origin, Accept-Encoding', `${label}: already there`)
    t.equal((await get(app, '/api/star', ae)).headers.vary, '*', `${label}: vary * covers it`)
  }
  t.ok(decode(await get(app, '/api/already', 'gzip')).equals(BIG))
})

t.test('an answer the upstream encoded itself passes byte for byte', async t => {
  const zipped = gzipSync(BIG)
  const odd = Buffer.from('not really compressed, but labelled so '.repeat(100))
  const up = await tableUpstream(t, {
    '/gz': { body: zipped, headers: { 'content-encoding': 'gzip', vary: 'accept-encoding' } },
    '/gz-chunked': { body: zipped, headers: { 'content-encoding': 'GZIP' }, chunked: true },
    '/odd': { body: odd, headers: { 'content-encoding': 'x-custom' } },
    '/identity': { body: BIG, headers: { 'content-encoding': 'identity' } },
  })
  const app = await gateway(t, up)
  for (const ae of ['br', 'gzip', undefined]) {
    const gz = await get(app, '/api/gz', ae)
    t.equal(gz.headers['content-encoding'], 'gzip', `${ae ?? 'identity'}: the upstream's gzip`)
    t.ok(gz.rawPayload.equals(zipped), `${ae ?? 'identity'}: byte-identical`)
    t.equal(gz.headers.vary, 'accept-encoding', 'the upstream\'s vary, as it was')
    t.equal(Number(gz.headers['content-length']), zipped.length)
  }
  const streamed = await get(app, '/api/gz-chunked', 'br')
  t.equal(streamed.headers['content-encoding'], 'GZIP')
  t.ok(streamed.rawPayload.equals(zipped), 'a streamed encoded answer: byte-identical')
  const o = await get(app, '/api/odd', 'gzip')
  t.equal(o.headers['content-encoding'], 'x-custom')
  t.ok(o.rawPayload.equals(odd), 'an unknown coding: byte-identical')
  t.equal(o.headers.vary, undefined, 'no vary of the gateway\'s')
  expectEncoded(t, await get(app, '/api/identity', 'gzip'), 'gzip', BIG, 'content-encoding: identity is no encoding')
})

t.test('HEAD, 204, 304, no-transform and ranges are not compressed', async t => {
  const up = await tableUpstream(t, {
    '/big': { body: BIG, headers: { etag: '"v1"', 'accept-ranges': 'bytes' } },
    '/empty': { status: 204 },
    '/unchanged': { status: 304, headers: { etag: '"v1"' } },
    '/nt': { body: BIG, headers: { 'cache-control': 'public, No-Transform' } },
    '/nt-streamed': { body: BIG, headers: { 'cache-control': 'no-transform' }, chunked: true },
    '/range': { status: 206, body: BIG.subarray(0, 5000), headers: { 'content-range': `bytes 0-4999/${BIG.length}` } },
  })
  const app = await gateway(t, up)
  const head = await get(app, '/api/big', 'gzip', 'HEAD')
  t.equal(head.statusCode, 200)
  t.equal(head.headers['content-encoding'], undefined, 'HEAD: not encoded')
  t.equal(head.rawPayload.length, 0, 'HEAD: no body')
  t.equal(head.headers.vary, 'accept-encoding', 'HEAD: vary, as the GET would have')
  const empty = await get(app, '/api/empty', 'gzip')
  t.equal(empty.statusCode, 204)
  t.equal(empty.headers['content-encoding'], undefined, '204: not encoded')
  const unchanged = await get(app, '/api/unchanged', 'gzip')
  t.equal(unchanged.statusCode, 304)
  t.equal(unchanged.headers['content-encoding'], undefined, '304: not encoded')
  t.equal(unchanged.rawPayload.length, 0)
  expectIdentity(t, await get(app, '/api/nt', 'gzip'), BIG, 'no-transform', undefined)
  expectIdentity(t, await get(app, '/api/nt-streamed', 'gzip'), BIG, 'no-transform, streamed', undefined)
  const range = await get(app, '/api/range', 'gzip')
  t.equal(range.statusCode, 206)
  expectIdentity(t, range, BIG.subarray(0, 5000), '206', undefined)
  t.equal(range.headers['content-range'], `bytes 0-4999/${BIG.length}`)

  const full = await get(app, '/api/big', 'gzip')
  t.equal(full.headers.etag, 'W/"v1"', 'encoded: the strong ETag is weakened (the bytes differ from the ones it names)')
  t.equal(full.headers['accept-ranges'], undefined, 'encoded: no accept-ranges (ranges are of the identity bytes)')
  const plain = await get(app, '/api/big')
  t.equal(plain.headers.etag, '"v1"', 'identity: the ETag as it was')
  t.equal(plain.headers['accept-ranges'], 'bytes')
})

t.test('types: a custom allowlist replaces the default; level and encodings are honoured', async t => {
  const octets = Buffer.from('0123456789abcdef'.repeat(2000))
  const up = await tableUpstream(t, { '/octets': { body: octets, headers: { 'content-type': 'application/octet-stream' } }, '/big': { body: BIG }, '/vnd': { body: BIG, headers: { 'content-type': 'application/vnd.acme+xml' } } })
  const app = await gateway(t, up, '{ encodings: [gzip], threshold: 64kb, types: [application/octet-stream, "application/*+xml"], level: { gzip: 1 } }')
  const o = await get(app, '/api/octets', 'br, gzip')
  t.equal(o.headers['content-encoding'], undefined, '32 kB < 64kb threshold')
  const app2 = await gateway(t, up, '{ encodings: [gzip], threshold: 100, types: [application/octet-stream, "application/*+xml"], level: { gzip: 1 } }')
  const o2 = await get(app2, '/api/octets', 'br, gzip')
  t.equal(o2.headers['content-encoding'], 'gzip', 'only gzip is offered')
  t.ok(gunzipSync(o2.rawPayload).equals(octets))
  t.ok(o2.rawPayload.equals(gzipSync(octets, { level: 1 })), 'at level 1, byte for byte what zlib makes at level 1')
  expectIdentity(t, await get(app2, '/api/big', 'gzip'), BIG, 'application/json is not in this list', undefined)
  t.equal((await get(app2, '/api/vnd', 'gzip')).headers['content-encoding'], 'gzip', 'application/*+xml')
})

t.test('compression absent: off, nothing added', async t => {
  const up = await tableUpstream(t, { '/big': { body: BIG } })
  const app = await gateway(t, up, null)
  t.equal(app.compression, undefined)
  expectIdentity(t, await get(app, '/api/big', 'gzip, br'), BIG, 'off', undefined)
})

t.test('config errors name FILE:LINE: field', async t => {
  const cases: Array<[string, RegExp]> = [
    ['{ encodings: [deflate] }', /gateway\.yaml:2: server\.compression\.encodings\[0\]: must be br or gzip/],
    ['{ encodings: [] }', /server\.compression\.encodings: must NOT have fewer than 1 items/],
    ['{ encodings: [gzip, gzip] }', /server\.compression\.encodings: must NOT have duplicate items/],
    ['{ threshold: lots }', /server\.compression\.threshold: must be a size such as 64kb/],
    ['{ types: [json] }', /server\.compression\.types\[0\]: must be a media type such as application\/json/],
    ['{ level: { gzip: 12 } }', /server\.compression\.level\.gzip: must be <= 9/],
    ['{ level: { br: -1 } }', /server\.compression\.level\.br: must be >= 0/],
    ['{ gzip: true }', /server\.compression\.gzip: unknown key/],
  ]
  for (const [block, re] of cases) {
    const dir = writeConfigFiles({ 'gateway.yaml': gatewayYaml('http://127.0.0.1:1', block) })
    let message = ''
    try { loadConfig(join(dir, 'gateway.yaml')) } catch (err) { if (err instanceof ConfigError) message = err.message }
    t.match(message, re, block)
  }
  const dir = writeConfigFiles({ 'gateway.yaml': gatewayYaml('http://127.0.0.1:1', '{}') })
  const c = loadConfig(join(dir, 'gateway.yaml')).config.server.compression
  t.same(c?.encodings, ['br', 'gzip'], 'defaults: br then gzip')
  t.equal(c?.threshold, 1024, 'threshold 1kb')
  t.same(c?.level, { gzip: 6, br: 4 })
  t.ok(c?.types.includes('application/json') === true && c.types.includes('text/*'))
})

// ---- streamed answers --------------------------------------------------------------

t.test('streamed answers (chunked, or sized over 64 KiB) are compressed as streams', async t => {
  const large = jsonOf(300_000)
  const up = await tableUpstream(t, { '/chunked': { body: BIG, chunked: true }, '/large': { body: large }, '/small-chunked': { body: SMALL, chunked: true } })
  const app = await gateway(t, up)
  for (const enc of ['gzip', 'br'] as const) {
    const chunked = await get(app, '/api/chunked', enc)
    t.equal(chunked.headers['content-encoding'], enc, `chunked, ${enc}`)
    t.equal(chunked.headers['content-length'], undefined, 'no content-length: the encoded length is not known up front')
    t.ok(decode(chunked).equals(BIG), `chunked, ${enc}: exact bytes`)
    const sized = await get(app, '/api/large', enc)
    t.equal(sized.headers['content-encoding'], enc, `300 kB with content-length, ${enc}`)
    t.equal(sized.headers['content-length'], undefined, 'the upstream\'s content-length is removed')
    t.equal(sized.headers.vary, 'accept-encoding')
    t.ok(decode(sized).equals(large), `300 kB, ${enc}: exact bytes`)
  }
  expectIdentity(t, await get(app, '/api/large'), large, '300 kB, identity', 'accept-encoding')
  t.equal(Number((await get(app, '/api/large')).headers['content-length']), large.length, 'identity keeps the upstream\'s content-length')
  // An unsized stream cannot be measured before it is sent: it is compressed whatever its size.
  const tiny = await get(app, '/api/small-chunked', 'gzip')
  t.ok(decode(tiny).equals(SMALL), 'a small chunked answer: exact bytes either way')
  t.ok(app.compression !== undefined && app.compression.stats.streams >= 4, 'these went through zlib streams')
})

t.test('a client that stops reading holds the upstream back; one that leaves frees it', async t => {
  // An endless, slowly compressible text answer: each write waits for drain, as a well-behaved upstream does.
  let sent = 0
  let waitingSince = 0
  let closed = false
  // Base64 of random bytes: text that gzip shrinks by a quarter only, so what sits in buffers is not hidden by the ratio.
  const chunk = Buffer.from(randomBytes(48 * 1024).toString('base64'))
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.on('close', () => { closed = true })
    const pump = (): void => {
      while (!closed) {
        sent += chunk.length
        if (!res.write(chunk)) { waitingSince = Date.now(); res.once('drain', () => { waitingSince = 0; pump() }); return }
      }
    }
    pump()
  })
  const app = await gateway(t, up)
  const port = await listen(app)
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/api/endless', headers: { 'accept-encoding': 'gzip' }, agent: false }, resolve)
    req.on('error', reject)
    req.end()
  })
  t.equal(res.headers['content-encoding'], 'gzip')
  res.pause() // the client reads nothing more
  await waitFor(() => waitingSince !== 0 && Date.now() - waitingSince > 1000, { timeout: 20_000, message: 'the upstream blocked on a full pipe for a second' })
  t.ok(sent < 64 * 1024 * 1024, `the gateway took only ${(sent / 1024 / 1024).toFixed(1)} MB while the client read nothing (bounded buffering)`)
  res.destroy()
  await waitFor(() => closed, { timeout: 10_000, message: 'the upstream response to be closed once the client left' })
  t.pass('the client\'s leaving closed the upstream call')
})

// ---- cache HITs -------------------------------------------------------------------

for (const store of ['memory', 'redis'] as const) {
  t.test(`cache HITs (${store}) do no compression work: one zlib run per encoding per entry`, async t => {
    const up = await tableUpstream(t, { '/big': { body: BIG } })
    const extra = store === 'redis' ? `redis: { url: "${REDIS_URL}", keyPrefix: "${uniquePrefix(t, 'compress')}" }\ncache: { timeout: 2s }` : ''
    const app = await gateway(t, up, undefined, extra)
    const stats = app.compression?.stats
    if (stats === undefined) throw new Error('compression is on')
    const miss = await get(app, '/cached/big', 'gzip')
    t.equal(miss.headers['x-cache'], 'MISS')
    expectEncoded(t, miss, 'gzip', BIG, 'MISS')
    t.equal(up.seen[0].headers['accept-encoding'], 'identity', 'a cached route asks its upstream for identity (one stored copy for every client)')
    t.equal(stats.buffers, 1, 'the MISS compressed once')
    if (store === 'redis') {
      // The near cache keeps the entry read from Redis in this process (once Redis tracking is live);
      // its first read is the one copy later HITs share, and compresses once.
      await waitFor(async () => {
        const before = stats.buffers
        return (await get(app, '/cached/big', 'gzip')).headers['x-cache'] === 'HIT' && stats.buffers === before
      }, { message: 'a HIT served from the near copy without compressing' })
    }
    const before = stats.buffers
    for (let i = 0; i < 10; i++) {
      const hit = await get(app, '/cached/big', 'gzip')
      t.equal(hit.headers['x-cache'], 'HIT')
      if (i === 0) expectEncoded(t, hit, 'gzip', BIG, 'HIT')
    }
    t.equal(stats.buffers - before, 0, '10 gzip HITs: no compression')
    const afterGzip = stats.buffers
    const brHits = await Promise.all(Array.from({ length: 20 }, async () => await get(app, '/cached/big', 'br')))
    for (const hit of brHits) t.ok(decode(hit).equals(BIG) && hit.headers['content-encoding'] === 'br')
    t.equal(stats.buffers - afterGzip, 1, '20 concurrent br HITs: one compression, shared')
    expectIdentity(t, await get(app, '/cached/big'), BIG, 'identity HIT', 'accept-encoding')
    t.equal(stats.buffers - afterGzip, 1, 'identity costs nothing')
    t.ok(stats.reused >= 29, `the kept variants served the rest (${stats.reused})`)
    t.equal(up.hits(), 1, 'one upstream call in all')
  })
}

t.test('cache HITs from Redis without the near cache: each HIT is a fresh copy, compressed again, still exact', async t => {
  const up = await tableUpstream(t, { '/big': { body: BIG } })
  const app = await gateway(t, up, ON, `redis: { url: "${REDIS_URL}", keyPrefix: "${uniquePrefix(t, 'compress-far')}" }\ncache: { timeout: 2s, near: false }`)
  const stats = app.compression?.stats
  if (stats === undefined) throw new Error('compression is on')
  t.equal((await get(app, '/cached/big', 'gzip')).headers['x-cache'], 'MISS')
  const before = stats.buffers
  for (let i = 0; i < 3; i++) {
    const hit = await get(app, '/cached/big', 'gzip')
    t.equal(hit.headers['x-cache'], 'HIT')
    expectEncoded(t, hit, 'gzip', BIG, `HIT ${i + 1}`)
  }
  t.equal(stats.buffers - before, 3, 'one compression per HIT (the documented cost of cache.near: false)')
  t.equal(up.hits(), 1)
})

t.test('aggregates are compressed like any answer', async t => {
  const up = await tableUpstream(t, { '/big': { body: BIG } })
  const app = await gateway(t, up)
  const res = await get(app, '/agg', 'gzip')
  t.equal(res.headers['content-encoding'], 'gzip')
  t.same(JSON.parse(decode(res).toString()), { a: JSON.parse(BIG.toString()), b: JSON.parse(BIG.toString()) })
})

// ---- the real CLI and curl ------------------------------------------------------

t.test('HTTP/1.1 through the real CLI: curl --compressed', async t => {
  buildIfStale()
  const large = jsonOf(200_000)
  const up = await tableUpstream(t, { '/big': { body: BIG }, '/large': { body: large } })
  const { port } = await startConfiguredCli(t, p => `server: { host: 127.0.0.1, port: ${p}, compression: ${ON} }\n` + gatewayYaml(up.url, null))
  for (const [path, body] of [['/api/big', BIG], ['/api/large', large]] as const) {
    for (const [flag, enc] of [['br', 'br'], ['gzip', 'gzip']] as const) {
      const { stdout: headers } = await run('curl', ['-sS', '--compressed', '-H', `accept-encoding: ${flag}`, '-D', '-', '-o', '/dev/null', `http://127.0.0.1:${port}${path}`], { encoding: 'utf8' })
      t.match(headers, new RegExp(`^content-encoding: ${enc}\\r$`, 'mi'), `${path}: curl got ${enc}`)
      t.match(headers, /^vary: accept-encoding\r$/mi)
      const { stdout } = await run('curl', ['-sS', '--compressed', '-H', `accept-encoding: ${flag}`, `http://127.0.0.1:${port}${path}`], { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 })
      t.ok(stdout.equals(body), `${path} via curl --compressed (${enc}): the upstream's exact bytes`)
    }
    const { stdout: plain } = await run('curl', ['-sS', `http://127.0.0.1:${port}${path}`], { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 })
    t.ok(plain.equals(body), `${path} via plain curl: identity, exact bytes`)
  }
  const { stdout: both } = await run('curl', ['-sS', '--compressed', '-D', '-', '-o', '/dev/null', `http://127.0.0.1:${port}/api/big`], { encoding: 'utf8' })
  t.match(both, /^content-encoding: (br|gzip)\r$/mi, 'curl --compressed with its own accept-encoding')
})
