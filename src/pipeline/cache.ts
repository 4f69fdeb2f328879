// The response cache in front of a route's producer (pipeline step 7; it runs
// in the handler, so only requests that passed auth, authorization and rate
// limiting ever see a cached answer).
//
//   fresh entry            → HIT
//   stale, within SWR      → STALE, and one background refresh
//   miss                   → MISS: one upstream call per key (coalesced), stored if cacheable
//   upstream fails, entry within staleIfError → STALE instead of the error
//   store unreachable/slow → BYPASS: served from the upstream, never an error

import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify'
import { GatewayError } from '../util/errors.js'
import type { ValueFiller } from '../util/template.js'
import type { CacheEntry } from '../cache/store.js'
import { cacheKey, freshnessFor, mayShare, storableHeaders, type KeySpec } from '../cache/keys.js'
import { Coalescer } from '../cache/coalesce.js'
import type { CacheLayer } from '../cache/layer.js'
import { bufferAnswer, callForOne, sendAnswer, type BufferedAnswer, type Target } from '../targets/target.js'
import { fillContext } from '../targets/fill-context.js'
import { reusableBody } from './compression.js'

export interface CachePlan extends KeySpec {
  ttl: number
  staleWhileRevalidate: number
  staleIfError: number
  tags: ValueFiller[]
}

/** The cache stage in front of any target: the target's answer, read whole (within its limit) to be stored. */
export function createCachedHandler (target: Target, plan: CachePlan, layer: CacheLayer, log: FastifyBaseLogger): (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply> {
  const coalescer = new Coalescer<BufferedAnswer>(layer.coalesced)
  const { call, limit } = target
  const produce = async (request: FastifyRequest): Promise<BufferedAnswer> => await bufferAnswer(await call(request), limit)

  /** Calls the upstream once per key at a time, and stores what may be stored. */
  async function fetchAndStore (key: string, request: FastifyRequest, storeIt: boolean): Promise<BufferedAnswer> {
    let ownCall = false
    const res = await coalescer.run(key, async () => {
      ownCall = true
      const mark = layer.purgeMark()
      const res = await produce(request)
      const tags = fillTags(plan.tags, request)
      // A write that purged these tags while this read was in flight makes
      // its answer outdated: serve it to this client, but do not store it.
      if (storeIt && res.cacheable !== false && !layer.purgedSince(tags, mark)) {
        const fresh = freshnessFor(res.statusCode, res.headers, plan.scope, plan.ttl, plan.vary)
        if (fresh > 0) {
          const now = Date.now()
          const entry: CacheEntry = {
            status: res.statusCode,
            headers: storableHeaders(res.headers),
            body: res.body,
            storedAt: now,
            freshUntil: now + fresh,
            staleUntil: now + fresh + plan.staleWhileRevalidate,
            errorUntil: now + fresh + plan.staleIfError,
            tags,
          }
          await layer.set(key, entry)
        }
      }
      return res
    })
    // An answer meant for the client that asked (a session cookie, private data) is not
    // handed to the requests that waited for it: each of those makes its own call.
    if (!ownCall && !mayShare(res.headers, plan.scope, plan.vary)) return await produce(request)
    return res
  }

  return async function cachedHandler (request: FastifyRequest, reply: FastifyReply) {
    if (request.method !== 'GET') {
      reply.header('x-cache', 'BYPASS')
      return sendAnswer(request, reply, await callForOne(call, request))
    }
    const key = cacheKey(request, plan)
    // A fresh entry in the near cache is answered without a single await.
    const near = layer.peek(key)
    if (near !== undefined) {
      const now = Date.now()
      if (now < near.freshUntil) return sendEntry(reply, near, 'HIT', now)
    }
    const lookup = await layer.get(key)
    const entry = lookup.entry
    const now = Date.now()
    if (entry !== undefined && now < entry.freshUntil) return sendEntry(reply, entry, 'HIT', now)
    if (entry !== undefined && now < entry.staleUntil) {
      if (!coalescer.has(key)) {
        fetchAndStore(key, request, true).catch((err: unknown) => {
          log.warn({ route: plan.routeId, err: (err as Error).message }, 'background cache refresh failed')
        })
      }
      return sendEntry(reply, entry, 'STALE', now)
    }
    let res: BufferedAnswer
    try {
      res = await fetchAndStore(key, request, lookup.ok)
    } catch (err) {
      if (entry !== undefined && now < entry.errorUntil && isUpstreamFailure(err)) return sendEntry(reply, entry, 'STALE', now)
      throw err
    }
    if (res.statusCode >= 500 && entry !== undefined && now < entry.errorUntil) return sendEntry(reply, entry, 'STALE', now)
    reply.header('x-cache', lookup.ok ? 'MISS' : 'BYPASS').header('age', '0')
    // The stored entry holds this very Buffer: its compressed variant is kept for the HITs.
    reusableBody(res.body)
    return sendAnswer(request, reply, res)
  }
}

function sendEntry (reply: FastifyReply, entry: CacheEntry, state: 'HIT' | 'STALE', now: number): FastifyReply {
  // One Buffer for every HIT from memory or the near cache: compressed once per encoding (src/pipeline/compression.ts).
  reusableBody(entry.body)
  return reply
    .code(entry.status)
    .headers(entry.headers)
    .header('x-cache', state)
    .header('age', String(Math.max(0, Math.floor((now - entry.storedAt) / 1000))))
    .send(entry.body)
}

function isUpstreamFailure (err: unknown): boolean {
  return err instanceof GatewayError && (err.code === 'UPSTREAM_ERROR' || err.code === 'UPSTREAM_TIMEOUT' || err.code === 'CIRCUIT_OPEN')
}

function fillTags (tags: ValueFiller[], request: FastifyRequest): string[] {
  if (tags.length === 0) return []
  const ctx = fillContext(request)
  return tags.map(fill => fill(ctx))
}
