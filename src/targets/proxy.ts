// Proxy routes: one upstream call, the answer passed back unchanged (small
// bodies as the one Buffer the pool read, large ones streamed). Sending it,
// caching it and the success hooks are the same for every target (target.ts).

import type { Readable } from 'node:stream'
import type { PathFiller } from '../util/template.js'
import type { ServiceClient } from '../upstream/client.js'
import type { Target } from './target.js'
import { upstreamRequestHeaders, type ForwardOptions } from './forward-headers.js'
import { rawBodyOf } from '../pipeline/body.js'
import { GatewayError } from '../util/errors.js'
import { fillContext } from './fill-context.js'

/**
 * A `.` or `..` segment, also percent-encoded: many upstreams resolve them, which would escape the route's prefix.
 * The path normaliser refuses these before matching already; this stays as a second line in front of the upstream.
 */
const DOT_SEGMENT = /(^|\/)(\.|%2e){1,2}(\/|$)/i

export interface ProxyPlan {
  client: ServiceClient
  /** Upstream path template; undefined forwards the incoming path as normalised before matching (src/pipeline/paths/normalise.ts). */
  fillPath?: PathFiller
  templateHasQuery?: boolean
  forward: ForwardOptions
}

/** The proxy target: the upstream's answer is the target's answer, as it stands (a small body in hand, a large one streaming). */
export function createProxyTarget (plan: ProxyPlan): Target {
  const { client, fillPath, forward } = plan
  // A template that has its own query (`/orders?user={auth.sub}`) gets the client's query appended with `&`.
  const templateHasQuery = plan.templateHasQuery === true
  return {
    limit: client,
    cacheable: true,
    call: async function callUpstream (request, clientGone) {
      let path = request.url
      if (fillPath !== undefined) {
        const q = path.indexOf('?')
        path = fillPath(fillContext(request)) + (q === -1 ? '' : (templateHasQuery ? '&' : '?') + path.slice(q + 1))
      } else {
        const q = path.indexOf('?')
        if (DOT_SEGMENT.test(q === -1 ? path : path.slice(0, q))) throw new GatewayError('BAD_REQUEST', 'a path segment may not be "." or ".."')
      }
      return await client.call({
        method: request.method,
        path,
        headers: upstreamRequestHeaders(request, forward),
        body: rawBodyOf(request) ?? request.body as Readable | undefined,
        timeout: client.timeout,
        ...(clientGone !== undefined ? { signal: clientGone } : {}),
        ...(request.traceContext !== undefined ? { trace: request.traceContext } : {}),
      })
    },
  }
}
