// The import rule (.dependency-cruiser.cjs) holds on the real tree, and it
// bites: a small tree laid out like ours, with one forbidden import per rule,
// fails the same command `npm run lint:imports` runs, naming each rule and
// the offending import.
import t from 'tap'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { resolve } from 'node:path'

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '..')
const depcruise = resolve(root, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs')
const config = resolve(root, '.dependency-cruiser.cjs')

interface Run { code: number, out: string }

function run (cwd: string, args: string[]): Promise<Run> {
  return new Promise(resolvePromise => {
    execFile(process.execPath, [depcruise, ...args, '--config', config, '--no-progress'], { cwd }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      resolvePromise({ code, out: stdout + stderr })
    })
  })
}

const ts = (body: string): string => body + '\nexport const here = 1\n'

t.test('the real tree passes the import rule, tersely', async t => {
  const { code, out } = await run(root, ['src', 'plugins'])
  t.equal(code, 0, out)
  t.match(out, /no dependency violations found/)
  t.ok(out.trim().split('\n').length <= 2, 'a passing run prints one line')
})

t.test('each forbidden import fails the rule that names it', async t => {
  const dir = t.testdir({
    'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'Node16', moduleResolution: 'Node16', strict: true } }),
    src: {
      main: { 'server.ts': ts('') },
      util: {
        'errors.ts': ts(''),
        'template.ts': ts("import { here as e } from './errors.js'\nvoid e"),
        // Imports nothing and nothing imports it: reported, but only as a warning.
        'orphan.ts': ts('')
      },
      config: {
        // A type-only import counts: config/ may not lean on upstream/.
        'types.ts': ts("import type { Breaker } from '../upstream/breaker.js'\nexport type B = Breaker"),
        'ok.ts': ts("import { here as t } from '../util/template.js'\nvoid t")
      },
      redis: { 'connection.ts': ts("import { here as c } from '../cache/layer.js'\nvoid c") },
      upstream: { 'breaker.ts': ts('export interface Breaker { open: boolean }') },
      cache: { 'layer.ts': ts("import { here as h } from '../targets/proxy.js'\nvoid h") },
      targets: {
        'proxy.ts': ts("import { here as s } from './command.js'\nvoid s"),
        'command.ts': ts("import { here as p } from './proxy.js'\nimport { here as s } from '../main/server.js'\nvoid p\nvoid s"),
        'aggregate.ts': ts("import { here as r } from '../gateway/route-plan.js'\nvoid r"),
        'target.ts': ts("import { here as m } from './missing.js'\nvoid m")
      },
      gateway: { 'route-plan.ts': ts("import { here as a } from '../../plugins/request-id.js'\nvoid a") },
      pipeline: { auth: { 'jwt.ts': ts("import { here as a } from '../../../plugins/request-id.js'\nvoid a") } }
    },
    plugins: { 'request-id.ts': ts("import { here as e } from '../src/util/errors.js'\nvoid e") }
  })
  const { code, out } = await run(dir, ['src', 'plugins'])
  t.not(code, 0, 'the command fails')
  const violation = (rule: string, from: string, to: string): RegExp =>
    new RegExp(`error ${rule}: ${from.replace(/\./g, '\\.')} → *\\s*${to.replace(/\./g, '\\.')}`)
  t.match(out, violation('config-imports-only-base', 'src/config/types.ts', 'src/upstream/breaker.ts'))
  t.match(out, violation('base-imports-only-base', 'src/redis/connection.ts', 'src/cache/layer.ts'))
  t.match(out, violation('stores-not-above-stores', 'src/cache/layer.ts', 'src/targets/proxy.ts'))
  t.match(out, /error no-circular: src\/targets\/(proxy|command)\.ts/)
  t.match(out, violation('nothing-imports-entry', 'src/targets/command.ts', 'src/main/server.ts'))
  t.match(out, violation('stages-not-to-gateway-or-entry', 'src/targets/aggregate.ts', 'src/gateway/route-plan.ts'))
  t.match(out, violation('src-not-to-plugins', 'src/pipeline/auth/jwt.ts', 'plugins/request-id.ts'))
  t.match(out, violation('not-to-unresolvable', 'src/targets/target.ts', './missing.js'))
  t.match(out, /warn no-orphans: src\/util\/orphan\.ts/)
  // What the layers allow stays allowed: config → util, util → errors,
  // the gateway → plugins, plugins → src.
  t.notMatch(out, /src\/config\/ok\.ts/)
  t.notMatch(out, /src\/util\/template\.ts →/)
  t.notMatch(out, /src\/gateway\/route-plan\.ts → *\s*plugins/)
  t.notMatch(out, /plugins\/request-id\.ts →/)
})
