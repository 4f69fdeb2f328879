// The one schema for the whole configuration (main file plus the files it
// names). `duration` and `size` are custom keywords (see validate.ts) so their
// errors read like the README rather than like a regular expression.

const duration = { duration: true }
const size = { size: true }
const name = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const

const server = {
  type: 'object',
  additionalProperties: false,
  properties: {
    host: { type: 'string', minLength: 1 },
    port: { type: 'integer', minimum: 0, maximum: 65535 },
    bodyLimit: size,
    trustProxy: {
      anyOf: [{ type: 'boolean' }, { type: 'string' }, { type: 'integer', minimum: 0 }, { type: 'array', items: { type: 'string' } }],
    },
    shutdownTimeout: duration,
    requestTimeout: duration,
    headersTimeout: duration,
    keepAliveTimeout: duration,
  },
}

const policy = {
  type: 'object',
  additionalProperties: false,
  required: ['auth'],
  properties: {
    auth: { enum: ['none'] },
    description: { type: 'string' },
  },
}

const service = {
  type: 'object',
  additionalProperties: false,
  required: ['urls'],
  properties: {
    urls: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^https?://' } },
    timeout: duration,
    description: { type: 'string' },
  },
}

const method = { type: 'string', enum: HTTP_METHODS }

const route = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'path', 'policy'],
  properties: {
    id: name,
    description: { type: 'string' },
    method: { anyOf: [method, { type: 'array', minItems: 1, items: method }] },
    path: { type: 'string', pattern: '^/' },
    policy: { type: 'string' },
    proxy: {
      type: 'object',
      additionalProperties: false,
      required: ['service'],
      properties: {
        service: { type: 'string' },
        path: { type: 'string', pattern: '^/' },
      },
    },
  },
}

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['services', 'routes'],
  properties: {
    server,
    policies: { type: 'object', propertyNames: name, additionalProperties: policy },
    services: { type: 'object', propertyNames: name, additionalProperties: service },
    routes: { type: 'array', items: route },
  },
}
