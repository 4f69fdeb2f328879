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
import { serverPki } from './helpers/certs.js'

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
  // The pod's layout: /app/config (portico-config), /app/routes (portico-routes)
  // and /app/tls (the portico-tls Secret: a throwaway certificate here).
  const files: Record<string, string> = {}
  for (const [name, body] of Object.entries(config)) files[`config/${name}`] = body
  for (const [name, body] of Object.entries(routes)) files[`routes/${name}`] = body
  const { server } = serverPki(t.testdir())
  files['tls/tls.crt'] = server.certPem()
  files['tls/tls.key'] = server.keyPem()
  const dir = writeConfigFiles(files)
  const deployment = one('Deployment')
  const secret = ofKind('Secret').find(s => s.metadata.name === 'portico-secrets').stringData as Record<string, string>
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
  t.equal(gw.server.tls?.cert, join(dir, 'tls', 'tls.crt'), 'the certificate comes from the mounted Secret')
  t.equal(gw.server.tls?.key, join(dir, 'tls', 'tls.key'))
})

t.test('TLS from a mounted kubernetes.io/tls Secret: HTTPS and h2 on the TLS port, plain HTTP only redirects', async t => {
  const deployment = one('Deployment')
  const pod = deployment.spec.template.spec
  const container = pod.containers[0]
  const config = ofKind('ConfigMap').find(c => c.metadata.name === 'portico-config').data as Record<string, string>
  const server = (parseAllDocuments(config['gateway.yaml'])[0].toJS() as Doc).server
  t.match(server, { port: 8443, http2: true, redirectHttpPort: 8080, tls: { cert: '../tls/tls.crt', key: '../tls/tls.key' } })

  const volume = (pod.volumes as Doc[]).find(v => v.secret !== undefined)
  t.ok(volume, 'a Secret volume')
  const tlsSecret = ofKind('Secret').find(s => s.metadata.name === volume.secret.secretName)
  t.ok(tlsSecret, `Secret ${String(volume?.secret?.secretName)} is defined in the file`)
  t.equal(tlsSecret.type, 'kubernetes.io/tls')
  t.ok('tls.crt' in { ...tlsSecret.stringData, ...tlsSecret.data } && 'tls.key' in { ...tlsSecret.stringData, ...tlsSecret.data }, 'with tls.crt and tls.key')
  t.match(text, /kubectl create secret tls portico-tls --cert=/, 'says how to create the real one')
  const mount = (container.volumeMounts as Doc[]).find(m => m.name === volume.name)
  t.match(mount, { mountPath: '/app/tls', readOnly: true })
  t.equal(mount.subPath, undefined, 'no subPath: a renewed Secret reaches the files')
  // /app/config/gateway.yaml + ../tls/tls.crt = the mount.
  t.equal(join('/app/config', server.tls.cert), `${mount.mountPath}/tls.crt`)
  t.equal(volume.secret.defaultMode & 0o004, 0, 'the key is not world-readable')
  t.not(volume.secret.defaultMode & 0o040, 0, 'the gateway reads it through its group')
  t.equal(pod.securityContext.fsGroup, pod.securityContext.runAsGroup, 'the fsGroup is the gateway\'s group')
  t.ok((container.args as string[]).includes('--watch'), 'a renewed certificate is reloaded without a restart')

  const ports = Object.fromEntries((container.ports as Doc[]).map(p => [p.name, p.containerPort]))
  t.same(ports, { https: 8443, http: 8080, admin: 9090 })
  for (const probe of [container.livenessProbe, container.readinessProbe]) t.match(probe.httpGet, { port: 'https', scheme: 'HTTPS' })
  const service = one('Service')
  t.same((service.spec.ports as Doc[]).map(p => [p.port, p.targetPort]), [[443, 'https'], [80, 'http']])
})

t.test('the Dockerfile: multi-stage, production dependencies, numeric non-root user, admin reachable with a token', async t => {
  const docker = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  t.equal(docker.match(/^FROM /gm)?.length, 2, 'a build stage and a run stage')
  t.match(docker, /RUN npm ci --omit=dev/, 'the run stage has production dependencies only')
  t.match(docker, /^USER 1000:1000$/m, 'non-root, numeric so runAsNonRoot can verify it')
  t.match(docker, /^ENV ADMIN_HOST=0\.0\.0\.0$/m)
  t.match(docker, /^EXPOSE .*\b8443\b/m, 'the TLS port')
  t.match(docker, /\/app\/tls:ro/, 'says where to mount the certificate')
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
