// The sections that say what happens to a message (read by src/policy/): which messages are scanned
// (`[check]`, `max_size`), the local score `[thresholds]`, and what a verdict or a failure does: `[ham]`,
// `[reject]`, `[soft_reject]`, `[greylist]`, `[defer]`, `[quarantine]`.

import { isIP } from 'node:net'
import { ConfigError } from './errors'
import type { Reader } from './reader'
import { type Config, GREYLIST_STORES, type IpRange, QUARANTINE_ACTIONS, type Thresholds } from './types'

export function parseCheck(check: Reader): Config['check'] {
  return {
    authenticated: check.bool('authenticated', false),
    relay: check.bool('relay', false),
    privateIp: check.bool('private_ip', false),
    localIp: check.bool('local_ip', false),
    whitelist: check.list('whitelist').map((entry) => {
      const range = parseIpRange(entry)
      if (typeof range === 'string') throw new ConfigError('check.whitelist', entry, range)
      return range
    }),
    skipPorts: check.list('skip_ports').map((entry) => {
      const n = Number(entry)
      if (!/^\d+$/.test(entry) || n < 1 || n > 65535) {
        throw new ConfigError('check.skip_ports', entry, 'expected a TCP port, 1 to 65535')
      }
      return n
    }),
  }
}

/** `192.0.2.1`, `192.0.2.0/24`, `2001:db8::/32`, … → IpRange; a string says what is wrong. */
export function parseIpRange(text: string): IpRange | string {
  const slash = text.indexOf('/')
  const address = slash === -1 ? text : text.slice(0, slash)
  const version = isIP(address)
  if (version === 0) return 'not an IPv4 or IPv6 address'
  // a client address never carries a zone index, so an entry with one could never match
  if (address.includes('%')) return 'an IPv6 zone index (%) cannot match a client address'
  const family = version === 4 ? 'ipv4' : 'ipv6'
  const max = version === 4 ? 32 : 128
  if (slash === -1) return { family, address, prefix: max }
  const bits = text.slice(slash + 1)
  // strict digits: parseInt would read '24junk' as 24 and '' as no prefix
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return `expected a prefix length of 0 to ${max}`
  return { family, address, prefix: Number(bits) }
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }

/** A byte count: a whole number, optionally with k, M or G (binary multiples). */
export function parseSize(r: Reader, key: string): number {
  const v = r.raw(key)
  if (v === undefined || v === null || v === '') return 0
  const m =
    typeof v === 'string' || typeof v === 'number' ? /^(\d+)\s*([kmg]?)b?$/i.exec(String(v).trim()) : null
  if (!m) {
    throw new ConfigError(
      r.name(key),
      v,
      'expected a size in bytes such as 10485760, 512k or 10M (0 = no limit)',
    )
  }
  return Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()]
}

export function parseGreylist(g: Reader): Config['greylist'] {
  const kind = g.choice('store', GREYLIST_STORES, 'memory')
  const keyPrefix = g.str('key_prefix') ?? 'haraka-rspamd:greylist:'
  if (!/^[\x21-\x7e]+$/.test(keyPrefix)) {
    throw new ConfigError(g.name('key_prefix'), keyPrefix, 'expected printable ASCII without spaces')
  }
  return {
    enabled: g.bool('enabled', false),
    delay: g.seconds('delay') ?? 300,
    message: smtpText(g, 'message', 'Try again later'),
    store: kind,
    keyPrefix,
    redisTimeout: g.seconds('redis_timeout') ?? 0.2,
  }
}

/** Threshold keys from the least to the most severe action: each must be above the ones before it. */
const THRESHOLD_KEYS = [
  ['add_header', 'addHeader'],
  ['rewrite_subject', 'rewriteSubject'],
  ['soft_reject', 'softReject'],
  ['reject', 'reject'],
] as const

export function parseThresholds(t: Reader): Thresholds {
  const out: Thresholds = {}
  let below: { key: string; value: number } | undefined
  for (const [key, field] of THRESHOLD_KEYS) {
    const value = t.number(key)
    if (value === undefined) continue
    // a more severe action at a lower or equal score would make the milder one unreachable:
    // almost certainly a typo, and one that rejects mail
    if (below !== undefined && value <= below.value) {
      throw new ConfigError(t.name(key), value, `must be above ${t.name(below.key)} (${below.value})`)
    }
    out[field] = value
    below = { key, value }
  }
  return out
}

export function parseHam(h: Reader): Config['ham'] {
  return { ok: h.bool('ok', false), maxScore: h.number('max_score') }
}

function smtpText(r: Reader, key: string, dflt: string): string {
  const v = r.str(key) ?? dflt
  // the text goes out as an SMTP reply line
  if (/[\r\n\0]/.test(v)) throw new ConfigError(r.name(key), v, 'CR, LF or NUL in an SMTP reply')
  return v
}

export function parseReject(reject: Reader): Config['reject'] {
  return {
    message: smtpText(reject, 'message', 'Detected as spam'),
    spam: reject.bool('spam', true),
    authenticated: reject.bool('authenticated', false),
  }
}

export function parseSoftReject(soft: Reader): Config['softReject'] {
  return {
    enabled: soft.bool('enabled', true),
    message: smtpText(soft, 'message', 'Deferred by policy'),
  }
}

export function parseDefer(defer: Reader): Config['defer'] {
  return { error: defer.bool('error', false), timeout: defer.bool('timeout', false) }
}

/**
 * [quarantine] action: what rspamd's `quarantine` action does. `queue` (the default) hands the
 * message to Haraka's queue/quarantine plugin and answers 250; never a silent delivery.
 */
export function parseQuarantine(q: Reader): Config['quarantine'] {
  return { action: q.choice('action', QUARANTINE_ACTIONS, 'queue') }
}
