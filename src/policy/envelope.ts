// rspamd's envelope changes (its milter block's change_from, add_rcpt, del_rcpt) → which of them
// apply to the envelope as it is, and the log lines of what was applied and what refused; and the
// switches of the milter block that this plugin does not apply (reject, no_action, spam_header),
// as log lines naming each. Pure: index.ts turns the plan into Haraka's address objects.
//
// As rspamd's milter (src/libserver/milter.c) sends them to the MTA: change_from first, then each
// add_rcpt, then each del_rcpt, so a del_rcpt also removes a recipient that add_rcpt just added.
// milter.c does not check that recipients remain; an MTA left without any has nowhere to deliver
// (Sendmail fails the envelope). Here the deletions that would leave none are refused, all of them,
// and the message keeps its recipients: an empty transaction is never queued silently.

import type { Config } from '../config'
import { forLog, hasUnsafe } from '../escape'
import type { Milter } from '../rspamd/reply'

/** RFC 5321 §4.5.3.1.3: a path, angle brackets included, is at most 256 octets. */
export const MAX_PATH = 256
/** Recipients one reply may add; the rest are counted in one log line. */
export const MAX_ADD_RCPT = 100
/** Addresses shown in one log line of a kind; the rest are counted. */
const SHOWN = 5

/** The envelope as it is: addresses as `local@domain`, the null sender as ''. */
export interface EnvelopeNow {
  from: string
  rcpts: readonly string[]
}

/** One recipient of the changed list: one of the current ones (by index), or a new address. */
export type RcptEntry = { keep: number } | { add: string }

export interface EnvelopePlan {
  /** the new sender (`local@domain`, '' for the null sender); undefined: unchanged */
  from?: string
  /** the recipients after the changes, in order; undefined: unchanged */
  rcpts?: RcptEntry[]
  /** what was changed, one line per kind, escaped */
  applied: string[]
  /** what was refused and why, one line per kind, escaped */
  refused: string[]
}

/** An address from the reply, for a log line: cut, quoted, controls escaped. */
export function showAddress(s: string): string {
  return forLog(JSON.stringify(s.length > 80 ? `${s.slice(0, 77)}...` : s), 200)
}

// atext of RFC 5322 §3.2.3, and any non-ASCII (RFC 6531's UTF-8 local parts)
const ATOM = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uFFFF-]+$/
// qtext and quoted-pair of RFC 5321 §4.1.2: printable ASCII, no controls; UTF-8 as RFC 6531
const QUOTED = /^"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\uFFFF]|\\[\x20-\x7e])*"$/
const LABEL = /^(?:[A-Za-z0-9\u0080-\uFFFF](?:[A-Za-z0-9\u0080-\uFFFF-]{0,61}[A-Za-z0-9\u0080-\uFFFF])?)$/
const LITERAL = /^\[[\x21-\x5a\x5e-\x7e]{1,253}\]$/
// lone surrogates: not well-formed UTF-8 on the wire (controls are hasUnsafe()'s)
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/**
 * An address as rspamd sends one (`local@domain` or `<local@domain>`) → `local@domain`, or the
 * reason it is refused. The null path (`<>`, or nothing) is '' when `allowNull` (a sender only).
 * No source routes, no spaces or controls outside a quoted local part, at most MAX_PATH octets.
 */
export function parseAddress(
  raw: string,
  allowNull: boolean,
): { ok: true; address: string } | { ok: false; why: string } {
  if (raw.length > 4 * MAX_PATH) return { ok: false, why: `over ${MAX_PATH} octets` }
  if (hasUnsafe(raw) || LONE_SURROGATE.test(raw)) return { ok: false, why: 'control characters' }
  let s = raw
  if (s.startsWith('<') && s.endsWith('>')) s = s.slice(1, -1)
  if (s === '') return allowNull ? { ok: true, address: '' } : { ok: false, why: 'the null address' }
  if (Buffer.byteLength(s, 'utf8') + 2 > MAX_PATH) return { ok: false, why: `over ${MAX_PATH} octets` }
  if (s.startsWith('@')) return { ok: false, why: 'a source route' }
  const at = s.lastIndexOf('@')
  if (at <= 0 || at === s.length - 1) return { ok: false, why: 'not local@domain' }
  const local = s.slice(0, at)
  const domain = s.slice(at + 1)
  if (!validLocal(local)) return { ok: false, why: 'a bad local part' }
  if (!validDomain(domain)) return { ok: false, why: 'a bad domain' }
  return { ok: true, address: s }
}

