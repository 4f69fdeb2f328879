// @fastify/rate-limit's bundled stores have no type declarations of their own.
declare module '@fastify/rate-limit/store/RedisStore.js' {
  const RedisStore: unknown
  export default RedisStore
}
declare module '@fastify/rate-limit/store/LocalStore.js' {
  const LocalStore: unknown
  export default LocalStore
}
