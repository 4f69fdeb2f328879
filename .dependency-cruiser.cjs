// The import rule: imports run one way, down the layers the folders show.
//
//   entry     src/main/        the CLI, the process server, workers
//     ↓
//   gateway   src/gateway/     building an app from a config: the pipeline, route plans,
//                              mounting, the resources a process keeps across reloads
//     ↓
//   stages    src/pipeline/    auth, rate limit, validation, body, cache glue, success hooks
//   targets   src/targets/     proxy, aggregate, command, and the header policy they share
//             src/extensions/  GatewayPlugin and the built-in plugins
//             src/admin/       the admin listener and status page
//             plugins/         the truly global Fastify plugins (request id, access log,
//                              metrics, tracing, error handler, health, framing)
//     ↓
//   stores    src/upstream/ · src/cache/ · src/events/
//     ↓
//   base      src/config/ · src/redis/ · src/observability/ · src/util/ · src/types/
//
// A layer may import its own layer and any layer below it, never one above.
// Type-only imports count: a type import still ties the layers.
//
// Run it: npm run lint:imports (part of npm test).

const ENTRY = '^src/main/'
const GATEWAY = '^src/gateway/'
const STAGES = '^(plugins/|src/(pipeline|targets|extensions|admin)/)'
const STORES = '^src/(upstream|cache|events)/'
const BASE = '^src/(config|redis|observability|util|types)/'

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
      comment: 'config/ is read by every layer, so it may import only itself and util/: a config type that pulls in upstream/ or extensions/ code ties every reader of the config to them (define the shared type in config/ instead).',
      from: { path: '^src/config/' },
      to: {
        path: '^(src|plugins)/',
        pathNot: '^src/(config|util)/'
      }
    },
    {
      name: 'base-imports-only-base',
      severity: 'error',
      comment: 'The base (config types, redis, metrics, tracing, util with the error registry) is what everything stands on; it must not lean on any layer above it.',
      from: { path: BASE },
      to: { path: `${ENTRY}|${GATEWAY}|${STAGES}|${STORES}` }
    },
    {
      name: 'stores-not-above-stores',
      severity: 'error',
      comment: 'upstream/, cache/ and events/ are stores any stage may use; they know nothing of stages, targets, plugins, the gateway or the process. Request-time code they need belongs in util/ or their own folder.',
      from: { path: STORES },
      to: { path: `${ENTRY}|${GATEWAY}|${STAGES}` }
    },
    {
      name: 'stages-not-to-gateway-or-entry',
      severity: 'error',
      comment: 'Stages and targets are built by the gateway and handed what they need; one that imports the gateway (src/gateway/) or the entry layer (src/main/) runs back up and makes a cycle of ownership.',
      from: { path: STAGES },
      to: { path: `${ENTRY}|${GATEWAY}` }
    },
    {
      name: 'src-not-to-plugins',
      severity: 'error',
      comment: 'plugins/ carry stages into Fastify; only the code that assembles a Fastify app mounts them: the gateway layer, and src/admin/admin-app.ts, which assembles the admin listener\'s own app. Anything else in src/ stays framework-light and must not reach into plugins/.',
      from: { path: '^src/', pathNot: `${GATEWAY}|^src/admin/admin-app\\.ts$` },
      to: { path: '^plugins/' }
    },
    {
      name: 'nothing-imports-entry',
      severity: 'error',
      comment: 'The entry layer (CLI, server, workers) is the top: only entry files import each other. What a process keeps across reloads (SharedResources) is built by the gateway layer, so an app run alone (tests, inject) needs nothing from here.',
      from: { pathNot: ENTRY },
      to: { path: ENTRY }
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
