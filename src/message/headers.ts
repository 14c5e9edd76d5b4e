// Header styles, sanitising, RFC 2047 encoding and folding: every header the plugin writes,
// ours or rspamd's, goes through prepareField() and comes out as well-formed ASCII.

import { type Config, HEADER_STYLES, type HeaderStyle, oncePerConfig } from '../config'
import { forLog } from '../escape'
import {
  bySeverity,
  heaviest,
  type MilterAdd,
  type MilterRemove,
  type Reply,
  type RspamdSymbol,
} from '../rspamd/reply'

export interface HeaderField {
  name: string
  value: string
}

/** RFC 5322 §2.1.1: a line is at most 998 octets (without CRLF); 78 is what it should be where possible. */
export const MAX_LINE = 998
export const SOFT_LINE = 78
/** Default cap on a whole prepared value, folds included. */
export const MAX_TOTAL = 16 * 1024
export const TRUNCATED = ' [truncated]'
// below this the marker alone would not fit; a smaller maxTotal is raised to it
const MIN_TOTAL = 64
// A longer run of spaces/tabs is cut to this, so no folded line can be whitespace only
// (RFC 5322 §3.2.2 forbids such lines) even after a hard break.
const MAX_WSP_RUN = 64

/** RFC 5322 field-name: printable ASCII except colon; at most 76 so `Name: ` fits a line. */
export function isFieldName(name: string): boolean {
  return name.length > 0 && name.length <= 76 && /^[!-9;-~]+$/.test(name)
}

/** CR, LF, NUL and other controls out (line breaks and the indent after them become one space), trimmed. */
export function sanitizeValue(value: string): string {
  return (
    value
      // eslint-disable-next-line no-control-regex
      .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g, '')
      .replace(/[\r\n][\r\n \t]*/g, ' ')
      .trim()
  )
}

// RFC 2047 B encoding, not Q: its length is exact (4 characters per 3 bytes), so a word can be
// cut to fit the room left on a line, or ≤ 75 characters, without splitting a UTF-8 character;
// Q's length depends on the bytes. Plain ASCII words stay readable either way (see pieces()).
const EW_PREFIX = '=?UTF-8?B?'
const EW_SUFFIX = '?='
const EW_OVERHEAD = EW_PREFIX.length + EW_SUFFIX.length
/** RFC 2047 §2: an encoded-word is at most 75 characters: 63 of base64 → 60 usable → 45 bytes. */
const EW_MAX_BYTES = Math.floor((75 - EW_OVERHEAD) / 4) * 3
/** RFC 2047 §2: a line holding encoded-words is at most 76 characters. */
const EW_LINE = 76
// fold rather than end a line with a word shorter than this (a 1-byte word is valid but silly)
const EW_MIN_BYTES = 12
/** What a decoder reads as an encoded-word; such a word (e.g. rspamd's own encoded subject) passes through. */
const ENCODED_WORD = /^=\?[^?\s]+\?[BbQq]\?[^?\s]*\?=$/

function hasNonAscii(text: string): boolean {
  return /[\u0080-\uffff]/.test(text)
}

/** Bytes an encoded-word of `room` characters can carry (a multiple of 3, so no base64 padding mid-run). */
function wordBytes(room: number): number {
  return room < EW_OVERHEAD + 4 ? 0 : Math.min(EW_MAX_BYTES, Math.floor((room - EW_OVERHEAD) / 4) * 3)
}

function encodedLength(bytes: number): number {
  return EW_OVERHEAD + 4 * Math.ceil(bytes / 3)
}

function encodeWord(text: string): string {
  return `${EW_PREFIX}${Buffer.from(text, 'utf8').toString('base64')}${EW_SUFFIX}`
}

/** Whole characters of `text` (code points, never half a UTF-8 sequence) with their UTF-8 sizes. */
class Chars {
  readonly chars: string[]
  readonly sizes: number[]
  constructor(text: string) {
    this.chars = Array.from(text)
    this.sizes = this.chars.map((c) => Buffer.byteLength(c, 'utf8'))
  }
  get length(): number {
    return this.chars.length
  }
  /** The end of the longest run from `from` of at most `maxBytes`, and its size. */
  fit(from: number, maxBytes: number): { end: number; bytes: number } {
    let end = from
    let bytes = 0
    while (end < this.chars.length && bytes + (this.sizes[end] ?? 0) <= maxBytes)
      bytes += this.sizes[end++] ?? 0
    return { end, bytes }
  }
  text(from: number, end: number): string {
    return this.chars.slice(from, end).join('')
  }
}

