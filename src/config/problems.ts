import { relative, isAbsolute } from 'node:path'

/** One thing wrong with the configuration, located in the file that says it. */
export interface ConfigProblem {
  file: string
  line: number
  /** Dotted field path, e.g. `routes[2].proxy.service`. */
  path: string
  message: string
  /** Warnings are printed by `portico check` but do not stop the gateway. */
  warning?: boolean
}

/** Thrown when a configuration cannot be used; carries every problem found, not just the first. */
export class ConfigError extends Error {
  readonly problems: ConfigProblem[]
  constructor (problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'))
    this.name = 'ConfigError'
    this.problems = problems
  }
}

/** `FILE:LINE: path.to.field: what is wrong` — the one format every config error uses. */
export function formatProblem (p: ConfigProblem): string {
  const tag = p.warning === true ? 'warning: ' : ''
  return `${displayFile(p.file)}:${p.line}: ${p.path === '' ? '(top level)' : p.path}: ${tag}${p.message}`
}

export function displayFile (file: string): string {
  const rel = relative(process.cwd(), file)
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file
}

export type FieldPath = ReadonlyArray<string | number>

/** Reports a problem at a field of the combined config; a warning does not stop the gateway. */
export type At = (path: FieldPath, message: string, warning?: boolean) => void

export function formatPath (path: FieldPath): string {
  let out = ''
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`
    else out += out === '' ? part : '.' + part
  }
  return out
}
