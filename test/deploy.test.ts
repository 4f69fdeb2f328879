// The deployment examples a new user copies: deploy/kubernetes.yaml parses,
// defines everything it references (the Secret and its keys), runs the pod
// locked down (non-root, read-only root, no privilege escalation, no
// capabilities), pins its image, trusts only an address range for
// x-forwarded-for, ships a PodDisruptionBudget and an HPA that match the
// Deployment, and its embedded gateway config loads. The Dockerfile (no
// Docker engine here) is checked for what those rely on.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { loadConfig } from '../src/config/index.js'
import { ConfigError } from '../src/config/problems.js'
import { writeConfigFiles } from './helpers/gateway.js'

const ROOT = join(import.meta.dirname, '..')

// The manifests are plain data; `any` keeps the walking short.
type Doc = any

const text = readFileSync(join(ROOT, 'deploy/kubernetes.yaml'), 'utf8')
const parsed = parseAllDocuments(text)
const docs: Doc[] = parsed.map(d => d.toJS())
const ofKind = (kind: string): Doc[] => docs.filter(d => d?.kind === kind)
const one = (kind: string): Doc => {
  const found = ofKind(kind)
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`)
  return found[0]
}

t.test('every document parses, each with a kind and a name', async t => {
  for (const [i, d] of parsed.entries()) t.same(d.errors.map(e => e.message), [], `document ${i} parses`)
  t.ok(docs.length >= 7)
  for (const d of docs) t.ok(typeof d.kind === 'string' && typeof d.metadata?.name === 'string', `${String(d.kind)} has a name`)
})

t.test('every Secret key the Deployment references is defined in the file', async t => {
  const container = one('Deployment').spec.template.spec.containers[0]
  const refs = (container.env as Doc[]).filter(e => e.valueFrom?.secretKeyRef !== undefined).map(e => e.valueFrom.secretKeyRef)
  t.ok(refs.length >= 2, 'the Deployment reads secrets')
  for (const ref of refs) {
    const secret = ofKind('Secret').find(s => s.metadata.name === ref.name)
    t.ok(secret, `Secret ${ref.name} is defined`)
    t.ok(ref.key in { ...secret?.stringData, ...secret?.data }, `Secret ${ref.name} has key ${ref.key}`)
  }
  t.match(text, /kubectl create secret generic portico-secrets/, 'says how to create the real one')
})

t.test('the pod runs locked down, with a pinned image', async t => {
  const pod = one('Deployment').spec.template.spec
  t.match(pod.securityContext, { runAsNonRoot: true, runAsUser: 1000 })
  for (const c of pod.containers as Doc[]) {
    t.match(c.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } }, c.name)
    t.match(c.image, /^[^:]+:\d+\.\d+\.\d+$/, `${c.name}: a versioned tag`)
    t.notMatch(c.image, /:latest$/)
    t.equal(c.imagePullPolicy, 'IfNotPresent')
    t.ok((c.volumeMounts as Doc[]).some(m => m.mountPath === '/tmp'), 'a writable /tmp beside the read-only root')
  }
  t.notMatch(text, /:latest\b/, 'no :latest anywhere')
})

t.test('a PodDisruptionBudget and an HPA that point at the Deployment', async t => {
  const deployment = one('Deployment')
  const pdb = one('PodDisruptionBudget')
  t.same(pdb.spec.selector.matchLabels, deployment.spec.selector.matchLabels)
  t.ok(pdb.spec.maxUnavailable !== undefined || pdb.spec.minAvailable !== undefined)
  const hpa = one('HorizontalPodAutoscaler')
  t.equal(hpa.apiVersion, 'autoscaling/v2')
  t.match(hpa.spec.scaleTargetRef, { kind: 'Deployment', name: deployment.metadata.name })
  t.ok(hpa.spec.minReplicas >= 2 && hpa.spec.maxReplicas > hpa.spec.minReplicas)
})

t.test('the embedded gateway config loads, trusts an address range only, and guards the admin listener', async t => {
  const config = ofKind('ConfigMap').find(c => c.metadata.name === 'portico-config').data as Record<string, string>
  const routes = ofKind('ConfigMap').find(c => c.metadata.name === 'portico-routes').data as Record<string, string>
  // The pod's layout: /app/config (portico-config) and /app/routes (portico-routes).
  const files: Record<string, string> = {}
  for (const [name, body] of Object.entries(config)) files[`config/${name}`] = body
  for (const [name, body] of Object.entries(routes)) files[`routes/${name}`] = body
  const dir = writeConfigFiles(files)
  const deployment = one('Deployment')
  const secret = one('Secret').stringData as Record<string, string>
  const env: Record<string, string> = {}
  for (const e of deployment.spec.template.spec.containers[0].env as Doc[]) {
    env[e.name] = e.value ?? secret[e.valueFrom.secretKeyRef.key]
  }
  const mounts = (deployment.spec.template.spec.containers[0].volumeMounts as Doc[]).map(m => m.mountPath)
  t.ok(mounts.includes('/app/config') && mounts.includes('/app/routes'))
  const { config: gw, warnings } = loadConfig(join(dir, 'config', 'gateway.yaml'), env)
  t.same(warnings, [], 'no warnings')
  t.equal(gw.routes.length, Object.keys(routes).length > 0 ? 1 : 0)
  t.ok(Array.isArray(gw.server.trustProxy), 'trustProxy is a list of addresses, not true')
  for (const cidr of gw.server.trustProxy as string[]) t.match(cidr, /^[0-9a-f.:]+\/\d+$/i, `${cidr} is a CIDR`)
  t.equal(gw.admin.host, '0.0.0.0')
  t.not(gw.admin.token, '', 'the admin listener beyond loopback has a token')
})

t.test('the Dockerfile: multi-stage, production dependencies, numeric non-root user, admin reachable with a token', async t => {
  const docker = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  t.equal(docker.match(/^FROM /gm)?.length, 2, 'a build stage and a run stage')
  t.match(docker, /RUN npm ci --omit=dev/, 'the run stage has production dependencies only')
  t.match(docker, /^USER 1000:1000$/m, 'non-root, numeric so runAsNonRoot can verify it')
  t.match(docker, /^ENV ADMIN_HOST=0\.0\.0\.0$/m)
  t.match(readFileSync(join(ROOT, 'config/gateway.yaml'), 'utf8'), /host: \$\{ADMIN_HOST:-127\.0\.0\.1\}/, 'the shipped config reads ADMIN_HOST')
})

t.test('the shipped config: an admin listener beyond loopback without ADMIN_TOKEN is refused', async t => {
  const shipped = join(ROOT, 'config', 'gateway.yaml')
  let refused: unknown
  try { loadConfig(shipped, { ADMIN_HOST: '0.0.0.0' }) } catch (err) { refused = err }
  t.ok(refused instanceof ConfigError, 'a config error, not a warning')
  t.match((refused as ConfigError).problems, [{ path: 'admin.host', message: /on 0\.0\.0\.0 is reachable beyond this machine: set admin\.token/ }])
  t.equal(loadConfig(shipped, { ADMIN_HOST: '0.0.0.0', ADMIN_TOKEN: 'a-long-admin-token-0123456789' }).config.admin.host, '0.0.0.0')
  t.equal(loadConfig(shipped, {}).config.admin.host, '127.0.0.1', 'npm start keeps it on loopback')
})