/** A word with the whitespace before it; `encode` when it must become encoded-words. */
interface Piece {
  ws: string
  text: string
  encode: boolean
  /** start a new physical line here (one line per symbol in X-Spamd-Result) */
  brk?: boolean
}

/**
 * Split at spaces/tabs. Adjacent non-ASCII words become one run (with their spaces inside, as
 * a decoder drops whitespace between encoded-words, RFC 2047 §6.2); ASCII words stay plain.
 */
function pieces(text: string): { list: Piece[]; trailing: string } {
  const list: Piece[] = []
  let last = 0
  for (const m of text.matchAll(/([ \t]*)([^ \t]+)/g)) {
    const [all, ws = '', word = ''] = m
    last = (m.index ?? 0) + all.length
    const encode = hasNonAscii(word)
    const prev = list.length > 0 ? list[list.length - 1] : undefined
    if (encode && prev?.encode) prev.text += ws + word
    else list.push({ ws, text: word, encode })
  }
  // Next to a plain word that is itself an encoded-word, the space between them would be
  // dropped by a decoder too: carry it inside our run, with a separator space outside.
  list.forEach((p, i) => {
    if (!p.encode) return
    const before = i > 0 ? list[i - 1] : undefined
    const after = i + 1 < list.length ? list[i + 1] : undefined
    if (before && !before.encode && p.ws !== '' && ENCODED_WORD.test(before.text)) {
      p.text = p.ws + p.text
      p.ws = ' '
    }
    if (after && !after.encode && after.ws !== '' && ENCODED_WORD.test(after.text)) {
      p.text += after.ws
      after.ws = ' '
    }
  })
  return { list, trailing: text.slice(last) }
}

/**
 * RFC 2047: words with non-ASCII characters as UTF-8 B encoded-words of ≤ 75 characters,
 * separated by spaces; ASCII words (and existing encoded-words) unchanged.
 */
export function encodeValue(value: string): string {
  if (!hasNonAscii(value)) return value
  const { list, trailing } = pieces(value)
  let out = ''
  for (const p of list) {
    if (!p.encode) {
      out += p.ws + p.text
      continue
    }
    const chars = new Chars(p.text)
    const words: string[] = []
    for (let i = 0; i < chars.length;) {
      const { end } = chars.fit(i, EW_MAX_BYTES)
      words.push(encodeWord(chars.text(i, end)))
      i = end
    }
    out += p.ws + words.join(' ')
  }
  return out + trailing
}

/** Lays pieces out on physical lines: folds, encodes to the room left, hard-breaks, truncates. */
class Layout {
  private readonly lines: string[] = []
  private line = ''
  private width: number
  /** characters of the value so far, eols included */
  private total = 0
  private truncated = false

  constructor(
    private readonly eol: string,
    used: number,
    private limit: number,
  ) {
    this.width = used
  }

  /** Whether anything is on the current line (the first line's `Name: ` does not count). */
  private get started(): boolean {
    return this.line !== ''
  }

  private budget(): number {
    return this.limit - this.total
  }

  private append(s: string): void {
    this.line += s
    this.width += s.length
    this.total += s.length
  }

  /** RFC 5322 §2.2.3: a fold is an eol inserted before whitespace that is already there. */
  private fold(): void {
    this.lines.push(this.line)
    this.line = ''
    this.width = 0
    this.total += this.eol.length
  }

  private stop(): false {
    this.truncated = true
    return false
  }

  /** Fold before the next piece unless the line is still empty; false once the budget is spent. */
  breakLine(): boolean {
    if (!this.started) return true
    // the fold and at least the space and one character after it
    if (this.budget() < this.eol.length + 2) return this.stop()
    this.fold()
    return true
  }

