// Public keys from a JWKS endpoint, cached as one key set. An unknown `kid`
// (the identity provider rotated its keys) triggers one refetch, but
// refetches are spaced by `minRefetchInterval`, so a flood of tokens with
// random kids costs the provider at most one request per interval. Each fetch
// loads the whole set, so whatever kid triggered it, every published key is
// known afterwards: an attacker's random kids cannot lock a real key out.
// Concurrent refetches share one.
//
// When a fetch finds that a key the gateway used is gone or was replaced,
// `generation` moves on, so verifications cached with that key are dropped.

import { createPublicKey, type JsonWebKey } from 'node:crypto'
import { request } from 'undici'

export interface JwksOptions {
  /** Keys older than this are refetched (the old ones keep serving if that fails). */
  cacheTtl: number
  minRefetchInterval: number
  fetchTimeout?: number
}

export class UnknownKeyError extends Error {}

interface Key { pem: string, alg?: string }

export class JwksKeySource {
  private keys = new Map<string, Key>()
  private fetchedAt = 0
  private attemptedAt = 0
  private inflight: Promise<void> | undefined
  /** Moves on whenever a fetched key set lacks, or changed, a key of the previous one. */
  generation = 0

  constructor (private readonly url: string, private readonly opts: JwksOptions) {}

  async getKey (kid: string | undefined, alg: string): Promise<string> {
    const due = this.refreshIfDue()
    if (due !== undefined) await due
    let key = this.find(kid)
    if (key === undefined && Date.now() - this.attemptedAt >= this.opts.minRefetchInterval) {
      await this.refresh(false)
      key = this.find(kid)
    }
    if (key === undefined) throw new UnknownKeyError(kid === undefined ? 'token has no kid and the key set has several keys' : 'no key with this kid')
    if (key.alg !== undefined && key.alg !== alg) throw new UnknownKeyError('the key is not for this algorithm')
    return key.pem
  }

  /**
   * Refetches the key set when it is older than `cacheTtl`; undefined when
   * nothing is due, so the common case costs no promise. After a failed
   * attempt the old keys keep serving and retries are spaced like
   * unknown-kid refetches — also while no key was ever loaded, so an
   * identity provider that is down is not hammered once per request.
   */
  refreshIfDue (): Promise<void> | undefined {
    const now = Date.now()
    if (this.fetchedAt !== 0 && now - this.fetchedAt <= this.opts.cacheTtl) return undefined
    if (this.inflight !== undefined) return this.inflight.catch(() => {})
    const lastFailed = this.attemptedAt > this.fetchedAt
    if (lastFailed && now - this.attemptedAt < this.opts.minRefetchInterval) return undefined
    return this.refresh(true).catch(() => {})
  }

  private find (kid: string | undefined): Key | undefined {
    if (kid !== undefined) return this.keys.get(kid)
    return this.keys.size === 1 ? this.keys.values().next().value : undefined
  }

  private async refresh (keepOnFailure: boolean): Promise<void> {
    this.inflight ??= this.fetchKeys(keepOnFailure).finally(() => { this.inflight = undefined })
    await this.inflight
  }

  private async fetchKeys (keepOnFailure: boolean): Promise<void> {
    this.attemptedAt = Date.now()
    try {
      // One deadline for the whole exchange: undici's body timeout is per chunk,
      // so a provider dripping bytes would hold the fetch (and revocation) forever.
      const timeout = this.opts.fetchTimeout ?? 3000
      const res = await request(this.url, { headersTimeout: timeout, bodyTimeout: timeout, signal: AbortSignal.timeout(timeout) })
      if (res.statusCode !== 200) { await res.body.dump(); throw new Error(`JWKS answered ${res.statusCode}`) }
      const body = JSON.parse(await readCapped(res.body, MAX_JWKS_BYTES)) as { keys?: Array<JsonWebKey & { kid?: string, use?: string, alg?: string }> }
      const keys = new Map<string, Key>()
      for (const jwk of body.keys ?? []) {
        if (jwk.use === 'enc') continue
        try {
          const pem = createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString()
          keys.set(jwk.kid ?? `#${keys.size}`, { pem, ...(jwk.alg !== undefined ? { alg: jwk.alg } : {}) })
        } catch { /* a key we cannot use (e.g. symmetric) is skipped */ }
      }
      if (withdrawsAny(this.keys, keys)) this.generation++
      this.keys = keys
      this.fetchedAt = Date.now()
    } catch (err) {
      if (!keepOnFailure || this.keys.size === 0) throw err
    }
  }
}

/** A key set is a few kB; anything this large is not one. */
const MAX_JWKS_BYTES = 1024 * 1024

async function readCapped (body: AsyncIterable<Buffer>, max: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.length
    if (size > max) throw new Error('JWKS response too large')
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** Whether a key of `before` is missing from `after` or differs there. */
function withdrawsAny (before: Map<string, Key>, after: Map<string, Key>): boolean {
  for (const [kid, key] of before) {
    const now = after.get(kid)
    if (now === undefined || now.pem !== key.pem || now.alg !== key.alg) return true
  }
  // A kid-less token matched the only key; a second key makes it ambiguous.
  return before.size === 1 && after.size !== 1
}
