// The public edge's encryption settings: `server.tls`, `server.http2`,
// `server.redirectHttpPort`, and the `auth: mtls` policies that read the
// client certificates `server.tls.clientCa` asks for. Their schema fragment,
// their checks and their normalised form live here; schema.ts, validate.ts
// and types.ts call in with one line each.
//
// The certificate files are read and checked when the config is loaded (by
// `portico check`, at start and on every reload), so a key that does not fit
// its certificate, an expired certificate or a file that is not PEM is a
// config error naming the file, never a failed handshake later; a reload
// that finds one keeps the old config and the old certificates.

import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto'
import { displayFile, type ConfigProblem, type FieldPath } from './problems.js'
import type { SourceMap } from './load.js'

export const TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const
export type TlsVersion = typeof TLS_VERSIONS[number]

const file = { type: 'string', minLength: 1 }

/** Keys of `server` this module owns (spread into schema.ts's server properties). */
export const edgeServerProperties = {
  tls: {
    type: 'object',
    additionalProperties: false,
    required: ['cert', 'key'],
    properties: {
      cert: file,
      key: file,
      minVersion: { enum: TLS_VERSIONS, 'x-message': 'must be TLSv1.2 or TLSv1.3' },
      clientCa: file,
      requireClientCert: { type: 'boolean' },
    },
  },
  http2: { type: 'boolean' },
  redirectHttpPort: { type: 'integer', minimum: 0, maximum: 65535 },
}

/** Keys of a policy this module owns (spread into schema.ts's policy properties). */
export const mtlsPolicyProperties = {
  subjects: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
}

/**
 * The PEM text read from the files. Kept apart from the settings and never
 * serialised: /admin/config shows the config as JSON, and a private key must
 * not be in it.
 */
export class TlsPem {
  constructor (readonly cert: string, readonly key: string, readonly ca: string | undefined) {}
  toJSON (): string { return '(PEM, read from the files above)' }
  equals (other: TlsPem): boolean { return this.cert === other.cert && this.key === other.key && this.ca === other.ca }
}

export interface TlsSettings {
  /** Absolute paths. */
  cert: string
  key: string
  clientCa?: string
  minVersion: TlsVersion
  requireClientCert: boolean
  pem: TlsPem
}

/** What this module adds to ServerConfig. */
export interface EdgeServerConfig {
  /** Absent: plain HTTP. */
  tls?: TlsSettings
  /** ALPN h2 beside http/1.1 on the TLS port. */
  http2: boolean
  /** 0: no redirect listener. */
  redirectHttpPort: number
}

/**
 * A subject CN the gateway accepts as an identity: it becomes `sub` (the
 * x-auth-sub header, per-user cache and rate-limit keys, `{auth.sub}`), so it
 * must be one plain name: letters, digits, `.`, `_`, `-`, `@` and inner
 * spaces, at most 128 characters. Anything else (a comma or `=` that reads
 * like another RDN, control characters, several CNs) is refused, not guessed at.
 */
export const CERT_SUBJECT_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._@ -]{0,126}[A-Za-z0-9._-])?$/

interface RawTls { cert?: unknown, key?: unknown, minVersion?: unknown, clientCa?: unknown, requireClientCert?: unknown }

/** `server.tls` as the schema lets it through. */
export interface RawTlsBlock { cert: string, key: string, minVersion?: TlsVersion, clientCa?: string, requireClientCert?: boolean }
interface RawEdge {
  server?: { tls?: RawTls, http2?: unknown, redirectHttpPort?: unknown, port?: unknown }
  admin?: { port?: unknown }
  policies?: Record<string, { auth?: unknown, subjects?: unknown, roles?: unknown, scopes?: unknown, claims?: unknown } | undefined>
}

export interface EdgeCheck {
  problems: ConfigProblem[]
  /** The normalised settings; call only when the config has no errors. */
  normalize: () => EdgeServerConfig
  /** The certificate files, for --watch. */
  files: string[]
}

/**
 * Checks server.tls / http2 / redirectHttpPort and the mtls policies,
 * reading the certificate files once; `normalize` then uses what was read.
 */
