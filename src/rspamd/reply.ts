// rspamd's JSON reply (raw bytes or parsed JSON) → a typed Reply.
// Nothing in the reply is trusted: every field is checked and a wrong type is dropped with a warning.

import { isPlainObject } from '../config/reader'
import { forLog, hasUnsafe } from '../escape'

export interface RspamdSymbol {
  name: string
  score: number
  metricScore?: number
  description?: string
  options: string[]
}

export interface MilterAdd {
  name: string
  value: string
  /** rspamd's `order`: where to insert; we only use it to keep rspamd's order stable */
  order?: number
}

export interface MilterRemove {
  name: string
  /**
   * Which instances, as rspamd's milter counts them in the message it scanned: n > 0 the n-th,
   * n < 0 the n-th from the end, 0 every one. rspamd sends one number, or (3.14 and later,
   * milter_headers' remove_ar_from) a list of them.
   */
  positions: number[]
}

/**
 * rspamd's `milter` block, as its milter (src/libserver/milter.c) reads it: header adds and
 * removes, the envelope changes (change_from, add_rcpt, del_rcpt: addresses as rspamd sent them,
 * validated by policy/envelope), and the three switches on its action (reject, no_action,
 * spam_header), which this plugin does not apply (policy/envelope says so in the log).
 */
export interface Milter {
  add: MilterAdd[]
  remove: MilterRemove[]
  /** the new envelope sender (SMFIR_CHGFROM) */
  changeFrom?: string
  /** recipients to add (SMFIR_ADDRCPT), at most MAX_RCPT_ITEMS, in the reply's order */
  addRcpt: string[]
  /** recipients to remove (SMFIR_DELRCPT), at most MAX_RCPT_ITEMS */
  delRcpt: string[]
  /** `reject`: `discard` or `quarantine` turn a reject into that; anything else is a reject */
  reject?: string
  /** `no_action`: accept whatever the action, with an X-Rspamd-Action header */
  noAction?: boolean
  /** `spam_header`: present (a string or an object of names → values) */
  spamHeader?: 'string' | 'object'
}

export interface Reply {
  /** rspamd's action, lower case, as sent (may be one we do not know) */
  action: string
  score: number
  requiredScore?: number
  isSkipped: boolean
  symbols: RspamdSymbol[]
  /** `messages`, string values only */
  messages: Record<string, string>
  smtpMessage?: string
  subject?: string
  milter: Milter
  dkimSignatures: string[]
  messageId?: string
  timeReal?: number
  thresholds: Record<string, number>
}

export type ParseResult =
  { ok: true; reply: Reply; warnings: string[]; json: Record<string, unknown> } | { ok: false; error: string }

type Obj = Record<string, unknown>

const isObj: (v: unknown) => v is Obj = isPlainObject

function num(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v
  return undefined
}

/**
 * An action is a short line of text: it is logged and recorded for other plugins, so control
 * characters (a CR/LF would forge a log line) or a huge string make the reply unusable.
 */
function isUsableAction(v: unknown): v is string {
  if (typeof v !== 'string') return false
  const action = v.trim()
  return action !== '' && action.length <= 64 && !hasUnsafe(action)
}

/** Parse the body of a 200 reply. */
export function parseReplyBody(body: string | Buffer): ParseResult {
  const text = typeof body === 'string' ? body : body.toString('utf8')
  if (text.trim() === '') return { ok: false, error: 'empty reply' }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    // V8's message quotes the text it choked on (all of it, when short): it is reply text
    return { ok: false, error: `reply is not JSON: ${forLog((err as Error).message)}` }
  }
  return parseReply(json)
}

