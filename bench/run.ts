// npm run bench [-- --quick] [--duration 10] [--rounds 3] [--connections 50]
//
// Starts the real built gateway (the CLI, as a user would) with a bench
// config, a 1 KiB JSON upstream in its own process, the bare Fastify +
// @fastify/http-proxy baseline, and drives each scenario with autocannon.
// Rounds are interleaved (A B C … A B C …) because absolute numbers on a
// shared 2-core machine drift between minutes while ratios within one round
// hold; a scenario that names a `peer` (compress-1mb) shares its round with
// it in alternating slices, since its goal is a ratio to that peer. Prints a markdown table and writes bench/results/latest.json and
// bench/results/latest.svg. --quick (what `npm test` runs) only checks that
// the harness works: one short round, one line of output, no figures (two
// seconds on a busy machine measure nothing) and no results written.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir, cpus } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { createSigner } from 'fast-jwt'
import { Redis } from 'ioredis'
import { get as httpGet, type IncomingMessage } from 'node:http'
import { gunzipSync } from 'node:zlib'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..', '..')
const resultsDir = join(root, 'bench', 'results')

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    duration: { type: 'string' },
    rounds: { type: 'string' },
    connections: { type: 'string' },
    only: { type: 'string' },
  },
})
const quick = args.quick === true
const duration = Number(args.duration ?? (quick ? 2 : 8))
const rounds = Number(args.rounds ?? (quick ? 1 : 3))
const connections = Number(args.connections ?? 50)

interface Scenario {
  name: string
  what: string
  url: (ports: Ports) => string
  headers?: Record<string, string>
  /** Process whose CPU time is charged to this scenario (none: not measured). */
  proc?: 'gateway' | 'bare' | 'nginx' | 'compress' | 'gatewayTls' | 'bareTls'
  /** autocannon (HTTP/1.1, default) or h2load (HTTP/2, from Debian's nghttp2-client). */
  driver?: 'h2load'
  connections?: number
  /** Answers other than 2xx are the point of the scenario. */
  expectErrors?: boolean
  /** Only when nginx is installed. */
  needsNginx?: boolean
  /** The scenario it is compared with, run whenever this one is (`--only compress-1mb` runs its peer too). */
  peer?: string
}

interface Ports { gateway: number, bare: number, workers: number, nginx: number, slow: number, compress: number, gatewayTls: number, bareTls: number }

interface Sample { rps: number, p50: number, p99: number, errors: number, non2xx: number, cpuUsPerReq: number }

const SECRET = 'bench-secret-0123456789abcdef0123456789'
const token = createSigner({ key: SECRET, expiresIn: 3_600_000 })({ sub: 'bench-user' })

// h2load keeps this many requests in flight: 10 × 10 = 100 streams.
const H2_CLIENTS = 10
const H2_STREAMS = 10

