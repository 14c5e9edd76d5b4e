// What is told about a message that reached rspamd, built in one place from plain values: the record
// other plugins read from transaction.results (karma's rspamd rules read action, score, is_spam and
// symbols; haraka-results writes its `human` text), the error record of a failed scan, the failover warnings, and the fields of the
// message's one log line. index.ts hands the pieces to Haraka; nothing here touches Haraka's objects.

import { forLog, LOG_LINE_MAX } from '../escape'
import type { InternalError, ScanError } from '../errors'
import type { Verdict } from '../policy/verdict'
import type { Attempt } from '../rspamd/client'
import { type Reply, symbolsForLog } from '../rspamd/reply'
import { failoverField, failureFields, type LogFields, scanFields } from './logline'

/** A text for the log: one line, escaped, at most LOG_LINE_MAX long. */
export function logText(text: string): string {
  return forLog(text, LOG_LINE_MAX)
}

/** What the [defer] policy (or a local verdict) does with the message, in the words of the log. */
export function outcomeText(verdict: Verdict | undefined): string {
  switch (verdict?.kind) {
    case 'defer':
      return `deferring with ${verdict.code}`
    case 'deny':
      return `rejecting with ${verdict.code}`
    case 'discard':
      return 'discarding'
    case 'quarantine':
      return 'quarantining'
    default:
      return 'accepting'
  }
}

/** One warning text per server that failed before the one that answered (or failed last). */
export function failoverTexts(attempts: readonly Attempt[]): string[] {
  const out: string[] = []
  for (const a of attempts)
    out.push(logText(`${a.server}: ${a.error.kind}: ${a.error.message} (${a.timeMs} ms)`))
  return out
}

/** rspamd's actions that rspamc calls spam ("Spam: true"), in either spelling, any case. */
const SPAM_ACTIONS = new Set([
  'reject',
  'soft reject',
  'soft_reject',
  'rewrite subject',
  'rewrite_subject',
  'add header',
  'add_header',
])

/**
 * Spam or not, as rspamc says it: an action above greylist (reject, soft reject, rewrite subject,
 * add header). greylist, no action, discard, quarantine and any other name are not.
 */
export function isSpamAction(action: string): boolean {
  return SPAM_ACTIONS.has(action.toLowerCase())
}

/** A scan that ended without a reply. */
export interface FailedScan {
  error: ScanError | InternalError
  /** what onFailure() made of it */
  verdict: Verdict
  server?: string
  timeMs?: number
  size?: number
  attempts: readonly Attempt[]
  /** set when the verdict headers the message brought could not be removed: why */
  unremoved?: string
}

/** The `err` text for transaction.results (haraka-results logs it at error level) and the log line's fields. */
export function failureReport(f: FailedScan): { err: string; line: LogFields } {
  const where = f.server === undefined ? '' : `server ${f.server}, ${f.timeMs ?? 0} ms; `
  const unremoved =
    f.unremoved === undefined ? '' : `; the verdict headers could not be removed: ${f.unremoved}`
  const err = logText(
    `${f.error.kind}: ${f.error.message} (${where}${outcomeText(f.verdict)} per [defer])${unremoved}`,
  )
  const line = failureFields({
    error: f.error.kind,
    verdict: f.verdict.kind,
    code: f.verdict.kind === 'defer' ? f.verdict.code : undefined,
    server: f.server,
    ms: f.timeMs,
    size: f.size,
    failover: failoverField(f.attempts),
  })
  return { err, line }
}

/** A scan that rspamd answered, and what was decided. */
export interface AnsweredScan {
  reply: Reply
  /** rspamd's action, or the local [thresholds] one that overrides it */
  action: string
  verdict: Verdict
  /** the greylisting state: deferred, passed, error; undefined when not asked */
  greylist?: string
  server: string
  timeMs: number
  size: number
  attempts: readonly Attempt[]
}

/**
 * The results record (one object, no spreads: this runs for every message) and the log line's
 * fields. docs/plugin-authors.md lists the record's fields. `human` is the record's fields as haraka-results would write them, the failover, then the
 * symbols, cut and escaped as every log text is.
 */
export function scanReport(s: AnsweredScan): { record: Record<string, unknown>; line: LogFields } {
  const { reply, verdict } = s
  const local = s.action !== reply.action ? s.action : undefined
  const record: Record<string, unknown> = {
    action: reply.action,
    is_spam: isSpamAction(reply.action),
    score: reply.score,
    required_score: reply.requiredScore,
    is_skipped: reply.isSkipped,
    // seconds, as 1.6.x; whole tenths of a ms (4.1 ms / 1000 would print 0.0040999999999999995)
    time: Math.round(s.timeMs * 10) / 10_000,
    server: s.server,
    size: s.size,
    verdict: verdict.kind,
  }
  if (local !== undefined) record.local_action = local
  if (s.greylist !== undefined) record.greylist = s.greylist
  const failover = failoverField(s.attempts)
  let human = ''
  for (const key in record) {
    const v = record[key]
    if (v !== undefined) human += `${key}: ${String(v)}, `
  }
  if (failover !== undefined) human += `failover: ${failover}, `
  const symbolText = symbolsForLog(reply.symbols)
  human += `symbols: ${symbolText}`
  // names, so karma's `symbols | match | NAME` rules test each name (karma reads an object by its
  // values: the scores); the scores by name beside them
  const names: string[] = []
  const scores: Record<string, number> = {}
  for (const sym of reply.symbols) {
    names.push(sym.name)
    scores[sym.name] = sym.score
  }
  record.symbols = names
  record.symbol_scores = scores
  record.human = logText(human)
  const answers = verdict.kind === 'deny' || verdict.kind === 'defer'
  const line = scanFields({
    action: reply.action,
    localAction: local,
    score: reply.score,
    required: reply.requiredScore,
    skipped: reply.isSkipped,
    verdict: verdict.kind,
    code: answers ? verdict.code : undefined,
    reply: answers ? `${verdict.status} ${verdict.message}` : undefined,
    greylist: s.greylist,
    server: s.server,
    ms: s.timeMs,
    size: s.size,
    failover,
    symbols: symbolText,
  })
  return { record, line }
}