export function checkEdgeServer (raw: unknown, map: SourceMap, mainFile: string, env: NodeJS.ProcessEnv = process.env, now = new Date()): EdgeCheck {
  const r = (raw ?? {}) as RawEdge
  const problems: ConfigProblem[] = []
  const at = (path: FieldPath, message: string, warning = false): void => {
    problems.push({ ...map.locate(path), message, ...(warning ? { warning } : {}) })
  }
  const s = r.server ?? {}
  const tls = s.tls !== null && typeof s.tls === 'object' ? s.tls : undefined
  const base = dirname(mainFile)
  const pathOf = (v: unknown): string | undefined => typeof v === 'string' && v !== '' ? resolve(base, v) : undefined
  const certFile = pathOf(tls?.cert)
  const keyFile = pathOf(tls?.key)
  const caFile = pathOf(tls?.clientCa)
  let pem: TlsPem | undefined

  if (tls !== undefined && certFile !== undefined && keyFile !== undefined) {
    const cert = readPem(certFile, ['server', 'tls', 'cert'], 'CERTIFICATE', at)
    const key = readPem(keyFile, ['server', 'tls', 'key'], 'PRIVATE KEY', at)
    const leaf = cert !== undefined ? checkCertificateChain(cert, certFile, now, at) : undefined
    const keyObject = key !== undefined ? parsePrivateKey(key, keyFile, at) : undefined
    if (leaf !== undefined && keyObject !== undefined && !leaf.checkPrivateKey(keyObject)) {
      at(['server', 'tls', 'key'], `${displayFile(keyFile)} is not the private key of the certificate in ${displayFile(certFile)} (their public keys differ)`)
    }
    let ca: string | undefined
    if (caFile !== undefined) {
      ca = readPem(caFile, ['server', 'tls', 'clientCa'], 'CERTIFICATE', at)
      if (ca !== undefined) checkClientCas(ca, caFile, now, at)
    }
    if (cert !== undefined && key !== undefined) pem = new TlsPem(cert, key, ca)
    if (tls.requireClientCert === true && caFile === undefined) {
      at(['server', 'tls', 'requireClientCert'], 'needs server.tls.clientCa: the CAs client certificates are verified against')
    }
  }
  if (s.http2 === true && tls === undefined) {
    at(['server', 'http2'], 'needs server.tls: clients speak HTTP/2 over TLS (ALPN h2); cleartext HTTP/2 (h2c) is not offered')
  }
  const redirect = typeof s.redirectHttpPort === 'number' ? s.redirectHttpPort : 0
  if (redirect > 0) {
    if (tls === undefined) at(['server', 'redirectHttpPort'], 'needs server.tls: it redirects to https:// on server.port')
    const port = env.PORT !== undefined && env.PORT !== '' ? Number(env.PORT) : s.port ?? 8080
    if (redirect === port) at(['server', 'redirectHttpPort'], `is server.port (${redirect}); the redirect listener needs a port of its own`)
    if (redirect === r.admin?.port) at(['server', 'redirectHttpPort'], `is admin.port (${redirect}); the redirect listener needs a port of its own`)
  }

  for (const [name, policy] of Object.entries(r.policies ?? {})) {
    if (policy === null || typeof policy !== 'object') continue
    const here = (...rest: string[]): FieldPath => ['policies', name, ...rest]
    if (policy.auth !== 'mtls') {
      if (policy.subjects !== undefined) at(here('subjects'), 'applies to auth: mtls only (the subject CNs of client certificates)')
      continue
    }
    if (caFile === undefined) at(here('auth'), 'auth: mtls needs server.tls.clientCa in the gateway config (the CAs that sign client certificates)')
    for (const field of ['roles', 'scopes', 'claims'] as const) {
      if (policy[field] !== undefined) at(here(field), 'has no effect with auth: mtls: a client certificate carries no roles, scopes or claims; list allowed subject CNs in subjects')
    }
    if (Array.isArray(policy.subjects)) {
      policy.subjects.forEach((subject, i) => {
        if (typeof subject === 'string' && subject !== '' && !CERT_SUBJECT_NAME.test(subject)) {
          at([...here('subjects'), i], `${JSON.stringify(subject)} can never match: a subject CN is accepted only as 1-128 letters, digits, ".", "_", "-", "@" and inner spaces`)
        }
      })
    }
  }

  return {
    problems,
    files: [certFile, keyFile, caFile].filter((f): f is string => f !== undefined),
    normalize: () => ({
      ...(tls !== undefined && pem !== undefined && certFile !== undefined && keyFile !== undefined
        ? {
            tls: {
              cert: certFile,
              key: keyFile,
              ...(caFile !== undefined ? { clientCa: caFile } : {}),
              minVersion: (tls.minVersion as TlsVersion | undefined) ?? 'TLSv1.2',
              requireClientCert: tls.requireClientCert === true,
              pem,
            },
          }
        : {}),
      http2: s.http2 === true,
      redirectHttpPort: redirect,
    }),
  }
}

