// Event streams in a real Redis for the events tests: a stream name no other
// test (or parallel test process) uses, deleted when the test ends, and the
// entries read back as they are stored (field order included).

import { REDIS_URL, withClient } from './redis.js'
import { now, signHs } from './jwt.js'

interface Teardown { teardown: (fn: () => unknown) => void }

/** The field layout every gateway event has, in this order (commandId only on commands). */
export const EVENT_FIELDS = ['type', 'route', 'sub', 'requestId', 'at', 'body']

let streams = 0
/** A stream name of its own on `url` (default REDIS_URL), deleted in teardown. */
export function uniqueStream (t: Teardown, name: string, url = REDIS_URL): string {
  const stream = `test-ev-${name}-${process.pid}-${Date.now()}-${++streams}`
  t.teardown(async () => {
    // A private redis-server may be gone by now; its streams went with it.
    await withClient(url, async c => await c.del(stream)).catch(() => {})
  })
  return stream
}

export interface StreamEntry {
  id: string
  /** Field names in stored order. */
  names: string[]
  /** Field → value. */
  fields: Record<string, string>
}

/** Every entry of the stream, oldest first (XRANGE - +). */
export async function readStream (stream: string, url = REDIS_URL): Promise<StreamEntry[]> {
  const raw = await withClient(url, async c => await c.xrange(stream, '-', '+'))
  return raw.map(([id, flat]) => {
    const names: string[] = []
    const fields: Record<string, string> = {}
    for (let i = 0; i + 1 < flat.length; i += 2) {
      names.push(flat[i])
      fields[flat[i]] = flat[i + 1]
    }
    return { id, names, fields }
  })
}

export async function streamLength (stream: string, url = REDIS_URL): Promise<number> {
  return await withClient(url, async c => await c.xlen(stream))
}

export const JWT_SECRET = 'events-test-secret-0123456789abcdef'

/** The `auth` block of a gateway.yaml that accepts tokens from `bearer()`. */
export const JWT_AUTH_YAML = `auth:
  jwt:
    secret: ${JWT_SECRET}
    algorithms: [HS256]
`

/** An `authorization` header for a user of the JWT above. */
export function bearer (sub: string): string {
  return `Bearer ${signHs({ sub, iat: now(), exp: now() + 600 }, JWT_SECRET)}`
}

/** An ISO-8601 UTC time as `Date#toISOString` writes it. */
export const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
