// rspamd's own header changes within what it may do: its milter block (add_headers,
// remove_headers with their numbered instances) and its DKIM signatures. Trace and structural
// headers are protected (PROTECTED_HEADERS, STACKED_HEADERS), and every list from the reply is
// read within a cap, whatever is over it counted into one log line per kind.

import type { Config } from '../config'
import { forLog } from '../escape'
import type { Milter, MilterAdd, MilterRemove, Reply } from '../rspamd/reply'
import { type HeaderField, isFieldName, MAX_TOTAL, type RawField } from './fold'

/**
 * Headers rspamd may not remove: trace and structural fields. Without them delivery loops are
 * not detected (Received, RFC 5321 §6.3), bounces lose their way (Return-Path), replies and
 * threads break (From, Message-ID, References…), MIME can't be parsed (Content-*), and DKIM/ARC
 * signatures fail. rspamd's milter_headers module only removes its own headers in practice.
 */
export const PROTECTED_HEADERS: ReadonlySet<string> = new Set([
  'received',
  'return-path',
  'from',
  'sender',
  'to',
  'cc',
  'bcc',
  'reply-to',
  'date',
  'message-id',
  'in-reply-to',
  'references',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
  'dkim-signature',
  'arc-seal',
  'arc-message-signature',
  'arc-authentication-results',
])

/**
 * Protected headers that stack: each hop adds one above the others and the earlier ones must
 * stay (trace fields, RFC 6376 signatures, RFC 8617 ARC sets, which rspamd's arc module adds
 * through the milter block). rspamd may add these, never replace them. Every other protected
 * header may appear once (RFC 5322 §3.6), so an add of one would either duplicate it or remove
 * the message's own: such adds are dropped.
 */
export const STACKED_HEADERS: ReadonlySet<string> = new Set([
  'received',
  'dkim-signature',
  'arc-seal',
  'arc-message-signature',
  'arc-authentication-results',
])

// Caps on what rspamd's reply may make us write or remove (docs/failure-behaviour.md lists them):
// a hostile or broken reply is bounded in work and in what reaches the message, and whatever is
// over a cap is counted into one log line per kind, never one per item.
export const MAX_ADDS_PER_NAME = 100
export const MAX_ADDS = 500
/**
 * Header names one reply may remove (whole or numbered). rspamd's milter_headers removes the headers
 * of its own routines, about 20 names in all (X-Spam-*, X-Rspamd-*, Authentication-Results…).
 */
export const MAX_REMOVES = 100
/** rspamd's remove_headers names read at all (in the reply's order); the rest are counted. */
export const MAX_REMOVE_ITEMS = 10 * MAX_REMOVES
/** Positions one name may number; past this every instance of it goes, the side rspamd asked for. */
export const MAX_POSITIONS = 100
/**
 * Signatures from the reply's `dkim-signature`. rspamd's dkim_signing signs once per configured
 * domain and selector: one, two with RSA and Ed25519 side by side, a few for multi-domain setups.
 * Each is a header every receiver verifies, so the cap stays small.
 */
export const MAX_DKIM_SIGNATURES = 10
/**
 * Characters of rspamd's added values in all (each counted up to its MAX_TOTAL cap): 500 values of
 * 16 KiB would put 8 MB of headers on a message, which no receiver takes (Postfix's
 * header_size_limit is 100 KiB per header; Haraka spends seconds adding them). rspamd's own adds
 * (ARC sets, Authentication-Results, its verdict headers) are a few KiB.
 */
export const MAX_ADD_CHARS = 256 * 1024
/** rspamd's add_headers values read at all (in the reply's order, before its `order` sorts them). */
export const MAX_ADD_ITEMS = 10 * MAX_ADDS
/** Items named in a refusal's log line; the rest are counted. */
const SHOWN = 5

/**
 * What was refused, one entry per kind however many items: 10⁵ bad names from a reply make one log
 * line with the first few and a count, not 10⁵ lines.
 */
class Refusals {
  private readonly kinds = new Map<string, { n: number; shown: string[]; why: string }>()

  add(kind: string, item: string, why = ''): void {
    let k = this.kinds.get(kind)
    if (!k) {
      k = { n: 0, shown: [], why }
      this.kinds.set(kind, k)
    }
    k.n++
    if (k.shown.length < SHOWN) k.shown.push(item)
  }

  addTo(dropped: string[]): void {
    for (const [kind, { n, shown, why }] of this.kinds) {
      const more = n > shown.length ? ` and ${n - shown.length} more` : ''
      dropped.push(`${kind} ${shown.join(', ')}${more}${why}`)
    }
  }
}

