// The import rule: imports run one way, down the layers.
//
//   entry     src/cli.ts · server.ts · cluster.ts · shared-resources.ts
//     ↓
//   gateway   src/app.ts · mount-routes.ts · compile/route-plan.ts · gateway/
//     ↓
//   stages    plugins/ · src/auth/ · handlers/ (the targets) · extensions/ · paths/
//   targets   compile/policy.ts · compile/body.ts · compile/duplicate-keys.ts · compile/validators.ts
//             rate-limit-*.ts · admin.ts · status-page.ts · http-edge.ts
//     ↓
//   stores    src/upstream/ · cache/ · events/
//     ↓
//   base      src/config/ · errors.ts · redis.ts · identity.ts · metrics.ts · tracing.ts
//             util/ · handlers/json-check.ts · upstream/cancellation.ts
//
// A layer may import its own layer and any layer below it, never one above.
// Files are placed by what they are, not only by their folder: a few live in
// a folder of another layer until the folder move (json-check and
// cancellation are leaf utilities; compile/ keeps load-time compilers that
// stages use). Type-only imports count: a type import still ties the layers.
//
// Run it: npm run lint:imports (part of npm test).

const ENTRY = '^src/(cli|server|cluster|shared-resources)\\.ts$'
const GATEWAY = '^src/((app|mount-routes)\\.ts$|compile/route-plan\\.ts$|gateway/)'
// The leaf utilities that still live inside a stage or store folder.
const UTIL_IN_PLACE = '^src/(handlers/json-check|upstream/cancellation)\\.ts$'
const BASE = `^src/(config/|util/|types/|(errors|redis|identity|metrics|tracing)\\.ts$)|${UTIL_IN_PLACE}`
const STORES = '^src/(upstream|cache|events)/'
const STAGES = '^(plugins/|src/(auth|handlers|extensions|paths)/|src/compile/(policy|body|duplicate-keys|validators)\\.ts$|src/(rate-limit-store|rate-limit-lease|admin|status-page|http-edge)\\.ts$)'

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'A cycle means two modules are one module in two files: neither can be read, tested or moved alone, and ESM load order between them becomes a trap.',
      from: {},
      to: { circular: true }
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment: 'An import the tool cannot resolve is an import the rule cannot check (a typo, or a .js specifier that maps to no .ts file).',
      from: {},
      to: { couldNotResolve: true }
    },
    {
      name: 'config-imports-only-base',
      severity: 'error',
      comment: 'config/ is read by every layer, so it may import only itself, errors.ts and util/: a config type that pulls in upstream/ or extensions/ code ties every reader of the config to them (define the shared type in config/ instead).',
      from: { path: '^src/config/' },
      to: {
        path: '^(src|plugins)/',
        pathNot: '^src/(config/|util/|errors\\.ts$)'
      }
    },
    {
      name: 'base-imports-only-base',
      severity: 'error',
      comment: 'The base (config types, errors, redis, metrics, tracing, util) is what everything stands on; it must not lean on any layer above it.',
      from: { path: BASE },
      to: { path: `${ENTRY}|${GATEWAY}|${STAGES}|${STORES}`, pathNot: UTIL_IN_PLACE }
    },
    {
      name: 'stores-not-above-stores',
      severity: 'error',
      comment: 'upstream/, cache/ and events/ are stores any stage may use; they know nothing of handlers, plugins, the gateway or the process. Request-time code they need belongs in util/ or their own folder.',
      from: { path: STORES, pathNot: UTIL_IN_PLACE },
      to: { path: `${ENTRY}|${GATEWAY}|${STAGES}`, pathNot: UTIL_IN_PLACE }
    },
    {
      name: 'stages-not-to-gateway-or-entry',
      severity: 'error',
      comment: 'Stages and targets are built by the gateway and handed what they need; one that imports the gateway (app, mount-routes, route-plan, gateway/) or the entry layer runs back up and makes a cycle of ownership.',
      from: { path: STAGES, pathNot: UTIL_IN_PLACE },
      to: { path: `${ENTRY}|${GATEWAY}` }
    },
    {
      name: 'src-not-to-plugins',
      severity: 'error',
      comment: 'plugins/ carry stages into Fastify; only the code that assembles a Fastify app mounts them: the gateway layer, and admin.ts, which assembles the admin listener\'s own app. Anything else in src/ stays framework-light and must not reach into plugins/.',
      from: { path: '^src/', pathNot: `${GATEWAY}|^src/admin\\.ts$` },
      to: { path: '^plugins/' }
    },
    {
      name: 'nothing-imports-entry',
      severity: 'error',
      comment: 'The entry layer (CLI, server, cluster, the shared resources a process holds) is the top: only entry files import each other. One exception, until the gateway is handed its resources by its caller: app.ts builds a SharedResources of its own when run alone (tests, inject).',
      from: { pathNot: `${ENTRY}|^src/app\\.ts$` },
      to: { path: ENTRY }
    },
    {
      name: 'app-only-shared-resources',
      severity: 'error',
      comment: 'The one exception above is app.ts → shared-resources.ts; the gateway imports no other entry file.',
      from: { path: '^src/app\\.ts$' },
      to: { path: ENTRY, pathNot: '^src/shared-resources\\.ts$' }
    },
    {
      name: 'no-orphans',
      severity: 'warn',
      comment: 'A module nothing imports and that imports nothing is dead code or a forgotten entry point.',
      from: { orphan: true, pathNot: '\\.d\\.ts$' },
      to: {}
    }
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    // Type-only imports count: they tie the layers as much as value imports.
    tsPreCompilationDeps: true,
    // Resolves the `.js` specifiers of TypeScript ESM to their `.ts` files.
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings']
    },
    moduleSystems: ['es6', 'cjs']
  }
}
