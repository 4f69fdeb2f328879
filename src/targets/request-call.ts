// The call a target makes for a client's request, shared by the code that
// makes it (proxy.ts) and the code that wraps it (success-hooks.ts) so
// neither has to import the other.

import type { FastifyRequest } from 'fastify'
import type { UpstreamResponse } from '../upstream/types.js'

/** One upstream call for a client's request (what success hooks wrap, and both proxy handlers call). */
export type RequestCall = (request: FastifyRequest) => Promise<UpstreamResponse>

/** The service whose answer may become an event body: read whole, but never past its maxResponseSize. */
export interface BodyLimit { name: string, maxResponseSize: number }
