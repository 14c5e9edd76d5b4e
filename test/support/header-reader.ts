// An independent reader of the header values we write (RFC 2047 decoding, RFC 5322 unfolding,
// the structural promises of prepareField()), and small replies to write them from: shared by the
// tests of src/message/.

import assert from 'node:assert/strict'
import type { Config } from '../../src/config'
import { MAX_LINE } from '../../src/message/fold'
import type { Reply, RspamdSymbol } from '../../src/rspamd/reply'

export const ENCODED_WORD = /^=\?UTF-8\?([BQ])\?([^?]*)\?=$/i

function decodeWord(word: string): string | undefined {
  const m = ENCODED_WORD.exec(word)
  if (!m) return undefined
  const [, enc = '', text = ''] = m
  if (enc.toUpperCase() === 'B') return Buffer.from(text, 'base64').toString('utf8')
  const latin = text
    .replace(/_/g, ' ')
    .replace(/=([0-9A-F]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16)))
  return Buffer.from(latin, 'latin1').toString('utf8')
}

/** RFC 2047 §6.2 reader for UTF-8 B/Q words: whitespace between two encoded-words is dropped. */
export function decode(text: string): string {
  const tokens = text.split(/([ \t]+)/)
  let out = ''
  tokens.forEach((t, i) => {
    if (i % 2 === 1) {
      const before = tokens[i - 1] ?? ''
      const after = tokens[i + 1] ?? ''
      if (!(ENCODED_WORD.test(before) && ENCODED_WORD.test(after))) out += t
      return
    }
    out += decodeWord(t) ?? t
  })
  return out
}

/** RFC 5322 §2.2.3 unfolding: remove the line breaks, keep the whitespace. */
export function unfold(value: string, eol = '\n'): string {
  return value.split(eol).join('')
}

/** The physical lines Haraka writes: `Name: value` split at the line breaks. */
export function physicalLines(name: string, value: string, eol = '\n'): string[] {
  return `${name}: ${value}`.split(eol)
}

export function encodedWords(value: string): string[] {
  return value.split(/[ \t\r\n]+/).filter((w) => w.startsWith('=?'))
}

/** Every structural promise of prepareField() for one output. */
export function assertWellFormed(
  name: string,
  value: string,
  eol: string,
  maxTotal: number,
  label: string,
): void {
  const at = `${label}: ${JSON.stringify(value.slice(0, 200))}`
  assert.match(value, /^[\t\n\r\x20-\x7e]*$/, `only ASCII ${at}`)
  assert.ok(!value.includes('\0'), `NUL ${at}`)
  if (eol === '\n') assert.ok(!value.includes('\r'), `CR ${at}`)
  else {
    assert.doesNotMatch(value, /\r(?!\n)/, `bare CR ${at}`)
    assert.doesNotMatch(value, /(?<!\r)\n/, `bare LF ${at}`)
  }
  assert.doesNotMatch(value, /\n(?![ \t])/, `a line break that is not a fold ${at}`)
  assert.ok(value.length <= maxTotal, `${value.length} > maxTotal ${maxTotal} ${at}`)
  const lines = physicalLines(name, value, eol)
  lines.forEach((line, i) => {
    assert.ok(Buffer.byteLength(line) <= MAX_LINE, `line ${i} has ${Buffer.byteLength(line)} octets ${at}`)
    if (i > 0) {
      assert.match(line, /^[ \t]/, `continuation line ${i} starts with WSP ${at}`)
      assert.match(line, /[^ \t]/, `continuation line ${i} is whitespace only ${at}`)
    }
  })
  for (const w of encodedWords(value)) assert.ok(w.length <= 75, `encoded word of ${w.length} ${at}`)
}

export const BAR: Config['spambar'] = { positive: '+', negative: '-', neutral: '/' }

export function sym(name: string, score: number): RspamdSymbol {
  return { name, score, options: [] }
}

export function reply(over: Partial<Reply> = {}): Reply {
  return {
    action: 'add header',
    score: 7.3,
    isSkipped: false,
    symbols: [],
    messages: {},
    milter: { add: [], remove: [], addRcpt: [], delRcpt: [] },
    dkimSignatures: [],
    thresholds: {},
    ...over,
  }
}

/** A report like rspamd's: many SYMBOL(score) words. */
export function report(chars: number): string {
  const names = ['BAYES_SPAM', 'R_SPF_FAIL', 'DMARC_POLICY_REJECT', 'MIME_GOOD', 'RCVD_COUNT_THREE', 'ARC_NA']
  const words: string[] = []
  for (let i = 0; words.join(' ').length < chars; i++) {
    words.push(`${names[i % names.length] ?? 'X'}_${i}(${((i % 17) - 8) / 4})`)
  }
  return words.join(' ')
}
