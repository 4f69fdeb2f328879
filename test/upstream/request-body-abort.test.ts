// A streamed request body that ends badly (the client goes away mid-chunk,
// sends a malformed chunk, or stalls past the service timeout) must abort
// the upstream request and give its pooled connection back. Real CLI, raw
// sockets, and an upstream that reports which requests it saw aborted.
import t from 'tap'
import { connect } from 'node:net'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { request } from 'undici'
import { buildIfStale, childEnv, startCli, type Test, startConfiguredCli } from '../helpers/cli.js'
import { waitFor } from '../helpers/wait.js'

t.before(buildIfStale)

interface CountingUpstream {
  url: string
  /** Requests received whose body is still open. */
  open: () => number
  /** Requests whose connection closed before their body ended. */
  aborted: () => number
  /** Resolves once `n` requests were aborted. */
  waitAborted: (n: number) => Promise<void>
  close: () => Promise<void>
}

/** Answers 200 once a request's body ended; counts bodies left unfinished. */
async function countingUpstream (): Promise<CountingUpstream> {
  let open = 0
  let aborted = 0
  const waiters: Array<{ n: number, resolve: () => void }> = []
  const server = createServer((req: IncomingMessage, res) => {
    open++
    let ended = false
    req.resume()
    req.on('end', () => {
      ended = true
      open--
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ path: req.url }))
    })
    req.on('close', () => {
      if (ended) return
      open--
      aborted++
      for (const w of [...waiters]) if (aborted >= w.n) { waiters.splice(waiters.indexOf(w), 1); w.resolve() }
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    open: () => open,
    aborted: () => aborted,
    waitAborted: async n => { if (aborted < n) await new Promise<void>(resolve => waiters.push({ n, resolve })) },
    close: async () => { server.closeAllConnections(); await new Promise(resolve => server.close(resolve)) },
  }
}

async function startGateway (t: Test, upstream: string, timeout = '5s', requestTimeout = '30s'): Promise<{ port: number, gw: ReturnType<typeof startCli> }> {
  const { port, gw } = await startConfiguredCli(t, port => `server:
  host: 127.0.0.1
  port: ${port}
  shutdownTimeout: 5s
  headersTimeout: 1s
  requestTimeout: ${requestTimeout}
services:
  core:
    urls: [${upstream}]
    timeout: ${timeout}
    connections: 2
    retries: 0
policies:
  public: { auth: none }
routes:
  - id: pub
    path: /pub/*
    method: [GET, POST]
    policy: public
    proxy: { service: core }
`, childEnv({ LOG_LEVEL: 'error' }))
  return { port, gw }
}

/** Sends raw bytes; returns what came back once the socket closed (the client closes it after `closeAfterMs`). */
async function sendRaw (port: number, chunks: string[], opts: { closeAfterMs?: number } = {}): Promise<{ out: string, firstByteAt: number }> {
  return await new Promise(resolve => {
    const socket = connect(port, '127.0.0.1')
    let out = ''
    let firstByteAt = 0
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => { if (out === '') firstByteAt = Date.now(); out += d })
    socket.on('error', () => {})
    socket.on('close', () => { resolve({ out, firstByteAt }) })
    for (const c of chunks) socket.write(c)
    if (opts.closeAfterMs !== undefined) setTimeout(() => { socket.destroy() }, opts.closeAfterMs)
  })
}

/** Connects, sends, waits until the upstream has the request open, then closes the socket. */
async function sendAndDrop (port: number, up: CountingUpstream, raw: string, openBefore: number): Promise<void> {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.write(raw)
  await waitFor(() => up.open() + up.aborted() > openBefore, { timeout: 3000, interval: 5, message: 'the upstream has the request open' })
  socket.destroy()
}

const HEAD = 'POST /pub/x HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n'

t.test('a chunked upload the client drops mid-way aborts the upstream request and frees the pool', async t => {
  const up = await countingUpstream()
  t.teardown(up.close)
  const { port, gw } = await startGateway(t, up.url)

  // Twice: with connections: 2, both pooled connections were held before the fix.
  await sendAndDrop(port, up, HEAD + '5\r\nhello\r\n', 0)
  await sendAndDrop(port, up, HEAD + '5\r\nhello\r\n', 1)
  await up.waitAborted(2)
  t.equal(up.aborted(), 2, 'the upstream saw both requests aborted')
  t.equal(up.open(), 0, 'no upstream request left open')

  const res = await request(`http://127.0.0.1:${port}/pub/y`, { headersTimeout: 3000 })
  t.equal(res.statusCode, 200, 'a following GET gets a pooled connection')
  t.same(await res.body.json(), { path: '/pub/y' })

  gw.child.kill('SIGTERM')
  t.same(await gw.exited, { code: 0, signal: null }, 'SIGTERM drains and exits 0')
})

