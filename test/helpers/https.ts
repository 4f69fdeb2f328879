// Clients for a gateway listening with TLS: node:https (HTTP/1.1), node:http2,
// a bare TLS handshake (which certificate does the server present now?), and
// curl (the real thing, with HTTP/2 and OpenSSL).

import { request as httpsRequest, type Agent } from 'node:https'
import { connect as h2connect, type ClientHttp2Session, type OutgoingHttpHeaders } from 'node:http2'
import { connect as tlsConnect, type PeerCertificate } from 'node:tls'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import type { IncomingHttpHeaders } from 'node:http'

export interface TlsClientFiles {
  /** PEM file paths. */
  ca: string
  cert?: string
  key?: string
}

export interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

function tlsPem (files: TlsClientFiles): { ca: string, cert?: string, key?: string } {
  return {
    ca: readFileSync(files.ca, 'utf8'),
    ...(files.cert !== undefined ? { cert: readFileSync(files.cert, 'utf8') } : {}),
    ...(files.key !== undefined ? { key: readFileSync(files.key, 'utf8') } : {}),
  }
}

export interface H1Options {
  method?: string
  headers?: OutgoingHttpHeaders
  body?: string
  agent?: Agent
}

/** One HTTP/1.1 request over TLS (ALPN http/1.1), a new connection unless an agent is given. */
export async function h1 (port: number, path: string, files: TlsClientFiles, opts: H1Options = {}): Promise<Answer & { serial: string }> {
  return await new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers ?? {},
      ...(opts.agent !== undefined ? { agent: opts.agent } : { agent: false, ...tlsPem(files), servername: 'localhost', ALPNProtocols: ['http/1.1'] }),
    }, res => {
      const serial = (res.socket as unknown as { getPeerCertificate: () => PeerCertificate }).getPeerCertificate().serialNumber
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), serial }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

/** An HTTP/2 session (ALPN h2); closed by the caller. */
export async function h2session (port: number, files: TlsClientFiles): Promise<ClientHttp2Session> {
  return await new Promise((resolve, reject) => {
    const session = h2connect(`https://127.0.0.1:${port}`, { ...tlsPem(files), servername: 'localhost' })
    session.once('connect', () => { session.off('error', reject); resolve(session) })
    session.once('error', reject)
  })
}

export async function h2 (session: ClientHttp2Session, path: string, opts: { method?: string, headers?: OutgoingHttpHeaders, body?: string } = {}): Promise<Answer> {
  return await new Promise((resolve, reject) => {
    const stream = session.request({ ':method': opts.method ?? 'GET', ':path': path, ...opts.headers })
    let headers: IncomingHttpHeaders = {}
    let status = 0
    stream.on('response', h => { headers = h; status = Number(h[':status']) })
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('end', () => {
      const { ':status': _status, ...rest } = headers
      resolve({ status, headers: rest, body: Buffer.concat(chunks).toString('utf8') })
    })
    stream.on('error', reject)
    stream.end(opts.body)
  })
}

/** The certificate the server presents to a new handshake right now. */
export async function presentedCert (port: number, ca: string): Promise<PeerCertificate> {
  return await new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(ca, 'utf8'), servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => {
      const cert = socket.getPeerCertificate()
      socket.end()
      resolve(cert)
    })
    socket.on('error', reject)
  })
}

export interface CurlResult { code: number, stdout: string, stderr: string }

/** Runs curl; never throws on curl's own failure (its exit code is in `code`). */
export async function curl (args: string[]): Promise<CurlResult> {
  return await new Promise(resolve => {
    execFile('curl', ['-sS', '--max-time', '10', ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as unknown as { code: number }).code : 1
      resolve({ code, stdout, stderr })
    })
  })
}
