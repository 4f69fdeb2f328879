// Turns the loaded YAML into a GatewayConfig: schema check (ajv), then the
// cross-references a schema cannot express, then normalization. Every problem
// is collected and reported at once, each as FILE:LINE: field: message.

import AjvModule, { type ErrorObject } from 'ajv'
import FindMyWay from 'find-my-way'
import { configSchema, HTTP_METHODS } from './schema.js'
import { loadConfigSource, type SourceMap } from './load.js'
import { ConfigError, displayFile, type ConfigProblem, type FieldPath } from './problems.js'
import { parseDuration, parseSize, DURATION_HINT, SIZE_HINT } from './units.js'
import {
  DEFAULTS, type AggregatePartConfig, type AuthConfig, type RouteCacheConfig, type ClaimValue, type GatewayConfig, type HttpMethod, type JwtAlgorithm, type JwtConfig, type PolicyConfig,
  type RateLimitConfig, type RateLimitKey, type RouteConfig, type RouteSchema, type ServiceConfig, type ServerConfig, type PathRules,
} from './types.js'
import { readFileSync } from 'node:fs'
import { createPublicKey } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { dirname, resolve } from 'node:path'
import addFormats from 'ajv-formats'
import { parseTemplate, TemplateError } from '../util/template.js'
import { checkEdgeServer, type EdgeCheck } from './tls.js'

/** Paths the gateway serves itself; a route may not take them. */
export const RESERVED_PATHS = ['/healthz', '/readyz']

// ajv is CommonJS; under ESM its class is the default export's `default`.
const Ajv = AjvModule.default
const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true })
ajv.addKeyword({ keyword: 'duration', schemaType: 'boolean', validate: (_: boolean, data: unknown) => parseDuration(data) !== undefined })
ajv.addKeyword({ keyword: 'x-message', schemaType: 'string' })
ajv.addKeyword({ keyword: 'size', schemaType: 'boolean', validate: (_: boolean, data: unknown) => parseSize(data) !== undefined })
const validateSchema = ajv.compile(configSchema)

export interface LoadResult {
  config: GatewayConfig
  warnings: ConfigProblem[]
}

/**
 * Checks run after the built-in ones on the same loaded source (the
 * extensions' plugin configs), so their problems are reported together.
 */
export type ExtraCheck = (raw: unknown, map: SourceMap) => ConfigProblem[]

/**
 * Loads and validates a config file; throws ConfigError listing every problem.
 * Plugin entries are only checked through `extra`: the gateway and the CLI load
 * through loadGatewayConfig (src/extensions/load-config.ts), which passes it.
 */
export function loadConfig (file: string, env: NodeJS.ProcessEnv = process.env, extra?: ExtraCheck): LoadResult {
  const { raw, map, problems, fatal, file: main } = loadConfigSource(file, env)
  if (fatal) throw new ConfigError(problems)
  // A field an earlier stage already faulted (an unset variable, a schema
  // error) is not reported again by a later one, less clearly.
  const add = (found: ConfigProblem[]): void => {
    const earlier = [...problems]
    problems.push(...found.filter(c => !earlier.some(f => c.path === f.path || c.path.startsWith(f.path + '.') || c.path.startsWith(f.path + '['))))
  }
  const schemaOk = validateSchema(raw)
  if (!schemaOk) add(schemaProblems(validateSchema.errors ?? [], raw, map))
  const publicKeys = new Map<string, string>()
  let edge: EdgeCheck | undefined
  try {
    edge = checkEdgeServer(raw, map, main, env)
    add(edge.problems)
    add([...crossCheck(raw as unknown as RawConfig, map), ...checkAuth(raw as unknown as RawConfig, map, main, publicKeys)])
    if (extra !== undefined) add(extra(raw, map))
  } catch (err) {
    // Cross-checks assume the schema's shape; with schema errors they may
    // trip over malformed data, and the schema errors already say why.
    if (schemaOk) throw err
  }
  add(checkEnvPort(env, map))
  const all = dedupe(problems)
  if (all.some(p => p.warning !== true)) throw new ConfigError(all)
  return { config: normalize(raw as unknown as RawConfig, map, main, env, publicKeys, edge), warnings: all }
}

/** `PORT` overrides server.port: a value that is not a port is a config error, not a silent 8080. */
function checkEnvPort (env: NodeJS.ProcessEnv, map: SourceMap): ConfigProblem[] {
  const port = env.PORT
  if (port === undefined || port === '' || (/^\d{1,5}$/.test(port) && Number(port) <= 65535)) return []
  const shown = port.length > 20 ? `${port.slice(0, 20)}…` : port
  return [{ ...map.locate(['server', 'port']), message: `the PORT environment variable (${JSON.stringify(shown)}) must be a port number from 0 to 65535` }]
}