t.test('a malformed chunk aborts the upstream request and frees the pool', async t => {
  const up = await countingUpstream()
  t.teardown(up.close)
  const { port, gw } = await startGateway(t, up.url)

  const answers = await Promise.all([0, 1].map(async () => {
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => {})
    let out = ''
    socket.setEncoding('utf8').on('data', (d: string) => { out += d })
    socket.write(HEAD + '5\r\nhello\r\n')
    const closed = new Promise<void>(resolve => socket.on('close', () => { resolve() }))
    // The request is open at the upstream before the bad chunk arrives.
    await waitFor(() => up.open() + up.aborted() >= 2, { timeout: 3000, interval: 5, message: 'both requests are open at the upstream' })
    socket.write('zz\r\nnot hex\r\n')
    await closed
    return out
  }))
  for (const out of answers) {
    t.match(out, /^HTTP\/1\.1 400 /, 'the bad chunk is answered 400')
    t.match(out, /content-type: application\/problem\+json/i)
  }
  await up.waitAborted(2)
  t.equal(up.open(), 0, 'no upstream request left open')

  const res = await request(`http://127.0.0.1:${port}/pub/y`, { headersTimeout: 3000 })
  t.equal(res.statusCode, 200, 'a following GET gets a pooled connection')
  await res.body.dump()

  gw.child.kill('SIGTERM')
  t.same(await gw.exited, { code: 0, signal: null })
})

t.test('a chunked upload that stalls is cut at the service timeout: 504, upstream aborted', async t => {
  const up = await countingUpstream()
  t.teardown(up.close)
  const { port, gw } = await startGateway(t, up.url, '300ms')

  const started = Date.now()
  // The client sends one chunk and then nothing, keeping its socket open.
  const { out, firstByteAt } = await sendRaw(port, [HEAD + '5\r\nhello\r\n'], { closeAfterMs: 3000 })
  const elapsed = firstByteAt - started
  t.match(out, /^HTTP\/1\.1 504 /, 'the stalled upload gets 504')
  t.match(out, /"code":"UPSTREAM_TIMEOUT"/)
  t.ok(elapsed >= 300 && elapsed < 700, `answered at the timeout, not a coarse tick later (${elapsed} ms)`)
  await up.waitAborted(1)
  t.equal(up.open(), 0, 'the upstream request was aborted')

  const res = await request(`http://127.0.0.1:${port}/pub/y`, { headersTimeout: 3000 })
  t.equal(res.statusCode, 200)
  await res.body.dump()
  gw.child.kill('SIGTERM')
  t.same(await gw.exited, { code: 0, signal: null })
})

t.test('a chunked body over the limit is 413 and the upstream request is aborted', async t => {
  const up = await countingUpstream()
  t.teardown(up.close)
  const { port, gw } = await startGateway(t, up.url)
  const big = 'a'.repeat(64 * 1024)
  const chunk = `${(big.length).toString(16)}\r\n${big}\r\n`
  // The default bodyLimit is 1 MiB: 20 chunks of 64 KiB go over it.
  const { out } = await sendRaw(port, [HEAD, ...Array.from({ length: 20 }, () => chunk)], { closeAfterMs: 1000 })
  t.match(out, /^HTTP\/1\.1 413 /)
  t.match(out, /"code":"PAYLOAD_TOO_LARGE"/)
  await up.waitAborted(1)
  t.equal(up.open(), 0)
  gw.child.kill('SIGTERM')
  t.same(await gw.exited, { code: 0, signal: null })
})

t.test('a content-length upload the client drops mid-way aborts the upstream request too', async t => {
  const up = await countingUpstream()
  t.teardown(up.close)
  const { port, gw } = await startGateway(t, up.url)
  const head = 'POST /pub/x HTTP/1.1\r\nHost: g\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\nhello'
  await sendAndDrop(port, up, head, 0)
  await sendAndDrop(port, up, head, 1)
  await up.waitAborted(2)
  t.equal(up.open(), 0)
  const res = await request(`http://127.0.0.1:${port}/pub/y`, { headersTimeout: 3000 })
  t.equal(res.statusCode, 200)
  await res.body.dump()
  gw.child.kill('SIGTERM')
  t.same(await gw.exited, { code: 0, signal: null })
})

t.test('a chunked upload past the server requestTimeout: 408 problem+json, upstream aborted', async t => {
  const up = await countingUpstream()
  t.teardown(up.close)
  // The service would wait 5 s; the server's requestTimeout (1 s) cuts the client first.
  const { port, gw } = await startGateway(t, up.url, '5s', '1s')
  const started = Date.now()
  const { out, firstByteAt } = await sendRaw(port, [HEAD + '5\r\nhello\r\n'], { closeAfterMs: 4000 })
  t.match(out, /^HTTP\/1\.1 408 /)
  t.match(out, /content-type: application\/problem\+json/)
  t.match(out, /"code":"REQUEST_TIMEOUT"/)
  t.ok(firstByteAt - started < 2500, `408 within a second or so of requestTimeout (${firstByteAt - started} ms)`)
  await up.waitAborted(1)
  t.equal(up.open(), 0, 'the upstream request was aborted')
  const res = await request(`http://127.0.0.1:${port}/pub/y`, { headersTimeout: 3000 })
  t.equal(res.statusCode, 200)
  await res.body.dump()
  gw.child.kill('SIGTERM')
  t.same(await gw.exited, { code: 0, signal: null })
})