type At = (path: FieldPath, message: string, warning?: boolean) => void

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]+?-----END \1-----/g

/** The file's text when it holds at least one PEM block of the expected kind. */
function readPem (path: string, field: FieldPath, kind: 'CERTIFICATE' | 'PRIVATE KEY', at: At): string | undefined {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    at(field, code === 'ENOENT' ? `file not found: ${displayFile(path)}` : `cannot read ${displayFile(path)} (${code ?? 'error'})`)
    return undefined
  }
  const labels = [...text.matchAll(PEM_BLOCK)].map(m => m[1])
  const fits = kind === 'CERTIFICATE' ? labels.includes('CERTIFICATE') : labels.some(l => l.endsWith('PRIVATE KEY'))
  if (!fits) {
    const expected = kind === 'CERTIFICATE' ? '-----BEGIN CERTIFICATE-----' : '-----BEGIN PRIVATE KEY----- (or RSA/EC PRIVATE KEY)'
    at(field, `${displayFile(path)} is not a PEM ${kind === 'CERTIFICATE' ? 'certificate' : 'private key'} (expected ${expected})`)
    return undefined
  }
  return text
}

function certificatesIn (text: string): string[] {
  return [...text.matchAll(PEM_BLOCK)].filter(m => m[1] === 'CERTIFICATE').map(m => m[0])
}

/** Parses every certificate of the server's chain; returns the leaf (the first) when all parse and are in date. */
function checkCertificateChain (text: string, path: string, now: Date, at: At): X509Certificate | undefined {
  const field = ['server', 'tls', 'cert']
  let leaf: X509Certificate | undefined
  let ok = true
  for (const [i, block] of certificatesIn(text).entries()) {
    const which = i === 0 ? 'the certificate' : `certificate ${i + 1} of the chain`
    let cert: X509Certificate
    try {
      cert = new X509Certificate(block)
    } catch {
      at(field, `${displayFile(path)}: ${which} is not a valid X.509 certificate`)
      ok = false
      continue
    }
    const dated = outOfDate(cert, now)
    if (dated !== undefined) { at(field, `${displayFile(path)}: ${which} (serial ${cert.serialNumber}) ${dated}`); ok = false }
    if (i === 0) leaf = cert
  }
  return ok ? leaf : undefined
}

/** The CAs client certificates are verified against: at least one must be usable. */
function checkClientCas (text: string, path: string, now: Date, at: At): void {
  const field = ['server', 'tls', 'clientCa']
  let usable = 0
  for (const [i, block] of certificatesIn(text).entries()) {
    let cert: X509Certificate
    try {
      cert = new X509Certificate(block)
    } catch {
      at(field, `${displayFile(path)}: certificate ${i + 1} is not a valid X.509 certificate`)
      continue
    }
    const dated = outOfDate(cert, now)
    if (dated !== undefined) { at(field, `${displayFile(path)}: certificate ${i + 1} (${cert.subject.replace(/\n/g, ', ')}) ${dated}; no client certificate verifies against it`, true); continue }
    if (!cert.ca) at(field, `${displayFile(path)}: certificate ${i + 1} (${cert.subject.replace(/\n/g, ', ')}) is not a CA certificate (basicConstraints CA:TRUE); certificates it signed do not verify`, true)
    usable++
  }
  if (usable === 0) at(field, `${displayFile(path)} holds no CA certificate that is in date`)
}

function outOfDate (cert: X509Certificate, now: Date): string | undefined {
  const from = new Date(cert.validFrom)
  const to = new Date(cert.validTo)
  if (now < from) return `is not valid before ${from.toISOString()}`
  if (now > to) return `expired on ${to.toISOString()}`
  return undefined
}

function parsePrivateKey (text: string, path: string, at: At): KeyObject | undefined {
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)) {
    at(['server', 'tls', 'key'], `${displayFile(path)} is encrypted; give the key without a passphrase (e.g. openssl pkey -in KEY -out plain.key) and protect the file instead`)
    return undefined
  }
  try {
    return createPrivateKey(text)
  } catch {
    at(['server', 'tls', 'key'], `${displayFile(path)} is not a readable PEM private key`)
    return undefined
  }
}
