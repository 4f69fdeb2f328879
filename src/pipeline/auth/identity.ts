// Who the client is, once a policy has authenticated it. Templates read
// `{auth.CLAIM}` from `claims`; upstreams get sub/roles/scopes as headers.

export interface Identity {
  sub: string
  roles: string[]
  scopes: string[]
  claims: Record<string, unknown>
  /** auth: mtls: SHA-256 of the client certificate's DER, lowercase hex (x-auth-cert-fingerprint upstream). */
  certFingerprint?: string
}

declare module 'fastify' {
  interface FastifyRequest {
    auth?: Identity
  }
}