const SCENARIOS: Scenario[] = [
  { name: 'bare', what: 'Fastify + @fastify/http-proxy, nothing else (baseline)', url: p => `http://127.0.0.1:${p.bare}/bare`, proc: 'bare' },
  { name: 'nginx', what: 'nginx reverse proxy, 1 worker, upstream keepalive', url: p => `http://127.0.0.1:${p.nginx}/proxy`, proc: 'nginx', needsNginx: true },
  { name: 'proxy', what: 'public proxy route', url: p => `http://127.0.0.1:${p.gateway}/proxy`, proc: 'gateway' },
  { name: 'full', what: 'JWT HS256 + policy + rate limit (Redis when up) + proxy', url: p => `http://127.0.0.1:${p.gateway}/full`, headers: { authorization: `Bearer ${token}` }, proc: 'gateway' },
  { name: 'cache-hit', what: 'cached route answering HIT (Redis when up)', url: p => `http://127.0.0.1:${p.gateway}/cached`, proc: 'gateway' },
  { name: 'naive-3', what: 'peer: plain Fastify route, three parallel undici calls merged', url: p => `http://127.0.0.1:${p.bare}/naive-3`, proc: 'bare' },
  { name: 'aggregate-3', what: 'three parts in parallel, merged', url: p => `http://127.0.0.1:${p.gateway}/agg`, proc: 'gateway' },
  { name: 'slow-direct', what: 'the 50 ms upstream itself, 10 connections (reference for aggregate-3-slow)', url: p => `http://127.0.0.1:${p.slow}/slow`, connections: 10 },
  { name: 'aggregate-3-slow', what: 'three 50 ms parts, 10 connections', url: p => `http://127.0.0.1:${p.gateway}/agg-slow`, proc: 'gateway', connections: 10 },
  { name: 'breaker-open', what: 'open breaker: 503 fast-fail', url: p => `http://127.0.0.1:${p.gateway}/open`, proc: 'gateway', expectErrors: true },
  { name: 'workers', what: 'the proxy route with workers: auto', url: p => `http://127.0.0.1:${p.workers}/proxy` },
  // A gateway of its own (server.compression: gzip), so the other scenarios carry no compression hook.
  { name: 'compress-1mb', what: '1 MB JSON answer gzipped (server.compression), 10 connections', url: p => `http://127.0.0.1:${p.compress}/compress`, headers: { 'accept-encoding': 'gzip' }, proc: 'compress', connections: 10, peer: 'compress-1mb-peer' },
  { name: 'compress-1mb-peer', what: 'peer: Fastify + @fastify/http-proxy + @fastify/compress, same answer, gzip, 10 connections', url: p => `http://127.0.0.1:${p.bare}/compress`, headers: { 'accept-encoding': 'gzip' }, proc: 'bare', connections: 10 },
  // TLS: the gateway with server.tls + http2 beside a Fastify peer configured the same way (ALPN h2 + http/1.1).
  { name: 'proxy-tls', what: 'public proxy route over TLS, HTTP/1.1 keep-alive', url: p => `https://127.0.0.1:${p.gatewayTls}/proxy`, proc: 'gatewayTls', peer: 'bare-tls' },
  { name: 'bare-tls', what: 'peer: Fastify + @fastify/http-proxy over TLS, HTTP/1.1 keep-alive', url: p => `https://127.0.0.1:${p.bareTls}/bare`, proc: 'bareTls' },
  { name: 'proxy-h2', what: `public proxy route over HTTP/2 (h2load, ${H2_CLIENTS} connections × ${H2_STREAMS} streams)`, url: p => `https://127.0.0.1:${p.gatewayTls}/proxy`, proc: 'gatewayTls', driver: 'h2load', peer: 'bare-h2' },
  { name: 'bare-h2', what: `peer over HTTP/2 (h2load, ${H2_CLIENTS} connections × ${H2_STREAMS} streams)`, url: p => `https://127.0.0.1:${p.bareTls}/bare`, proc: 'bareTls', driver: 'h2load' },
]

const TLS_SCENARIOS = new Set(['bare-tls', 'proxy-tls', 'bare-h2', 'proxy-h2'])

