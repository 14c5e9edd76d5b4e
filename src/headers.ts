// Header styles, sanitising, RFC 2047 encoding and folding: every header the plugin writes,
// ours or rspamd's, goes through prepareField() and comes out well-formed.

import type { Config } from './config'
import type { Reply, RspamdSymbol } from './reply'

export interface HeaderField {
  name: string
  value: string
}

/** RFC 5322 §2.1.1: a line is at most 998 octets; 78 is what it should be where possible. */
export const MAX_LINE = 998
export const SOFT_LINE = 78
const MAX_TOTAL = 16 * 1024
const TRUNCATED = ' [truncated]'

/** RFC 5322 field-name: printable ASCII except colon; at most 76 so `Name: ` fits a line. */
export function isFieldName(name: string): boolean {
  return name.length > 0 && name.length <= 76 && /^[!-9;-~]+$/.test(name)
}

/** CR, LF, NUL and other controls out (a line break and its indent become one space), trimmed. */
export function sanitizeValue(value: string): string {
  return (
    value
      .replace(/[\r\n]+[ \t]*/g, ' ')
      // eslint-disable-next-line no-control-regex
      .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '')
      .trim()
  )
}

const ASCII = /^[\x20-\x7e\t]*$/

/**
 * RFC 2047: non-ASCII text as UTF-8 `B` encoded-words. B, not Q: its length is predictable
 * (4 per 3 bytes), so each word can be cut to ≤ 75 characters without splitting a character.
 */
export function encodeValue(value: string): string {
  if (ASCII.test(value)) return value
  const words: string[] = []
  // '=?UTF-8?B?' + '?=' is 12 characters: 63 left for base64 = 47 bytes; 45 keeps it a multiple of 3
  const maxBytes = 45
  let chunk = ''
  let chunkBytes = 0
  for (const ch of value) {
    const n = Buffer.byteLength(ch)
    if (chunkBytes + n > maxBytes) {
      words.push(chunk)
      chunk = ''
      chunkBytes = 0
    }
    chunk += ch
    chunkBytes += n
  }
  if (chunk) words.push(chunk)
  return words.map((w) => `=?UTF-8?B?${Buffer.from(w).toString('base64')}?=`).join(' ')
}

/**
 * The value to hand to Haraka's add_header(name, value): sanitised, encoded and folded at
 * whitespace (RFC 5322 §2.2.3) so that lines stay ≤ 78 where possible and never exceed 998.
 * undefined when `name` is not a valid field name.
 */
export function prepareField(
  name: string,
  value: string,
  opts: { eol?: string; maxTotal?: number } = {},
): HeaderField | undefined {
  if (!isFieldName(name)) return undefined
  const eol = opts.eol ?? '\n'
  const maxTotal = opts.maxTotal ?? MAX_TOTAL
  let text = encodeValue(sanitizeValue(value))
  if (text.length > maxTotal) text = `${text.slice(0, maxTotal - TRUNCATED.length).trimEnd()}${TRUNCATED}`
  return { name, value: fold(text, name.length + 2, eol) }
}

/** Fold `text` whose first line already holds `used` characters (`Name: `). */
function fold(text: string, used: number, eol: string): string {
  const lines: string[] = []
  let line = ''
  let width = used
  // each token keeps the whitespace before it, which becomes the fold point
  for (const token of text.match(/[ \t]*[^ \t]+|[ \t]+$/g) ?? []) {
    if (line !== '' && width + token.length > SOFT_LINE && /^[ \t]/.test(token)) {
      lines.push(line)
      line = ''
      width = 0
    }
    line += token
    width += token.length
    // a run with no whitespace that would pass 998: break it hard (a folding space is inserted)
    while (width > MAX_LINE - 2) {
      const room = MAX_LINE - 2 - (width - line.length)
      lines.push(line.slice(0, room))
      line = ` ${line.slice(room)}`
      width = line.length
    }
  }
  lines.push(line)
  return lines.filter((l, i) => i === 0 || l.trim() !== '').join(eol)
}

/** 1.6.x: one character per whole point of score, capped so a hostile score cannot make a huge string. */
export function spamBar(score: number, bar: Config['spambar']): string {
  if (!Number.isFinite(score)) return bar.neutral
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

/** The `rspamd` style of 1.6.x, in its order: bar, report, score; an empty name skips that header. */
export function rspamdStyle(reply: Reply, cfg: Pick<Config, 'header' | 'spambar'>): HeaderField[] {
  const out: HeaderField[] = []
  const { bar, report, score } = cfg.header
  if (bar) out.push({ name: bar, value: spamBar(reply.score, cfg.spambar) })
  if (report) out.push({ name: report, value: symbolReport(reply.symbols) })
  if (score) out.push({ name: score, value: `${reply.score}` })
  return out.filter((f) => f.value !== '')
}

/**
 * The new Subject: rspamd's own `subject` when it sends one, else the template; `%s` (first one)
 * becomes the current subject. A function replacement, so `$&` in a subject stays literal.
 */
export function rewriteSubject(
  template: string,
  oldSubject: string | undefined,
  rspamdSubject?: string,
): string {
  const pattern = rspamdSubject && rspamdSubject.trim() !== '' ? rspamdSubject : template
  return pattern.replace('%s', () => oldSubject ?? '')
}

/**
 * Headers rspamd may not remove: trace and structural fields. Without them delivery loops are
 * not detected (Received), replies and threads break (From, Message-ID, References…), MIME can't be
 * parsed (Content-*), and signatures fail. rspamd's milter_headers only removes its own in practice.
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

const MAX_PER_NAME = 100
const MAX_ADDED = 500

/** rspamd's milter block → removals and additions (raw values), with what was refused and why. */
export function milterEdits(milter: Reply['milter']): {
  remove: string[]
  add: HeaderField[]
  dropped: string[]
} {
  const remove: string[] = []
  const add: HeaderField[] = []
  const dropped: string[] = []
  const removing = new Set<string>()
  const queueRemove = (name: string) => {
    const lower = name.toLowerCase()
    if (removing.has(lower)) return
    removing.add(lower)
    remove.push(name)
  }

  for (const r of milter.remove) {
    if (!isFieldName(r.name)) dropped.push(`remove of invalid header name ${JSON.stringify(r.name)}`)
    else if (PROTECTED_HEADERS.has(r.name.toLowerCase())) dropped.push(`remove of protected header ${r.name}`)
    else queueRemove(r.name)
  }

  // stable sort by rspamd's order; entries without one keep their place after ordered ones
  const ordered = milter.add
    .map((a, i) => ({ a, i }))
    .sort((x, y) => (x.a.order ?? Infinity) - (y.a.order ?? Infinity) || x.i - y.i)
  const perName = new Map<string, number>()
  for (const { a } of ordered) {
    if (!isFieldName(a.name)) {
      dropped.push(`add of invalid header name ${JSON.stringify(a.name)}`)
      continue
    }
    const lower = a.name.toLowerCase()
    if (PROTECTED_HEADERS.has(lower)) {
      dropped.push(`add of protected header ${a.name}`)
      continue
    }
    const count = perName.get(lower) ?? 0
    if (count >= MAX_PER_NAME || add.length >= MAX_ADDED) {
      dropped.push(`add of ${a.name}: over the limit of ${MAX_PER_NAME} a name, ${MAX_ADDED} in all`)
      continue
    }
    perName.set(lower, count + 1)
    // an added header replaces the message's own of that name
    queueRemove(a.name)
    add.push({ name: a.name, value: a.value })
  }
  return { remove, add, dropped }
}
