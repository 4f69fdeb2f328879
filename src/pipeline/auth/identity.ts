// Who the client is, once a policy has authenticated it. Templates read
// `{auth.CLAIM}` from `claims`; upstreams get sub/roles/scopes as headers.

export interface Identity {
  sub: string
  roles: string[]
  scopes: string[]
  claims: Record<string, unknown>
}

declare module 'fastify' {
  interface FastifyRequest {
    auth?: Identity
  }
}