function validLocal(local: string): boolean {
  if (local.length > 64 * 4 || Buffer.byteLength(local, 'utf8') > 64) return false
  if (local.startsWith('"')) return QUOTED.test(local)
  // dot-atom: atoms joined by single dots
  const atoms = local.split('.')
  for (const a of atoms) if (!ATOM.test(a)) return false
  return true
}

function validDomain(domain: string): boolean {
  if (domain.startsWith('[')) return LITERAL.test(domain)
  if (Buffer.byteLength(domain, 'utf8') > 255) return false
  const labels = domain.split('.')
  for (const l of labels) if (!LABEL.test(l)) return false
  return true
}

/** The key two addresses are the same recipient by: the local part as is, the domain in lower case. */
function sameKey(address: string): string {
  const at = address.lastIndexOf('@')
  return at < 0 ? address : `${address.slice(0, at)}@${address.slice(at + 1).toLowerCase()}`
}

/** Addresses of one kind of log line: the first few, and a count of the rest. */
class Lines {
  private readonly kinds = new Map<string, { n: number; shown: string[] }>()

  add(kind: string, item: string): void {
    let k = this.kinds.get(kind)
    if (!k) {
      k = { n: 0, shown: [] }
      this.kinds.set(kind, k)
    }
    k.n++
    if (k.shown.length < SHOWN) k.shown.push(item)
  }

  into(out: string[]): void {
    for (const [kind, { n, shown }] of this.kinds) {
      const more = n > shown.length ? ` and ${n - shown.length} more` : ''
      out.push(`${kind} ${shown.join(', ')}${more}`)
    }
  }
}

/**
 * rspamd's envelope changes against the envelope as it is → the plan. Nothing when
 * `[milter_envelope] enabled` is off, but a line saying what was asked and not applied.
 */