  /** An ASCII word and the whitespace before it; false once the budget is spent. */
  plain(ws: string, word: string): boolean {
    let atom = ws + word
    if (ws !== '' && this.started && this.width + atom.length > SOFT_LINE) {
      if (this.budget() < this.eol.length + atom.length) return this.cut(ws, atom, true)
      this.fold()
    }
    for (;;) {
      const room = MAX_LINE - this.width
      if (atom.length <= room) {
        if (atom.length > this.budget()) return this.cut(ws, atom, false)
        this.append(atom)
        return true
      }
      // no whitespace within 998 octets: break the word with an inserted fold
      if (room + this.eol.length + 2 > this.budget()) return this.cut(ws, atom, false)
      this.append(atom.slice(0, room))
      this.fold()
      atom = ` ${atom.slice(room)}`
      ws = ' '
    }
  }

  /** What fits of `atom` within the budget, then stop (never whitespace alone). */
  private cut(ws: string, atom: string, fold: boolean): false {
    const keep = this.budget() - (fold ? this.eol.length : 0)
    if (keep > ws.length) {
      if (fold) this.fold()
      this.append(atom.slice(0, Math.min(keep, MAX_LINE - this.width)))
    }
    return this.stop()
  }

  /** Text to encode, and the whitespace before it; false once the budget is spent. */
  encoded(ws: string, text: string): boolean {
    const chars = new Chars(text)
    let lead = ws
    for (let i = 0; i < chars.length;) {
      let fold = false
      let { end, bytes } = chars.fit(i, wordBytes(EW_LINE - this.width - lead.length))
      if (lead !== '' && this.started && (end === i || (end < chars.length && bytes < EW_MIN_BYTES))) {
        fold = true
        ;({ end, bytes } = chars.fit(i, wordBytes(EW_LINE - lead.length)))
      }
      // at the very start of the value there is nothing to fold at: one character at least
      if (end === i) ({ end, bytes } = chars.fit(i, chars.sizes[i] ?? 0))
      const fixed = (fold ? this.eol.length : 0) + lead.length
      const full = fixed + encodedLength(bytes) <= this.budget()
      if (!full) {
        end = chars.fit(i, Math.min(bytes, wordBytes(this.budget() - fixed))).end
        if (end === i) return this.stop()
      }
      if (fold) this.fold()
      this.append(lead + encodeWord(chars.text(i, end)))
      if (!full) return this.stop()
      i = end
      lead = ' '
    }
    return true
  }

  /** The folded value, with the marker when the budget ran out (or `cut`: the input was cut before). */
  finish(cut: boolean): { value: string; truncated: boolean } {
    const truncated = this.truncated || cut
    if (truncated) {
      this.limit = Infinity
      if (!this.started && this.lines.length === 0) this.plain('', TRUNCATED.trimStart())
      else this.plain(' ', TRUNCATED.trimStart())
    }
    this.lines.push(this.line)
    return { value: this.lines.join(this.eol), truncated }
  }
}

/** Lays the pieces out until `limit` is spent: the work stops where the output does. */
function layout(
  list: readonly Piece[],
  used: number,
  eol: string,
  limit: number,
  cut: boolean,
): { value: string; truncated: boolean } {
  const l = new Layout(eol, used, limit)
  for (const p of list) {
    if (p.brk && !l.breakLine()) break
    if (!(p.encode ? l.encoded(p.ws, p.text) : l.plain(p.ws, p.text))) break
  }
  return l.finish(cut)
}

/**
 * Input read per character of a value's cap. Every character left after sanitising comes out as at
 * least one (whitespace runs are cut to MAX_WSP_RUN first), so 4 × the cap of an ordinary value
 * always fills the cap; only a value mostly of controls and whitespace is cut earlier than the
 * whole would be, and then it ends in the marker as well.
 */
const INPUT_PER_OUTPUT = 4

/** The first `n` UTF-16 units of `text`, not ending in half a surrogate pair. */
function cutAt(text: string, n: number): string {
  const last = text.charCodeAt(n - 1)
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? n - 1 : n)
}

