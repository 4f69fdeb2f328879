// checkJsonKeys (src/pipeline/validation/duplicate-keys.ts) must find a repeated key
// exactly as JSON.parse would read the keys: escapes decoded, strings that
// hold quotes, brackets and backslashes skipped. Random documents written
// with random spellings of their keys, each knowing its own first duplicate.
import t from 'tap'
import { MAX_JSON_DEPTH, TOO_DEEP, checkJsonKeys } from '../../../src/pipeline/validation/duplicate-keys.js'

/** A small deterministic PRNG, so a failure can be replayed. */
function rng (seed: number): () => number {
  let s = seed >>> 0
  return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 2 ** 32 }
}

const KEY_CHARS = ['a', 'b', 'q', '"', '\\', '/', '{', '[', ',', ':', 'é', '😀', ' ', '\n']

/** One spelling of a string in JSON: each character raw (when allowed) or escaped in one of its forms. */
function spell (text: string, r: () => number): string {
  let out = '"'
  for (const ch of text) {
    const code = ch.codePointAt(0) ?? 0
    const mustEscape = ch === '"' || ch === '\\' || code < 0x20
    const pick = r()
    if (code > 0xffff) {
      out += pick < 0.5 ? ch : ch.split('').map(u => `\\u${u.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')
    } else if (mustEscape || pick < 0.3) {
      const short: Record<string, string> = { '"': '\\"', '\\': '\\\\', '/': '\\/', '\n': '\\n' }
      out += short[ch] !== undefined && r() < 0.5 ? short[ch] : `\\u${code.toString(16).padStart(4, '0')}`
    } else {
      out += ch
    }
  }
  return `${out}"`
}

interface Doc { text: string, duplicate: Array<string | number> | undefined }

function randomDoc (r: () => number): Doc {
  let duplicate: Array<string | number> | undefined
  const path: Array<string | number> = []
  function key (): string {
    let k = ''
    const n = Math.floor(r() * 3)
    for (let i = 0; i < n; i++) k += KEY_CHARS[Math.floor(r() * KEY_CHARS.length)]
    return k
  }
  function value (depth: number): string {
    const pick = r()
    if (depth > 4 || pick < 0.3) return [spell(key(), r), '1', 'true', 'null', '-2.5e3', '"{\\"a\\":[1,"'][Math.floor(r() * 6)]
    if (pick < 0.55) {
      const n = Math.floor(r() * 4)
      const items: string[] = []
      for (let i = 0; i < n; i++) { path.push(i); items.push(value(depth + 1)); path.pop() }
      return `[${items.join(' , ')}]`
    }
    const n = Math.floor(r() * 5)
    const seen = new Set<string>()
    const members: string[] = []
    for (let i = 0; i < n; i++) {
      const k = key()
      if (seen.has(k) && duplicate === undefined) duplicate = [...path, k]
      seen.add(k)
      path.push(k)
      members.push(`${spell(k, r)}${r() < 0.5 ? ':' : ' :\n'}${value(depth + 1)}`)
      path.pop()
    }
    return `{${members.join(',')}}`
  }
  const text = value(0)
  return { text, duplicate }
}

t.test('random documents: the first repeated key is found, with its path, and no other', async t => {
  const r = rng(12)
  let withDuplicates = 0
  for (let n = 0; n < 5000; n++) {
    const doc = randomDoc(r)
    const found = checkJsonKeys(Buffer.from(doc.text, 'utf8'))
    if (doc.duplicate !== undefined) withDuplicates++
    if (JSON.stringify(found) !== JSON.stringify(doc.duplicate)) {
      t.same(found, doc.duplicate, JSON.stringify(doc.text))
      return
    }
  }
  t.ok(withDuplicates > 500, `many documents had a duplicate (${withDuplicates})`)
  t.ok(5000 - withDuplicates > 500, 'many had none')
})

t.test('edge cases', async t => {
  const cases: Array<[string, Array<string | number> | undefined]> = [
    ['{"a":1,"a":2}', ['a']],
    ['{"":1,"":2}', ['']],
    ['{"a":"a","b":"a"}', undefined],
    ['{"a":{"a":{"a":1}}}', undefined],
    ['{"q\\u0074y":1,"qty":2}', ['qty']],
    ['{"\\ud83d\\ude00":1,"😀":2}', ['😀']],
    ['{"\\\\":1,"\\u005c":2}', ['\\']],
    ['{"a\\"":1,"a":2}', undefined],
    ['[{"x":[{"y":1,"y":2}]}]', [0, 'x', 0, 'y']],
    ['[1,2,{"k":{},"k":[]}]', [2, 'k']],
    ['"just a string with \\"a\\":1,\\"a\\":2"', undefined],
    ['[]', undefined],
    // Past the small-object scan: a set of keys.
    [`{${Array.from({ length: 20 }, (_, i) => `"k${i}":1`).join(',')}}`, undefined],
    [`{${Array.from({ length: 20 }, (_, i) => `"k${i}":1`).join(',')},"k19":2}`, ['k19']],
    [`{${Array.from({ length: 20 }, (_, i) => `"k${i}":1`).join(',')},"k\u0033":2}`, ['k3']],
    [`[{${Array.from({ length: 20 }, (_, i) => `"k${i}":1`).join(',')}},{"k1":1,"k0":1,"k1":2}]`, [1, 'k1']],
  ]
  for (const [text, expected] of cases) {
    JSON.parse(text)
    t.same(checkJsonKeys(Buffer.from(text)), expected, text)
  }
})

t.test('nesting deeper than MAX_JSON_DEPTH is found, at any depth past it', async t => {
  const nest = (depth: number, open: string, close: string): Buffer => Buffer.from(open.repeat(depth) + close.repeat(depth))
  t.equal(checkJsonKeys(nest(MAX_JSON_DEPTH, '[', ']')), undefined, `${MAX_JSON_DEPTH} levels are fine`)
  t.equal(checkJsonKeys(nest(MAX_JSON_DEPTH + 1, '[', ']')), TOO_DEEP)
  t.equal(checkJsonKeys(nest(500_000, '[', ']')), TOO_DEEP)
  t.equal(checkJsonKeys(Buffer.from('{"a":'.repeat(MAX_JSON_DEPTH + 1) + '1' + '}'.repeat(MAX_JSON_DEPTH + 1))), TOO_DEEP)
  // Brackets inside strings are not nesting.
  t.equal(checkJsonKeys(Buffer.from(`["${'['.repeat(5000)}"]`)), undefined)
})

t.test('bytes that are not JSON never throw (JSON.parse refuses them afterwards)', async t => {
  for (const text of ['', '}', ']]]', ',', '{"a":1,,', '{"\\x":1,"\\x":2', '{"\\u12":1}', '"', '{"a', '[}', '{]', '{"a":1}}{"a":2,"a":3}']) {
    t.doesNotThrow(() => checkJsonKeys(Buffer.from(text)), JSON.stringify(text))
  }
})
