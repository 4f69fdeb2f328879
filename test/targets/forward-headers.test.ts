// The forwarding headers (x-forwarded-for, -proto, -host, x-request-id) a
// service sees, through a real gateway to a real echo upstream: the same for
// a proxy route and for each part of an aggregate route, for every form of
// `server.trustProxy` (off, on, addresses that do or do not include the peer,
// a hop count). The client's own forwarding headers count only when its peer
// is a trusted proxy, as Fastify decides it for request.host and .protocol.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import { buildFromFiles } from '../helpers/gateway.js'
import { echo, upstream } from '../helpers/upstream.js'

type Test = Parameters<Parameters<typeof t.test>[0]>[0]
type TrustProxy = boolean | number | string | string[]

async function gateway (t: Test, trustProxy: TrustProxy | undefined): Promise<FastifyInstance> {
  const up = await upstream(t, echo)
  return await buildFromFiles(t, {
    'gateway.yaml': JSON.stringify({
      ...(trustProxy !== undefined ? { server: { trustProxy } } : {}),
      services: { backend: { urls: [up.url], timeout: '2s' } },
      policies: { public: { auth: 'none' } },
      routes: [
        { id: 'proxied', method: 'GET', path: '/api/proxied', policy: 'public', proxy: { service: 'backend', path: '/echo' } },
        {
          id: 'combined',
          method: 'GET',
          path: '/api/combined',
          policy: 'public',
          aggregate: { one: { service: 'backend', path: '/one' }, two: { service: 'backend', path: '/two' } },
        },
      ],
    }, null, 2),
  })
}

const FORWARDING = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id'] as const
type Forwarding = Partial<Record<typeof FORWARDING[number], string>>

function forwarding (headers: IncomingHttpHeaders): Forwarding {
  const out: Forwarding = {}
  for (const name of FORWARDING) if (headers[name] !== undefined) out[name] = String(headers[name])
  return out
}

/** What the service saw for the same client request, through the proxy route and through each aggregate part. */
async function seenBy (app: FastifyInstance, headers: Record<string, string>): Promise<{ proxied: Forwarding, parts: Forwarding[] }> {
  const proxiedRes = await app.inject({ url: '/api/proxied', headers: { ...headers, 'x-request-id': 'req-proxied' } })
  if (proxiedRes.statusCode !== 200) throw new Error(`proxied: ${proxiedRes.statusCode} ${proxiedRes.body}`)
  const combinedRes = await app.inject({ url: '/api/combined', headers: { ...headers, 'x-request-id': 'req-combined' } })
  if (combinedRes.statusCode !== 200) throw new Error(`combined: ${combinedRes.statusCode} ${combinedRes.body}`)
  const combined = combinedRes.json<Record<'one' | 'two', { headers: IncomingHttpHeaders }>>()
  const proxied = forwarding(proxiedRes.json<{ headers: IncomingHttpHeaders }>().headers)
  return { proxied, parts: [forwarding(combined.one.headers), forwarding(combined.two.headers)] }
}

/** A client behind a proxy, as that proxy would describe it. */
const BEHIND_PROXY = {
  host: 'gateway.internal:8080',
  'x-forwarded-for': '203.0.113.7',
  'x-forwarded-proto': 'https',
  'x-forwarded-host': 'api.example.com',
}

const BELIEVED = { 'x-forwarded-for': '203.0.113.7, 127.0.0.1', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'api.example.com' }
const NOT_BELIEVED = { 'x-forwarded-for': '127.0.0.1', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'gateway.internal:8080' }

const CASES: Array<[string, TrustProxy | undefined, Forwarding]> = [
  ['trustProxy unset (off)', undefined, NOT_BELIEVED],
  ['trustProxy: false', false, NOT_BELIEVED],
  ['trustProxy: true', true, BELIEVED],
  ['trustProxy: the peer\'s address', ['127.0.0.1'], BELIEVED],
  ['trustProxy: a CIDR string holding the peer', '127.0.0.0/8', BELIEVED],
  // A hop count cannot tell whether the peer itself is a proxy: Fastify believes none of its headers, nor does the chain.
  ['trustProxy: 1 hop', 1, NOT_BELIEVED],
  ['trustProxy: 0 hops', 0, NOT_BELIEVED],
  ['trustProxy: addresses that do not include the peer', ['10.0.0.1'], NOT_BELIEVED],
]