async function main (): Promise<void> {
  const nginxBin = findNginx()
  const h2loadBin = findBinary(['/usr/bin/h2load', '/usr/local/bin/h2load'])
  const only = args.only?.split(',')
  if (only !== undefined) for (const s of SCENARIOS) if (only.includes(s.name) && s.peer !== undefined) only.push(s.peer)
  const selected = (only !== undefined ? SCENARIOS.filter(s => only.includes(s.name)) : SCENARIOS)
    .filter(s => s.needsNginx !== true || nginxBin !== undefined)
    .filter(s => s.driver !== 'h2load' || h2loadBin !== undefined)
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
  const redisUp = await redisAnswers(redisUrl)
  const children: ChildProcess[] = []
  const stopAll = (): void => { for (const c of children) c.kill('SIGTERM') }
  process.on('exit', stopAll)
  try {
    // The node upstream serves /slow always, and /json unless nginx does (it is lighter on the shared cores).
    const slow = await freePort()
    children.push(await startProcess('upstream', [join(here, 'upstream.js'), String(slow)]))
    let fast = slow
    let nginxPort = 0
    let nginxPid = 0
    if (nginxBin !== undefined) {
      fast = await freePort()
      nginxPort = await freePort()
      const nginx = await startNginx(nginxBin, fast, nginxPort)
      children.push(nginx)
      nginxPid = nginx.pid ?? 0
    }
    const bare = await freePort()
    const bareProc = await startProcess('bare', [join(here, 'peers', 'bare.js'), String(bare), `http://127.0.0.1:${fast}`, `http://127.0.0.1:${slow}`])
    children.push(bareProc)
    const gateway = await freePort()
    const dead = await freePort()
    const redis = redisUp ? redisUrl : ''
    const gatewayProc = await startProcess('gateway', [join(root, 'dist', 'src', 'main', 'cli.js'), 'start', '--config', writeBenchConfig(gateway, fast, slow, dead, redis, 1)], { LOG_LEVEL: 'warn' })
    children.push(gatewayProc)
    const workers = await freePort()
    if (selected.some(s => s.name === 'workers')) {
      children.push(await startProcess('workers', [join(root, 'dist', 'src', 'main', 'cli.js'), 'start', '--config', writeBenchConfig(workers, fast, slow, dead, redis, 'auto')], { LOG_LEVEL: 'warn' }))
    }
    const compress = await freePort()
    let compressPid = 0
    if (selected.some(s => s.name === 'compress-1mb')) {
      const proc = await startProcess('compress', [join(root, 'dist', 'src', 'main', 'cli.js'), 'start', '--config', writeCompressConfig(compress, slow)], { LOG_LEVEL: 'warn' })
      children.push(proc)
      compressPid = proc.pid ?? 0
    }
    let gatewayTls = 0
    let bareTls = 0
    let gatewayTlsPid = 0
    let bareTlsPid = 0
    if (selected.some(s => TLS_SCENARIOS.has(s.name))) {
      const tls = makeCertificate()
      bareTls = await freePort()
      const peer = await startProcess('bare-tls', [join(here, 'peers', 'bare-tls.js'), String(bareTls), `http://127.0.0.1:${fast}`, tls.cert, tls.key])
      children.push(peer)
      gatewayTls = await freePort()
      const gw = await startProcess('gateway-tls', [join(root, 'dist', 'src', 'main', 'cli.js'), 'start', '--config', writeBenchConfig(gatewayTls, fast, slow, dead, redis, 1, tls)], { LOG_LEVEL: 'warn' })
      children.push(gw)
      gatewayTlsPid = gw.pid ?? 0
      bareTlsPid = peer.pid ?? 0
    }
    const ports: Ports = { gateway, bare, workers, nginx: nginxPort, slow, compress, gatewayTls, bareTls }
    const pids = { gateway: gatewayProc.pid ?? 0, bare: bareProc.pid ?? 0, nginx: nginxPid, compress: compressPid, gatewayTls: gatewayTlsPid, bareTls: bareTlsPid }
    // A compression scenario that got identity would measure the wrong thing.
    for (const s of selected.filter(x => x.name.startsWith('compress-1mb'))) await expectGzip(s.name, s.url(ports))

    // Trip the breaker of the dead service before measuring fast-fail.
    for (let i = 0; i < 3; i++) await fetch(`http://127.0.0.1:${gateway}/open`).then(r => r.arrayBuffer(), () => {})

    if (!quick) console.log(`# Portico bench — ${new Date().toISOString()}`)
    if (!quick) console.log(`node ${process.version}, ${cpus().length} cores, ${connections} connections, ${duration}s per run, ${rounds} round(s) interleaved, Redis ${redisUp ? 'up' : 'not reachable (local limiter)'}, gateway LOG_LEVEL=warn\n`)
    const samples = new Map<string, Sample[]>(selected.map(s => [s.name, []]))
    // h2load for the HTTP/2 scenarios, autocannon for the rest.
    const load = async (s: Scenario, seconds: number): Promise<Sample & { total: number }> =>
      s.driver === 'h2load' && h2loadBin !== undefined ? await driveH2(h2loadBin, s.url(ports), seconds) : await drive(s.url(ports), s.headers, seconds, s.connections)
    const measure = async (s: Scenario, seconds: number): Promise<Sample & { total: number }> => {
      const pid = s.proc !== undefined ? pids[s.proc] : 0
      const before = cpuMicros(pid)
      const r = await load(s, seconds)
      const cpu = cpuMicros(pid) - before
      return { ...r, cpuUsPerReq: r.total > 0 ? cpu / r.total : 0 }
    }
    for (let round = 0; round < rounds; round++) {
      const ranWithPartner = new Set<string>()
      for (const s of selected) {
        if (ranWithPartner.has(s.name)) continue
        const peer = s.peer !== undefined ? selected.find(x => x.name === s.peer) : undefined
        // A short warm-up so JIT and pools are hot before the measured run.
        await load(s, 1)
        if (peer === undefined) {
          const r = await measure(s, duration)
          samples.get(s.name)?.push(r)
          if (!quick) process.stderr.write(`round ${round + 1} ${s.name}: ${Math.round(r.rps)} req/s\n`)
          continue
        }
        // A scenario and its peer share the round in alternating slices (A B B A A B B A): on a
        // shared machine a burst of other work then lands on both, not on one of them.
        ranWithPartner.add(peer.name)
        await load(peer, 1)
        const slices = quick ? 1 : 4
        const mine: Array<Sample & { total: number }> = []
        const theirs: Array<Sample & { total: number }> = []
        for (let i = 0; i < slices * 2; i++) {
          const first = i % 4 === 0 || i % 4 === 3
          if (first) mine.push(await measure(s, duration / slices))
          else theirs.push(await measure(peer, duration / slices))
        }
        samples.get(s.name)?.push(mergeSlices(mine))
        samples.get(peer.name)?.push(mergeSlices(theirs))
        if (!quick) process.stderr.write(`round ${round + 1} ${s.name}: ${Math.round(mergeSlices(mine).rps)} req/s, ${peer.name}: ${Math.round(mergeSlices(theirs).rps)} req/s\n`)
      }
    }
    const rows = report(selected, samples, { redis: redisUp, nginx: nginxBin !== undefined, duration, rounds, connections })
    // A harness check for `npm test`: every scenario must have answered, and as intended.
    const broken = rows.filter(r => r.rps === 0 || r.errors > 0 || (r.non2xx > 0 && SCENARIOS.find(s => s.name === r.scenario)?.expectErrors !== true))
    if (broken.length > 0) {
      console.error(`bench${quick ? ' smoke' : ''}: scenarios misbehaved: ${broken.map(r => r.scenario).join(', ')}`)
      process.exitCode = 1
    } else if (quick) {
      console.log(`bench smoke: harness OK (${rows.length} scenarios ran; figures from --quick are not measurements)`)
    }
  } finally {
    stopAll()
  }
}

