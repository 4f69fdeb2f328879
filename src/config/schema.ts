// The one schema for the whole configuration (main file plus the files it
// names). `duration` and `size` are custom keywords (see validate.ts) so their
// errors read like the README rather than like a regular expression.

import { edgeServerProperties, mtlsPolicyProperties } from './tls.js'

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
      'x-message': 'must be true, false, a number of hops, or addresses',
    },
    shutdownTimeout: duration,
    requestTimeout: duration,
    headersTimeout: duration,
    keepAliveTimeout: duration,
    workers: { anyOf: [{ type: 'integer', minimum: 1, maximum: 256 }, { const: 'auto' }], 'x-message': 'must be a number of worker processes or "auto"' },
    paths: {
      type: 'object',
      additionalProperties: false,
      properties: {
        mergeSlashes: { type: 'boolean' },
        escapedSlashes: { enum: ['reject', 'keep'] },
        backslashes: { enum: ['reject', 'keep'] },
        pathParameters: { enum: ['reject', 'keep'] },
        caseInsensitive: { type: 'boolean' },
      },
    },
    ...edgeServerProperties,
  },
}

export const JWT_ALGORITHMS = [
  'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA',
] as const

const stringList = { type: 'array', items: { type: 'string', minLength: 1 } }
const stringOrList = { anyOf: [{ type: 'string', minLength: 1 }, stringList], 'x-message': 'must be a string or a list of strings' }

export const rateLimit = {
  type: 'object',
  additionalProperties: false,
  required: ['max', 'window'],
  properties: {
    max: { type: 'integer', minimum: 1 },
    window: duration,
    key: { type: 'string', pattern: '^(ip|user|header:[A-Za-z0-9-]+)$', 'x-message': 'must be ip, user or header:NAME' },
  },
}

const admin = {
  type: 'object',
  additionalProperties: false,
  properties: {
    host: { type: 'string', minLength: 1 },
    port: { type: 'integer', minimum: 0, maximum: 65535 },
    token: { type: 'string' },
  },
}

const cacheSettings = {
  type: 'object',
  additionalProperties: false,
  properties: {
    maxEntries: { type: 'integer', minimum: 1 },
    maxBytes: size,
    timeout: duration,
    near: { type: 'boolean' },
  },
}

const events = {
  type: 'object',
  additionalProperties: false,
  properties: {
    // auto (or empty, for `${EVENTS_SINK:-}`): redis when redis.url is set, else memory.
    sink: { enum: ['redis', 'memory', 'auto', ''], 'x-message': 'must be redis, memory or auto' },
    maxLen: { type: 'integer', minimum: 1 },
    idempotencyWindow: duration,
    publishRetries: { type: 'integer', minimum: 0, maximum: 10 },
  },
}

const tracing = {
  type: 'object',
  additionalProperties: false,
  properties: {
    otlpUrl: { type: 'string' },
    serviceName: { type: 'string', minLength: 1 },
  },
}

const redis = {
  type: 'object',
  additionalProperties: false,
  properties: {
    url: { type: 'string' },
    keyPrefix: { type: 'string' },
  },
}

const auth = {
  type: 'object',
  additionalProperties: false,
  properties: {
    jwt: {
      type: 'object',
      additionalProperties: false,
      properties: {
        secret: { type: 'string' },
        publicKey: { type: 'string', minLength: 1 },
        jwksUrl: { type: 'string', pattern: '^https?://' },
        jwksCacheTtl: duration,
        jwksMinRefetchInterval: duration,
        algorithms: { type: 'array', minItems: 1, items: { enum: JWT_ALGORITHMS } },
        issuer: stringOrList,
        audience: stringOrList,
        clockTolerance: duration,
        rolesClaim: { type: 'string', minLength: 1 },
        requireExp: { type: 'boolean' },
      },
    },
    apiKeys: {
      type: 'object',
      additionalProperties: false,
      required: ['keys'],
      properties: {
        header: { type: 'string', pattern: '^[A-Za-z0-9-]+$', 'x-message': 'must be a header name' },
        keys: {
          type: 'object',
          propertyNames: name,
          additionalProperties: {
            type: 'object',
            additionalProperties: false,
            required: ['key'],
            properties: {
              key: { type: 'string' },
              roles: stringList,
              scopes: stringList,
            },
          },
        },
      },
    },
  },
}

