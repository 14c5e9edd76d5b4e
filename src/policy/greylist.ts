// Greylisting state for rspamd's `greylist` action, as rmilter's spamd_greylist did it: the first attempt of
// each (client network, sender, recipient) triplet is deferred, a retry after the delay passes. Per process,
// in memory, bounded in size and expiring; the clock is injected so that tests need no waiting.

import { createHash } from 'node:crypto'
import { isIPv4, isIPv6 } from 'node:net'

/** Enough for a busy MX's day of distinct triplets; ~20 MiB of heap when full (test/policy/greylist.test.ts prints it). */
export const MAX_TRIPLETS = 100_000

/**
 * How long a triplet is remembered: a pending one for this long after its delay has passed (the sender's
 * retry window), a passed one this long after its last accepted message, so that regular correspondents
 * are not delayed again (rspamd's greylist module: `expire = 1d`).
 */
export const EXPIRE_MS = 24 * 60 * 60 * 1000

interface Entry {
  firstSeen: number
  passed: boolean
  /** when this entry is forgotten */
  expires: number
}

export type GreylistOutcome =
  | { passed: true }
  /** retryInMs: the time until the youngest of the message's triplets has waited out the delay */
  | { passed: false; retryInMs: number }

export interface GreylistOptions {
  maxEntries?: number
  /** milliseconds since the epoch; Date.now by default */
  now?: () => number
}

export class Greylist {
  // a Map iterates in insertion order; each touch re-inserts, so the first entry is the least recently used
  private readonly entries = new Map<string, Entry>()
  private readonly maxEntries: number
  private readonly now: () => number

  constructor(opts: GreylistOptions = {}) {
    this.maxEntries = opts.maxEntries ?? MAX_TRIPLETS
    this.now = opts.now ?? Date.now
  }

  get size(): number {
    return this.entries.size
  }

  /**
   * Record an attempt to deliver one message from `ip` and `sender` to `rcpts`, and say whether it may pass:
   * only when every one of its triplets has waited out `delayMs`. The message is one SMTP transaction that is
   * accepted or deferred as a whole, so one new recipient defers it; the retry then passes for all of them.
   */
  check(ip: string, sender: string, rcpts: readonly string[], delayMs: number): GreylistOutcome {
    const now = this.now()
    this.forgetExpired(now)
    let wait = 0
    for (const rcpt of rcpts.length > 0 ? rcpts : ['']) {
      const key = tripletDigest(ip, sender, rcpt)
      let entry = this.entries.get(key)
      if (entry !== undefined && entry.expires <= now) entry = undefined
      if (entry === undefined) {
        entry = { firstSeen: now, passed: false, expires: now + delayMs + EXPIRE_MS }
      } else if (!entry.passed && now - entry.firstSeen >= delayMs) {
        entry.passed = true
      }
      if (entry.passed) entry.expires = now + EXPIRE_MS
      else wait = Math.max(wait, entry.firstSeen + delayMs - now)
      this.touch(key, entry)
    }
    return wait > 0 ? { passed: false, retryInMs: wait } : { passed: true }
  }

  private touch(key: string, entry: Entry): void {
    this.entries.delete(key)
    this.entries.set(key, entry)
    // over the bound: forget the least recently seen; at worst its sender is deferred once more
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next()
      if (oldest.done === true) break
      this.entries.delete(oldest.value)
    }
  }

  /** Drop expired entries from the least recently used end, stopping at the first live one. */
  private forgetExpired(now: number): void {
    for (const [key, entry] of this.entries) {
      if (entry.expires > now) break
      this.entries.delete(key)
    }
  }
}

/** A triplet's fixed-size name: 28 characters whatever the addresses' length, and no addresses kept. */
export function tripletDigest(ip: string, sender: string, rcpt: string): string {
  return createHash('sha1')
    .update(tripletKey(ip, sender, rcpt))
    .digest('base64')
}

/** The key of one triplet: client network, sender and recipient, addresses case-folded (as postgrey). */
export function tripletKey(ip: string, sender: string, rcpt: string): string {
  return `${clientNetwork(ip)} ${sender.toLowerCase() || '<>'} ${rcpt.toLowerCase()}`
}

/**
 * The client's /24 (IPv4) or /64 (IPv6): big senders retry from another address of the same pool, and
 * an IPv6 host owns its whole /64. Anything that is not an IP address is used as it is.
 */
export function clientNetwork(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)
  const v4 = mapped ? mapped[1] : ip
  if (isIPv4(v4)) return `${v4.split('.').slice(0, 3).join('.')}.0/24`
  if (isIPv6(ip)) {
    return `${ipv6Groups(ip)
      .slice(0, 4)
      .map((g) => g.toString(16))
      .join(':')}::/64`
  }
  return ip
}

/** The eight 16-bit groups of a valid IPv6 address (`::` expanded, an IPv4 tail converted). */
function ipv6Groups(ip: string): number[] {
  let text = ip
  const tail: number[] = []
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number)
    tail.push(a * 256 + b, c * 256 + d)
    text = text.slice(0, dotted.index)
    if (text.endsWith(':') && !text.endsWith('::')) text = text.slice(0, -1)
  }
  const hex = (part: string) => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)))
  const [head, rest] = text.split('::')
  const before = hex(head)
  const after = [...hex(rest ?? ''), ...tail]
  const zeros = rest === undefined ? [] : new Array<number>(8 - before.length - after.length).fill(0)
  return [...before, ...zeros, ...after]
}
