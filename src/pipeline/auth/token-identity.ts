// A verified token's claims turned into the identity the gateway acts on. A
// signature proves who issued the claims, not that they can serve as an
// identity: `sub` keys rate limits, per-user caches and `{auth.sub}`
// templates, and roles and scopes travel upstream joined by `,` and ` `. A
// value that is not a plain string (or that holds the separator) would be
// flattened into something that collides with another identity, so such a
// token is refused rather than guessed at.

import type { Identity } from './identity.js'
import { InvalidTokenError } from './jwt.js'

const DATE_CLAIMS = ['exp', 'nbf', 'iat'] as const

export function identityFromClaims (claims: Record<string, unknown>, rolesClaim: string): Identity {
  const sub = claims.sub
  if (typeof sub !== 'string' || sub === '') throw new InvalidTokenError('token sub must be a non-empty string')
  for (const name of DATE_CLAIMS) {
    // fast-jwt checks exp/nbf only when they are numbers or strings; null, or an iat of any type, passes it.
    if (name in claims && (typeof claims[name] !== 'number' || !Number.isFinite(claims[name]))) {
      throw new InvalidTokenError(`token ${name} must be a number`)
    }
  }
  return { sub, roles: roles(claims[rolesClaim], rolesClaim), scopes: scopes(claims), claims }
}

function roles (value: unknown, name: string): string[] {
  if (value === undefined) return []
  // Some identity providers send one role, or a space/comma separated list, as a plain string.
  if (typeof value === 'string') return value.split(/[\s,]+/).filter(s => s !== '')
  if (!isStringList(value, /,/)) throw new InvalidTokenError(`token ${name} must be an array of strings or a string`)
  return value
}

function scopes (claims: Record<string, unknown>): string[] {
  if (claims.scope !== undefined) {
    if (typeof claims.scope !== 'string') throw new InvalidTokenError('token scope must be a space-separated string')
    return claims.scope.split(' ').filter(s => s !== '')
  }
  if (claims.scp === undefined) return []
  if (!isStringList(claims.scp, /\s/)) throw new InvalidTokenError('token scp must be an array of strings')
  return claims.scp
}

/** An array of non-empty strings, none holding the separator used when the list is sent upstream. */
function isStringList (value: unknown, separator: RegExp): value is string[] {
  return Array.isArray(value) && value.every(v => typeof v === 'string' && v !== '' && !separator.test(v))
}
