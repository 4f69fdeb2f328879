// One keep-alive connection pool per service instance, and the call that
// sends a request through it. Transport errors become gateway errors here, at
// the one place that knows undici's error codes.

import { Pool } from 'undici'
import { GatewayError } from '../errors.js'
import type { UpstreamCall } from './types.js'

export interface PoolOptions {
  /** Most connections kept to one instance. */
  connections: number
  keepAliveTimeout: number
  connectTimeout: number
}

export const DEFAULT_POOL_OPTIONS: PoolOptions = {
  connections: 128,
  keepAliveTimeout: 30_000,
  connectTimeout: 5_000,
}

export interface InstancePool {
  /** The instance's base URL as configured. */
  url: string
  call: UpstreamCall
  close: () => Promise<void>
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT'])

export function createInstancePool (service: string, url: string, options: PoolOptions = DEFAULT_POOL_OPTIONS): InstancePool {
  const base = new URL(url)
  // A base path in the URL (http://host/api) prefixes every upstream path.
  const prefix = base.pathname.replace(/\/+$/, '')
  const pool = new Pool(base.origin, {
    connections: options.connections,
    pipelining: 1,
    keepAliveTimeout: options.keepAliveTimeout,
    connect: { timeout: options.connectTimeout },
  })
  return {
    url,
    async call (req) {
      try {
        const res = await pool.request({
          method: req.method as 'GET',
          path: prefix + req.path,
          headers: req.headers,
          body: req.body ?? null,
          headersTimeout: req.timeout,
          bodyTimeout: req.timeout,
          ...(req.signal !== undefined ? { signal: req.signal } : {}),
        })
        return { statusCode: res.statusCode, headers: res.headers, body: res.body, instance: url }
      } catch (err) {
        throw transportError(err, service)
      }
    },
    close: async () => { await pool.close() },
  }
}

/** Maps undici/socket failures to the gateway's codes, keeping the cause for logs only. */
export function transportError (err: unknown, service: string): GatewayError {
  if (err instanceof GatewayError) return err
  const code = (err as { code?: string }).code ?? ''
  if (TIMEOUT_CODES.has(code)) {
    return new GatewayError('UPSTREAM_TIMEOUT', `service "${service}" did not answer in time`, { cause: err })
  }
  return new GatewayError('UPSTREAM_ERROR', `service "${service}" could not be reached`, { cause: err })
}
