// Reply + Config + sender facts → Verdict: what Haraka should answer and which headers change.
// Also the one place that decides what a failed scan means ([defer] policy).

import type { Config } from '../config'
import type { InternalError, ScanError } from '../errors'
import { editsFor, type HeaderEdits } from '../message/edits'
import type { StyleFacts } from '../message/styles'
import type { Reply } from '../rspamd/reply'
import { CONTROLS, controlClass } from '../escape'

/** Runs of controls, each a space in an SMTP reply's text. */
const SMTP_CONTROLS = controlClass([CONTROLS.all], 'g', true)

export interface SenderFacts {
  /** the sender authenticated (SMTP AUTH) */
  authenticated: boolean
  /** the message's current Subject, decoded; undefined when it has none */
  subject?: string
  /**
   * The greylisting state of the message's triplets, which the caller checks when finalAction() is
   * `greylist` and [greylist] is enabled; undefined = not checked, and the message is accepted.
   */
  greylist?: 'deferred' | 'passed'
  /** scanner name, rspamd host, queue id and reply JSON for the extended and lda header styles */
  style?: StyleFacts
}

export type Verdict =
  | { kind: 'deny'; code: 550; status: '5.7.1'; message: string }
  | { kind: 'defer'; code: 451; status: '4.7.1'; message: string; reason: string }
  | { kind: 'accept'; edits: HeaderEdits }
  /** accept, and skip the data_post plugins after this one ([ham] ok: next(OK) instead of next()) */
  | { kind: 'ok'; edits: HeaderEdits }
  /** rspamd's `discard`: answer 250 and deliver the message nowhere */
  | { kind: 'discard' }
  /**
   * rspamd's `quarantine` with [quarantine] action = queue: the headers written, then the message
   * handed to Haraka's queue/quarantine plugin (queue.wants = quarantine), never to a delivery
   */
  | { kind: 'quarantine'; edits: HeaderEdits }

/** The one temporary failure the plugin answers: 451 4.7.1 with `message`; `reason` says why, for the log. */
function deferWith(message: string, reason: string): Verdict {
  return { kind: 'defer', code: 451, status: '4.7.1', message, reason }
}

/**
 * The actions rspamd ≥ 3 can answer, most severe first. `discard` and `quarantine` have no score
 * threshold: rspamd answers them only when a rule asks (force_actions, a Lua pre-result), a decision
 * no local [thresholds] value overrides, so they come first.
 */
export const ACTIONS = [
  'discard',
  'quarantine',
  'reject',
  'soft reject',
  'rewrite subject',
  'add header',
  'greylist',
  'no action',
] as const

export function isKnownAction(action: string): boolean {
  return (ACTIONS as readonly string[]).includes(action)
}

/** Octets of reply text kept: with the code, the enhanced status and CRLF a line stays under 512. */
const SMTP_TEXT_OCTETS = 400

/**
 * An SMTP reply text must be one line of reasonable length (RFC 5321 §4.5.3.1.5: 512 octets with
 * the code). The length is counted in UTF-8 octets, as the line goes out, and a cut text ends on a
 * whole character (non-ASCII text is kept: SMTPUTF8 clients read it, others see 8-bit text).
 */
export function smtpText(text: string): string {
  const one = text.replace(SMTP_CONTROLS, ' ').trim()
  if (one.length <= SMTP_TEXT_OCTETS / 3 || Buffer.byteLength(one) <= SMTP_TEXT_OCTETS) return one
  let octets = 0
  let end = 0
  for (const ch of one) {
    const cp = ch.codePointAt(0) ?? 0
    const size = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4
    if (octets + size > SMTP_TEXT_OCTETS - 3) break
    octets += size
    end += ch.length
  }
  return `${one.slice(0, end)}...`
}

