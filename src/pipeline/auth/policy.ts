// A policy from the security team's file, compiled once into two functions:
// authenticate (who is this? → Identity or 401) and authorize (may they? →
// nothing or 403). 403 details name what was missing, never the token.

import type { FastifyRequest } from 'fastify'
import { GatewayError } from '../../util/errors.js'
import type { ApiKeysConfig, AuthKind, ClaimValue, JwtConfig, PolicyConfig } from '../../config/types.js'
import type { Identity } from './identity.js'
import { InvalidTokenError, type TokenVerifier } from './jwt.js'
import type { ApiKeyLookup } from './api-key.js'
import { identityFromClaims } from './token-identity.js'

export interface CompiledPolicy {
  name: string
  auth: AuthKind
  forwardAuthorization: boolean
  /** The configured API-key header, never forwarded upstream on any route (the key's name is, as x-auth-sub). */
  credentialHeader?: string
  /** Resolves the identity or throws 401; undefined for `auth: none`. */
  authenticate: (request: FastifyRequest) => Promise<Identity | undefined>
  /** Throws 403 when the identity lacks what the policy requires. */
  authorize: (identity: Identity) => void
}

/** What policies verify with, built once per config and shared by every policy of a kind. */
export interface AuthDeps {
  /** The verifier for the gateway's auth.jwt (one for all jwt policies: one token cache, one JWKS cache). */
  tokenVerifier: (jwt: JwtConfig) => TokenVerifier
  apiKeyLookup: (apiKeys: ApiKeysConfig) => ApiKeyLookup
  /** The configured API-key header, if any. */
  credentialHeader?: string
}

const REALM = 'realm="portico"'

export function compilePolicy (policy: PolicyConfig, deps: AuthDeps): CompiledPolicy {
  return {
    name: policy.name,
    auth: policy.auth,
    forwardAuthorization: policy.forwardAuthorization,
    // An API key is a credential wherever it is sent: never forwarded, on any route.
    ...(deps.credentialHeader !== undefined ? { credentialHeader: deps.credentialHeader } : {}),
    authenticate: compileAuthenticate(policy, deps),
    authorize: compileAuthorize(policy),
  }
}

function compileAuthenticate (policy: PolicyConfig, deps: AuthDeps): CompiledPolicy['authenticate'] {
  switch (policy.auth) {
    case 'none': return async () => undefined
    case 'apiKey': return apiKeyAuthenticator(policy.apiKeys, deps.apiKeyLookup(policy.apiKeys))
    case 'jwt': return jwtAuthenticator(deps.tokenVerifier(policy.jwt), policy.jwt.rolesClaim)
  }
}

function apiKeyAuthenticator ({ header }: ApiKeysConfig, lookup: ApiKeyLookup): CompiledPolicy['authenticate'] {
  const challenge = `ApiKey ${REALM}, header="${header}"`
  return async function authenticateApiKey (request) {
    const presented = request.headers[header]
    if (typeof presented !== 'string' || presented === '') {
      throw new GatewayError('UNAUTHENTICATED', `an API key is required in the ${header} header`, { headers: { 'www-authenticate': challenge } })
    }
    const key = lookup(presented)
    if (key === undefined) throw new GatewayError('UNAUTHENTICATED', 'invalid API key', { headers: { 'www-authenticate': challenge } })
    return { sub: key.name, roles: key.roles, scopes: key.scopes, claims: { sub: key.name } }
  }
}

function jwtAuthenticator (verify: TokenVerifier, rolesClaim: string): CompiledPolicy['authenticate'] {
  return async function authenticateJwt (request) {
    const header = request.headers.authorization
    if (header === undefined || header === '') {
      throw new GatewayError('UNAUTHENTICATED', 'a bearer token is required', { headers: { 'www-authenticate': `Bearer ${REALM}` } })
    }
    const token = bearerToken(header)
    if (token === undefined) throw invalidToken('expected "Authorization: Bearer <token>"')
    try {
      return identityFromClaims(await verify(token), rolesClaim)
    } catch (err) {
      if (err instanceof InvalidTokenError) throw invalidToken(err.detail)
      throw err
    }
  }
}

function bearerToken (header: string): string | undefined {
  const space = header.indexOf(' ')
  if (space === -1 || header.slice(0, space).toLowerCase() !== 'bearer') return undefined
  const token = header.slice(space + 1).trim()
  return token === '' ? undefined : token
}

function invalidToken (detail: string): GatewayError {
  // RFC 6750 §3: error="invalid_token"; the description is ours, never the token.
  return new GatewayError('UNAUTHENTICATED', detail, {
    headers: { 'www-authenticate': `Bearer ${REALM}, error="invalid_token", error_description="${detail.replace(/"/g, '\'')}"` },
  })
}

function compileAuthorize (policy: PolicyConfig): CompiledPolicy['authorize'] {
  const roles = policy.roles
  const scopes = policy.scopes
  const claims = Object.entries(policy.claims)
  if (roles.length === 0 && scopes.length === 0 && claims.length === 0) return () => {}
  return function authorize (identity) {
    if (roles.length > 0 && !roles.some(r => identity.roles.includes(r))) {
      throw new GatewayError('FORBIDDEN', `requires one of the roles: ${roles.join(', ')}`)
    }
    const missing = scopes.filter(s => !identity.scopes.includes(s))
    if (missing.length > 0) throw new GatewayError('FORBIDDEN', `requires the scopes: ${missing.join(' ')}`)
    for (const [claim, allowed] of claims) {
      if (!claimMatches(identity.claims[claim], allowed)) {
        throw new GatewayError('FORBIDDEN', `requires the claim ${claim} to be ${allowed.length === 1 ? String(allowed[0]) : `one of ${allowed.join(', ')}`}`)
      }
    }
  }
}

function claimMatches (value: unknown, allowed: ClaimValue[]): boolean {
  if (Array.isArray(value)) return value.some(v => allowed.includes(v as ClaimValue))
  return allowed.includes(value as ClaimValue)
}