/** Validate parsed JSON. A reply without a usable action is an error; other bad fields are warnings. */
export function parseReply(json: unknown): ParseResult {
  if (!isObj(json)) return { ok: false, error: 'reply is not a JSON object' }
  if (typeof json.error === 'string') return { ok: false, error: `rspamd: ${rspamdErrorText(json.error)}` }
  if (!isUsableAction(json.action)) {
    return { ok: false, error: `reply has no action (got ${describe(json.action)})` }
  }
  const warnings: string[] = []
  // each is a log line: a reply of 10⁵ bad items makes MAX_WARNINGS of them and a count
  let unlisted = 0
  const warn = (field: string, v: unknown) => {
    if (warnings.length < MAX_WARNINGS) warnings.push(`ignored ${printable(field)}: ${describe(v)}`)
    else unlisted++
  }

  let score = num(json.score)
  if (score === undefined) {
    if (json.score !== undefined) warn('score', json.score)
    score = 0
  }
  const requiredScore = num(json.required_score)
  if (requiredScore === undefined && json.required_score !== undefined)
    warn('required_score', json.required_score)

  let isSkipped = false
  if (typeof json.is_skipped === 'boolean') isSkipped = json.is_skipped
  else if (json.is_skipped !== undefined) warn('is_skipped', json.is_skipped)

  const messages: Record<string, string> = {}
  if (isObj(json.messages)) {
    let kept = 0
    let unkept = 0
    for (const k of Object.keys(json.messages)) {
      const v = json.messages[k]
      if (typeof v !== 'string') warn(`messages.${k}`, v)
      else if (kept < MAX_MESSAGES || k === 'smtp_message') {
        messages[k] = v
        kept++
      } else unkept++
    }
    if (unkept > 0) warnings.push(`ignored ${unkept} more messages: over ${MAX_MESSAGES}`)
  } else if (json.messages !== undefined) warn('messages', json.messages)

  const subject = typeof json.subject === 'string' ? json.subject : undefined
  if (subject === undefined && json.subject !== undefined) warn('subject', json.subject)

  const messageId = typeof json['message-id'] === 'string' ? json['message-id'] : undefined
  const timeReal = num(json.time_real)

  const thresholds: Record<string, number> = {}
  if (isObj(json.thresholds)) {
    for (const k of Object.keys(json.thresholds)) {
      const n = num(json.thresholds[k])
      if (n !== undefined) thresholds[k] = n
    }
  }

  const reply: Reply = {
    action: json.action.trim().toLowerCase(),
    score,
    requiredScore,
    isSkipped,
    symbols: parseSymbols(json.symbols, warn),
    messages,
    smtpMessage: messages.smtp_message,
    subject,
    milter: parseMilter(json.milter, warn, (w) => warnings.push(w)),
    dkimSignatures: parseDkim(json['dkim-signature'], warn),
    messageId,
    timeReal,
    thresholds,
  }
  if (unlisted > 0) warnings.push(`ignored ${unlisted} more field(s) of the wrong type`)
  return { ok: true, json, warnings, reply }
}

/** `messages` kept (smtp_message always): rspamd sends one or two; each is a line of the exim style's report. */
export const MAX_MESSAGES = 50
/** Warnings listed for one reply; the rest are counted in one more. */
export const MAX_WARNINGS = 20
/**
 * add_rcpt and del_rcpt entries read from one reply, each list; the rest are counted in one warning.
 * rspamd's archiving or SRS-like rules add one or a few; Haraka's own max_rcpt-style limits are 100s.
 */
export const MAX_RCPT_ITEMS = 1000

/** The heaviest symbols first (by |score|), then by name, so that output is stable (rspamd's x-spamd-result order). */
export function bySeverity(symbols: readonly RspamdSymbol[]): RspamdSymbol[] {
  return [...symbols].sort(
    (a, b) => Math.abs(b.score) - Math.abs(a.score) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  )
}

/**
 * The `k` heaviest symbols, in bySeverity()'s order, without sorting all of them: a reply of 10⁵
 * symbols is sorted 2k at a time, each round keeping the best k (n log k, not n log n).
 */
export function heaviest(symbols: readonly RspamdSymbol[], k: number): RspamdSymbol[] {
  if (symbols.length <= k) return bySeverity(symbols)
  let best: RspamdSymbol[] = []
  for (const s of symbols) {
    best.push(s)
    if (best.length >= 2 * k) best = bySeverity(best).slice(0, k)
  }
  return bySeverity(best).slice(0, k)
}

/**
 * The symbols for the one log line: heaviest first, as `NAME(score)`. Names come from the reply,
 * so they are escaped and cut like any field; past `max` symbols the rest is counted, not listed,
 * so a hostile reply cannot make a megabyte log line.
 */
export function symbolsForLog(symbols: readonly RspamdSymbol[], max = 64): string {
  const shown = heaviest(symbols, max).map((s) => `${printable(s.name)}(${roundScore(s.score)})`)
  if (symbols.length > max) shown.push(`… ${symbols.length - max} more`)
  return shown.join(' ')
}

/** A score as rspamd would print it: at most 3 decimals, no float noise (0.30000000000000004). */
function roundScore(n: number): number {
  return Math.round(n * 1000) / 1000
}

/**
 * A field path for a log line: its keys come from the reply, so CR/LF (which would forge log
 * lines) and other controls are escaped, and a huge key is cut.
 */
function printable(field: string): string {
  return forLog(field, 80)
}

/** rspamd's own error text (`{"error": …}`, with any status), as it goes into the log: cut and escaped. */
export function rspamdErrorText(text: string): string {
  return forLog(text)
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing'
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'object') return 'an object'
  // JSON.stringify escapes C0 controls but leaves C1, U+2028/2029 and DEL as they are; a long
  // string is cut first, so a huge one is not copied whole to show 60 characters of it
  return forLog(JSON.stringify(typeof v === 'string' && v.length > 60 ? v.slice(0, 60) : v), 60)
}

type Warn = (field: string, v: unknown) => void

