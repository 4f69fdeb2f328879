// Shared pieces of the auth tests: a gateway config with one route per
// policy, and the checks every 401/403 must pass.

import type { Test } from 'tap'

/**
 * A gateway.yaml (written as JSON, which is YAML) with one service, the given
 * `auth` block and policies, and for each policy P a route `GET|POST /P`
 * proxied to the service unchanged.
 */
export function authGateway (opts: { upstream: string, auth: Record<string, unknown>, policies: Record<string, Record<string, unknown>> }): string {
  return JSON.stringify({
    services: { backend: { urls: [opts.upstream], timeout: '2s' } },
    auth: opts.auth,
    policies: opts.policies,
    routes: Object.keys(opts.policies).map(name => ({
      id: `r-${name}`, method: ['GET', 'POST'], path: `/${name}`, policy: name, proxy: { service: 'backend' },
    })),
  }, null, 2)
}

export interface InjectResult { statusCode: number, headers: Record<string, unknown>, body: string }

/** Checks the RFC 9457 shape of a gateway error and returns the body. */
export function expectProblem (t: Test, res: InjectResult, status: number, code: string, label = ''): Record<string, unknown> {
  const at = label === '' ? '' : `${label}: `
  t.equal(res.statusCode, status, `${at}status ${status}`)
  t.match(String(res.headers['content-type']), /^application\/problem\+json(;|$)/, `${at}problem+json`)
  let body: Record<string, unknown> = {}
  try { body = JSON.parse(res.body) as Record<string, unknown> } catch { t.fail(`${at}body is not JSON: ${res.body.slice(0, 200)}`) }
  t.equal(body.status, status, `${at}body.status`)
  t.equal(body.code, code, `${at}body.code`)
  t.type(body.detail, 'string', `${at}body.detail`)
  t.equal(body.requestId, res.headers['x-request-id'], `${at}requestId is the x-request-id header`)
  t.notMatch(res.body, /\bat .*\(.*:\d+:\d+\)|node:internal|\.ts:\d+/, `${at}no stack trace`)
  return body
}