// ---- the validated shape, before normalization -----------------------------

interface RawRateLimit { max: number, window: string | number, key?: RateLimitKey }

interface RawRoute {
  id: string
  description?: string
  method?: HttpMethod | HttpMethod[]
  path: string
  policy: string
  rateLimit?: RawRateLimit
  schema?: RouteSchema
  proxy?: { service: string, path?: string }
  aggregate?: Record<string, RawPart>
  cache?: { ttl: string | number, scope?: 'public' | 'user', staleWhileRevalidate?: string | number, staleIfError?: string | number, tags?: string[], vary?: string[] }
  invalidates?: string[]
  publish?: { stream: string, type: string, from?: 'response' | 'request' }
  command?: { stream: string, type?: string, statusPath?: string }
}

interface RawPart {
  service: string
  path: string
  query?: Record<string, string>
  headers?: Record<string, string>
  timeout?: string | number
  optional?: boolean
  fallback?: unknown
  pick?: string[]
}

interface RawPolicy {
  auth: PolicyConfig['auth']
  subjects?: string[]
  roles?: string[]
  scopes?: string[]
  claims?: Record<string, ClaimValue | ClaimValue[]>
  forwardAuthorization?: boolean
  rateLimit?: RawRateLimit
}

interface RawJwt {
  secret?: string
  publicKey?: string
  jwksUrl?: string
  jwksCacheTtl?: string | number
  jwksMinRefetchInterval?: string | number
  algorithms?: JwtAlgorithm[]
  issuer?: string | string[]
  audience?: string | string[]
  clockTolerance?: string | number
  rolesClaim?: string
  requireExp?: boolean
}

interface RawService {
  urls: string[]
  timeout?: string | number
  retries?: number
  breaker?: { errorThresholdPercentage?: number, volumeThreshold?: number, resetTimeout?: string | number, rollingCountTimeout?: string | number }
  passiveHealth?: { failures?: number, ejectFor?: string | number }
  healthCheck?: { path: string, interval: string | number, timeout?: string | number }
  connections?: number
  maxResponseSize?: string | number
}

interface RawConfig {
  server?: Partial<Record<keyof ServerConfig, unknown>>
  admin?: { host?: string, port?: number, token?: string }
  cache?: { maxEntries?: number, maxBytes?: string | number, timeout?: string | number, near?: boolean }
  tracing?: { otlpUrl?: string, serviceName?: string }
  events?: { sink?: 'redis' | 'memory' | 'auto' | '', maxLen?: number, idempotencyWindow?: string | number, publishRetries?: number }
  redis?: { url?: string, keyPrefix?: string }
  auth?: {
    jwt?: RawJwt
    apiKeys?: { header?: string, keys: Record<string, { key: string, roles?: string[], scopes?: string[] }> }
  }
  policies?: Record<string, RawPolicy>
  services: Record<string, RawService>
  routes: RawRoute[]
}

