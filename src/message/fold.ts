// RFC 5322 and RFC 2047 for the values we write: sanitising (no CR, LF, NUL or other controls),
// encoding non-ASCII words as UTF-8 encoded-words, folding at whitespace so no line passes 998
// octets, and the cap on a whole value. Every header the plugin or rspamd-lda writes, ours or
// rspamd's, goes through prepareField() and comes out as well-formed ASCII.

import { CONTROLS, controlClass } from '../escape'

/** The controls a header value loses outright (TAB stays; CR and LF are folded apart). */
const VALUE_CONTROLS = controlClass([CONTROLS.butTabAndLineEnds], 'g')

export interface HeaderField {
  name: string
  value: string
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
  return value
    .replace(VALUE_CONTROLS, '')
    .replace(/[\r\n][\r\n \t]*/g, ' ')
    .trim()
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

/** `text` as UTF-8 B encoded-words of at most 75 characters each, separated by spaces. */
export function encodedWords(text: string): string {
  const chars = new Chars(text)
  const words: string[] = []
  for (let i = 0; i < chars.length;) {
    const { end } = chars.fit(i, EW_MAX_BYTES)
    words.push(encodeWord(chars.text(i, end)))
    i = end
  }
  return words.join(' ')
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
    out += p.ws + encodedWords(p.text)
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
