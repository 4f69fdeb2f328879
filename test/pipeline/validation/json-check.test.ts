// isJsonText (src/pipeline/validation/json-check.ts) must agree with JSON.parse on what
// is JSON: aggregate parts whose body is not JSON fail like any part error,
// and the check replaced JSON.parse there. A table of edge cases, then
// thousands of random mutations of real documents, each compared with
// JSON.parse on the same bytes.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { isJsonText } from '../../../src/pipeline/validation/json-check.js'

function parses (text: string): boolean {
  try { JSON.parse(text); return true } catch { return false }
}

const VALID = [
  '{}', '[]', '""', '0', '-0', '1.5', '-1.5e10', '1E+2', '1e-2', '123456789012345678901234567890', 'true', 'false', 'null',
  ' \t\r\n{ "a" : [ 1 , 2 , { "b" : null } ] } \n', '{"a":{"b":{"c":[[[]]]}}}', '["\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00"]',
  '"ünïcödé ✓ 😀"', '{"":""}', '[0,-0,0.0,1e0]', '{"a":1,"a":2}',
]
const INVALID = [
  '', ' ', '{', '}', '[', ']', '{]', '[}', '{"a"}', '{"a":}', '{"a" 1}', '{a:1}', "{'a':1}", '[1,]', '[,1]', '{"a":1,}', '[1 2]',
  '01', '-', '+1', '1.', '.5', '1e', '1e+', '0x10', 'NaN', 'Infinity', '-Infinity', 'tru', 'truee', 'nul', 'True', 'undefined',
  '"abc', '"\\x41"', '"\\u12G4"', '"\\u123"', '"a\nb"', '"tab\there"', '{}{}', '[] []', '{} x', '"a" "b"', '\ufeff{}', '<html></html>',
  '[1,2', '{"a":[1,2}', '/* c */ {}', '{"a":1}//',
]

t.test('the edge cases agree with JSON.parse', async t => {
  for (const text of VALID) {
    t.equal(parses(text), true, `JSON.parse accepts ${JSON.stringify(text)}`)
    t.equal(isJsonText(Buffer.from(text)), true, `accepted: ${JSON.stringify(text)}`)
  }
  for (const text of INVALID) {
    t.equal(parses(text), false, `JSON.parse refuses ${JSON.stringify(text)}`)
    t.equal(isJsonText(Buffer.from(text)), false, `refused: ${JSON.stringify(text)}`)
  }
})

t.test('nesting deeper than 1000 is refused; 1000 is fine', async t => {
  t.equal(isJsonText(Buffer.from('['.repeat(1000) + ']'.repeat(1000))), true)
  t.equal(isJsonText(Buffer.from('['.repeat(1001) + ']'.repeat(1001))), false)
  t.equal(isJsonText(Buffer.from('{"a":'.repeat(1000) + '1' + '}'.repeat(1000))), true)
})

t.test('random mutations of real documents agree with JSON.parse', async t => {
  const seeds = [
    readFileSync(join(import.meta.dirname, '..', '..', '..', 'bench', 'upstream-body.json'), 'utf8'),
    JSON.stringify({ id: 7, name: 'Ada "the" Countess', tags: ['x', 'y'], nested: { ok: true, none: null, n: -12.5e-3, list: [[], {}, [1, [2, [3]]]] }, s: 'tab\tnew\nline \u00e9 \ud83d\ude00' }),
    '[1, 2.5, -3e2, "four", true, false, null, {"k": [ ]}]',
  ]
  const alphabet = '{}[]",:.-+eE0123456789 \t\n\\u/abfnrtlsx'
  // A small deterministic generator, so a failure can be replayed.
  let state = 0x2545f491
  const rand = (n: number): number => {
    state ^= state << 13; state ^= state >>> 17; state ^= state << 5
    return (state >>> 0) % n
  }
  let disagreements = 0
  let checked = 0
  let accepted = 0
  for (const seed of seeds) {
    for (let round = 0; round < 3000; round++) {
      let text = seed
      const edits = 1 + rand(3)
      for (let e = 0; e < edits; e++) {
        const at = rand(text.length + 1)
        const op = rand(3)
        const ch = alphabet[rand(alphabet.length)]
        text = op === 0 ? text.slice(0, at) + ch + text.slice(at) : op === 1 ? text.slice(0, at) + text.slice(at + 1) : text.slice(0, at) + ch + text.slice(at + 1)
      }
      const expected = parses(text)
      if (expected) accepted++
      if (isJsonText(Buffer.from(text)) !== expected) {
        disagreements++
        if (disagreements <= 5) t.fail(`disagrees with JSON.parse (${String(expected)}) on ${JSON.stringify(text)}`)
      }
      checked++
    }
  }
  t.equal(disagreements, 0, `no disagreement in ${checked} mutated documents`)
  t.ok(accepted > 100 && accepted < checked - 100, `the mutations cover both answers (${accepted} valid of ${checked})`)
})
