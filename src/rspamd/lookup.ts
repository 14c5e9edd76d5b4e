// A short-lived cache of host name lookups for the connections to rspamd. rspamd closes the connection
// after every reply, so without it each scan asked getaddrinfo (on libuv's thread pool) for the same
// name again: with the default `host = localhost` that cost ~0.1 ms of CPU per message, a third of
// node:http's whole cost per request (bench/README.md, "Looking up the host name").

import * as dns from 'node:dns'
import type { LookupFunction } from 'node:net'

/** How long a lookup's answer is used: DNS changes to the rspamd name are picked up within this. */
export const LOOKUP_TTL_MS = 10_000

type Resolve = (
  hostname: string,
  options: dns.LookupAllOptions,
  callback: (err: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => void,
) => void

interface Entry {
  at: number
  addresses: dns.LookupAddress[]
}

/**
 * `lookup` for net.connect (node:http's Agent and undici's connector pass it through). Answers are
 * kept LOOKUP_TTL_MS; failures are not kept, lookups of one name at the same moment share one
 * getaddrinfo, and forget() drops a name at once (the transport calls it when a request fails, so a
 * server that moved is looked up again on the next try).
 */
export class LookupCache {
  private readonly entries = new Map<string, Entry>()
  private readonly pending = new Map<
    string,
    ((err: NodeJS.ErrnoException | null, a?: dns.LookupAddress[]) => void)[]
  >()

  constructor(
    private readonly ttlMs = LOOKUP_TTL_MS,
    private readonly now: () => number = () => performance.now(),
    private readonly resolve: Resolve = dns.lookup,
  ) {}

  readonly lookup: LookupFunction = (hostname, options, callback) => {
    const family = options.family ?? 0
    const key = `${String(family)}|${options.hints ?? 0}|${options.order ?? ''}|${String(options.verbatim ?? '')}|${hostname}`
    const answer = (err: NodeJS.ErrnoException | null, addresses?: dns.LookupAddress[]) => {
      if (err || !addresses) return callback(err ?? lookupError(hostname), '')
      if (options.all) return callback(null, addresses)
      const first = addresses[0]
      if (!first) return callback(lookupError(hostname), '')
      callback(null, first.address, first.family)
    }
    const hit = this.entries.get(key)
    if (hit && this.now() - hit.at < this.ttlMs) return answer(null, hit.addresses)
    const waiting = this.pending.get(key)
    if (waiting) {
      waiting.push(answer)
      return
    }
    const queue = [answer]
    this.pending.set(key, queue)
    const settle = (err: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => {
      this.pending.delete(key)
      if (!err && addresses.length > 0) this.entries.set(key, { at: this.now(), addresses })
      else this.entries.delete(key)
      for (const f of queue) f(err, err ? undefined : addresses)
    }
    try {
      this.resolve(hostname, { ...options, all: true }, settle)
    } catch (err) {
      // dns.lookup throws at once on an argument it refuses: fail these callers, not every later one
      settle(err as NodeJS.ErrnoException, [])
    }
  }

  /** Drops every cached answer for `hostname`. */
  forget(hostname: string): void {
    for (const key of this.entries.keys()) if (key.endsWith(`|${hostname}`)) this.entries.delete(key)
  }
}

function lookupError(hostname: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), {
    code: 'ENOTFOUND',
    syscall: 'getaddrinfo',
    hostname,
  })
}