/**
 * The value to hand to Haraka's add_header(name, value): sanitised, RFC 2047-encoded and folded
 * at whitespace so lines stay ≤ 78 where possible and never exceed 998; the whole value (folds
 * included) is at most maxTotal characters, ending in ` [truncated]` when cut.
 * A list of values is written one per line (each still folded when long), each line after the
 * first starting with a space, or `foldWith`.
 * undefined when `name` is not a valid field name.
 */
export function prepareField(
  name: string,
  value: string | readonly string[],
  opts: { eol?: string; maxTotal?: number; foldWith?: ' ' | '\t' } = {},
): HeaderField | undefined {
  if (!isFieldName(name)) return undefined
  const eol = opts.eol ?? '\n'
  const maxTotal = Math.max(opts.maxTotal ?? MAX_TOTAL, MIN_TOTAL)
  const parts = typeof value === 'string' ? [value] : value
  // a multi-MB value (or 10⁵ list items) is read only as far as its cap can show
  let room = maxTotal * INPUT_PER_OUTPUT
  let cut = false
  const list: Piece[] = []
  for (let i = 0; i < parts.length; i++) {
    let part = parts[i] ?? ''
    if (room <= 0) {
      cut = true
      break
    }
    if (part.length > room) {
      part = cutAt(part, room)
      cut = true
    }
    room -= part.length
    const text = sanitizeValue(part).replace(/[ \t]{65,}/g, (run) => run.slice(0, MAX_WSP_RUN))
    const partPieces = pieces(text).list
    const first = partPieces[0]
    if (first === undefined) continue
    if (list.length > 0) {
      first.ws = opts.foldWith ?? ' '
      first.brk = true
    }
    for (const p of partPieces) list.push(p)
  }
  const used = name.length + 2
  if (!cut) {
    const whole = layout(list, used, eol, maxTotal, false)
    if (!whole.truncated) return { name, value: whole.value }
  }
  // the marker may need a fold of its own: keep room for both
  return { name, value: layout(list, used, eol, maxTotal - eol.length - TRUNCATED.length, cut).value }
}

/** 1.6.x: one character per whole point of score, capped so a hostile score cannot make a huge string. */
export function spamBar(score: number, bar: Config['spambar']): string {
  if (Number.isNaN(score)) return bar.neutral
  const n = Math.min(50, Math.floor(Math.abs(score)))
  if (score >= 1) return bar.positive.repeat(n)
  if (score <= -1) return bar.negative.repeat(n)
  return bar.neutral
}

/** 1.6.x: `NAME(score)` for every symbol with a non-zero score, in reply order. */
export function symbolReport(symbols: RspamdSymbol[]): string {
  return symbols
    .filter((s) => s.score !== 0)
    .map((s) => `${s.name}(${s.score})`)
    .join(' ')
}

/**
 * The `rspamd` style of 1.6.x, in its order: bar, report, score; an empty name skips that header.
 * An empty report is still written (as 1.6.x did), so a forged one in the message is replaced.
 */
export function rspamdStyle(reply: Reply, cfg: Pick<Config, 'header' | 'spambar'>): HeaderField[] {
  const out: HeaderField[] = []
  const { bar, report, score } = cfg.header
  if (bar) out.push({ name: bar, value: spamBar(reply.score, cfg.spambar) })
  if (report) out.push({ name: report, value: symbolReport(reply.symbols) })
  if (score) out.push({ name: score, value: `${reply.score}` })
  return out
}

/** What the styles need beyond the reply: who scanned, on which host, which message. */
export interface StyleFacts {
  /** X-Spam-Scanner (lda): this program and its version; default `haraka-plugin-rspamd` */
  scanner?: string
  /** X-Rspamd-Server (extended): the host rspamd runs on; omitted when unknown */
  rspamdHost?: string
  /** X-Rspamd-Queue-Id (extended): the id sent to rspamd as Queue-Id; omitted when unknown */
  queueId?: string
  /** the reply JSON as rspamd sent it, for the lda style's X-Spam-Result */
  json?: Record<string, unknown>
  /** the reply's size in bytes as received, when known: X-Spam-Result is not built for one far over its cap */
  replyBytes?: number
  /** how long the scan took, for the lda style's X-Spam-Scan-Time; omitted when unknown */
  scanTimeMs?: number
}