export function envelopeChanges(
  milter: Pick<Milter, 'changeFrom' | 'addRcpt' | 'delRcpt'>,
  now: EnvelopeNow,
  cfg: Pick<Config, 'milterEnvelope'>,
): EnvelopePlan {
  const plan: EnvelopePlan = { applied: [], refused: [] }
  const asked = milter.changeFrom !== undefined || milter.addRcpt.length > 0 || milter.delRcpt.length > 0
  if (!asked) return plan
  if (!cfg.milterEnvelope.enabled) {
    plan.refused.push(`${askedText(milter)}: not applied ([milter_envelope] enabled = false)`)
    return plan
  }
  const applied = new Lines()
  const refused = new Lines()

  if (milter.changeFrom !== undefined) {
    const p = parseAddress(milter.changeFrom, true)
    if (!p.ok) refused.add(`milter.change_from (${p.why}):`, showAddress(milter.changeFrom))
    else if (p.address !== now.from) {
      plan.from = p.address
      applied.add('milter.change_from:', `${showAddress(now.from)} → ${showAddress(p.address)}`)
    }
  }

  // the list after the adds: the current recipients, then the new ones (each address once)
  const list: Array<{ entry: RcptEntry; key: string; shown: string }> = []
  const present = new Set<string>()
  for (let i = 0; i < now.rcpts.length; i++) {
    const a = now.rcpts[i] as string
    list.push({ entry: { keep: i }, key: sameKey(a), shown: a })
    present.add(sameKey(a))
  }
  let added = 0
  let overAdds = 0
  for (const raw of milter.addRcpt) {
    const p = parseAddress(raw, false)
    if (!p.ok) {
      refused.add(`milter.add_rcpt (${p.why}):`, showAddress(raw))
      continue
    }
    const key = sameKey(p.address)
    if (present.has(key)) {
      refused.add('milter.add_rcpt (already a recipient):', showAddress(p.address))
      continue
    }
    if (added >= MAX_ADD_RCPT) {
      overAdds++
      continue
    }
    added++
    present.add(key)
    list.push({ entry: { add: p.address }, key, shown: p.address })
  }

  // then the deletions, matched as one set: 10⁵ of them cost one pass over the list
  const deleting = new Map<string, string>()
  for (const raw of milter.delRcpt) {
    const p = parseAddress(raw, false)
    if (!p.ok) {
      refused.add(`milter.del_rcpt (${p.why}):`, showAddress(raw))
      continue
    }
    const key = sameKey(p.address)
    if (!present.has(key)) refused.add('milter.del_rcpt (not a recipient):', showAddress(p.address))
    else deleting.set(key, p.address)
  }
  let rcpts = list
  if (deleting.size > 0) {
    const left = list.filter((r) => !deleting.has(r.key))
    if (left.length === 0) {
      // milter.c would send them all; an empty recipient list here would be queued for no one
      refused.add(
        'milter.del_rcpt (would leave no recipient: no deletion applied, the message keeps its recipients):',
        [...deleting.values()].map(showAddress).slice(0, SHOWN).join(', ') +
          (deleting.size > SHOWN ? ` and ${deleting.size - SHOWN} more` : ''),
      )
    } else {
      rcpts = left
    }
  }
  if (rcpts !== list || added > 0) {
    // in the order rspamd's milter sends them: the adds that stay, then the deletions
    for (const r of rcpts) if ('add' in r.entry) applied.add('milter.add_rcpt:', showAddress(r.entry.add))
    if (rcpts !== list) {
      for (const r of list) if (deleting.has(r.key)) applied.add('milter.del_rcpt:', showAddress(r.shown))
    }
    plan.rcpts = rcpts.map((r) => r.entry)
  }
  applied.into(plan.applied)
  refused.into(plan.refused)
  if (overAdds > 0) plan.refused.push(`milter.add_rcpt: ${overAdds} more over the limit of ${MAX_ADD_RCPT}`)
  return plan
}

/** The envelope changes rspamd asked for, named (`milter.add_rcpt (2)`, …); '' for none. */
export function askedText(milter: Pick<Milter, 'changeFrom' | 'addRcpt' | 'delRcpt'>): string {
  const parts: string[] = []
  if (milter.changeFrom !== undefined) parts.push('milter.change_from')
  if (milter.addRcpt.length > 0) parts.push(`milter.add_rcpt (${milter.addRcpt.length})`)
  if (milter.delRcpt.length > 0) parts.push(`milter.del_rcpt (${milter.delRcpt.length})`)
  return parts.join(', ')
}

/**
 * The switches of rspamd's milter block that change what its milter does with the action, which
 * this plugin does not apply: one log line each, when it would have made a difference.
 * - `reject`: `discard` or `quarantine` turn milter.c's reject into that; any other value keeps the
 *   reject, as here.
 * - `no_action: true`: milter.c accepts whatever the action and adds X-Rspamd-Action instead.
 * - `spam_header` (for `add header` only): milter.c writes it in place of its own spam header; here
 *   the [spam_headers] styles write the verdict headers.
 */
export function unappliedSwitches(
  milter: Pick<Milter, 'reject' | 'noAction' | 'spamHeader'>,
  action: string,
): string[] {
  const out: string[] = []
  if (action === 'reject' && (milter.reject === 'discard' || milter.reject === 'quarantine')) {
    out.push(`milter.reject = ${milter.reject}: not applied, a reject is handled as [reject] says`)
  }
  if (milter.noAction === true && action !== 'no action') {
    out.push(`milter.no_action: not applied, rspamd's action ${showAddress(action)} is`)
  }
  if (milter.spamHeader !== undefined && action === 'add header') {
    out.push('milter.spam_header: not applied, the [spam_headers] styles write the verdict headers')
  }
  return out
}
