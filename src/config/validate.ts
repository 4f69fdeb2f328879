// The checks a schema cannot express: cross-references (a route's policy and
// services exist, its templates name its own parameters, route paths do not
// collide), combinations (a target and the methods, caches and events it
// allows), and what a file on disk or the environment must hold. Each problem
// is FILE:LINE: field: message, found through the source map.

import AjvModule from 'ajv'
import FindMyWay from 'find-my-way'
import { HTTP_METHODS, type RawConfig, type RawRouteJsonSchemas } from './schema.js'
import type { SourceMap } from './load.js'
import { displayFile, type At, type ConfigProblem, type FieldPath } from './problems.js'
import { DEFAULTS, defaultCacheScope, eventSinkOf, routeMethods } from './defaults.js'
import { TARGET_KINDS } from './targets.js'
import { readFileSync } from 'node:fs'
import { createPublicKey } from 'node:crypto'
import { dirname, resolve } from 'node:path'
import addFormats from 'ajv-formats'
import { parseTemplate, TemplateError } from '../util/template.js'
import { checkCors } from './cors.js'

/** Paths the gateway serves itself; a route may not take them. */
export const RESERVED_PATHS = ['/healthz', '/readyz']

export interface CheckContext {
  /** Where each field was written (to name another place in a message). */
  map: SourceMap
  /** The main config file, absolute (files it names are relative to it). */
  file: string
  /** Public keys read for auth.jwt.publicKey, by absolute file name, for normalization to keep. */
  publicKeys: Map<string, string>
}

/** One cross-check over the whole config, reporting through `at`. */
export type ConfigCheck = (raw: RawConfig, at: At, ctx: CheckContext) => void

/**
 * Every cross-check, in the order their problems are listed. A section in
 * its own module adds its check here with one line, e.g.
 * `(raw, at) => checkTls(raw.server?.tls, ['server', 'tls'], at)`.
 */
const CHECKS: ConfigCheck[] = [
  crossCheck,
  checkAuth,
]

/**
 * Every cross-check of a config that passed the schema (on one that did not,
 * they may trip over malformed data: the caller decides).
 */
export function checkConfig (raw: RawConfig, ctx: CheckContext): ConfigProblem[] {
  const { map } = ctx
  const problems: ConfigProblem[] = []
  const at: At = (path, message, warning = false) => {
    problems.push({ ...map.locate(path), message, ...(warning ? { warning } : {}) })
  }
  for (const check of CHECKS) check(raw, at, ctx)
  problems.push(...checkCors(raw, map))
  return problems
}

/** `PORT` overrides server.port: a value that is not a port is a config error, not a silent 8080. */
export function checkEnvPort (env: NodeJS.ProcessEnv, map: SourceMap): ConfigProblem[] {
  const port = env.PORT
  if (port === undefined || port === '' || (/^\d{1,5}$/.test(port) && Number(port) <= 65535)) return []
  const shown = port.length > 20 ? `${port.slice(0, 20)}…` : port
  return [{ ...map.locate(['server', 'port']), message: `the PORT environment variable (${JSON.stringify(shown)}) must be a port number from 0 to 65535` }]
}

// ---- cross-references -------------------------------------------------------------

function crossCheck (raw: RawConfig, at: At, { map }: CheckContext): void {
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
  const pathRules = raw.server?.paths
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
    if (route.schema?.body !== undefined && !routeMethods(route.method).some(m => BODY_METHODS.has(m))) {
      at(here('schema', 'body'), 'a body schema needs a route method that carries a body (POST, PUT, PATCH, DELETE)')
    }
    if (RESERVED_PATHS.includes(route.path)) at(here('path'), `${route.path} is served by the gateway itself`)
    if (mergeSlashes && route.path.includes('//')) at(here('path'), 'has "//", which never reaches a route: server.paths.mergeSlashes merges it before matching')

    const methods = routeMethods(route.method)
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
      if (!routeMethods(route.method).includes('GET')) at(here('cache'), 'only GET answers are cached; this route has no GET')
      for (const [i, tag] of (route.cache.tags ?? []).entries()) checkTemplate(tag, route.path, here('cache', 'tags', i), at, false)
      const policy = policies[route.policy]
      const scope = route.cache.scope ?? defaultCacheScope(policy?.auth)
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
      if (!routeMethods(route.method).some(m => BODY_METHODS.has(m)) || routeMethods(route.method).some(m => !BODY_METHODS.has(m))) {
        at(here('method'), 'a command route takes POST, PUT, PATCH or DELETE only')
      }
      if (route.cache !== undefined) at(here('cache'), 'a command route is not cached')
      // Accepting a command changes nothing yet; a purge now would let a read cache the old state again.
      if (route.invalidates !== undefined) at(here('invalidates'), 'a command route only accepts the command: purge when its consumer has applied it (POST /admin/cache/purge)')
    }
    const targets = TARGET_KINDS.filter(k => route[k] !== undefined)
    if (targets.length !== 1) {
      at(here(), targets.length === 0 ? `needs a target: ${TARGET_KINDS.join(' or ')}` : `has several targets (${targets.join(', ')}); a route has exactly one`)
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
      const other = routeMethods(route.method).filter(m => m !== 'GET' && m !== 'HEAD')
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
}

// Fastify compiles route schemas with ajv too; compiling them here turns a bad
// schema into a config error with a line number instead of a failed start.
const schemaAjv = new AjvModule.default({ strict: false, allErrors: true })
addFormats.default(schemaAjv)

function checkRouteSchema (schema: RawRouteJsonSchemas, path: FieldPath, at: (p: FieldPath, m: string) => void): void {
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

function checkAuth (raw: RawConfig, at: At, { file, publicKeys }: CheckContext): void {
  const jwt = raw.auth?.jwt
  const apiKeys = raw.auth?.apiKeys
  const admin = raw.admin
  // /admin/* purges caches and shows the config: off the loopback interface
  // (a container's 0.0.0.0, a pod IP) it is never served without a token.
  const adminHost = admin?.host ?? DEFAULTS.admin.host
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
}

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