function dedupe (problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>()
  return problems.filter(p => {
    const key = `${p.file}:${p.line}:${p.path}:${p.message}`
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}

// ---- schema errors → problems -------------------------------------------------

export function schemaProblems (errors: ErrorObject[], raw: unknown, map: SourceMap): ConfigProblem[] {
  // anyOf failures also report every branch's error at the same place; the
  // anyOf message alone says it better.
  const anyOfAt = new Set(errors.filter(e => e.keyword === 'anyOf').map(e => e.instancePath))
  const seen = new Set<string>()
  const out: ConfigProblem[] = []
  for (const e of errors) {
    if (e.keyword !== 'anyOf' && anyOfAt.has(e.instancePath)) continue
    if (e.keyword === 'propertyNames') continue // reported by the name's own pattern error
    const path = pointerToPath(e.instancePath, raw)
    let message = e.message ?? 'is invalid'
    switch (e.keyword) {
      case 'additionalProperties': {
        const key = (e.params as { additionalProperty: string }).additionalProperty
        path.push(key)
        const known = Object.keys((e.parentSchema as { properties?: object }).properties ?? {})
        const near = closest(key, known)
        message = `unknown key${near !== undefined ? ` (did you mean "${near}"?)` : ''}`
        break
      }
      case 'required':
        path.push((e.params as { missingProperty: string }).missingProperty)
        message = 'is required'
        break
      case 'enum':
        message = (e.parentSchema as { 'x-message'?: string } | undefined)?.['x-message'] ??
          `must be one of: ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`
        break
      case 'duration': message = DURATION_HINT; break
      case 'size': message = SIZE_HINT; break
      case 'pattern': {
        const name = (e.params as { pattern: string }).pattern
        const propertyName = (e as ErrorObject & { propertyName?: string }).propertyName
        if (propertyName !== undefined) path.push(propertyName)
        message = (e.parentSchema as { 'x-message'?: string } | undefined)?.['x-message'] ?? PATTERN_MESSAGES[name] ?? `must match ${name}`
        break
      }
      case 'anyOf': message = anyOfMessage(e); break
    }
    const loc = map.locate(path)
    const key = `${loc.file}:${loc.line}:${loc.path}:${message}`
    if (seen.has(key)) continue
    seen.add(key)
    out.push({ ...loc, message })
  }
  return out
}

const PATTERN_MESSAGES: Record<string, string> = {
  '^[A-Za-z0-9][A-Za-z0-9._-]*$': 'must start with a letter or digit and hold only letters, digits, ".", "_" and "-"',
  '^/': 'must start with "/"',
  '^https?://': 'must be an http:// or https:// URL',
}

function anyOfMessage (e: ErrorObject): string {
  return (e.parentSchema as { 'x-message'?: string } | undefined)?.['x-message'] ?? 'has the wrong type'
}

/** JSON pointer → field path, with array indices as numbers. */
function pointerToPath (pointer: string, raw: unknown): Array<string | number> {
  const out: Array<string | number> = []
  let node: unknown = raw
  for (const token of pointer.split('/').slice(1)) {
    const key = token.replace(/~1/g, '/').replace(/~0/g, '~')
    const part = Array.isArray(node) ? Number(key) : key
    out.push(part)
    node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined
  }
  return out
}

/** The known key a typo most likely meant, if one is close. */
function closest (word: string, candidates: string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase())
    if (d < bestDistance) { best = c; bestDistance = d }
  }
  return best
}

function editDistance (a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = tmp
    }
  }
  return row[b.length]
}

// ---- cross-references -------------------------------------------------------------

