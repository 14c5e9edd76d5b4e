// The verdict headers, in the four [spam_headers] styles: rspamd (1.6.x's bar, report, score),
// exim, extended (rspamd's milter_headers) and lda (what `rspamc --mime` writes, with rspamc's
// number formats); the names each style writes, which also say what a forged verdict is; and
// X-Rspamd-Server's host. Raw fields: edits.ts prepares them (fold.ts) with the other edits.

import { type Config, HEADER_STYLES, type HeaderStyle, oncePerConfig } from '../config'
import { bySeverity, heaviest, type Reply, type RspamdSymbol } from '../rspamd/reply'
import { MAX_TOTAL, type HeaderField, type RawField } from './fold'

/**
 * Symbols written into the verdict headers, the heaviest first. Real replies carry tens (rarely
 * over 150); 500 items are more than any style's 16 KiB value shows.
 */
export const MAX_HEADER_SYMBOLS = 500

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
