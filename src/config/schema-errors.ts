// The schema check: ajv with the config schema (schema.ts), and its errors
// turned into problems that read like the README: FILE:LINE: field: message.
// The extensions' plugin schemas report through schemaProblems too.

import AjvModule, { type ErrorObject } from 'ajv'
import { ConfigSchema } from './schema.js'
import type { SourceMap } from './load.js'
import type { ConfigProblem } from './problems.js'
import { parseDuration, parseSize, DURATION_HINT, SIZE_HINT } from './units.js'

// ajv is CommonJS; under ESM its class is the default export's `default`.
const Ajv = AjvModule.default
const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true })
ajv.addKeyword({ keyword: 'duration', schemaType: 'boolean', validate: (_: boolean, data: unknown) => parseDuration(data) !== undefined })
ajv.addKeyword({ keyword: 'x-message', schemaType: 'string' })
ajv.addKeyword({ keyword: 'size', schemaType: 'boolean', validate: (_: boolean, data: unknown) => parseSize(data) !== undefined })
const validateSchema = ajv.compile(ConfigSchema)

/** Whether the loaded config fits the schema, and its problems when it does not. */
export function checkSchema (raw: unknown, map: SourceMap): { fits: boolean, problems: ConfigProblem[] } {
  const fits = validateSchema(raw)
  return { fits, problems: fits ? [] : schemaProblems(validateSchema.errors ?? [], raw, map) }
}

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