function crossCheck (raw: RawConfig, map: SourceMap): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const at = (path: FieldPath, message: string, warning = false): void => {
    problems.push({ ...map.locate(path), message, ...(warning ? { warning } : {}) })
  }
  const policies = raw.policies ?? {}

  for (const [name, svc] of Object.entries(raw.services)) {
    svc.urls.forEach((url, i) => {
      let parsed: URL
      try { parsed = new URL(url) } catch { at(['services', name, 'urls', i], 'is not a valid URL'); return }
      if (parsed.search !== '' || parsed.hash !== '') at(['services', name, 'urls', i], 'may not have a query or fragment')
      if (parsed.username !== '' || parsed.password !== '') at(['services', name, 'urls', i], 'may not carry credentials; use headers instead')
    })
  }

  const redisUrl = raw.redis?.url ?? ''
  if (redisUrl !== '' && !/^(rediss?|redis\+cluster|redis\+sentinel):\/\//.test(redisUrl)) {
    at(['redis', 'url'], 'must be a redis://, rediss://, redis+cluster:// or redis+sentinel:// URL (or empty for in-memory stores)')
  }

  const otlp = raw.tracing?.otlpUrl ?? ''
  if (otlp !== '' && !/^https?:\/\//.test(otlp)) at(['tracing', 'otlpUrl'], 'must be an http:// or https:// URL of an OTLP/HTTP collector (or empty)')
  const eventSink = eventSinkOf(raw.events?.sink, redisUrl)
  if (eventSink === 'redis' && redisUrl === '') at(['events', 'sink'], 'sink: redis needs redis.url')
  if (raw.events?.sink === 'memory' && redisUrl !== '') {
    at(['events', 'sink'], 'sink: memory keeps events inside this one process although redis.url is set: other instances and `portico events tail` never see them, and a restart loses them (use sink: redis or auto)', true)
  }

  const ids = new Map<string, FieldPath>()
  const pathRules = raw.server?.paths as Partial<PathRules> | undefined
  // Requests are matched on the normalised path (src/pipeline/paths/normalise.ts): route paths are checked the same way.
  const router = FindMyWay({ caseSensitive: pathRules?.caseInsensitive !== true })
  const mergeSlashes = pathRules?.mergeSlashes !== false
  raw.routes.forEach((route, i) => {
    const here = (...rest: Array<string | number>): FieldPath => ['routes', i, ...rest]
    const first = ids.get(route.id)
    if (first !== undefined) {
      const loc = map.locate(first)
      at(here('id'), `duplicate route id "${route.id}" (first defined at ${displayFile(loc.file)}:${loc.line})`)
    } else ids.set(route.id, here('id'))

    if (!(route.policy in policies)) at(here('policy'), `unknown policy "${route.policy}"${knownList(Object.keys(policies))}`)
    if (route.schema !== undefined) checkRouteSchema(route.schema, here('schema'), at)
    if (route.schema?.body !== undefined && !methodsOf(route).some(m => BODY_METHODS.has(m))) {
      at(here('schema', 'body'), 'a body schema needs a route method that carries a body (POST, PUT, PATCH, DELETE)')
    }
    if (RESERVED_PATHS.includes(route.path)) at(here('path'), `${route.path} is served by the gateway itself`)
    if (mergeSlashes && route.path.includes('//')) at(here('path'), 'has "//", which never reaches a route: server.paths.mergeSlashes merges it before matching')

    const methods = methodsOf(route)
    for (const method of methods) {
      if (!(HTTP_METHODS as readonly string[]).includes(method)) continue // the schema reports it
      try {
        router.on(method, route.path, () => {})
      } catch (err) {
        const text = (err as Error).message
        at(here('path'), /already declared/.test(text)
          ? `${method} ${route.path} is already taken by another route (routes with the same method and path shape conflict)`
          : `is not a valid route path: ${text}`)
        break
      }
    }

    if (route.cache !== undefined) {
      if (!methodsOf(route).includes('GET')) at(here('cache'), 'only GET answers are cached; this route has no GET')
      for (const [i, tag] of (route.cache.tags ?? []).entries()) checkTemplate(tag, route.path, here('cache', 'tags', i), at, false)
      const policy = policies[route.policy]
      const scope = route.cache.scope ?? (policy?.auth === 'none' ? 'public' : 'user')
      if (scope === 'public' && policy?.forwardAuthorization === true) {
        at(here('cache', 'scope'), `scope: public on a route whose policy forwards authorization: one user's answer may be served to others`, true)
      }
    }
    for (const [i, tag] of (route.invalidates ?? []).entries()) checkTemplate(tag, route.path, here('invalidates', i), at, false)
    for (const field of ['publish', 'command'] as const) {
      if (route[field] === undefined) continue
      if (eventSink === undefined) {
        at(here(field), `needs an event stream: set redis.url, or events: { sink: memory } for demos and tests`)
      }
    }
    if (route.publish !== undefined && route.proxy === undefined) at(here('publish'), 'only a proxy route publishes (a command route appends its body itself)')
    if (route.command !== undefined) {
      if (!methodsOf(route).some(m => BODY_METHODS.has(m)) || methodsOf(route).some(m => !BODY_METHODS.has(m))) {
        at(here('method'), 'a command route takes POST, PUT, PATCH or DELETE only')
      }
      if (route.cache !== undefined) at(here('cache'), 'a command route is not cached')
    }
    const targets = TARGETS.filter(k => route[k] !== undefined)
    if (targets.length !== 1) {
      at(here(), targets.length === 0 ? `needs a target: ${TARGETS.join(' or ')}` : `has several targets (${targets.join(', ')}); a route has exactly one`)
      return
    }
    const unknownService = (service: string, path: FieldPath): void => {
      if (!(service in raw.services)) at(path, `unknown service "${service}"${knownList(Object.keys(raw.services))}`)
    }
    if (route.proxy !== undefined) {
      unknownService(route.proxy.service, here('proxy', 'service'))
      if (route.proxy.path !== undefined) checkTemplate(route.proxy.path, route.path, here('proxy', 'path'), at, true)
    }
    if (route.aggregate !== undefined) {
      const other = methodsOf(route).filter(m => m !== 'GET' && m !== 'HEAD')
      if (other.length > 0) at(here('method'), `an aggregate route answers GET only (not ${other.join(', ')})`)
      if (route.schema?.body !== undefined) at(here('schema', 'body'), 'an aggregate route has no request body')
      if (route.invalidates !== undefined) at(here('invalidates'), 'an aggregate route only reads; put invalidates on the route that writes')
      for (const [name, part] of Object.entries(route.aggregate)) {
        const at2 = (...rest: string[]): FieldPath => here('aggregate', name, ...rest)
        unknownService(part.service, at2('service'))
        checkTemplate(part.path, route.path, at2('path'), at, true)
        for (const [q, v] of Object.entries(part.query ?? {})) checkTemplate(v, route.path, at2('query', q), at, false)
        for (const [h, v] of Object.entries(part.headers ?? {})) checkTemplate(v, route.path, at2('headers', h), at, false)
        if (part.fallback !== undefined && part.optional !== true) at(at2('fallback'), 'only an optional part has a fallback (add optional: true)')
      }
    }
  })
  return problems
}