/**
 * HTTP/2 load with h2load: a fixed number of connections, each with several
 * concurrent streams. h2load prints no percentiles, so p50/p99 carry its mean
 * and max request time instead (marked in the table).
 */
async function driveH2 (bin: string, url: string, seconds: number): Promise<Sample & { total: number }> {
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(bin, ['-c', String(H2_CLIENTS), '-m', String(H2_STREAMS), '-D', String(seconds), url], { stdio: ['ignore', 'pipe', 'pipe'] })
    let text = ''
    child.stdout.on('data', (c: Buffer) => { text += c.toString() })
    child.stderr.on('data', (c: Buffer) => { text += c.toString() })
    child.once('error', reject)
    child.once('exit', () => { resolve(text) })
  })
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN)
  const ms = (v: string | undefined): number => v === undefined ? NaN : v.endsWith('us') ? parseFloat(v) / 1000 : v.endsWith('ms') ? parseFloat(v) : parseFloat(v) * 1000
  const times = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)/.exec(out)
  const done = num(/requests: \d+ total, \d+ started, (\d+) done/)
  const non2xx = num(/status codes: \d+ 2xx, (\d+) 3xx/) + num(/ (\d+) 4xx/) + num(/ (\d+) 5xx/)
  const failed = num(/(\d+) failed/) + num(/(\d+) errored/) + num(/(\d+) timeout/)
  if (!Number.isFinite(done)) throw new Error(`h2load printed no summary: ${out.slice(-500)}`)
  return { rps: num(/finished in [\d.]+m?s, ([\d.]+) req\/s/), p50: ms(times?.[3]), p99: ms(times?.[2]), errors: failed, non2xx, cpuUsPerReq: 0, total: done }
}

