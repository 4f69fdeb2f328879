// The path normaliser and request-target rewrite alone: each input, under
// the default rules and each relaxed one, is either the path the gateway
// matches and forwards, or refused (answered 400 BAD_REQUEST).
import t from 'tap'
import { compilePathNormaliser, PathRefused } from '../../../src/pipeline/paths/normalise.js'
import { compileRequestTarget } from '../../../src/pipeline/paths/request-target.js'
import type { PathRules } from '../../../src/config/types.js'
import { DEFAULTS } from '../../../src/config/defaults.js'

type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const REFUSED = '400'

function run (rules: Partial<PathRules>, target: string): string {
  const out = compilePathNormaliser({ ...DEFAULTS.server.paths, ...rules })(target)
  return out instanceof PathRefused ? REFUSED : out
}

function table (t: Test, rules: Partial<PathRules>, cases: Array<[string, string]>): void {
  for (const [input, expected] of cases) t.equal(run(rules, input), expected, `${JSON.stringify(rules)} ${input}`)
}

t.test('defaults: merge //, decode unreserved escapes, refuse %2F %5C \\ ; and dot segments', async t => {
  table(t, {}, [
    ['/', '/'],
    ['/api/admin/x', '/api/admin/x'],
    ['/api//admin/x', '/api/admin/x'],
    ['//api///admin////x//', '/api/admin/x/'],
    ['/api/admin/x?a=//b;c\\d%2F&e=%2e%2e', '/api/admin/x?a=//b;c\\d%2F&e=%2e%2e'],
    ['/api/%61dmin/%7Euser', '/api/admin/~user'],
    ['/api/%41DMIN', '/api/ADMIN'],
    ['/a%20b/%3B/%25/%3F/%23', '/a%20b/%3B/%25/%3F/%23'],
    ['/a/%252e%252e/b', '/a/%252e%252e/b'],
    ['/a/.../b', '/a/.../b'],
    ['/a/.b/..c/b.', '/a/.b/..c/b.'],
    ['/a/x.json', '/a/x.json'],
    ['/zoë', '/zoë'],
    ['/api/admin;/x', REFUSED],
    ['/api/admin;x=1/x', REFUSED],
    ['/api/admin\\x', REFUSED],
    ['/api/x\\..\\admin\\y', REFUSED],
    ['/api/admin%2fx', REFUSED],
    ['/api/admin%2Fx', REFUSED],
    ['/api/admin%5cx', REFUSED],
    ['/api/admin%5Cx', REFUSED],
    ['/.', REFUSED],
    ['/..', REFUSED],
    ['/a/./b', REFUSED],
    ['/a/../b', REFUSED],
    ['/a/b/..', REFUSED],
    ['/a/%2e/b', REFUSED],
    ['/a/%2E%2E/b', REFUSED],
    ['/a/.%2e/b', REFUSED],
    ['/a/%2e./b', REFUSED],
    ['/a//..//b', REFUSED],
    ['/a/%', REFUSED],
    ['/a/%4', REFUSED],
    ['/a/%zz', REFUSED],
    ['/api/admin%00/x', REFUSED],
    ['/api/admin%09/x', REFUSED],
    ['/api/admin%0a/x', REFUSED],
    ['/api/admin%1F/x', REFUSED],
    ['/api/admin%7f/x', REFUSED],
    ['/a#b', REFUSED],
    ['*', REFUSED],
    ['api/admin', REFUSED],
  ])
})

t.test('mergeSlashes: false keeps "//" but not dot segments', async t => {
  table(t, { mergeSlashes: false }, [
    ['/api//admin/x', '/api//admin/x'],
    ['//x', '//x'],
    ['/a//../b', REFUSED],
  ])
})

t.test('escapedSlashes: keep forwards %2F/%5C as sent, and refuses a dot segment between them', async t => {
  table(t, { escapedSlashes: 'keep' }, [
    ['/a%2Fb', '/a%2Fb'],
    ['/a%2fb%5Cc', '/a%2fb%5Cc'],
    ['/a%2F..%2Fb', REFUSED],
    ['/a%2f%2e%2e', REFUSED],
    ['/a%5C.%5Cb', REFUSED],
    ['/a%2F...%2Fb', '/a%2F...%2Fb'],
    ['/a\\b', REFUSED],
  ])
})

t.test('backslashes: keep forwards \\ as sent, and refuses a dot segment between them', async t => {
  table(t, { backslashes: 'keep' }, [
    ['/a\\b', '/a\\b'],
    ['/a\\..\\b', REFUSED],
    ['/a\\%2e', REFUSED],
    ['/a%5Cb', REFUSED],
  ])
})

t.test('pathParameters: keep forwards ;params as sent, and refuses "..;x" (read as ".." by Tomcat)', async t => {
  table(t, { pathParameters: 'keep' }, [
    ['/a;v=1/b', '/a;v=1/b'],
    ['/..;/admin', REFUSED],
    ['/a/.;x/b', REFUSED],
    ['/a/%2e%2e;/b', REFUSED],
    ['/a/...;x/b', '/a/...;x/b'],
  ])
})

t.test('caseInsensitive: true lower-cases the path (ASCII only) and leaves the query alone', async t => {
  table(t, { caseInsensitive: true }, [
    ['/API/Admin/X?Q=A', '/api/admin/x?Q=A'],
    ['/api/%41DMIN', '/api/admin'],
    ['/a%3B', '/a%3b'],
    ['/ÀB', '/Àb'],
    ['/already/lower', '/already/lower'],
  ])
})

t.test('absolute-form targets: origin-form when the authority is the Host, refused otherwise', async t => {
  const rewrite = compileRequestTarget(DEFAULTS.server.paths)
  const cases: Array<[string, string | undefined, string]> = [
    ['http://g/pub/abs', 'g', '/pub/abs'],
    ['http://G:80/pub//abs?x=1', 'g', '/pub/abs?x=1'],
    ['HTTP://g', 'g:80', '/'],
    ['http://g?x=1', 'g', '/?x=1'],
    ['https://g:443/a', 'g', '/a'],
    ['http://127.0.0.1:8080/a', '127.0.0.1:8080', '/a'],
    ['http://[::1]:8080/a', '[::1]:8080', '/a'],
    ['http://other-host/pub/abs', 'g', REFUSED],
    ['http://g:8080/pub', 'g', REFUSED],
    ['http://g/pub', undefined, REFUSED],
    ['http://user@g/pub', 'g', REFUSED],
    ['http://g/pub/../admin', 'g', REFUSED],
    ['ftp://g/pub', 'g', REFUSED],
    ['g:80', 'g', REFUSED],
  ]
  for (const [target, host, expected] of cases) {
    const out = rewrite(target, host)
    t.equal(out instanceof PathRefused ? REFUSED : out, expected, `${target} (Host: ${String(host)})`)
  }
})