/**
 * Where publish and command routes write. Absent: Redis when redis.url is
 * set, else nowhere (those routes are then config errors). `auto` or empty
 * (an unset `${EVENTS_SINK:-}`): Redis when redis.url is set, else memory.
 */
function eventSinkOf (sink: 'redis' | 'memory' | 'auto' | '' | undefined, redisUrl: string): 'redis' | 'memory' | undefined {
  if (sink === 'redis' || sink === 'memory') return sink
  if (redisUrl !== '') return 'redis'
  return sink === undefined ? undefined : 'memory'
}

// Fastify compiles route schemas with ajv too; compiling them here turns a bad
// schema into a config error with a line number instead of a failed start.
const schemaAjv = new Ajv({ strict: false, allErrors: true })
addFormats.default(schemaAjv)

function checkRouteSchema (schema: RouteSchema, path: FieldPath, at: (p: FieldPath, m: string) => void): void {
  for (const [part, value] of Object.entries(schema)) {
    try {
      schemaAjv.compile(value as object)
    } catch (err) {
      at([...path, part], `is not a valid JSON Schema: ${(err as Error).message}`)
    }
  }
}

function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

const HS = /^HS/
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

function checkAuth (raw: RawConfig, map: SourceMap, file: string, publicKeys: Map<string, string>): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const at = (path: FieldPath, message: string, warning = false): void => {
    problems.push({ ...map.locate(path), message, ...(warning ? { warning } : {}) })
  }
  const jwt = raw.auth?.jwt
  const apiKeys = raw.auth?.apiKeys
  const admin = raw.admin
  // /admin/* purges caches and shows the config: off the loopback interface
  // (a container's 0.0.0.0, a pod IP) it is never served without a token.
  const adminHost = admin?.host ?? '127.0.0.1'
  if (admin?.port !== undefined && admin.port > 0 && (admin.token ?? '') === '' && !isLoopback(adminHost)) {
    at(['admin', 'host'], `an admin listener on ${adminHost} is reachable beyond this machine: set admin.token (ADMIN_TOKEN in the shipped config), or bind it to 127.0.0.1`)
  }
  for (const [name, policy] of Object.entries(raw.policies ?? {})) {
    if (policy.auth === 'jwt' && jwt === undefined) at(['policies', name, 'auth'], 'auth: jwt needs auth.jwt in the gateway config')
    if (policy.auth === 'apiKey' && apiKeys === undefined) at(['policies', name, 'auth'], 'auth: apiKey needs auth.apiKeys in the gateway config')
    if (policy.auth === 'none') {
      for (const field of ['roles', 'scopes', 'claims', 'forwardAuthorization'] as const) {
        if (policy[field] !== undefined) at(['policies', name, field], `has no effect with auth: none`)
      }
    }
    if (policy.auth === 'apiKey' && policy.claims !== undefined) at(['policies', name, 'claims'], 'API keys carry no claims; use roles or scopes')
  }
  if (jwt !== undefined) {
    const algorithms = jwt.algorithms ?? DEFAULTS.jwt.algorithms
    const wantsHs = algorithms.some(a => HS.test(a))
    const wantsKey = algorithms.some(a => !HS.test(a))
    const secret = jwt.secret ?? ''
    if (jwt.secret === undefined && jwt.publicKey === undefined && jwt.jwksUrl === undefined) {
      at(['auth', 'jwt'], 'needs a secret, a publicKey or a jwksUrl to verify tokens with')
    }
    if (wantsHs && secret === '') at(['auth', 'jwt', 'algorithms'], 'lists an HS algorithm but auth.jwt.secret is empty')
    if (!wantsHs && secret !== '') at(['auth', 'jwt', 'secret'], 'is set but no HS algorithm is allowed in auth.jwt.algorithms', true)
    if (wantsHs && secret !== '' && secret.length < 32) at(['auth', 'jwt', 'secret'], 'is shorter than 32 characters: fine for a demo, weak in production', true)
    if (wantsKey && jwt.publicKey === undefined && jwt.jwksUrl === undefined) {
      at(['auth', 'jwt', 'algorithms'], 'lists an asymmetric algorithm but neither publicKey nor jwksUrl is set')
    }
    if (jwt.publicKey !== undefined) {
      const keyFile = resolve(dirname(file), jwt.publicKey)
      try {
        const pem = readFileSync(keyFile, 'utf8')
        createPublicKey(pem)
        publicKeys.set(keyFile, pem)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        at(['auth', 'jwt', 'publicKey'], code === 'ENOENT' ? `file not found: ${keyFile}` : `is not a readable PEM public key (${keyFile})`)
      }
    }
    if (jwt.publicKey !== undefined && jwt.jwksUrl !== undefined) at(['auth', 'jwt', 'jwksUrl'], 'set either publicKey or jwksUrl, not both')
  }
  if (apiKeys !== undefined) {
    const seen = new Map<string, string>()
    for (const [name, k] of Object.entries(apiKeys.keys)) {
      if (k.key.length < 16) at(['auth', 'apiKeys', 'keys', name, 'key'], 'must be at least 16 characters')
      const other = seen.get(k.key)
      if (other !== undefined) at(['auth', 'apiKeys', 'keys', name, 'key'], `is the same key as "${other}"`)
      seen.set(k.key, name)
    }
  }
  return problems
}