function replyText(reply: Reply, cfg: Config, fallback: string): string {
  const fromRspamd = cfg.smtpMessage.enabled ? reply.smtpMessage : undefined
  const text = smtpText(fromRspamd ?? '')
  return text === '' ? fallback : text
}

/** The action the local [thresholds] give a score, or undefined below all of them. */
export function localAction(score: number, t: Config['thresholds']): string | undefined {
  // rspamd's rule: an action applies from its threshold up (score >= threshold)
  if (t.reject !== undefined && score >= t.reject) return 'reject'
  if (t.softReject !== undefined && score >= t.softReject) return 'soft reject'
  if (t.rewriteSubject !== undefined && score >= t.rewriteSubject) return 'rewrite subject'
  if (t.addHeader !== undefined && score >= t.addHeader) return 'add header'
  return undefined
}

/** How severe an action is: its place from the end of ACTIONS; an unknown action counts as `no action`. */
function severity(action: string): number {
  const i = (ACTIONS as readonly string[]).indexOf(action)
  return i === -1 ? 0 : ACTIONS.length - 1 - i
}

/**
 * The action we act on: rspamd's, or the local threshold's when that is more severe. Greylist sits where
 * rspamd puts it, between add header and no action (its score band is the lowest), so a local add_header
 * threshold turns a greylisted message into a marked one, as rspamd itself would. A reply rspamd skipped
 * (is_skipped: settings or a pre-filter said so) carries no real score and keeps its action.
 */
export function finalAction(reply: Reply, cfg: Config): string {
  if (reply.isSkipped) return reply.action
  const local = localAction(reply.score, cfg.thresholds)
  return local !== undefined && severity(local) > severity(reply.action) ? local : reply.action
}

export function decide(rspamdReply: Reply, cfg: Config, facts: SenderFacts): Verdict {
  const action = finalAction(rspamdReply, cfg)
  // from here on the final action is the action: headers, subject rewrite and flags all follow it
  const reply = action === rspamdReply.action ? rspamdReply : { ...rspamdReply, action }
  if (action === 'discard') return { kind: 'discard' }
  if (action === 'greylist' && cfg.greylist.enabled && facts.greylist === 'deferred') {
    return deferWith(replyText(reply, cfg, cfg.greylist.message), 'greylist')
  }
  if (action === 'soft reject' && cfg.softReject.enabled) {
    return deferWith(replyText(reply, cfg, cfg.softReject.message), 'soft reject')
  }
  if (action === 'reject') {
    // 1.6.x: [reject] spam governs unauthenticated senders, [reject] authenticated the authenticated ones
    const wanted = facts.authenticated ? cfg.reject.authenticated : cfg.reject.spam
    if (wanted)
      return { kind: 'deny', code: 550, status: '5.7.1', message: replyText(reply, cfg, cfg.reject.message) }
  }
  if (action === 'quarantine') {
    // [quarantine] action: the operator's choice; accept and queue both write the headers below
    const how = cfg.quarantine.action
    if (how === 'reject') {
      return { kind: 'deny', code: 550, status: '5.7.1', message: replyText(reply, cfg, cfg.reject.message) }
    }
    if (how === 'soft_reject') return deferWith(replyText(reply, cfg, cfg.softReject.message), 'quarantine')
  }
  // the header edits, from the message layer in one call: this only says what is wanted
  const edits = editsFor(reply, cfg, {
    spamHeaders: wantsSpamHeaders(reply, cfg),
    rewriteSubject: cfg.rewriteSubject.enabled && reply.action === 'rewrite subject',
    subject: facts.subject,
    style: facts.style,
  })
  if (action === 'quarantine' && cfg.quarantine.action === 'queue') return { kind: 'quarantine', edits }
  return isHam(reply, cfg) ? { kind: 'ok', edits } : { kind: 'accept', edits }
}

