// Which messages are not scanned: the 1.6.x [check] rules plus [check] whitelist, skip_ports and
// max_size. A pure function of plain facts; index.ts extracts the facts from Haraka's connection.

import { BlockList, isIP } from 'node:net'
import type { Config, IpRange } from '../config'

/** What the skip decision needs to know about the sender and the message. */
export interface ScanFacts {
  authenticated: boolean
  relaying: boolean
  /** Haraka's remote.is_local / is_private */
  isLocal: boolean
  isPrivate: boolean
  remoteIp?: string
  /** the local port the client connected to */
  localPort?: number
  /** the message size in bytes, as Haraka counted it during DATA */
  size?: number
}

export type SkipReason = 'authed' | 'relay' | 'local_ip' | 'private_ip' | 'whitelist' | 'port' | 'size'

/**
 * Every reason a message is not scanned (none: it is scanned), in the order of the rules; 1.6.x
 * recorded each reason that applied, and `results.has('rspamd', 'skip', 'relay')` still finds one
 * behind another.
 */
export function skipReasons(facts: ScanFacts, cfg: Pick<Config, 'check' | 'maxSize'>): SkipReason[] {
  const check = cfg.check
  const out: SkipReason[] = []
  if (!check.authenticated && facts.authenticated) out.push('authed')
  if (!check.relay && facts.relaying) out.push('relay')
  if (!check.localIp && facts.isLocal) out.push('local_ip')
  // local addresses are private too: with local_ip=true a local sender is scanned
  if (!check.privateIp && facts.isPrivate && !(check.localIp && facts.isLocal)) out.push('private_ip')
  if (facts.remoteIp !== undefined && inRanges(facts.remoteIp, check.whitelist)) out.push('whitelist')
  if (facts.localPort !== undefined && check.skipPorts.includes(facts.localPort)) out.push('port')
  if (cfg.maxSize > 0 && facts.size !== undefined && facts.size > cfg.maxSize) out.push('size')
  return out
}

// node:net's BlockList rather than haraka-net-utils' ip_in_list: the latter (1.9.3) reads a /0 prefix as
// /32 (`parseInt(mask) || 32`), never matches an IPv4-mapped IPv6 address against an IPv4 network, and
// parses every entry again on each lookup. One BlockList per parsed whitelist, built on first use.
const compiled = new WeakMap<readonly IpRange[], BlockList>()

/** Whether `ip` is one of the addresses or inside one of the networks. */
export function inRanges(ip: string, ranges: readonly IpRange[]): boolean {
  if (ranges.length === 0) return false
  const version = isIP(ip)
  if (version === 0) return false
  let list = compiled.get(ranges)
  if (list === undefined) {
    list = new BlockList()
    for (const r of ranges) list.addSubnet(r.address, r.prefix, r.family)
    compiled.set(ranges, list)
  }
  return list.check(ip, version === 4 ? 'ipv4' : 'ipv6')
}