const TARGETS = ['proxy', 'aggregate', 'command'] as const

function checkTemplate (template: string, routePath: string, path: FieldPath, at: (p: FieldPath, m: string) => void, isPath: boolean): void {
  let parsed
  try {
    parsed = parseTemplate(template)
  } catch (err) {
    if (err instanceof TemplateError) { at(path, err.message); return }
    throw err
  }
  if (isPath && /(^|\/)\.{1,2}(\/|$)/.test(parsed.literals.join('x'))) at(path, 'may not contain "." or ".." segments')
  const params = routeParams(routePath)
  for (const p of parsed.placeholders) {
    if (p.source === 'params' && !params.has(p.key)) {
      at(path, p.key === '*'
        ? '{params.*} needs a route path ending in "*"'
        : `{params.${p.key}} is not a parameter of the route path ${routePath}`)
    }
  }
}

/** Names of the `:param`s (and `*`) in a Fastify route path. */
function routeParams (path: string): Set<string> {
  const names = new Set<string>()
  for (const m of path.matchAll(/:([A-Za-z0-9_]+)/g)) names.add(m[1])
  if (path.endsWith('*')) names.add('*')
  return names
}

function knownList (names: string[]): string {
  return names.length === 0 ? ' (none are defined)' : ` (known: ${names.join(', ')})`
}

function methodsOf (route: RawRoute): HttpMethod[] {
  const m = route.method ?? 'GET'
  return Array.isArray(m) ? [...new Set(m)] : [m]
}

// ---- normalization -------------------------------------------------------------------

function normalizeCache (c: NonNullable<RawRoute['cache']>, auth: PolicyConfig['auth']): RouteCacheConfig {
  return {
    ttl: parseDuration(c.ttl) ?? 0,
    // An authenticated route's answers are per user unless the route says otherwise.
    scope: c.scope ?? (auth === 'none' ? 'public' : 'user'),
    staleWhileRevalidate: parseDuration(c.staleWhileRevalidate) ?? 0,
    staleIfError: parseDuration(c.staleIfError) ?? 0,
    tags: c.tags ?? [],
    vary: (c.vary ?? []).map(h => h.toLowerCase()),
  }
}

