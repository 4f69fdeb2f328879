// The `ip-filter` plugin: allow and deny lists of CIDR ranges, checked on the
// client address as server.trustProxy decides it (request.ip), before
// authentication. Deny wins; with an allow list, every other address is
// refused too. A refusal is 403 FORBIDDEN and reaches no upstream.

import { BlockList, isIP } from 'node:net'
import type { FastifyRequest } from 'fastify'
import { GatewayError } from '../util/errors.js'
import type { FieldPath } from '../config/problems.js'
import { PluginConfigError, type GatewayPlugin } from './plugin.js'

export interface IpFilterConfig {
  allow?: string[]
  deny?: string[]
}

const cidrList = { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } }

export const ipFilterPlugin: GatewayPlugin<IpFilterConfig> = {
  name: 'ip-filter',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    minProperties: 1,
    properties: { allow: cidrList, deny: cidrList },
  },
  compile (config) {
    const problems: Array<{ path: FieldPath, message: string }> = []
    const allow = config.allow !== undefined ? blockList(config.allow, 'allow', problems) : undefined
    const deny = config.deny !== undefined ? blockList(config.deny, 'deny', problems) : undefined
    if (problems.length > 0) throw new PluginConfigError(problems)
    return {
      onRequest: function filterClientAddress (request: FastifyRequest) {
        const address = clientAddress(request.ip)
        // An address that cannot be read (a proxy's `x-forwarded-for` with a
        // port, or garbage) is refused too: a deny list must not be skipped by
        // an address it cannot parse.
        const allowed = address !== undefined &&
          !(deny?.check(address.ip, address.family) ?? false) &&
          (allow?.check(address.ip, address.family) ?? true)
        if (!allowed) {
          throw new GatewayError('FORBIDDEN', 'requests from this client address are not allowed on this route')
        }
      },
    }
  },
}

function blockList (entries: string[], field: string, problems: Array<{ path: FieldPath, message: string }>): BlockList {
  const list = new BlockList()
  entries.forEach((entry, i) => {
    const range = parseCidr(entry)
    if (range === undefined) problems.push({ path: [field, i], message: `"${entry}" is not an IPv4 or IPv6 address or CIDR range (e.g. 10.0.0.0/8, 2001:db8::/32)` })
    else list.addSubnet(range.ip, range.prefix, range.family)
  })
  return list
}

interface Address { ip: string, family: 'ipv4' | 'ipv6' }

function parseCidr (text: string): (Address & { prefix: number }) | undefined {
  const slash = text.indexOf('/')
  const ip = slash === -1 ? text : text.slice(0, slash)
  const version = isIP(ip)
  if (version === 0) return undefined
  const max = version === 4 ? 32 : 128
  const bits = slash === -1 ? String(max) : text.slice(slash + 1)
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return undefined
  return { ip, family: version === 4 ? 'ipv4' : 'ipv6', prefix: Number(bits) }
}

/** An IPv4 client on a dual-stack listener shows as `::ffff:a.b.c.d`; it is checked as the IPv4 address it is. */
function clientAddress (ip: string | undefined): Address | undefined {
  if (ip === undefined || ip === '') return undefined
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)
  if (mapped !== null) return { ip: mapped[1], family: 'ipv4' }
  // An IPv6 zone (`fe80::1%eth0`) is not part of the address; `[v6]` is
  // unbracketed; a port some proxies append (`10.0.0.5:80`) is dropped.
  const unbracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(ip)?.[1] ?? /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(ip)?.[1] ?? ip
  const bare = unbracketed.replace(/%.*$/, '')
  const version = isIP(bare)
  if (version === 0) return undefined
  return { ip: bare, family: version === 4 ? 'ipv4' : 'ipv6' }
}