async function drive (url: string, headers: Record<string, string> | undefined, seconds: number, conns = connections): Promise<Sample & { total: number }> {
  const r = await autocannon({ url, connections: conns, duration: seconds, ...(headers !== undefined ? { headers } : {}) })
  return {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
    cpuUsPerReq: 0,
    total: r.requests.total,
  }
}

/** Slices of one scenario's round as one sample: rates and CPU over the whole, latencies the median slice's. */
function mergeSlices (xs: Array<Sample & { total: number }>): Sample & { total: number } {
  const total = xs.reduce((a, x) => a + x.total, 0)
  return {
    rps: median(xs.map(x => x.rps)),
    p50: median(xs.map(x => x.p50)),
    p99: median(xs.map(x => x.p99)),
    errors: xs.reduce((a, x) => a + x.errors, 0),
    non2xx: xs.reduce((a, x) => a + x.non2xx, 0),
    cpuUsPerReq: total > 0 ? xs.reduce((a, x) => a + x.cpuUsPerReq * x.total, 0) / total : 0,
    total,
  }
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

function report (scenarios: Scenario[], samples: Map<string, Sample[]>, meta: Record<string, unknown>): Row[] {
  const bareRounds = samples.get('bare') ?? []
  const rows = scenarios.map(s => {
    const xs = samples.get(s.name) ?? []
    // Ratio to the bare baseline of the same round, then the median of those ratios.
    const ratios = xs.map((x, i) => (bareRounds[i] !== undefined && bareRounds[i].rps > 0 ? x.rps / bareRounds[i].rps : NaN)).filter(Number.isFinite)
    return {
      scenario: s.name,
      what: s.what,
      rps: median(xs.map(x => x.rps)),
      rpsMin: Math.min(...xs.map(x => x.rps)),
      rpsMax: Math.max(...xs.map(x => x.rps)),
      p50: median(xs.map(x => x.p50)),
      p99: median(xs.map(x => x.p99)),
      cpuUsPerReq: median(xs.map(x => x.cpuUsPerReq)),
      ratioToBare: ratios.length > 0 ? median(ratios) : null,
      non2xx: xs.reduce((a, x) => a + x.non2xx, 0),
      errors: xs.reduce((a, x) => a + x.errors, 0),
    }
  })
  if (quick) return rows
  console.log('| scenario | what | req/s (median) | range | p50 ms | p99 ms | CPU µs/req | × bare | non-2xx | errors |')
  console.log('|---|---|---|---|---|---|---|---|---|---|')
  for (const r of rows) {
    console.log(`| ${r.scenario} | ${r.what} | ${Math.round(r.rps)} | ${Math.round(r.rpsMin)}–${Math.round(r.rpsMax)} | ${r.p50} | ${r.p99} | ${r.cpuUsPerReq > 0 ? Math.round(r.cpuUsPerReq) : '-'} | ${r.ratioToBare === null ? '-' : r.ratioToBare.toFixed(2)} | ${r.non2xx} | ${r.errors} |`)
  }
  const ratio = (a: string, b: string): string => {
    const ra = samples.get(a) ?? []
    const rb = samples.get(b) ?? []
    const xs = ra.map((x, i) => (rb[i] !== undefined && rb[i].rps > 0 ? x.rps / rb[i].rps : NaN)).filter(Number.isFinite)
    return xs.length > 0 ? median(xs).toFixed(2) : '-'
  }
  const p50 = (name: string): number | undefined => rows.find(r => r.scenario === name)?.p50
  console.log('\nGoals (ratios within one round):')
  console.log(`- proxy / bare = ${ratio('proxy', 'bare')} (goal ≥ 1.5); proxy / nginx = ${ratio('proxy', 'nginx')} (goal ≥ 0.18)`)
  console.log(`- full / bare = ${ratio('full', 'bare')} (goal ≥ 1.0)`)
  console.log(`- cache-hit / bare = ${ratio('cache-hit', 'bare')} (goal ≥ 3)`)
  console.log(`- aggregate-3 / bare = ${ratio('aggregate-3', 'bare')} (goal ≥ 0.8); aggregate-3 / naive-3 = ${ratio('aggregate-3', 'naive-3')}`)
  const slowDirect = p50('slow-direct')
  const slowAgg = p50('aggregate-3-slow')
  console.log(`- aggregate-3-slow p50 / upstream p50 = ${slowDirect !== undefined && slowAgg !== undefined && slowDirect > 0 ? (slowAgg / slowDirect).toFixed(2) : '-'} (goal ≤ 1.1)`)
  console.log(`- breaker-open / bare = ${ratio('breaker-open', 'bare')} (goal ≥ 3)`)
  console.log(`- workers / proxy = ${ratio('workers', 'proxy')} (goal ≥ 1.5)`)
  console.log(`- proxy-tls / bare-tls = ${ratio('proxy-tls', 'bare-tls')} (goal ≥ 1.0); proxy-h2 / bare-h2 = ${ratio('proxy-h2', 'bare-h2')} (goal ≥ 1.0)`)
  const p50Ratio = (a: string, b: string): string => {
    const ra = samples.get(a) ?? []
    const rb = samples.get(b) ?? []
    const xs = ra.map((x, i) => (rb[i] !== undefined && rb[i].p50 > 0 ? x.p50 / rb[i].p50 : NaN)).filter(Number.isFinite)
    return xs.length > 0 ? `${median(xs).toFixed(2)} (rounds: ${xs.map(x => x.toFixed(2)).join(', ')})` : '-'
  }
  console.log(`- compress-1mb p50 / compress-1mb-peer p50 = ${p50Ratio('compress-1mb', 'compress-1mb-peer')} (goal ≤ 1.0)`)
  console.log('\nFor the h2load scenarios (bare-h2, proxy-h2), p50 and p99 are h2load\'s mean and max request time (it prints no percentiles).')
  console.log('breaker-open answers are 503 by design (counted as non-2xx). CPU µs/req is the serving process\'s user+system time per request (not measured for workers and the direct upstream).')
  mkdirSync(resultsDir, { recursive: true })
  writeFileSync(join(resultsDir, 'latest.json'), JSON.stringify({ at: new Date().toISOString(), node: process.version, ...meta, rows }, null, 2) + '\n')
  writeFileSync(join(resultsDir, 'latest.svg'), chart(rows))
  console.log(`\nwrote bench/results/latest.json and bench/results/latest.svg`)
  return rows
}

interface Row { scenario: string, rps: number, p50: number, errors: number, non2xx: number }

/** A horizontal bar chart of median req/s, as plain SVG. */
function chart (rows: Array<{ scenario: string, rps: number, rpsMin: number, rpsMax: number }>): string {
  const width = 720
  const left = 150
  const bar = 26
  const max = Math.max(...rows.map(r => r.rpsMax), 1)
  const scale = (v: number): number => (v / max) * (width - left - 90)
  const items = rows.map((r, i) => {
    const y = 40 + i * (bar + 12)
    return `<text x="${left - 8}" y="${y + 18}" text-anchor="end" font-size="13">${r.scenario}</text>` +
      `<rect x="${left}" y="${y}" width="${scale(r.rps).toFixed(1)}" height="${bar}" fill="#3b82f6"/>` +
      `<line x1="${(left + scale(r.rpsMin)).toFixed(1)}" x2="${(left + scale(r.rpsMax)).toFixed(1)}" y1="${y + bar / 2}" y2="${y + bar / 2}" stroke="#111" stroke-width="2"/>` +
      `<text x="${(left + scale(r.rpsMax) + 6).toFixed(1)}" y="${y + 18}" font-size="12">${Math.round(r.rps)}</text>`
  }).join('\n  ')
  const height = 60 + rows.length * (bar + 12)
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">
  <text x="10" y="22" font-size="15" font-weight="bold">Portico bench: requests per second (median, line = range)</text>
  ${items}
</svg>
`
}

function writeBenchConfig (gatewayPort: number, fastPort: number, slowPort: number, deadPort: number, redisUrl: string, workers: number | 'auto', tls?: Certificate): string {
  const dir = mkdtempSync(join(tmpdir(), 'portico-bench-'))
  const file = join(dir, 'gateway.yaml')
  const up = `http://127.0.0.1:${fastPort}`
  const slowUp = `http://127.0.0.1:${slowPort}`
  const edge = tls === undefined ? '' : `, tls: { cert: "${tls.cert}", key: "${tls.key}" }, http2: true`
  writeFileSync(file, `server: { host: 127.0.0.1, port: ${gatewayPort}, workers: ${workers}${edge} }
redis: { url: "${redisUrl}", keyPrefix: "portico-bench-${process.pid}:" }
auth:
  jwt: { secret: ${SECRET}, algorithms: [HS256] }
policies:
  public: { auth: none }
  user: { auth: jwt, rateLimit: { max: 100000000, window: 1m, key: user } }
services:
  up: { urls: [${up}], timeout: 5s }
  slow: { urls: [${slowUp}], timeout: 5s }
  dead: { urls: [http://127.0.0.1:${deadPort}], timeout: 1s, breaker: { volumeThreshold: 1, errorThresholdPercentage: 1, resetTimeout: 1h } }
routes:
  - { id: proxy, path: /proxy, policy: public, proxy: { service: up, path: /json } }
  - { id: full, path: /full, policy: user, proxy: { service: up, path: /json } }
  - { id: cached, path: /cached, policy: public, cache: { ttl: 1h, scope: public }, proxy: { service: up, path: /json } }
  - id: agg
    path: /agg
    policy: public
    aggregate:
      a: { service: up, path: /json }
      b: { service: up, path: /json }
      c: { service: up, path: /json }
  - id: agg-slow
    path: /agg-slow
    policy: public
    aggregate:
      a: { service: slow, path: /slow }
      b: { service: slow, path: /slow }
      c: { service: slow, path: /slow }
  - { id: open, path: /open, policy: public, proxy: { service: dead, path: /json } }
`)
  return file
}

/** The compress-1mb gateway: one route to the node upstream's 1 MB JSON, gzip as its peer is configured. */
function writeCompressConfig (gatewayPort: number, upstreamPort: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'portico-bench-compress-'))
  const file = join(dir, 'gateway.yaml')
  writeFileSync(file, `server: { host: 127.0.0.1, port: ${gatewayPort}, compression: { encodings: [gzip], threshold: 1kb } }
policies:
  public: { auth: none }
services:
  big: { urls: [http://127.0.0.1:${upstreamPort}], timeout: 5s, maxResponseSize: 4mb }
routes:
  - { id: compress, path: /compress, policy: public, proxy: { service: big, path: /big } }
`)
  return file
}