/** A header before prepareField(): a list value is written one item per line. */
export interface RawField {
  name: string
  value: string | string[]
  /** cap for this value instead of MAX_TOTAL (X-Spam-Result must never be cut: it is base64) */
  maxTotal?: number
  /** the whitespace that starts each list item's line (rspamc folds X-Spam-Symbols with a tab) */
  foldWith?: ' ' | '\t'
}

/** Base64 of the reply in X-Spam-Result above this is left out (and reported), not truncated. */
export const MAX_RESULT_BASE64 = 256 * 1024
/** Base64 is folded into lines of this many characters (RFC 2045 §6.8's line length). */
const BASE64_LINE = 76

/**
 * The fixed names each style writes (the rspamd style's come from [header]): the styles write
 * them, and verdictHeaderNames() removes them all from a message, from this one list.
 */
const STYLE_NAMES = {
  exim: { score: 'X-Spam-Score', report: 'X-Spam-Report' },
  extended: { result: 'X-Spamd-Result', server: 'X-Rspamd-Server', queueId: 'X-Rspamd-Queue-Id' },
  lda: {
    scanner: 'X-Spam-Scanner',
    scanTime: 'X-Spam-Scan-Time',
    spam: 'X-Spam',
    action: 'X-Spam-Action',
    score: 'X-Spam-Score',
    level: 'X-Spam-Level',
    symbols: 'X-Spam-Symbols',
    result: 'X-Spam-Result',
    error: 'X-Spam-Error',
  },
} as const
const { exim: EXIM, extended: EXTENDED, lda: LDA } = STYLE_NAMES

/** Exim's $spam_score and $spam_bar: `7.2 (+++++++)`. */
export function eximStyle(reply: Reply, cfg: Pick<Config, 'spambar'>): RawField[] {
  const report = [`Action: ${reply.action}`]
  for (const s of bySeverity(reply.symbols)) report.push(`Symbol: ${s.name}(${s.score.toFixed(2)})`)
  for (const [key, text] of Object.entries(reply.messages)) report.push(`Message: ${key}: ${text}`)
  return [
    { name: EXIM.score, value: `${reply.score.toFixed(1)} (${spamBar(reply.score, cfg.spambar)})` },
    // `;` ends every item but the last, so the unfolded value still splits into items
    { name: EXIM.report, value: report.map((r, i) => (i < report.length - 1 ? `${r};` : r)) },
  ]
}

/**
 * rspamd's milter_headers extended_spam_headers: `default: True|False [score / required]`, True
 * only for reject (as rspamd's x-spamd-result routine), then `SYMBOL(score)[options]` one per line.
 */
export function extendedStyle(reply: Reply, facts: StyleFacts): RawField[] {
  const required = reply.requiredScore ?? reply.thresholds.reject
  const verdict =
    `default: ${reply.action === 'reject' ? 'True' : 'False'} ` +
    `[${reply.score.toFixed(2)} / ${required === undefined ? '-' : required.toFixed(2)}]`
  const items = [verdict]
  for (const s of bySeverity(reply.symbols)) {
    items.push(`${s.name}(${s.score.toFixed(2)})[${joinUpTo(s.options, ',', MAX_TOTAL)}]`)
  }
  const out: RawField[] = [
    { name: EXTENDED.result, value: items.map((r, i) => (i < items.length - 1 ? `${r};` : r)) },
  ]
  if (facts.rspamdHost) out.push({ name: EXTENDED.server, value: facts.rspamdHost })
  if (facts.queueId) out.push({ name: EXTENDED.queueId, value: facts.queueId })
  return out
}

export const DEFAULT_SCANNER = 'haraka-plugin-rspamd'

/**
 * C's printf("%.Nf"), as rspamc formats scores: like toFixed() except that a value exactly halfway
 * (0.125, a binary fraction) rounds to the even digit, and a negative value that rounds to zero
 * keeps its sign (-0.00).
 */
export function printfFixed(x: number, digits: number): string {
  const abs = Math.abs(x)
  let out = abs.toFixed(digits)
  // toFixed() is exact: 22 more digits show whether the value is a tie or only close to one
  const tie = new RegExp(`^(\\d+\\.\\d{${digits}})50*$`).exec(abs.toFixed(digits + 22))
  const kept = tie?.[1]
  const digitsKept = kept?.replace(/\.$/, '')
  if (digitsKept !== undefined && Number(digitsKept.slice(-1)) % 2 === 0) out = digitsKept
  return x < 0 || Object.is(x, -0) ? `-${out}` : out
}

