// OpenTelemetry: with tracing.otlpUrl set, a server span per request and a
// client span per upstream call reach an OTLP/HTTP collector (a local server
// here), continuing the client's traceparent; the upstream gets the client
// span's traceparent. Without it, the client's traceparent passes unchanged.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { buildFromFiles } from '../helpers/gateway.js'
import { echo, upstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

interface OtlpSpan { traceId: string, spanId: string, parentSpanId?: string, name: string, kind: number }

async function collector (t: { teardown: (fn: () => unknown) => void }): Promise<{ url: string, spans: OtlpSpan[] }> {
  const spans: OtlpSpan[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }> }
      for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans)
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{}')
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans }
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'
const CLIENT_SPAN = '00f067aa0ba902b7'

function config (upstreamUrl: string, tracing: string): string {
  return `${tracing}
services:
  backend: { urls: [${upstreamUrl}], timeout: 2s }
policies:
  public: { auth: none }
routes:
  - { id: items, path: /items, policy: public, proxy: { service: backend } }
  - id: both
    path: /both
    policy: public
    aggregate:
      a: { service: backend, path: /a }
      b: { service: backend, path: /b }
`
}

t.test('spans are exported and the trace continues through the gateway', async t => {
  const otlp = await collector(t)
  const up = await upstream(t, echo)
  const app = await buildFromFiles(t, { 'gateway.yaml': config(up.url, `tracing: { otlpUrl: "${otlp.url}", serviceName: portico-test }`) })
  const res = await app.inject({ url: '/items', headers: { traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-01` } })
  t.equal(res.statusCode, 200)
  const sent = String(up.seen[0].headers.traceparent)
  const [, traceId, parentId] = sent.split('-')
  t.equal(traceId, TRACE_ID, 'the upstream call continues the client\'s trace')
  t.not(parentId, CLIENT_SPAN, 'with the gateway\'s client span as its parent')

  await waitFor(() => otlp.spans.length >= 2, { interval: 50, message: 'the server and client spans are exported' })
  const server = otlp.spans.find(s => s.kind === 2)
  const client = otlp.spans.find(s => s.kind === 3)
  t.ok(server !== undefined && client !== undefined, 'a server and a client span were exported')
  t.equal(server?.traceId, TRACE_ID)
  t.equal(server?.parentSpanId, CLIENT_SPAN, 'the server span is a child of the caller\'s span')
  t.equal(server?.name, 'GET items')
  t.equal(client?.parentSpanId, server?.spanId, 'the upstream call is a child of the request')
  t.equal(client?.spanId, parentId, 'the upstream saw the client span as its parent')
  t.equal(client?.name, 'GET backend')

  otlp.spans.length = 0
  await app.inject({ url: '/both' })
  await waitFor(() => otlp.spans.length >= 3, { interval: 50, message: 'the request and its two part spans are exported' })
  const root = otlp.spans.find(s => s.kind === 2)
  t.equal(otlp.spans.filter(s => s.kind === 3 && s.parentSpanId === root?.spanId).length, 2, 'each aggregate part is its own client span')
})

t.test('without an exporter the client\'s traceparent reaches the upstream unchanged', async t => {
  const up = await upstream(t, echo)
  const app = await buildFromFiles(t, { 'gateway.yaml': config(up.url, '') })
  const tp = `00-${TRACE_ID}-${CLIENT_SPAN}-01`
  await app.inject({ url: '/items', headers: { traceparent: tp } })
  t.equal(up.seen[0].headers.traceparent, tp)
})
