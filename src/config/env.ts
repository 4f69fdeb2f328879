// `${VAR}` and `${VAR:-default}` substitution, applied to YAML scalar values
// (never to the raw text), so a secret containing `#` or `: ` cannot change
// the document's structure and line numbers stay true.

const REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

export interface Substitution {
  value: string
  /** Variables referenced without a default that are not set. */
  missing: string[]
}

export function substituteEnv (text: string, env: NodeJS.ProcessEnv): Substitution {
  const missing: string[] = []
  const value = text.replace(REF, (_all, name: string, fallback: string | undefined) => {
    const set = env[name]
    if (set !== undefined && set !== '') return set
    if (fallback !== undefined) return fallback
    if (set === undefined) missing.push(name)
    return ''
  })
  return { value, missing }
}


/**
 * An unquoted `port: ${PORT:-8080}` means the number 8080, as if written
 * literally; quoted scalars stay strings.
 */
export function coercePlainScalar (text: string): string | number | boolean {
  if (/^-?\d+(?:\.\d+)?$/.test(text)) return Number(text)
  if (text === 'true') return true
  if (text === 'false') return false
  return text
}