/** C++ fmt's `{:.3}` (printf's %g): `digits` significant digits, no trailing zeros, exponent form outside 1e-4…1e+digits. */
export function printfGeneral(x: number, digits: number): string {
  if (x === 0) return '0'
  const [mantissa = '', exp = '0'] = x.toExponential(digits - 1).split('e')
  const e = Number(exp)
  const trim = (t: string) => (t.includes('.') ? t.replace(/0+$/, '').replace(/\.$/, '') : t)
  if (e < -4 || e >= digits) {
    return `${trim(mantissa)}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`
  }
  return trim(x.toFixed(digits - 1 - e))
}

/** rspamc's X-Spam-Level cap: SpamAssassin-style stars, at most this many. */
export const MAX_STARS = 32

/** rspamc's X-Spam-Level: one star per point or part of one (its loop adds a star while the score is > 0), at most 32. */
export function spamLevel(score: number): string {
  return score > 0 ? '*'.repeat(Math.ceil(Math.min(score, MAX_STARS))) : ''
}

/** The actions rspamc marks X-Spam: yes: every one more severe than greylist (underscored spellings too, as rspamc). */
const SPAM_ACTIONS: ReadonlySet<string> = new Set(['reject', 'soft reject', 'rewrite subject', 'add header'])

export function isSpamAction(action: string): boolean {
  return SPAM_ACTIONS.has(action.toLowerCase().replace(/_/g, ' '))
}

/**
 * rspamc --mime's symbol list: the names in the reply's order, comma-separated, one per line
 * (rspamd_header_value_fold folds after every comma in rspamc 3.4).
 */
function symbolList(symbols: readonly RspamdSymbol[]): string[] {
  return symbols.map((s, i) => (i < symbols.length - 1 ? `${s.name},` : s.name))
}

/**
 * What `rspamc --mime` (rspamd 3.4) writes, in its order: scanner, scan time, X-Spam: yes for the
 * actions above greylist (nothing for the others), action, `score / required` with two decimals,
 * stars, symbols; X-Spam-Result (the reply, base64) when asked for.
 */
export function ldaStyle(
  reply: Reply,
  facts: StyleFacts,
  withJson: boolean,
): { fields: RawField[]; dropped: string[] } {
  const fields: RawField[] = [{ name: LDA.scanner, value: facts.scanner ?? DEFAULT_SCANNER }]
  if (facts.scanTimeMs !== undefined) {
    fields.push({ name: LDA.scanTime, value: printfGeneral(facts.scanTimeMs / 1000, 3) })
  }
  if (isSpamAction(reply.action)) fields.push({ name: LDA.spam, value: 'yes' })
  fields.push(
    { name: LDA.action, value: reply.action },
    {
      name: LDA.score,
      value: `${printfFixed(reply.score, 2)} / ${printfFixed(reply.requiredScore ?? 0, 2)}`,
    },
    { name: LDA.level, value: spamLevel(reply.score) },
    { name: LDA.symbols, value: symbolList(reply.symbols), foldWith: '\t' },
  )
  const dropped: string[] = []
  // a reply far over the cap is not serialised again only to be refused (16 MiB: most of a second)
  if (withJson && facts.json && (facts.replyBytes ?? 0) > (MAX_RESULT_BASE64 / 4) * 3 * 2) {
    dropped.push(
      `X-Spam-Result: the reply is ${facts.replyBytes} bytes, over ${MAX_RESULT_BASE64} characters of base64`,
    )
  } else if (withJson && facts.json) {
    const b64 = Buffer.from(JSON.stringify(facts.json), 'utf8').toString('base64')
    if (b64.length > MAX_RESULT_BASE64) {
      dropped.push(
        `X-Spam-Result: the reply is ${b64.length} characters of base64, over ${MAX_RESULT_BASE64}`,
      )
    } else {
      const lines: string[] = []
      for (let i = 0; i < b64.length; i += BASE64_LINE) lines.push(b64.slice(i, i + BASE64_LINE))
      fields.push({ name: LDA.result, value: lines, maxTotal: Infinity })
    }
  }
  return { fields, dropped }
}

