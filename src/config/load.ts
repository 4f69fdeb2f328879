// Reads the gateway YAML and the files it names (policies, services, routes)
// into one plain object, remembering for every value which file and line it
// came from, so later checks can report `FILE:LINE: field: problem`.

import { readFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, resolve, join, extname } from 'node:path'
import { Document, LineCounter, parseDocument, isMap, isSeq, isScalar, isAlias, Scalar, type Node } from 'yaml'
import { substituteEnv, coercePlainScalar } from './env.js'
import { type ConfigProblem, type FieldPath, formatPath } from './problems.js'

interface YamlSource {
  file: string
  doc: Document
  lines: LineCounter
}

/** A file's content mounted at `prefix` of the combined config. */
interface Mount {
  prefix: FieldPath
  source: YamlSource
  /** Where the mounted value sits inside its own document. */
  docPath: FieldPath
  /** How the mount point is named in messages. */
  display: FieldPath
}

export interface Location {
  file: string
  line: number
  path: string
}

/** Maps a field path in the combined config back to a file and line. */
export class SourceMap {
  private readonly mounts: Mount[] = []

  add (mount: Mount): void {
    this.mounts.push(mount)
  }

  locate (path: FieldPath): Location {
    let best: Mount | undefined
    for (const m of this.mounts) {
      if (m.prefix.length <= path.length && m.prefix.every((p, i) => p === path[i]) &&
        (best === undefined || m.prefix.length > best.prefix.length)) best = m
    }
    if (best === undefined) return { file: '(config)', line: 0, path: formatPath(path) }
    const rest = path.slice(best.prefix.length)
    const full = [...best.docPath, ...rest]
    // Walk up until a node exists: a missing field is reported where its parent is.
    for (let n = full.length; n >= 0; n--) {
      const range = fieldStart(best.source.doc, full.slice(0, n))
      if (range !== undefined) {
        return { file: best.source.file, line: best.source.lines.linePos(range).line, path: formatPath([...best.display, ...rest]) }
      }
    }
    return { file: best.source.file, line: 1, path: formatPath([...best.display, ...rest]) }
  }

  /** Every file that contributed to the config (for reload watching). */
  files (): string[] {
    return [...new Set(this.mounts.map(m => m.source.file))]
  }
}

/**
 * Where a field starts: the key of a map entry, so `server:` followed by an
 * indented block is reported on the key's line, not on the block's first line.
 */
function fieldStart (doc: Document, path: FieldPath): number | undefined {
  if (path.length === 0) return (doc.contents as Node | null)?.range?.[0]
  const parent: unknown = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1), true)
  const last = path[path.length - 1]
  if (isMap(parent)) {
    const pair = parent.items.find(p => String(isScalar(p.key) ? p.key.value : p.key) === String(last))
    const keyRange = (pair?.key as Node | null | undefined)?.range
    if (keyRange != null) return keyRange[0]
  }
  return (doc.getIn(path, true) as Node | null | undefined)?.range?.[0]
}

export interface LoadedSource {
  /** The combined config as plain data, env substituted, not yet validated. */
  raw: Record<string, unknown>
  map: SourceMap
  problems: ConfigProblem[]
  /**
   * True when a file could not be read or parsed, so the combined config is
   * incomplete and checking it further would only report noise. An unset
   * variable is not fatal: the rest is still checked and reported with it.
   */
  fatal: boolean
  /** The main config file, absolute. */
  file: string
}

/** Keys of the main file that may be a path to another file instead of inline content. */
const INCLUDABLE = ['policies', 'services', 'routes'] as const

export function loadConfigSource (file: string, env: NodeJS.ProcessEnv = process.env): LoadedSource {
  const main = resolve(file)
  const problems: ConfigProblem[] = []
  const map = new SourceMap()
  const source = readYaml(main, problems)
  const fatal = (): boolean => problems.some(p => !p.message.startsWith(ENV_PROBLEM))
  if (source === undefined) return { raw: {}, map, problems, fatal: true, file: main }
  map.add({ prefix: [], source, docPath: [], display: [] })
  const converter = new Converter(source, env, problems)
  const value = converter.toValue(source.doc.contents, [])
  if (value === null || value === undefined) {
    problems.push({ file: main, line: 1, path: '', message: 'the file is empty; expected a map of settings' })
    return { raw: {}, map, problems, fatal: true, file: main }
  }
  if (typeof value !== 'object' || Array.isArray(value)) {
    problems.push({ file: main, line: 1, path: '', message: 'expected a map of settings at the top level' })
    return { raw: {}, map, problems, fatal: true, file: main }
  }
  const raw = value as Record<string, unknown>
  for (const key of INCLUDABLE) {
    const ref = raw[key]
    if (typeof ref !== 'string') continue
    const target = resolve(dirname(main), ref)
    const at = map.locate([key])
    if (key === 'routes' && isDirectory(target)) {
      raw[key] = loadRoutesDirectory(target, map, env, problems)
    } else {
      raw[key] = loadIncluded(target, key, map, env, problems, at)
    }
  }
  return { raw, map, problems, fatal: fatal(), file: main }
}