/** Refuses to measure a compression scenario whose answer is not gzip or does not decode to the 1 MB body. */
async function expectGzip (name: string, url: string): Promise<void> {
  const res = await new Promise<IncomingMessage>((resolve, reject) => { httpGet(url, { headers: { 'accept-encoding': 'gzip' } }, resolve).on('error', reject) })
  const chunks: Buffer[] = []
  for await (const c of res) chunks.push(c as Buffer)
  const raw = Buffer.concat(chunks)
  if (res.headers['content-encoding'] !== 'gzip') throw new Error(`${name}: expected a gzip answer, got content-encoding ${String(res.headers['content-encoding'])}`)
  const size = gunzipSync(raw).length
  if (size !== 1024 * 1024) throw new Error(`${name}: the answer decodes to ${size} bytes, not 1 MB`)
  if (!quick) console.log(`${name}: gzip, ${raw.length} bytes on the wire for 1 MB`)
}

async function startProcess (name: string, argv: string[], env: Record<string, string> = {}): Promise<ChildProcess> {
  const child = spawn(process.execPath, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => { reject(new Error(`${name} did not start: ${out}`)) }, 15_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      if (/ready|portico listening/.test(out)) { clearTimeout(timer); resolve() }
    })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`${name} exited (${code}): ${out}`)) })
  })
  child.stdout?.resume()
  return child
}

