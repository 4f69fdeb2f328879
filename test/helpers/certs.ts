// Throwaway certificates made with the real `openssl` CLI (OpenSSL 3.0) into
// a test's directory: a CA, server certificates with SANs, client
// certificates, expired and not-yet-valid ones, and keys that fit no
// certificate. EC P-256 keys: quick to make.
//
//   const ca = makeCa(t.testdir())
//   const server = ca.issue('server', { subject: '/CN=localhost', san: ['IP:127.0.0.1', 'DNS:localhost'] })
//   const client = ca.issue('acme', { subject: '/CN=acme-billing', clientAuth: true })
//   const old = ca.issue('old', { subject: '/CN=old', notBefore: '20200101000000Z', notAfter: '20210101000000Z' })
//
// Dates use `openssl ca -startdate/-enddate` (x509 -req in 3.0 has no way to
// set a start date), with a throwaway CA database in the directory.

import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'

export interface IssuedCert {
  /** Absolute paths of the PEM files. */
  cert: string
  key: string
  /** SHA-256 of the DER, lowercase hex without colons (as x-auth-cert-fingerprint). */
  fingerprint: string
  /** Hex, as openssl and X509Certificate print it. */
  serial: string
  certPem: () => string
  keyPem: () => string
}

export interface IssueOptions {
  /** openssl -subj form, e.g. "/CN=localhost" or "/CN=a/CN=b"; default "/CN=<name>". */
  subject?: string
  /** subjectAltName entries, e.g. ["IP:127.0.0.1", "DNS:localhost"]. */
  san?: string[]
  /** Extended key usage clientAuth (else serverAuth when san is given). */
  clientAuth?: boolean
  /** Validity in days from now (default 30); a negative count gives an already expired certificate. */
  days?: number
  /** YYYYMMDDHHMMSSZ: an explicit validity window instead of days. */
  notBefore?: string
  notAfter?: string
  /** Reuse an existing key file (a rotated certificate for the same key). */
  keyFile?: string
}

export interface CertAuthority {
  dir: string
  cert: string
  key: string
  issue: (name: string, opts?: IssueOptions) => IssuedCert
  /** A fresh private key that belongs to no certificate. */
  strayKey: (name: string) => string
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']

function openssl (args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}

/** A self-signed CA in `dir` (made if missing); `name` keeps several CAs apart in one dir. */
export function makeCa (dir: string, name = 'ca', subject = '/CN=Portico Test CA'): CertAuthority {
  mkdirSync(dir, { recursive: true })
  const cert = join(dir, `${name}.crt`)
  const key = join(dir, `${name}.key`)
  openssl(['req', '-x509', ...EC, '-keyout', key, '-out', cert, '-subj', subject, '-days', '30',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir)
  const db = join(dir, `${name}-db`)
  mkdirSync(db, { recursive: true })
  if (!existsSync(join(db, 'index.txt'))) writeFileSync(join(db, 'index.txt'), '')
  if (!existsSync(join(db, 'serial'))) writeFileSync(join(db, 'serial'), `${(Date.now() % 1e9).toString(16).padStart(8, '0')}\n`)
  const caConfig = join(db, 'ca.cnf')
  writeFileSync(caConfig, [
    '[ ca ]', 'default_ca = dev',
    '[ dev ]', `database = ${join(db, 'index.txt')}`, `serial = ${join(db, 'serial')}`, `new_certs_dir = ${db}`,
    'default_md = sha256', 'policy = anything', 'unique_subject = no', 'copy_extensions = none', 'preserve = yes',
    '[ anything ]', 'commonName = optional', 'organizationName = optional',
  ].join('\n') + '\n')

  const issue = (certName: string, opts: IssueOptions = {}): IssuedCert => {
    const out = join(dir, `${certName}.crt`)
    const keyOut = opts.keyFile ?? join(dir, `${certName}.key`)
    const csr = join(dir, `${certName}.csr`)
    const ext = join(dir, `${certName}.ext`)
    const subject = opts.subject ?? `/CN=${certName}`
    const reqArgs = opts.keyFile !== undefined ? ['-key', opts.keyFile] : [...EC, '-keyout', keyOut]
    openssl(['req', '-new', ...reqArgs, '-out', csr, '-subj', subject, '-multivalue-rdn', '-utf8'], dir)
    const lines = ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment']
    if (opts.san !== undefined) lines.push(`subjectAltName=${opts.san.join(',')}`)
    lines.push(`extendedKeyUsage=${opts.clientAuth === true ? 'clientAuth' : 'serverAuth'}`)
    writeFileSync(ext, lines.join('\n') + '\n')
    if (opts.notBefore !== undefined || opts.notAfter !== undefined || (opts.days ?? 30) < 0) {
      const now = new Date()
      const stamp = (d: Date): string => d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'
      const days = opts.days ?? 30
      const start = opts.notBefore ?? stamp(days < 0 ? new Date(now.getTime() + (days - 1) * 86_400_000) : now)
      const end = opts.notAfter ?? stamp(new Date(now.getTime() + days * 86_400_000))
      openssl(['ca', '-batch', '-config', caConfig, '-cert', cert, '-keyfile', key, '-in', csr, '-out', out,
        '-startdate', start, '-enddate', end, '-extfile', ext, '-notext', '-preserveDN', '-utf8'], dir)
    } else {
      openssl(['x509', '-req', '-in', csr, '-CA', cert, '-CAkey', key, '-CAcreateserial', '-days', String(opts.days ?? 30),
        '-extfile', ext, '-out', out, '-sha256'], dir)
    }
    return describe(out, keyOut)
  }

  const strayKey = (keyName: string): string => {
    const path = join(dir, `${keyName}.key`)
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path], dir)
    return path
  }

  return { dir, cert, key, issue, strayKey }
}

function describe (cert: string, key: string): IssuedCert {
  const x = new X509Certificate(readFileSync(cert))
  return {
    cert,
    key,
    fingerprint: x.fingerprint256.replace(/:/g, '').toLowerCase(),
    serial: x.serialNumber,
    certPem: () => readFileSync(cert, 'utf8'),
    keyPem: () => readFileSync(key, 'utf8'),
  }
}

/** A CA and a server certificate for 127.0.0.1 and localhost, the pair most tests need. */
export function serverPki (dir: string): { ca: CertAuthority, server: IssuedCert } {
  const ca = makeCa(dir)
  const server = ca.issue('server', { subject: '/CN=localhost', san: ['IP:127.0.0.1', 'DNS:localhost'] })
  return { ca, server }
}
