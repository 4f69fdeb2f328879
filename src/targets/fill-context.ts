// What a route's templates (upstream paths, part queries and headers, cache
// tags, invalidation tags) read from the request. Built in one place so every
// template sees the same values; it is a four-field object of references, so
// it is cheap enough to build wherever a template is filled.

import type { FastifyRequest } from 'fastify'
import type { FillContext } from '../util/template.js'

export function fillContext (request: FastifyRequest): FillContext {
  return {
    params: request.params as Record<string, string>,
    query: request.query as Record<string, unknown>,
    headers: request.headers,
    auth: request.auth?.claims,
  }
}
