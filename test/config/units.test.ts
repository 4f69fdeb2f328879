// Durations and sizes as the config file writes them:
// `500ms`, `2s`, `1m`, `1h` or milliseconds; `64kb`, `1mb` or bytes.
import t from 'tap'
import { inspect } from 'node:util'
import { parseDuration, parseSize } from '../../src/config/units.js'

t.test('durations people write become milliseconds', async t => {
  const cases: Array<[unknown, number]> = [
    ['500ms', 500],
    ['2s', 2000],
    ['1m', 60_000],
    ['1h', 3_600_000],
    ['1.5s', 1500],
    ['0.5m', 30_000],
    ['0s', 0],
    [' 2s ', 2000],
    [250, 250],
    [0, 0],
    ['250', 250],
  ]
  for (const [input, ms] of cases) t.equal(parseDuration(input), ms, inspect(input))
})

t.test('anything else is not a duration', async t => {
  const cases: unknown[] = [
    -1, '-1s', '-500ms', '2 weeks', '2w', '1d', 'soon', 's', '', '   ',
    Number.NaN, Number.POSITIVE_INFINITY, null, undefined, true, {}, { s: 2 }, ['2s'],
  ]
  for (const input of cases) t.equal(parseDuration(input), undefined, inspect(input))
})

t.test('sizes people write become bytes', async t => {
  const cases: Array<[unknown, number]> = [
    ['64kb', 64 * 1024],
    ['1mb', 1024 * 1024],
    ['1MB', 1024 * 1024],
    ['1gb', 1024 ** 3],
    ['512b', 512],
    ['1.5kb', 1536],
    ['0', 0],
    ['4096', 4096],
    [4096, 4096],
    [0, 0],
  ]
  for (const [input, bytes] of cases) t.equal(parseSize(input), bytes, inspect(input))
})

t.test('anything else is not a size', async t => {
  const cases: unknown[] = [
    -1, 1.5, '-1kb', '-64', 'big', '10 parsecs', 'kb', '', Number.NaN, Number.POSITIVE_INFINITY,
    null, undefined, false, {}, { kb: 1 }, ['1mb'],
  ]
  for (const input of cases) t.equal(parseSize(input), undefined, inspect(input))
})
