// JWTs built by hand with node:crypto, so a test controls every byte: the
// header (alg, kid, `none`), the claims (exp/nbf in the past or future) and
// the key (including keys a real signer would refuse, like an RSA public key
// PEM used as an HMAC secret).

import { createHmac, createPublicKey, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto'

export type Claims = Record<string, unknown>

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')

/** Seconds since the epoch, as JWT dates are. */
export const now = (): number => Math.floor(Date.now() / 1000)

/** HS256/384/512 with any secret text (or bytes). */
export function signHs (claims: Claims, secret: string | Buffer, header: Record<string, unknown> = {}): string {
  const alg = (header.alg as string | undefined) ?? 'HS256'
  const input = `${b64({ typ: 'JWT', ...header, alg })}.${b64(claims)}`
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg] ?? 'sha256'
  return `${input}.${createHmac(hash, secret).update(input).digest('base64url')}`
}

/** RS256 or ES256 with a private key. */
export function signAsym (claims: Claims, privateKey: KeyObject, header: Record<string, unknown> & { alg: 'RS256' | 'ES256' }): string {
  const input = `${b64({ typ: 'JWT', ...header })}.${b64(claims)}`
  const signature = header.alg === 'ES256'
    ? cryptoSign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' })
    : cryptoSign('sha256', Buffer.from(input), privateKey)
  return `${input}.${signature.toString('base64url')}`
}

/** An unsigned token (`alg: none`, empty signature segment). */
export function unsigned (claims: Claims): string {
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`
}

export interface KeyPair {
  privateKey: KeyObject
  publicKey: KeyObject
  /** SPKI PEM text of the public key, as written to a publicKey file. */
  publicPem: string
}

export function rsaKeys (): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return { privateKey, publicKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() }
}

export function ecKeys (): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return { privateKey, publicKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() }
}

/** The public half as a JWK with kid/alg/use, as an identity provider publishes it. */
export function jwk (keys: KeyPair, kid: string, alg: string): Record<string, unknown> {
  return { ...createPublicKey(keys.publicPem).export({ format: 'jwk' }), kid, alg, use: 'sig' }
}
