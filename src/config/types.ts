// The configuration after validation and normalization: durations and sizes
// are numbers, defaults are filled in, references are known to resolve.

import type { HTTP_METHODS } from './schema.js'

export type HttpMethod = typeof HTTP_METHODS[number]

export interface SourceLocation {
  file: string
  line: number
}

export interface ServerConfig {
  host: string
  port: number
  bodyLimit: number
  trustProxy: boolean | string | number | string[]
  shutdownTimeout: number
  requestTimeout: number
  headersTimeout: number
  keepAliveTimeout: number
}

export interface PolicyConfig {
  name: string
  auth: 'none'
}

export interface ServiceConfig {
  name: string
  urls: string[]
  timeout: number
}

export interface ProxyTargetConfig {
  service: string
  /** Upstream path template; absent: the incoming path is forwarded unchanged. */
  path?: string
}

export interface RouteConfig {
  id: string
  description?: string
  methods: HttpMethod[]
  path: string
  policy: string
  proxy?: ProxyTargetConfig
  source: SourceLocation
}

export interface GatewayConfig {
  /** The main config file, absolute. */
  file: string
  /** Every file the config was read from (main, policies, services, routes). */
  files: string[]
  server: ServerConfig
  policies: Map<string, PolicyConfig>
  services: Map<string, ServiceConfig>
  routes: RouteConfig[]
}

export const DEFAULTS = {
  server: {
    host: '0.0.0.0',
    port: 8080,
    bodyLimit: 1024 * 1024,
    trustProxy: false,
    shutdownTimeout: 10_000,
    requestTimeout: 30_000,
    headersTimeout: 10_000,
    // Longer than the 60 s idle timeout of common load balancers, so the
    // gateway never closes a connection the balancer is about to reuse.
    keepAliveTimeout: 72_000,
  },
  service: { timeout: 10_000 },
} as const
