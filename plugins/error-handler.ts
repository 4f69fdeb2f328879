// One place turns every failure into RFC 9457 problem+json with a stable code.
// Errors the gateway raised on purpose keep their code; Fastify's own client
// errors are mapped; anything else is a 500 whose details go to the log only.

import fp from 'fastify-plugin'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { GatewayError, PROBLEM_CONTENT_TYPE, problemBody, type ErrorCode } from '../src/util/errors.js'
import { MAX_VALIDATION_ERRORS, boundedField } from '../src/pipeline/validation/validators.js'
import { ClientGone } from '../src/util/cancellation.js'

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'BAD_REQUEST',
}

const SAFE_DETAILS: Partial<Record<ErrorCode, string>> = {
  PAYLOAD_TOO_LARGE: 'the request body exceeds the configured limit',
  UNSUPPORTED_MEDIA_TYPE: 'this route does not accept the request\'s content type',
  BAD_REQUEST: 'the request is malformed',
}

/** Any thrown value → the GatewayError the client will see. */
export function toGatewayError (err: unknown): GatewayError {
  if (err instanceof GatewayError) return err
  const e = err as Partial<FastifyError> & { type?: string }
  const mapped = e.code !== undefined ? FASTIFY_CODES[e.code] : undefined
  if (mapped !== undefined) return new GatewayError(mapped, SAFE_DETAILS[mapped], { cause: err })
  if (e.validation !== undefined) {
    // The validators report at most MAX_VALIDATION_ERRORS; the cap here keeps any other source bounded too.
    const errors = e.validation.slice(0, MAX_VALIDATION_ERRORS).map(v => ({
      field: fieldOf(v.instancePath, v.params, e.validationContext),
      message: v.keyword === 'required' ? 'is required' : v.message ?? 'is invalid',
    }))
    return new GatewayError('VALIDATION_FAILED', errors.map(x => `${x.field} ${x.message}`).join('; '), { extras: { errors }, cause: err })
  }
  // JSON.parse failures from body parsing surface as SyntaxError with status 400.
  if (err instanceof SyntaxError || (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500)) {
    return new GatewayError('BAD_REQUEST', SAFE_DETAILS.BAD_REQUEST, { cause: err })
  }
  return new GatewayError('INTERNAL_ERROR', 'the gateway failed to handle this request', { cause: err })
}

function fieldOf (instancePath: string, params: Record<string, unknown>, context: string | undefined): string {
  const missing = params?.missingProperty
  const parts = instancePath.split('/').filter(p => p !== '')
  if (typeof missing === 'string') parts.push(missing)
  return boundedField([context ?? 'body', ...parts].join('.'))
}

function bodyUnread (request: FastifyRequest): boolean {
  const raw = request.raw
  if (raw.complete) return false
  const length = raw.headers['content-length']
  return raw.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

export function sendProblem (request: FastifyRequest, reply: FastifyReply, error: GatewayError): FastifyReply {
  if (error.headers !== undefined) reply.headers(error.headers)
  // Refused before the client finished sending its body (413, a timeout):
  // the rest of it is not worth reading on a kept-alive connection.
  if (bodyUnread(request)) reply.header('connection', 'close')
  return reply
    .code(error.status)
    .type(PROBLEM_CONTENT_TYPE)
    .send(problemBody(error, request.id))
}

export default fp(async function errorHandler (app) {
  app.setErrorHandler(function handleError (err, request, reply) {
    // Nobody is left to read an answer: 499 (as nginx logs it) marks the
    // request in the access log and metrics; it is not a gateway failure.
    if (err instanceof ClientGone) return reply.code(499).send()
    const error = toGatewayError(err)
    // An open breaker refuses every call by design; its state changes are
    // logged once by the breaker, not once per refused request.
    if (error.status >= 500 && error.code !== 'CIRCUIT_OPEN') {
      const cause = error.cause as (Error & { code?: string }) | undefined
      if (error.code === 'INTERNAL_ERROR') request.log.error({ err }, 'unhandled error')
      else request.log.warn({ code: error.code, cause: cause?.code ?? cause?.message }, error.message)
    }
    return sendProblem(request, reply, error)
  })
  app.setNotFoundHandler(function notFound (request, reply) {
    return sendProblem(request, reply, new GatewayError('ROUTE_NOT_FOUND', `no route for ${request.method} ${request.url.split('?')[0]}`))
  })
}, { name: 'portico-error-handler' })