const claimValue = { type: ['string', 'number', 'boolean'] }

const policy = {
  type: 'object',
  additionalProperties: false,
  required: ['auth'],
  properties: {
    auth: { enum: ['none', 'jwt', 'apiKey', 'mtls'] },
    ...mtlsPolicyProperties,
    roles: stringList,
    scopes: stringList,
    claims: {
      type: 'object',
      additionalProperties: { anyOf: [claimValue, { type: 'array', minItems: 1, items: claimValue }], 'x-message': 'must be a value or a list of values' },
    },
    forwardAuthorization: { type: 'boolean' },
    rateLimit,
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
    retries: { type: 'integer', minimum: 0, maximum: 5 },
    breaker: {
      type: 'object',
      additionalProperties: false,
      properties: {
        errorThresholdPercentage: { type: 'number', exclusiveMinimum: 0, maximum: 100 },
        volumeThreshold: { type: 'integer', minimum: 0 },
        resetTimeout: duration,
        rollingCountTimeout: duration,
      },
    },
    passiveHealth: {
      type: 'object',
      additionalProperties: false,
      properties: {
        failures: { type: 'integer', minimum: 1 },
        ejectFor: duration,
      },
    },
    healthCheck: {
      type: 'object',
      additionalProperties: false,
      required: ['path', 'interval'],
      properties: {
        path: { type: 'string', pattern: '^/' },
        interval: duration,
        timeout: duration,
      },
    },
    connections: { type: 'integer', minimum: 1, maximum: 4096 },
    maxResponseSize: size,
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
    method: { anyOf: [method, { type: 'array', minItems: 1, items: method }], 'x-message': 'must be an HTTP method (GET, POST, …) or a list of them' },
    path: { type: 'string', pattern: '^/' },
    policy: { type: 'string' },
    rateLimit,
    cache: {
      type: 'object',
      additionalProperties: false,
      required: ['ttl'],
      properties: {
        ttl: duration,
        scope: { enum: ['public', 'user'] },
        staleWhileRevalidate: duration,
        staleIfError: duration,
        tags: { type: 'array', items: { type: 'string', minLength: 1 } },
        vary: { type: 'array', items: { type: 'string', pattern: '^[A-Za-z0-9-]+$', 'x-message': 'must be a header name' } },
      },
    },
    invalidates: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
    publish: {
      type: 'object',
      additionalProperties: false,
      required: ['stream', 'type'],
      properties: {
        stream: { type: 'string', minLength: 1 },
        type: { type: 'string', minLength: 1 },
        from: { enum: ['response', 'request'] },
      },
    },
    command: {
      type: 'object',
      additionalProperties: false,
      required: ['stream'],
      properties: {
        stream: { type: 'string', minLength: 1 },
        type: { type: 'string', minLength: 1 },
        statusPath: { type: 'string', pattern: '^/' },
      },
    },
    schema: {
      type: 'object',
      additionalProperties: false,
      properties: {
        body: { type: 'object' },
        querystring: { type: 'object' },
        params: { type: 'object' },
        headers: { type: 'object' },
      },
    },
    aggregate: {
      type: 'object',
      minProperties: 1,
      propertyNames: name,
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['service', 'path'],
        properties: {
          service: { type: 'string' },
          path: { type: 'string', pattern: '^/' },
          query: { type: 'object', additionalProperties: { type: 'string' } },
          headers: { type: 'object', propertyNames: { pattern: '^[A-Za-z0-9-]+$' }, additionalProperties: { type: 'string' } },
          timeout: duration,
          optional: { type: 'boolean' },
          fallback: {},
          pick: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
        },
      },
    },
    // Each plugin's own schema checks its entry (src/extensions).
    plugins: { type: 'object' },
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
    admin,
    redis,
    cache: cacheSettings,
    events,
    tracing,
    auth,
    policies: { type: 'object', propertyNames: name, additionalProperties: policy },
    services: { type: 'object', propertyNames: name, additionalProperties: service },
    routes: { type: 'array', items: route },
    extensions: { type: 'array', items: { type: 'string', minLength: 1 } },
    plugins: { type: 'object' },
  },
}
