// The one assembly of a message's header edits, for the plugin (src/policy/verdict.ts) and
// rspamd-lda alike: which names come out (forged verdict headers, rspamd's removes, the names we
// write), then which fields go in (the rewritten Subject, rspamd's DKIM-Signature and milter adds,
// the configured styles), every value prepared by fold.ts. What the callers decide (whether spam
// headers are written, whether the Subject is rewritten) or do differently (the order of the adds,
// the line end) comes in as EditOptions.

import type { Config } from '../config'
import type { Reply } from '../rspamd/reply'
import { SINGLE_FIELDS } from './fields'
import { type HeaderField, prepareField, type RawField } from './fold'
import { type RemoveAt, rspamdEdits, showName, STACKED_HEADERS } from './milter'
import { configuredStyleNames, type StyleFacts, styleHeaders, verdictHeaderNames } from './styles'
import { rewriteSubject } from './subject'

/** Header changes, in order: remove every `remove` name, then add every `add` field. Values are ready to write. */
export interface HeaderEdits {
  /** names whose every instance goes */
  remove: string[]
  /** rspamd's numbered instances (its milter remove_headers), counted in the message as scanned */
  removeAt: RemoveAt[]
  add: HeaderField[]
  /** what was refused (bad names, protected headers), for the log */
  dropped: string[]
}

/** What the edits of a scanned message depend on besides the reply and the config. */
export interface EditOptions {
  /** write the configured [spam_headers] styles: the plugin per add_headers (its verdict decides), rspamd-lda always */
  spamHeaders: boolean
  /** write a rewritten Subject: the plugin for `rewrite subject` with [rewrite_subject] on; rspamd-lda never */
  rewriteSubject: boolean
  /** the message's current Subject, decoded, for the template's `%s`; undefined when it has none */
  subject?: string
  /** scanner name, rspamd host, queue id, reply JSON and scan time for the extended and lda styles */
  style?: StyleFacts
  /**
   * The order of the adds after the Subject: the style headers, then rspamd's DKIM-Signature and
   * milter adds (rspamd-lda: rspamc --mime's set first, all appended at the end of the header
   * block, as rspamc writes them); else rspamd's first, then the styles (the plugin, as 2.0 wrote
   * them: Haraka puts each added header on top, so the styles end up above rspamd's). The refusals
   * are listed in the same order.
   */
  stylesFirst?: boolean
  /** the line end folds are written with: `\n` for Haraka (the default), the message's own in rspamd-lda */
  eol?: string
}

type EditsConfig = Pick<Config, 'header' | 'spambar' | 'spamHeaders' | 'subject' | 'dkim' | 'rmilterHeaders'>

/**
 * Every header edit for a scanned message. Removes, in order: every style's verdict headers with
 * [spam_headers] remove_foreign (they came with the message, they are not ours), rspamd's milter
 * removes, then the names our styles write when they are written (also those this reply leaves
 * out, so a forged one cannot stand in for ours), then each name we add (prepareEdits()). Adds:
 * the rewritten Subject first (so it wins over a Subject in rspamd's milter block), then the styles
 * and rspamd's DKIM-Signature and milter adds in the order `stylesFirst` says.
 */
export function editsFor(reply: Reply, cfg: EditsConfig, opts: EditOptions): HeaderEdits {
  const raw: RawField[] = []
  const remove: string[] = cfg.spamHeaders.removeForeign ? verdictHeaderNames(cfg) : []
  const dropped: string[] = []
  if (opts.rewriteSubject) {
    raw.push({ name: 'Subject', value: rewriteSubject(cfg.subject, opts.subject, reply.subject) })
  }
  const fromRspamd = rspamdEdits(reply, cfg)
  // loops, not push(...list): the lists from rspamd may be long
  for (const n of fromRspamd.remove) remove.push(n)
  const rspamds = { fields: fromRspamd.add, dropped: fromRspamd.dropped }
  let styled: typeof rspamds = { fields: [], dropped: [] }
  if (opts.spamHeaders) {
    for (const n of configuredStyleNames(cfg)) remove.push(n)
    styled = styleHeaders(reply, cfg, opts.style ?? {})
  }
  const parts = opts.stylesFirst ? [styled, rspamds] : [rspamds, styled]
  for (const part of parts) for (const f of part.fields) raw.push(f)
  for (const part of parts) for (const d of part.dropped) dropped.push(d)
  return prepareEdits(raw, remove, dropped, opts.eol ?? '\n', fromRspamd.removeAt)
}

/**
 * The verdict headers a message going on without our verdict must not bring (a failed scan, an
 * internal error): every style's with remove_foreign, else those of the configured styles.
 */
export function forgedHeaderNames(cfg: Pick<Config, 'header' | 'spamHeaders'>): string[] {
  return cfg.spamHeaders.removeForeign ? verdictHeaderNames(cfg) : Array.from(configuredStyleNames(cfg))
}

/** The edits of a message that goes on unscanned: the forged verdict headers out, `add` (rspamd-lda's X-Spam-Error) in. */
export function unscannedEdits(
  cfg: Pick<Config, 'header' | 'spamHeaders'>,
  add: RawField[] = [],
  eol = '\n',
): HeaderEdits {
  return prepareEdits(add, forgedHeaderNames(cfg), [], eol)
}

/**
 * Raw fields → values ready to write (sanitised, encoded, folded with `eol`), and the removals: a
 * header we write replaces any of that name already in the message (no spoofed verdicts), except
 * signatures and trace headers, which stack (the message may carry earlier DKIM, ARC sets).
 */
export function prepareEdits(
  raw: RawField[],
  remove: string[],
  dropped: string[],
  eol = '\n',
  removeAt: readonly RemoveAt[] = [],
): HeaderEdits {
  const add: HeaderField[] = []
  // RFC 5322 §3.6: one of each SINGLE_FIELDS name; the first in `raw` wins (our Subject comes first)
  // (the extra values counted per name, and reported once per name)
  const once = new Map<string, number>()
  for (const f of raw) {
    const lower = f.name.toLowerCase()
    if (SINGLE_FIELDS.has(lower)) {
      const extra = once.get(lower)
      once.set(lower, extra === undefined ? 0 : extra + 1)
      if (extra !== undefined) continue
    }
    const ready = prepareField(f.name, f.value, { eol, maxTotal: f.maxTotal, foldWith: f.foldWith })
    if (ready === undefined) {
      dropped.push(`invalid header name ${showName(f.name)}`)
      continue
    }
    add.push(ready)
  }
  for (const [lower, extra] of once) {
    if (extra > 0)
      dropped.push(`add of ${extra} more ${lower} value(s): RFC 5322 allows one, the first is written`)
  }
  const out: string[] = []
  const seen = new Set<string>()
  const removing = (name: string) => {
    const lower = name.toLowerCase()
    if (seen.has(lower)) return
    seen.add(lower)
    out.push(name)
  }
  for (const n of remove) removing(n)
  for (const f of add) if (!STACKED_HEADERS.has(f.name.toLowerCase())) removing(f.name)
  // a name that goes whole takes rspamd's numbered instances of it along
  const numbered = removeAt.filter((r) => !seen.has(r.name.toLowerCase()))
  return { remove: out, removeAt: numbered, add, dropped }
}
