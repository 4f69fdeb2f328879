// Token verification, built once per config with fast-jwt (the engine behind
// @fastify/jwt). Each key kind gets its own verifier restricted to the
// algorithms that fit it: an HS token is only ever checked against the shared
// secret and an RS/ES token only against public keys, so "HS256 signed with
// the RSA public key" cannot pass, and `none` is never in any allowlist.

import { createVerifier, TokenError } from 'fast-jwt'
import type { JwtConfig } from '../../config/types.js'
import { JwksKeySource, UnknownKeyError } from './jwks.js'

export type TokenVerifier = (token: string) => Promise<Record<string, unknown>>

/** Why a token was refused; `detail` is safe to show the client. */
export class InvalidTokenError extends Error {
  constructor (readonly detail: string) { super(detail) }
}

const MAX_TOKEN_LENGTH = 8192

export function createTokenVerifier (cfg: JwtConfig): TokenVerifier {
  const hsAlgorithms = cfg.algorithms.filter(a => a.startsWith('HS'))
  const keyAlgorithms = cfg.algorithms.filter(a => !a.startsWith('HS'))
  const common = {
    ...(cfg.issuer !== undefined ? { allowedIss: cfg.issuer } : {}),
    ...(cfg.audience !== undefined ? { allowedAud: cfg.audience } : {}),
    // fast-jwt checks iss/aud only when the token carries them; a configured
    // issuer or audience must also be present, or leaving it out would pass.
    // `sub` is the identity sent upstream and the key of per-user limits; a
    // token without `exp` would stay valid forever.
    requiredClaims: [
      'sub',
      ...(cfg.requireExp ? ['exp'] : []),
      ...(cfg.issuer !== undefined ? ['iss'] : []),
      ...(cfg.audience !== undefined ? ['aud'] : []),
    ],
    clockTolerance: cfg.clockTolerance,
    // Verified tokens are cached (bounded), so a client reusing its token
    // costs one hash lookup; exp/nbf are still honoured by the cache.
    // fast-jwt's own key (a hash of the token) is kept: a custom key builder
    // makes fast-jwt warn about a security risk at every start.
    cache: 2048,
    cacheTTL: 600_000,
  }
  type Verify = (token: string) => unknown
  const hs: Verify | undefined = cfg.secret !== undefined && hsAlgorithms.length > 0
    ? createVerifier({ ...common, key: cfg.secret, algorithms: hsAlgorithms as never })
    : undefined
  let asym: Verify | undefined
  if (keyAlgorithms.length > 0 && cfg.publicKey !== undefined) {
    // The key only changes with the config, and a reload builds a new verifier (and cache).
    asym = createVerifier({ ...common, key: cfg.publicKey, algorithms: keyAlgorithms as never })
  } else if (keyAlgorithms.length > 0 && cfg.jwksUrl !== undefined) {
    asym = createJwksVerifier(new JwksKeySource(cfg.jwksUrl, { cacheTtl: cfg.jwksCacheTtl, minRefetchInterval: cfg.jwksMinRefetchInterval }), { ...common, algorithms: keyAlgorithms as never })
  }

  return async function verifyToken (token) {
    if (token.length > MAX_TOKEN_LENGTH) throw new InvalidTokenError('token too long')
    const alg = peekAlgorithm(token)
    if (alg === undefined) throw new InvalidTokenError('malformed token')
    const verify = alg.startsWith('HS') ? hs : keyAlgorithms.includes(alg as never) ? asym : undefined
    if (verify === undefined || !cfg.algorithms.includes(alg as never)) throw new InvalidTokenError('token algorithm not allowed')
    try {
      const payload = await verify(token)
      if (payload === null || typeof payload !== 'object') throw new InvalidTokenError('malformed token')
      return payload as Record<string, unknown>
    } catch (err) {
      throw toInvalidToken(err)
    }
  }
}

/**
 * Verification against a JWKS key set. A cached verification skips the key
 * lookup, so the key set's age is checked before the cache is asked: the
 * first request after `jwksCacheTtl` starts a refetch, and once it has
 * landed, if a key was withdrawn or replaced, the verifier (with its cache)
 * is rebuilt, so no token signed with that key passes again. Cached answers
 * do not wait for that fetch: a slow identity provider must not stall every
 * request once per TTL (a cache miss does wait, in getKey).
 */
function createJwksVerifier (jwks: JwksKeySource, options: Parameters<typeof createVerifier>[0]): (token: string) => Promise<unknown> {
  const build = (): ((token: string) => Promise<unknown>) => createVerifier({
    ...options,
    key: async (decoded: { header: Record<string, unknown> }) => await jwks.getKey(decoded.header.kid as string | undefined, String(decoded.header.alg)),
  })
  let verifier = build()
  let generation = jwks.generation
  return async function verifyWithJwks (token) {
    void jwks.refreshIfDue()
    if (jwks.generation !== generation) {
      generation = jwks.generation
      verifier = build()
    }
    return await verifier(token)
  }
}

/** The `alg` of a compact JWS header, without trusting anything else in it. */
function peekAlgorithm (token: string): string | undefined {
  const dot = token.indexOf('.')
  if (dot <= 0) return undefined
  const segment = token.slice(0, dot)
  // An issuer's tokens share one header: decode each distinct one once.
  if (headerAlgorithms.has(segment)) return headerAlgorithms.get(segment)
  let alg: string | undefined
  try {
    const header = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8')) as { alg?: unknown }
    alg = typeof header.alg === 'string' ? header.alg : undefined
  } catch {
    alg = undefined
  }
  if (segment.length <= 512) {
    if (headerAlgorithms.size >= 256) headerAlgorithms.delete(headerAlgorithms.keys().next().value as string)
    headerAlgorithms.set(segment, alg)
  }
  return alg
}

const headerAlgorithms = new Map<string, string | undefined>()

const DETAILS: Record<string, string> = {
  [TokenError.codes.expired]: 'token expired',
  [TokenError.codes.inactive]: 'token not yet valid',
  [TokenError.codes.invalidSignature]: 'invalid token signature',
  [TokenError.codes.invalidAlgorithm]: 'token algorithm not allowed',
  [TokenError.codes.invalidClaimValue]: 'token issuer or audience not accepted',
  [TokenError.codes.invalidClaimType]: 'token claims are malformed',
  [TokenError.codes.missingRequiredClaim]: 'token lacks a required claim',
  [TokenError.codes.missingSignature]: 'token is not signed',
  [TokenError.codes.malformed]: 'malformed token',
  [TokenError.codes.invalidPayload]: 'malformed token',
  [TokenError.codes.invalidKey]: 'token cannot be verified with the configured key',
  [TokenError.codes.keyFetchingError]: 'no key to verify this token',
}

function toInvalidToken (err: unknown): InvalidTokenError {
  if (err instanceof InvalidTokenError) return err
  if (err instanceof UnknownKeyError) return new InvalidTokenError('no key to verify this token')
  const code = (err as { code?: string }).code
  // The claim names come from our own requiredClaims list, never from the token.
  const missing = code === TokenError.codes.missingRequiredClaim ? /^The (sub|exp|iss|aud) claim is required/.exec((err as Error).message) : null
  if (missing !== null) return new InvalidTokenError(`token lacks the ${missing[1]} claim`)
  // fast-jwt reports a non-numeric exp/nbf as a wrong claim value, like a foreign issuer.
  if (code === TokenError.codes.invalidClaimValue && /^The (exp|nbf|iat) claim/.test((err as Error).message)) return new InvalidTokenError('token claims are malformed')
  return new InvalidTokenError((code !== undefined ? DETAILS[code] : undefined) ?? 'invalid token')
}