/** The lda style when the scan failed, as rspamc --mime: scanner, scan time (`%.3f`), X-Spam-Error with the reason. */
export function ldaFailureStyle(
  scanner: string,
  error: { kind: string; message: string },
  scanTimeMs: number,
): RawField[] {
  return [
    { name: LDA.scanner, value: scanner },
    { name: LDA.scanTime, value: printfFixed(scanTimeMs / 1000, 3) },
    { name: LDA.error, value: `${error.kind}: ${error.message}` },
  ]
}

/**
 * The names the given styles write, with the configured [header] names for the rspamd style: each
 * is removed from a message the styles are written to, also when this reply leaves it out (the
 * lda style's X-Spam for ham), so a forged one cannot stand in for ours.
 */
export function styleHeaderNames(styles: readonly HeaderStyle[], cfg: Pick<Config, 'header'>): string[] {
  const names = styles
    .flatMap((style): string[] =>
      style === 'rspamd'
        ? [cfg.header.score, cfg.header.bar, cfg.header.report]
        : Object.values(STYLE_NAMES[style]),
    )
    .filter((n) => n !== '')
  return [...new Map(names.map((n) => [n.toLowerCase(), n])).values()]
}

/**
 * The verdict headers of every style, with the configured [header] names: what a scanned message
 * must not carry from elsewhere, so that a filter or MUA reading any of them reads ours or none.
 */
export function verdictHeaderNames(cfg: Pick<Config, 'header'>): string[] {
  // a copy: callers add to it
  return [...allVerdictHeaderNames(cfg)]
}

// built once per config: remove_foreign asks for it on every accepted message
const allVerdictHeaderNames = oncePerConfig((cfg: Pick<Config, 'header'>): readonly string[] =>
  Object.freeze(styleHeaderNames(HEADER_STYLES, cfg)),
)

/** styleHeaderNames() of the configured [spam_headers] styles, built once per config (asked per message). */
export const configuredStyleNames = oncePerConfig(
  (cfg: Pick<Config, 'header'> & { spamHeaders: Pick<Config['spamHeaders'], 'styles'> }): readonly string[] =>
    Object.freeze(styleHeaderNames(cfg.spamHeaders.styles, cfg)),
)

/**
 * Every configured style, in the configured order, as raw fields (a name two styles write, from
 * the first of them); what had to be left out, and why.
 */
export function styleHeaders(
  reply: Reply,
  cfg: Pick<Config, 'header' | 'spambar'> & {
    spamHeaders: Pick<Config['spamHeaders'], 'styles' | 'ldaJson'>
  },
  facts: StyleFacts,
): { fields: RawField[]; dropped: string[] } {
  const fields: RawField[] = []
  const dropped: string[] = []
  const written = new Set<string>()
  const shown = withHeaderSymbols(reply, dropped)
  for (const style of cfg.spamHeaders.styles) {
    let own: RawField[]
    if (style === 'rspamd') own = rspamdStyle(shown, cfg)
    else if (style === 'exim') own = eximStyle(shown, cfg)
    else if (style === 'extended') own = extendedStyle(shown, facts)
    else {
      const lda = ldaStyle(shown, facts, cfg.spamHeaders.ldaJson)
      own = lda.fields
      for (const d of lda.dropped) dropped.push(d)
    }
    // exim and lda both write X-Spam-Score, in their own formats: the style listed first writes it
    // (two values of one name would leave a filter reading either)
    for (const f of own) {
      const lower = f.name.toLowerCase()
      if (written.has(lower)) continue
      written.add(lower)
      fields.push(f)
    }
  }
  return { fields, dropped }
}

/**
 * The reply with at most MAX_HEADER_SYMBOLS symbols, the heaviest (in the reply's order), and the
 * count of the others in `dropped`: a reply of 10⁵ symbols costs no more than one of 500.
 */