/** [ham] ok: a clean verdict (no action, score within max_score) from a message rspamd really scanned. */
function isHam(reply: Reply, cfg: Config): boolean {
  if (!cfg.ham.ok || reply.action !== 'no action' || reply.isSkipped) return false
  return cfg.ham.maxScore === undefined || reply.score <= cfg.ham.maxScore
}

/** Whether the spam headers (every [spam_headers] style) are written for this reply. */
export function wantsSpamHeaders(reply: Reply, cfg: Config): boolean {
  if (cfg.addHeaders === 'always') return true
  if (cfg.addHeaders === 'never') return false
  // sometimes: when rspamd asks for headers — and when a reject was turned into delivery
  // ([reject] spam=false), or a quarantine into a quarantined copy or a delivery ([quarantine]
  // action = queue or accept), so the spam is at least marked
  return reply.action === 'add header' || reply.action === 'reject' || reply.action === 'quarantine'
}

/**
 * What a failed scan (or an internal error) means, per [defer]: accept unchanged, or defer with 451.
 * A timeout, or a scan shed unsent because rspamd was saturated, follows [defer] timeout, every other
 * failure [defer] error; the reason is the failure's kind.
 */
export function onFailure(error: Pick<ScanError | InternalError, 'kind' | 'message'>, cfg: Config): Verdict {
  // a scan shed because rspamd was saturated is one that would have timed out: the same key decides
  const shed = error.kind === 'saturated'
  const timedOut = error.kind === 'timeout' || shed
  const defer = timedOut ? cfg.defer.timeout : cfg.defer.error
  if (!defer) return { kind: 'accept', edits: { remove: [], removeAt: [], add: [], dropped: [] } }
  return deferWith(
    shed ? 'Rspamd saturated' : timedOut ? 'Rspamd scan timeout' : 'Rspamd scan error',
    error.kind,
  )
}

/**
 * What a failed greylist store (Redis away, or slower than redis_timeout) means for a message rspamd
 * greylisted, per [defer] error: undefined = carry on as if [greylist] were off (the message is accepted,
 * as 1.6.x accepted greylist), or defer with 451. One key for both: the store failed, whatever the way.
 */
export function onGreylistFailure(cfg: Config): Verdict | undefined {
  if (!cfg.defer.error) return undefined
  return deferWith(cfg.greylist.message, 'greylist store')
}

/** The name in config/plugins of Haraka's plugin that [quarantine] action = queue hands messages to. */
export const QUARANTINE_PLUGIN = 'queue/quarantine'

/**
 * What is wrong with Haraka's plugin list (config/plugins, in order) for this config; undefined when
 * nothing. [quarantine] action = queue needs queue/quarantine: without it a quarantined message is
 * deferred (450), never delivered. A `queue/` plugin listed before it runs first on the queue hook;
 * one that ignores queue.wants would deliver the message before it is quarantined.
 */
export function queuePluginProblem(cfg: Config, plugins: readonly string[]): string | undefined {
  if (cfg.quarantine.action !== 'queue') return undefined
  const names = plugins.map((p) => p.trim().replace(/^haraka-plugin-/, ''))
  const at = names.indexOf(QUARANTINE_PLUGIN)
  if (at === -1) {
    return (
      `[quarantine] action = queue, but ${QUARANTINE_PLUGIN} is not in config/plugins: a message rspamd ` +
      `quarantines is deferred (450) until it is; add the line "${QUARANTINE_PLUGIN}" to config/plugins ` +
      '(before the queue plugin that delivers), or set [quarantine] action = reject, soft_reject or accept'
    )
  }
  const before = names.slice(0, at).filter((n) => n.startsWith('queue/') && n !== 'queue/discard')
  if (before.length === 0) return undefined
  return (
    `[quarantine] action = queue: ${before.join(', ')} comes before ${QUARANTINE_PLUGIN} in config/plugins; ` +
    `list ${QUARANTINE_PLUGIN} first, or a queue plugin that ignores queue.wants could deliver a message ` +
    'rspamd quarantines'
  )
}