function normalizeParts (parts: Record<string, RawPart>, services: Map<string, ServiceConfig>): AggregatePartConfig[] {
  return Object.entries(parts).map(([name, p]) => ({
    name,
    service: p.service,
    path: p.path,
    query: p.query ?? {},
    headers: Object.fromEntries(Object.entries(p.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
    timeout: parseDuration(p.timeout) ?? services.get(p.service)?.timeout ?? DEFAULTS.service.timeout,
    optional: p.optional ?? false,
    fallback: p.fallback ?? null,
    ...(p.pick !== undefined ? { pick: p.pick } : {}),
  }))
}

function normalizeService (name: string, svc: RawService): ServiceConfig {
  const d = DEFAULTS.service
  const timeout = parseDuration(svc.timeout) ?? d.timeout
  const b = svc.breaker ?? {}
  const out: ServiceConfig = {
    name,
    urls: svc.urls,
    timeout,
    retries: svc.retries ?? d.retries,
    breaker: {
      errorThresholdPercentage: b.errorThresholdPercentage ?? d.breaker.errorThresholdPercentage,
      volumeThreshold: b.volumeThreshold ?? d.breaker.volumeThreshold,
      resetTimeout: parseDuration(b.resetTimeout) ?? d.breaker.resetTimeout,
      rollingCountTimeout: parseDuration(b.rollingCountTimeout) ?? d.breaker.rollingCountTimeout,
    },
    passiveHealth: {
      failures: svc.passiveHealth?.failures ?? d.passiveHealth.failures,
      ejectFor: parseDuration(svc.passiveHealth?.ejectFor) ?? d.passiveHealth.ejectFor,
    },
    connections: svc.connections ?? d.connections,
    maxResponseSize: parseSize(svc.maxResponseSize) ?? d.maxResponseSize,
  }
  if (svc.healthCheck !== undefined) {
    out.healthCheck = {
      path: svc.healthCheck.path,
      interval: parseDuration(svc.healthCheck.interval) ?? 10_000,
      timeout: parseDuration(svc.healthCheck.timeout) ?? Math.min(d.healthCheckTimeout, timeout),
    }
  }
  return out
}

function normalizeRateLimit (r: RawRateLimit | undefined): RateLimitConfig | undefined {
  if (r === undefined) return undefined
  return { max: r.max, window: parseDuration(r.window) ?? 60_000, key: r.key ?? DEFAULTS.rateLimitKey }
}

function asList (v: string | string[] | undefined): string[] | undefined {
  return v === undefined ? undefined : Array.isArray(v) ? v : [v]
}

function normalizeAuth (raw: RawConfig, file: string, publicKeys: Map<string, string>): AuthConfig {
  const out: AuthConfig = {}
  const j = raw.auth?.jwt
  if (j !== undefined) {
    const d = DEFAULTS.jwt
    const keyFile = j.publicKey !== undefined ? resolve(dirname(file), j.publicKey) : undefined
    const jwt: JwtConfig = {
      algorithms: j.algorithms ?? d.algorithms,
      clockTolerance: parseDuration(j.clockTolerance) ?? d.clockTolerance,
      rolesClaim: j.rolesClaim ?? d.rolesClaim,
      jwksCacheTtl: parseDuration(j.jwksCacheTtl) ?? d.jwksCacheTtl,
      jwksMinRefetchInterval: parseDuration(j.jwksMinRefetchInterval) ?? d.jwksMinRefetchInterval,
      requireExp: j.requireExp ?? d.requireExp,
    }
    if (j.secret !== undefined && j.secret !== '') jwt.secret = j.secret
    if (keyFile !== undefined) { jwt.publicKeyFile = keyFile; jwt.publicKey = publicKeys.get(keyFile) }
    if (j.jwksUrl !== undefined) jwt.jwksUrl = j.jwksUrl
    const issuer = asList(j.issuer)
    if (issuer !== undefined) jwt.issuer = issuer
    const audience = asList(j.audience)
    if (audience !== undefined) jwt.audience = audience
    out.jwt = jwt
  }
  const a = raw.auth?.apiKeys
  if (a !== undefined) {
    out.apiKeys = {
      header: (a.header ?? DEFAULTS.apiKeys.header).toLowerCase(),
      keys: Object.entries(a.keys).map(([name, k]) => ({ name, key: k.key, roles: k.roles ?? [], scopes: k.scopes ?? [] })),
    }
  }
  return out
}

function normalize (raw: RawConfig, map: SourceMap, file: string, env: NodeJS.ProcessEnv, publicKeys: Map<string, string>, edge: EdgeCheck | undefined): GatewayConfig {
  const s = raw.server ?? {}
  const d = DEFAULTS.server
  // checkEnvPort refused anything but a port number.
  const port = env.PORT !== undefined && env.PORT !== '' ? Number(env.PORT) : (s.port as number | undefined) ?? d.port
  const server: ServerConfig = {
    host: (s.host as string | undefined) ?? d.host,
    port,
    bodyLimit: parseSize(s.bodyLimit) ?? d.bodyLimit,
    trustProxy: (s.trustProxy as ServerConfig['trustProxy'] | undefined) ?? d.trustProxy,
    shutdownTimeout: parseDuration(s.shutdownTimeout) ?? d.shutdownTimeout,
    requestTimeout: parseDuration(s.requestTimeout) ?? d.requestTimeout,
    headersTimeout: parseDuration(s.headersTimeout) ?? d.headersTimeout,
    keepAliveTimeout: parseDuration(s.keepAliveTimeout) ?? d.keepAliveTimeout,
    workers: s.workers === 'auto' ? availableParallelism() : (s.workers as number | undefined) ?? d.workers,
    paths: { ...d.paths, ...(s.paths as Partial<PathRules> | undefined) },
    ...(edge?.normalize() ?? { http2: false, redirectHttpPort: 0 }),
  }
  const policies = new Map<string, PolicyConfig>()
  for (const [name, p] of Object.entries(raw.policies ?? {})) {
    const claims: Record<string, ClaimValue[]> = {}
    for (const [claim, v] of Object.entries(p.claims ?? {})) claims[claim] = Array.isArray(v) ? v : [v]
    const rateLimit = normalizeRateLimit(p.rateLimit)
    policies.set(name, {
      name,
      auth: p.auth,
      ...(p.subjects !== undefined ? { subjects: p.subjects } : {}),
      roles: p.roles ?? [],
      scopes: p.scopes ?? [],
      claims,
      forwardAuthorization: p.forwardAuthorization ?? false,
      ...(rateLimit !== undefined ? { rateLimit } : {}),
    })
  }
  const services = new Map<string, ServiceConfig>()
  for (const [name, svc] of Object.entries(raw.services)) {
    services.set(name, normalizeService(name, svc))
  }
  const routes: RouteConfig[] = raw.routes.map((r, i) => {
    const loc = map.locate(['routes', i])
    const rateLimit = normalizeRateLimit(r.rateLimit) ?? policies.get(r.policy)?.rateLimit
    return {
      id: r.id,
      ...(r.description !== undefined ? { description: r.description } : {}),
      methods: methodsOf(r),
      path: r.path,
      policy: r.policy,
      ...(rateLimit !== undefined ? { rateLimit } : {}),
      ...(r.schema !== undefined ? { schema: r.schema } : {}),
      ...(r.aggregate !== undefined ? { aggregate: normalizeParts(r.aggregate, services) } : {}),
      ...(r.cache !== undefined ? { cache: normalizeCache(r.cache, policies.get(r.policy)?.auth ?? 'none') } : {}),
      ...(r.invalidates !== undefined ? { invalidates: r.invalidates } : {}),
      ...(r.publish !== undefined ? { publish: { stream: r.publish.stream, type: r.publish.type, from: r.publish.from ?? 'response' } } : {}),
      ...(r.command !== undefined ? { command: { stream: r.command.stream, type: r.command.type ?? r.id, ...(r.command.statusPath !== undefined ? { statusPath: r.command.statusPath } : {}) } } : {}),
      ...(r.proxy !== undefined ? { proxy: { ...r.proxy } } : {}),
      source: { file: loc.file, line: loc.line },
    }
  })
  const redis = { url: raw.redis?.url ?? '', keyPrefix: raw.redis?.keyPrefix ?? DEFAULTS.redis.keyPrefix }
  const admin = { host: raw.admin?.host ?? '127.0.0.1', port: raw.admin?.port ?? 0, token: raw.admin?.token ?? '' }
  const auth = normalizeAuth(raw, file, publicKeys)
  const files = map.files()
  if (auth.jwt?.publicKeyFile !== undefined) files.push(auth.jwt.publicKeyFile)
  files.push(...edge?.files ?? [])
  const cache = {
    maxEntries: raw.cache?.maxEntries ?? DEFAULTS.cache.maxEntries,
    maxBytes: parseSize(raw.cache?.maxBytes) ?? DEFAULTS.cache.maxBytes,
    timeout: parseDuration(raw.cache?.timeout) ?? DEFAULTS.cache.timeout,
    near: raw.cache?.near ?? DEFAULTS.cache.near,
  }
  const e = raw.events ?? {}
  const sink = eventSinkOf(e.sink, redis.url)
  const events = {
    ...(sink !== undefined ? { sink } : {}),
    maxLen: e.maxLen ?? DEFAULTS.events.maxLen,
    idempotencyWindow: parseDuration(e.idempotencyWindow) ?? DEFAULTS.events.idempotencyWindow,
    publishRetries: e.publishRetries ?? DEFAULTS.events.publishRetries,
  }
  const tracing = { otlpUrl: raw.tracing?.otlpUrl ?? '', serviceName: raw.tracing?.serviceName ?? 'portico' }
  return { file, files, server, admin, redis, cache, events, tracing, auth, policies, services, routes }
}