function parseSymbols(v: unknown, warn: Warn): RspamdSymbol[] {
  if (v === undefined) return []
  if (!isObj(v)) {
    warn('symbols', v)
    return []
  }
  const out: RspamdSymbol[] = []
  for (const key of Object.keys(v)) {
    const s = v[key]
    if (!isObj(s)) {
      warn(`symbols.${key}`, s)
      continue
    }
    const name = typeof s.name === 'string' && s.name !== '' ? s.name : key
    const score = num(s.score)
    if (score === undefined) {
      warn(`symbols.${key}.score`, s.score)
      continue
    }
    const options: string[] = []
    if (Array.isArray(s.options)) {
      for (const o of s.options) if (typeof o === 'string') options.push(o)
    }
    out.push({
      name,
      score,
      metricScore: num(s.metric_score),
      description: typeof s.description === 'string' ? s.description : undefined,
      options,
    })
  }
  return out
}

function parseMilter(v: unknown, warn: Warn, note: (w: string) => void): Milter {
  const milter: Milter = { add: [], remove: [], addRcpt: [], delRcpt: [] }
  if (v === undefined) return milter
  if (!isObj(v)) {
    warn('milter', v)
    return milter
  }
  const add = v.add_headers
  if (isObj(add)) {
    // Object.keys, not entries: a reply of 10⁵ names would allocate a pair for each
    for (const name of Object.keys(add)) {
      // rspamd sends a string, {value, order}, or an array of either
      const value = add[name]
      if (!Array.isArray(value)) addItem(milter, name, value, warn)
      else for (const item of value as unknown[]) addItem(milter, name, item, warn)
    }
  } else if (add !== undefined) warn('milter.add_headers', add)

  const remove = v.remove_headers
  if (isObj(remove)) {
    for (const name of Object.keys(remove)) {
      // rspamd's milter takes integers only (UCL_INT), alone or in a list, and skips anything else
      const value = remove[name]
      const positions: number[] = []
      if (Number.isSafeInteger(value)) positions.push(value as number)
      else if (!Array.isArray(value)) warn(`milter.remove_headers.${name}`, value)
      else {
        for (const item of value as unknown[]) {
          if (Number.isSafeInteger(item)) positions.push(item as number)
          else warn(`milter.remove_headers.${name}`, item)
        }
      }
      if (positions.length > 0) milter.remove.push({ name, positions })
    }
  } else if (remove !== undefined) warn('milter.remove_headers', remove)

  // rspamd's milter takes change_from as a string only, add_rcpt and del_rcpt as arrays only
  if (typeof v.change_from === 'string') milter.changeFrom = v.change_from
  else if (v.change_from !== undefined) warn('milter.change_from', v.change_from)
  readAddresses(v.add_rcpt, 'milter.add_rcpt', milter.addRcpt, warn, note)
  readAddresses(v.del_rcpt, 'milter.del_rcpt', milter.delRcpt, warn, note)

  if (typeof v.reject === 'string') milter.reject = v.reject
  else if (v.reject !== undefined) warn('milter.reject', v.reject)
  if (typeof v.no_action === 'boolean') milter.noAction = v.no_action
  else if (v.no_action !== undefined) warn('milter.no_action', v.no_action)
  if (typeof v.spam_header === 'string') milter.spamHeader = 'string'
  else if (isObj(v.spam_header)) milter.spamHeader = 'object'
  else if (v.spam_header !== undefined) warn('milter.spam_header', v.spam_header)
  return milter
}

/** An array of address strings, read up to MAX_RCPT_ITEMS; other entries are warned about by the field's name. */
function readAddresses(
  v: unknown,
  field: string,
  out: string[],
  warn: Warn,
  note: (w: string) => void,
): void {
  if (v === undefined) return
  if (!Array.isArray(v)) {
    warn(field, v)
    return
  }
  const items = v as unknown[]
  const read = Math.min(items.length, MAX_RCPT_ITEMS)
  for (let i = 0; i < read; i++) {
    const item = items[i]
    if (typeof item === 'string') out.push(item)
    else warn(field, item)
  }
  if (items.length > read)
    note(`ignored ${items.length - read} more ${field} entries: over ${MAX_RCPT_ITEMS}`)
}

function addItem(milter: Milter, name: string, item: unknown, warn: Warn): void {
  if (typeof item === 'string') milter.add.push({ name, value: item })
  else if (isObj(item) && typeof item.value === 'string') {
    milter.add.push({ name, value: item.value, order: num(item.order) })
  } else warn(`milter.add_headers.${name}`, item)
}

function parseDkim(v: unknown, warn: Warn): string[] {
  if (v === undefined) return []
  const items = Array.isArray(v) ? v : [v]
  const out: string[] = []
  for (const s of items) {
    if (typeof s === 'string' && s.trim() !== '') out.push(s)
    else warn('dkim-signature', s)
  }
  return out
}