for (const [label, trustProxy, expected] of CASES) {
  t.test(`${label}: proxy routes and aggregate parts forward the same x-forwarded-*`, async t => {
    const app = await gateway(t, trustProxy)
    const { proxied, parts } = await seenBy(app, BEHIND_PROXY)
    t.same(proxied, { ...expected, 'x-request-id': 'req-proxied' }, 'the proxy route')
    for (const [i, part] of parts.entries()) t.same(part, { ...expected, 'x-request-id': 'req-combined' }, `aggregate part ${i + 1}`)
  })
}

t.test('a client that sends no forwarding headers: the chain starts at the peer and the host is its Host', async t => {
  for (const trustProxy of [false, true]) {
    const app = await gateway(t, trustProxy)
    const { proxied, parts } = await seenBy(app, { host: 'gateway.internal:8080' })
    const expected = { 'x-forwarded-for': '127.0.0.1', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'gateway.internal:8080' }
    t.same(proxied, { ...expected, 'x-request-id': 'req-proxied' }, `trustProxy ${String(trustProxy)}: proxy route`)
    for (const part of parts) t.same(part, { ...expected, 'x-request-id': 'req-combined' }, `trustProxy ${String(trustProxy)}: aggregate part`)
  }
})

t.test('trusted: a longer chain is extended, an empty one is not, and of several hosts the nearest proxy\'s counts', async t => {
  const app = await gateway(t, true)
  const chain = await seenBy(app, { ...BEHIND_PROXY, 'x-forwarded-for': '198.51.100.1, 203.0.113.7' })
  t.equal(chain.proxied['x-forwarded-for'], '198.51.100.1, 203.0.113.7, 127.0.0.1', 'proxy route: the whole chain, then the peer')
  for (const part of chain.parts) t.equal(part['x-forwarded-for'], '198.51.100.1, 203.0.113.7, 127.0.0.1', 'aggregate part: the same')

  const empty = await seenBy(app, { ...BEHIND_PROXY, 'x-forwarded-for': '' })
  t.equal(empty.proxied['x-forwarded-for'], '127.0.0.1', 'proxy route: an empty chain is no chain')
  for (const part of empty.parts) t.equal(part['x-forwarded-for'], '127.0.0.1', 'aggregate part: the same')

  const hosts = await seenBy(app, { ...BEHIND_PROXY, 'x-forwarded-host': 'evil.example, api.example.com' })
  t.equal(hosts.proxied['x-forwarded-host'], 'api.example.com', 'proxy route: the last x-forwarded-host (the one the trusted proxy added)')
  for (const part of hosts.parts) t.equal(part['x-forwarded-host'], 'api.example.com', 'aggregate part: the same')
})

t.test('other spellings of forwarding and identity never reach a service: Forwarded, x-real-ip, x-forwarded-prefix, names with "_"', async t => {
  const seen: IncomingHttpHeaders[] = []
  const up = await upstream(t, (req, res, body) => { seen.push(req.headers); echo(req, res, body) })
  const app = await buildFromFiles(t, {
    'gateway.yaml': JSON.stringify({
      services: { backend: { urls: [up.url], timeout: '2s' } },
      policies: { public: { auth: 'none' } },
      routes: [{ id: 'proxied', method: 'GET', path: '/api/proxied', policy: 'public', proxy: { service: 'backend', path: '/echo' } }],
    }),
  })
  const planted = {
    forwarded: 'for=10.0.0.1;host=admin.internal;proto=https',
    'x-real-ip': '10.0.0.1',
    'x-forwarded-port': '443',
    'x-forwarded-prefix': '/admin',
    'x-forwarded-server': 'admin.internal',
    'x-original-url': '/admin/users',
    'x-rewrite-url': '/admin/users',
    // CGI-style servers read these as X-Auth-Sub, X-Forwarded-For, X-HTTP-Method-Override.
    x_auth_sub: 'admin',
    x_forwarded_for: '10.0.0.1',
    x_http_method_override: 'DELETE',
    'x-kept': 'yes',
  }
  const res = await app.inject({ url: '/api/proxied', headers: planted })
  t.equal(res.statusCode, 200)
  const got = seen[0] ?? {}
  for (const name of Object.keys(planted)) {
    if (name === 'x-kept') continue
    t.equal(got[name], undefined, `${name} is dropped`)
  }
  t.equal(got['x-kept'], 'yes', 'an ordinary header still passes')
  t.equal(got['x-forwarded-for'], '127.0.0.1', 'the gateway\'s own x-forwarded-for')
})
