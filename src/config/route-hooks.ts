// The shape of a route's compiled plugin hooks, which a RouteConfig carries
// once extensions/ has compiled them. The type lives with the config types so
// config/ never imports the extension code that fills it in.

import type { FastifyRequest, onRequestAsyncHookHandler, onSendHookHandler } from 'fastify'

/** Headers as they will be sent upstream (lower-case names). */
export type UpstreamHeaders = Record<string, string | string[]>

export interface RouteStageHooks {
  /** The plugins behind these hooks, in order (what the admin API shows; their settings may hold secrets). */
  names: string[]
  /** A route-level onRequest hook: runs before the route's authentication. */
  onRequest?: onRequestAsyncHookHandler
  upstreamRequest?: (request: FastifyRequest, headers: UpstreamHeaders) => void
  /** A route-level onSend hook. */
  onSend?: onSendHookHandler
}
