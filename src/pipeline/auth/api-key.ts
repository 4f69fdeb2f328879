// API keys are looked up in constant time: every configured key's SHA-256 is
// compared with timingSafeEqual against the presented key's, all of them,
// with no early exit, so timing reveals neither which key nor how much matched.

import { createHash, timingSafeEqual } from 'node:crypto'
import type { ApiKeyConfig } from '../../config/types.js'

export type ApiKeyLookup = (presented: string) => ApiKeyConfig | undefined

export function createApiKeyLookup (keys: ApiKeyConfig[]): ApiKeyLookup {
  const digests = keys.map(k => ({ key: k, digest: sha256(k.key) }))
  return function lookupApiKey (presented) {
    const digest = sha256(presented)
    let found: ApiKeyConfig | undefined
    for (const d of digests) {
      if (timingSafeEqual(d.digest, digest)) found = d.key
    }
    return found
  }
}

function sha256 (text: string): Buffer {
  return createHash('sha256').update(text).digest()
}