const ENV_PROBLEM = 'environment variable '

function isDirectory (path: string): boolean {
  try { return statSync(path).isDirectory() } catch { return false }
}

function loadIncluded (target: string, key: string, map: SourceMap, env: NodeJS.ProcessEnv, problems: ConfigProblem[], at: Location): unknown {
  const source = readYaml(target, problems, at)
  if (source === undefined) return undefined
  map.add({ prefix: [key], source, docPath: [], display: [key] })
  const value = new Converter(source, env, problems).toValue(source.doc.contents, [key])
  return value ?? (key === 'routes' ? [] : {})
}

/** Every *.yaml / *.yml file of the directory, in name order, concatenated. */
function loadRoutesDirectory (dir: string, map: SourceMap, env: NodeJS.ProcessEnv, problems: ConfigProblem[]): unknown[] {
  const files = readdirSync(dir).filter(f => ['.yaml', '.yml'].includes(extname(f))).sort()
  const routes: unknown[] = []
  for (const name of files) {
    const source = readYaml(join(dir, name), problems)
    if (source === undefined) continue
    const value = new Converter(source, env, problems).toValue(source.doc.contents, ['routes'])
    if (value === null || value === undefined) continue
    if (!Array.isArray(value)) {
      problems.push({ file: source.file, line: 1, path: 'routes', message: 'a routes file must hold a list of routes' })
      continue
    }
    value.forEach((route, j) => {
      map.add({ prefix: ['routes', routes.length], source, docPath: [j], display: ['routes', j] })
      routes.push(route)
    })
  }
  return routes
}

function readYaml (file: string, problems: ConfigProblem[], referencedAt?: Location): YamlSource | undefined {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : `cannot read file (${(err as NodeJS.ErrnoException).code ?? 'error'})`
    if (referencedAt !== undefined) problems.push({ ...referencedAt, message: `${reason}: ${file}` })
    else problems.push({ file, line: 0, path: '', message: reason })
    return undefined
  }
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true })
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const line = lines.linePos(e.pos[0]).line
      problems.push({ file, line, path: '', message: `invalid YAML: ${e.message.split('\n')[0]}` })
    }
    return undefined
  }
  return { file, doc, lines }
}

/** Turns a YAML node tree into plain values, substituting `${VAR}` in scalars. */
class Converter {
  constructor (
    private readonly source: YamlSource,
    private readonly env: NodeJS.ProcessEnv,
    private readonly problems: ConfigProblem[],
  ) {}

  toValue (node: unknown, path: FieldPath): unknown {
    if (node === null || node === undefined) return null
    if (isAlias(node)) return this.toValue(node.resolve(this.source.doc), path)
    if (isMap(node)) {
      const out: Record<string, unknown> = {}
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key)
        // defineProperty so a `__proto__` key is just data, never a prototype.
        Object.defineProperty(out, key, { value: this.toValue(pair.value, [...path, key]), enumerable: true, writable: true, configurable: true })
      }
      return out
    }
    if (isSeq(node)) return node.items.map((item, i) => this.toValue(item, [...path, i]))
    if (isScalar(node)) return this.scalar(node, path)
    return null
  }

  private scalar (node: Scalar, path: FieldPath): unknown {
    const value = node.value
    if (typeof value !== 'string' || !value.includes('${')) return value
    const { value: text, missing } = substituteEnv(value, this.env)
    for (const name of missing) {
      const line = node.range != null ? this.source.lines.linePos(node.range[0]).line : 1
      this.problems.push({ file: this.source.file, line, path: formatPath(path), message: `environment variable ${name} is not set (write \${${name}:-default} to allow it to be unset)` })
    }
    return node.type === Scalar.PLAIN ? coercePlainScalar(text) : text
  }
}