/** A name from rspamd, for the log: cut, quoted, and with the controls JSON.stringify leaves (DEL, C1, U+2028/2029) escaped. */
export function showName(name: string): string {
  return forLog(JSON.stringify(name.length > 60 ? `${name.slice(0, 57)}...` : name), 400)
}

/** Some instances of a header, by rspamd's positions (1 = the first, -1 = the last; never 0 here). */
export interface RemoveAt {
  name: string
  positions: number[]
}

/**
 * The instances (0-based, ascending) that rspamd's `positions` name among `total` instances of a
 * header, as rspamd's milter resolves them: n > 0 the n-th, n < 0 the n-th from the end, nothing for
 * a position beyond the instances there are. All positions count in the message as it was scanned.
 */
export function instancesAt(positions: readonly number[], total: number): number[] {
  const out = new Set<number>()
  for (const n of positions) {
    if (n > 0 && n <= total) out.add(n - 1)
    else if (n < 0 && -n <= total) out.add(total + n)
  }
  return [...out].sort((a, b) => a - b)
}

/**
 * rspamd's milter block → removals and additions (raw values), with what was refused and why.
 * `remove` takes every instance of a name (rspamd's 0, and every name we add), `removeAt` only the
 * instances rspamd numbered. An added header replaces the message's own of that name (it is in
 * `remove` too), except the STACKED_HEADERS, which are only added to.
 */
export function milterEdits(milter: Pick<Milter, 'add' | 'remove'>): {
  remove: string[]
  removeAt: RemoveAt[]
  add: HeaderField[]
  dropped: string[]
} {
  const remove: string[] = []
  // by lower-case name: "X-A" and "x-a" are one header
  const numbered = new Map<string, RemoveAt>()
  const add: HeaderField[] = []
  const dropped: string[] = []
  const refused = new Refusals()
  const removing = new Set<string>()
  const queueRemove = (name: string) => {
    const lower = name.toLowerCase()
    if (removing.has(lower)) return
    removing.add(lower)
    remove.push(name)
  }

  // the names rspamd's remove_headers names, for MAX_REMOVES
  const removeNames = new Set<string>()
  // numbered past MAX_POSITIONS: every instance goes instead
  const overPositions = new Set<string>()
  // at most MAX_REMOVES names can be removed: a list of 10⁵ is read as far as MAX_REMOVE_ITEMS
  const readRemoves = Math.min(milter.remove.length, MAX_REMOVE_ITEMS)
  for (let i = 0; i < readRemoves; i++) {
    const r = milter.remove[i] as MilterRemove
    const lower = r.name.toLowerCase()
    if (!isFieldName(r.name)) {
      refused.add('remove of invalid header name', showName(r.name))
      continue
    }
    if (PROTECTED_HEADERS.has(lower)) {
      refused.add('remove of protected header', r.name)
      continue
    }
    if (!removeNames.has(lower)) {
      if (removeNames.size >= MAX_REMOVES) {
        refused.add(`remove over the limit of ${MAX_REMOVES} header names:`, r.name)
        continue
      }
      removeNames.add(lower)
    }
    if (r.positions.includes(0) || overPositions.has(lower)) {
      queueRemove(r.name)
      continue
    }
    const seen = numbered.get(lower)
    if ((seen?.positions.length ?? 0) + r.positions.length > MAX_POSITIONS) {
      overPositions.add(lower)
      numbered.delete(lower)
      refused.add(
        `numbered remove of over ${MAX_POSITIONS} positions, every instance removed instead:`,
        r.name,
      )
      queueRemove(r.name)
      continue
    }
    const positions = seen ? seen.positions : []
    for (const n of r.positions) positions.push(n)
    if (!seen) numbered.set(lower, { name: r.name, positions })
  }

  // at most MAX_ADDS can be added: a list of 10⁵ is read as far as MAX_ADD_ITEMS, the rest counted
  const read = Math.min(milter.add.length, MAX_ADD_ITEMS)
  const ordered: Array<{ a: MilterAdd; i: number }> = []
  for (let i = 0; i < read; i++) ordered.push({ a: milter.add[i] as MilterAdd, i })
  // stable sort by rspamd's order (its insert position); entries without one keep their place after
  ordered.sort((x, y) => (x.a.order ?? Infinity) - (y.a.order ?? Infinity) || x.i - y.i)
  const perName = new Map<string, number>()
  // over-limit values are counted by name, and reported in one line per limit
  const overName = new Map<string, { name: string; n: number }>()
  const overAll = new Map<string, { name: string; n: number }>()
  const overChars = new Map<string, { name: string; n: number }>()
  let chars = 0
  const count = (m: typeof overName, lower: string, name: string) => {
    const o = m.get(lower) ?? { name, n: 0 }
    o.n++
    m.set(lower, o)
  }
  for (const { a } of ordered) {
    if (!isFieldName(a.name)) {
      refused.add('add of invalid header name', showName(a.name))
      continue
    }
    const lower = a.name.toLowerCase()
    const stacked = STACKED_HEADERS.has(lower)
    if (PROTECTED_HEADERS.has(lower) && !stacked) {
      refused.add('add of protected header', a.name, ': a message has one, it is not replaced')
      continue
    }
    const n = perName.get(lower) ?? 0
    if (n >= MAX_ADDS_PER_NAME) {
      count(overName, lower, a.name)
      continue
    }
    if (add.length >= MAX_ADDS) {
      count(overAll, lower, a.name)
      continue
    }
    // what prepareField() can make of it: at most MAX_TOTAL, and about the value's length below that
    const size = Math.min(a.value.length, MAX_TOTAL)
    if (chars + size > MAX_ADD_CHARS) {
      count(overChars, lower, a.name)
      continue
    }
    chars += size
    perName.set(lower, n + 1)
    if (!stacked) queueRemove(a.name)
    add.push({ name: a.name, value: a.value })
  }
  refused.addTo(dropped)
  if (milter.remove.length > readRemoves) {
    const n = milter.remove.length - readRemoves
    dropped.push(`remove of ${n} more name(s) not read: over ${MAX_REMOVE_ITEMS} in the reply`)
  }
  overLimit(overName, `${MAX_ADDS_PER_NAME} per name`, dropped)
  overLimit(overAll, `${MAX_ADDS} added headers`, dropped)
  overLimit(overChars, `${MAX_ADD_CHARS / 1024} KiB of added values`, dropped)
  if (milter.add.length > read) {
    dropped.push(
      `add of ${milter.add.length - read} more value(s) not read: over ${MAX_ADD_ITEMS} in the reply`,
    )
  }
  // where every instance of a name goes anyway, rspamd's numbered ones go with them
  const removeAt: RemoveAt[] = []
  for (const [lower, r] of numbered) if (!removing.has(lower)) removeAt.push(r)
  return { remove, removeAt, add, dropped }
}

