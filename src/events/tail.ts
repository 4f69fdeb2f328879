// `portico events tail`: a small consumer that prints a stream's events as
// they arrive, one JSON line each, to watch the event flow (not a worker: a
// real consumer uses XREADGROUP with a consumer group, see the README).

import { Cluster, Redis } from 'ioredis'
import { parseRedisUrl } from '../redis/connection.js'

/** The URL as it may be printed: a password in it is masked. */
export function displayRedisUrl (url: string): string {
  return url.replace(/^([a-z+]+:\/\/[^:@/]*):[^@/]*@/i, '$1:***@')
}

export async function tail (url: string, stream: string, fromStart: boolean): Promise<number> {
  const target = parseRedisUrl(url)
  // The first connection either works or ends the command: a tail that
  // silently retries forever against a wrong address looks like "no events".
  // Once connected, an outage is retried (at most every 2 s) and said once.
  let connected = false
  let lastError: Error | undefined
  const retry = (times: number): number | null => connected ? Math.min(200 * times, 2000) : null
  const client = target.kind === 'cluster'
    ? new Cluster(target.nodes, { lazyConnect: true, clusterRetryStrategy: retry, ...(target.password !== undefined ? { redisOptions: { password: target.password } } : {}) })
    : target.kind === 'sentinel'
      ? new Redis({ lazyConnect: true, maxRetriesPerRequest: null, retryStrategy: retry, sentinelRetryStrategy: retry, sentinels: target.nodes, name: target.name, db: target.db, ...(target.password !== undefined ? { password: target.password } : {}) })
      : new Redis(url, { lazyConnect: true, maxRetriesPerRequest: null, retryStrategy: retry })
  let outageSaid = false
  // A listener is what keeps ioredis from printing each error with its stack.
  client.on('error', (err: Error) => {
    lastError = err
    if (connected && !outageSaid) {
      outageSaid = true
      process.stderr.write(`portico events: lost the connection to Redis (${err.message}); reconnecting\n`)
    }
  })
  client.on('ready', () => {
    if (outageSaid) process.stderr.write('portico events: connected to Redis again\n')
    outageSaid = false
  })
  let stopping = false
  const stop = (): void => { stopping = true; client.disconnect() }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  try {
    await client.connect()
    connected = true
  } catch (err) {
    client.disconnect()
    if (stopping) return 0
    process.stderr.write(`portico: cannot reach Redis at ${displayRedisUrl(url)}: ${(lastError ?? err as Error).message}\n`)
    return 1
  }
  let last = '0'
  if (!fromStart) {
    // Pin "now" before saying so: XREAD's `$` means the newest entry when the
    // first XREAD reaches Redis, which would skip events added in between.
    try {
      const [newest] = await client.xrevrange(stream, '+', '-', 'COUNT', 1)
      last = newest?.[0] ?? '0-0'
    } catch (err) {
      client.disconnect()
      if (stopping) return 0
      process.stderr.write(`portico events: ${(err as Error).message}\n`)
      return 1
    }
  }
  process.stderr.write(`tailing stream ${stream} (${fromStart ? 'from the start' : 'new events'}); Ctrl-C stops\n`)
  while (!stopping) {
    let reply: Array<[string, Array<[string, string[]]>]> | null
    try {
      reply = await client.xread('BLOCK', 2000, 'STREAMS', stream, last) as typeof reply
    } catch (err) {
      if (stopping) break
      process.stderr.write(`portico events: ${(err as Error).message}\n`)
      await new Promise(resolve => setTimeout(resolve, 1000))
      continue
    }
    for (const [, entries] of reply ?? []) {
      for (const [id, fields] of entries) {
        last = id
        console.log(JSON.stringify({ id, ...toEvent(fields) }))
      }
    }
  }
  return 0
}

function toEvent (fields: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const [name, value] = [fields[i], fields[i + 1]]
    if (name === 'body') {
      try { out.body = JSON.parse(value) } catch { out.body = value }
    } else out[name] = value
  }
  return out
}