interface Certificate { cert: string, key: string }

/** A throwaway self-signed P-256 certificate for 127.0.0.1 (both TLS listeners use the same one). */
function makeCertificate (): Certificate {
  const dir = mkdtempSync(join(tmpdir(), 'portico-bench-tls-'))
  const cert = join(dir, 'server.crt')
  const key = join(dir, 'server.key')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' })
  return { cert, key }
}

function findBinary (candidates: string[]): string | undefined {
  return candidates.find(c => existsSync(c))
}

function findNginx (): string | undefined {
  for (const candidate of ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/bin/nginx']) if (existsSync(candidate)) return candidate
  return undefined
}

/** nginx as the 1 KiB upstream (port `fast`) and as a reverse proxy to it (port `proxy`), one worker. */
async function startNginx (bin: string, fast: number, proxy: number): Promise<ChildProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'portico-bench-nginx-'))
  const body = readFileSync(join(root, 'bench', 'upstream-body.json'), 'utf8').replace(/'/g, '')
  writeFileSync(join(dir, 'nginx.conf'), `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  upstream json { server 127.0.0.1:${fast}; keepalive 128; }
  server {
    listen 127.0.0.1:${fast};
    location /json { default_type application/json; return 200 '${body}'; }
  }
  server {
    listen 127.0.0.1:${proxy};
    location /proxy { proxy_pass http://json/json; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`)
  const child = spawn(bin, ['-c', join(dir, 'nginx.conf'), '-g', 'daemon off;', '-p', dir], { stdio: ['ignore', 'ignore', 'inherit'] })
  for (let i = 0; i < 100; i++) {
    if (await answers(proxy)) return child
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  child.kill()
  throw new Error('nginx did not start')
}

async function answers (port: number): Promise<boolean> {
  try { return (await fetch(`http://127.0.0.1:${port}/proxy`)).ok } catch { return false }
}

/** User + system CPU time of a process so far, in microseconds (Linux /proc). */
function cpuMicros (pid: number): number {
  if (pid === 0) return 0
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    const ticks = Number(fields[11]) + Number(fields[12]) // utime, stime (fields 14 and 15 of the full line)
    return (ticks / 100) * 1e6
  } catch {
    return 0
  }
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise(resolve => server.close(resolve))
  return typeof address === 'object' && address !== null ? address.port : 0
}

async function redisAnswers (url: string): Promise<boolean> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 500, retryStrategy: () => null })
  try {
    await client.connect()
    return (await client.ping()) === 'PONG'
  } catch {
    return false
  } finally {
    client.disconnect()
  }
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