function withHeaderSymbols(reply: Reply, dropped: string[]): Reply {
  const all = reply.symbols
  if (all.length <= MAX_HEADER_SYMBOLS) return reply
  const kept = new Set(heaviest(all, MAX_HEADER_SYMBOLS))
  dropped.push(
    `symbols: ${all.length - MAX_HEADER_SYMBOLS} of ${all.length} left out of the headers, the lightest ` +
      `(over the limit of ${MAX_HEADER_SYMBOLS})`,
  )
  return { ...reply, symbols: all.filter((s) => kept.has(s)) }
}

/** `list` joined with `sep`, stopping once the text is longer than `max` (the value it goes into is cut there anyway). */
export function joinUpTo(list: readonly string[], sep: string, max: number): string {
  let out = ''
  for (let i = 0; i < list.length && out.length <= max; i++) out += i === 0 ? list[i] : sep + list[i]
  return out
}

/**
 * X-Rspamd-Server names the machine rspamd runs on. From here we only know the address we
 * reach it at: a loopback address or a UNIX socket means this machine.
 */
export function rspamdHostName(target: Config['target'], localHostname: string): string {
  if (target.kind === 'unix') return localHostname
  const h = target.host.toLowerCase()
  if (h === 'localhost' || h === '::1' || /^127\./.test(h)) return localHostname
  return target.host
}

/**
 * The new Subject: rspamd's own `subject` as it is when it sends one, else the template with its
 * first `%s` replaced by the current subject (a function replacement, so `$&` stays literal).
 * rspamd's subject is finished: rspamd has put the message's subject in place of its own template's
 * `%s` (and `%d`, `%%`) and RFC 2047-encoded the result when it is not ASCII
 * (rspamd_protocol_rewrite_subject in protocol.c). Replacing `%s` in it again would copy the subject
 * into itself wherever the sender wrote a `%s`; encodeValue() leaves its encoded-words as they are.
 * The current subject is decoded text, shown as it reads: see literalSubject().
 */
export function rewriteSubject(
  template: string,
  oldSubject: string | undefined,
  rspamdSubject?: string,
): string {
  if (rspamdSubject !== undefined && rspamdSubject.trim() !== '') return rspamdSubject
  return template.replace('%s', () => literalSubject(oldSubject ?? ''))
}

/** A word a lenient decoder could read an encoded-word in (Haraka's and libmime's decode them mid-word too). */
const HAS_ENCODED_WORD = /=\?/

/**
 * Decoded subject text made to read the same once the written Subject is decoded. Text that came out
 * of one decoding may itself look like an encoded-word (`=?UTF-8?B?RlJFRSBtb25leQ==?=` decodes to
 * that very text when the sender encoded it twice): written as it is, the reader's decoder would
 * decode it again and show `FREE money`, which the message never said. Each run of such words (with
 * the spaces between them, which a decoder drops between adjacent encoded-words, RFC 2047 §6.2) is
 * written as encoded-words of its own text, so it decodes to itself; other words are left for
 * prepareField() to encode as any value.
 */
export function literalSubject(text: string): string {
  if (!HAS_ENCODED_WORD.test(text)) return text
  let out = ''
  // the run of words to encode, with the whitespace inside it
  let run = ''
  let runWs = ''
  const flush = () => {
    if (run === '') return
    const chars = new Chars(run)
    const words: string[] = []
    for (let i = 0; i < chars.length;) {
      const { end } = chars.fit(i, EW_MAX_BYTES)
      words.push(encodeWord(chars.text(i, end)))
      i = end
    }
    out += runWs + words.join(' ')
    run = ''
  }
  let last = 0
  for (const m of text.matchAll(/([ \t]*)([^ \t]+)/g)) {
    const [all, ws = '', word = ''] = m
    last = (m.index ?? 0) + all.length
    if (HAS_ENCODED_WORD.test(word)) {
      if (run === '') runWs = ws
      else run += ws
      run += word
    } else {
      flush()
      out += ws + word
    }
  }
  flush()
  return out + text.slice(last)
}

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
 * Symbols written into the verdict headers, the heaviest first. Real replies carry tens (rarely
 * over 150); 500 items are more than any style's 16 KiB value shows.
 */
export const MAX_HEADER_SYMBOLS = 500
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
export function milterEdits(milter: Reply['milter']): {
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