/** One line for the adds over a limit: how many values in all, and of which names (the first few, with their counts). */
function overLimit(
  over: ReadonlyMap<string, { name: string; n: number }>,
  limit: string,
  dropped: string[],
): void {
  if (over.size === 0) return
  let total = 0
  const shown: string[] = []
  for (const { name, n } of over.values()) {
    total += n
    if (shown.length < SHOWN) shown.push(`${n} ${name}`)
  }
  const more = over.size > shown.length ? ` and ${over.size - shown.length} more names` : ''
  dropped.push(`add of ${total} more value(s) over the limit of ${limit}: ${shown.join(', ')}${more}`)
}

/**
 * rspamd's own header changes: its DKIM-Signature ([dkim]) and its milter block
 * ([rmilter_headers]), after milterEdits()' refusals: raw fields, prepared by editsFor() with ours.
 */
export function rspamdEdits(
  reply: Reply,
  cfg: Pick<Config, 'dkim' | 'rmilterHeaders'>,
): { remove: string[]; removeAt: RemoveAt[]; add: RawField[]; dropped: string[] } {
  const add: RawField[] = []
  const remove: string[] = []
  const removeAt: RemoveAt[] = []
  const dropped: string[] = []
  if (cfg.dkim.enabled) {
    const sigs = reply.dkimSignatures
    for (let i = 0; i < sigs.length && i < MAX_DKIM_SIGNATURES; i++) {
      add.push({ name: 'DKIM-Signature', value: sigs[i] as string })
    }
    if (sigs.length > MAX_DKIM_SIGNATURES) {
      dropped.push(
        `DKIM-Signature: ${sigs.length - MAX_DKIM_SIGNATURES} more signature(s) over the limit of ${MAX_DKIM_SIGNATURES}`,
      )
    }
  }
  if (cfg.rmilterHeaders.enabled) {
    // loops, not push(...list): a list of 10⁵ arguments overflows the stack
    const m = milterEdits(reply.milter)
    for (const n of m.remove) remove.push(n)
    for (const r of m.removeAt) removeAt.push(r)
    for (const f of m.add) add.push(f)
    for (const d of m.dropped) dropped.push(d)
  }
  return { remove, removeAt, add, dropped }
}
