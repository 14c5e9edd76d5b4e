import assert from 'node:assert/strict'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { type Config, HEADER_STYLES, type HeaderStyle } from '../../src/config'
import {
  encodeValue,
  isFieldName,
  MAX_LINE,
  MAX_TOTAL,
  prepareField,
  sanitizeValue,
  SOFT_LINE,
  TRUNCATED,
} from '../../src/message/fold'
import {
  instancesAt,
  MAX_ADDS,
  MAX_ADDS_PER_NAME,
  milterEdits,
  PROTECTED_HEADERS,
  STACKED_HEADERS,
} from '../../src/message/milter'
import {
  eximStyle,
  extendedStyle,
  ldaFailureStyle,
  ldaStyle,
  MAX_RESULT_BASE64,
  MAX_STARS,
  printfFixed,
  printfGeneral,
  rspamdHostName,
  rspamdStyle,
  spamBar,
  spamLevel,
  styleHeaders,
  symbolReport,
} from '../../src/message/styles'
import { rewriteSubject } from '../../src/message/subject'
import { parseReply, type MilterAdd, type Reply, type RspamdSymbol } from '../../src/rspamd/reply'
import { prng } from '../support/prng'
import { REPO } from '../support/harness'

// ---- helpers: an independent reader of what we write ----

const ENCODED_WORD = /^=\?UTF-8\?([BQ])\?([^?]*)\?=$/i

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
function decode(text: string): string {
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
function unfold(value: string, eol = '\n'): string {
  return value.split(eol).join('')
}

/** The physical lines Haraka writes: `Name: value` split at the line breaks. */
function physicalLines(name: string, value: string, eol = '\n'): string[] {
  return `${name}: ${value}`.split(eol)
}

function encodedWords(value: string): string[] {
  return value.split(/[ \t\r\n]+/).filter((w) => w.startsWith('=?'))
}

/** Every structural promise of prepareField() for one output. */
function assertWellFormed(name: string, value: string, eol: string, maxTotal: number, label: string): void {
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

const BAR: Config['spambar'] = { positive: '+', negative: '-', neutral: '/' }

function sym(name: string, score: number): RspamdSymbol {
  return { name, score, options: [] }
}

function reply(over: Partial<Reply> = {}): Reply {
  return {
    action: 'add header',
    score: 7.3,
    isSkipped: false,
    symbols: [],
    messages: {},
    milter: { add: [], remove: [] },
    dkimSignatures: [],
    thresholds: {},
    ...over,
  }
}

/** A report like rspamd's: many SYMBOL(score) words. */
function report(chars: number): string {
  const names = ['BAYES_SPAM', 'R_SPF_FAIL', 'DMARC_POLICY_REJECT', 'MIME_GOOD', 'RCVD_COUNT_THREE', 'ARC_NA']
  const words: string[] = []
  for (let i = 0; words.join(' ').length < chars; i++) {
    words.push(`${names[i % names.length] ?? 'X'}_${i}(${((i % 17) - 8) / 4})`)
  }
  return words.join(' ')
}

describe('headers', function () {
  describe('isFieldName()', function () {
    const NAMES: Array<[name: string, valid: boolean, why: string]> = [
      ['X-Spam', true, 'an ordinary name'],
      ['X-Rspamd-Report', true, 'the 1.6.x report name'],
      ['__proto__', true, 'printable ASCII, so syntactically valid (Haraka refuses it itself)'],
      ['!#$%&*+.^_`|~09', true, 'every printable except colon'],
      ['A'.repeat(76), true, '76 characters: `Name: ` still fits a 78-character line'],
      ['A'.repeat(77), false, '77 characters'],
      ['', false, 'empty'],
      ['X Spam', false, 'a space'],
      ['X-Spam:', false, 'a colon'],
      ['X-Spam\t', false, 'a tab'],
      ['X-Spam\r\nBcc', false, 'CR LF'],
      ['X-Spa\0m', false, 'NUL'],
      ['X-Spä', false, 'non-ASCII'],
      ['X-\x7f', false, 'DEL'],
    ]
    for (const [name, valid, why] of NAMES) {
      it(`${valid ? 'accepts' : 'refuses'} ${JSON.stringify(name.length > 20 ? `${name.slice(0, 8)}…` : name)} (${why})`, () => {
        assert.equal(isFieldName(name), valid)
      })
    }
  })

  describe('sanitizeValue()', function () {
    const VALUES: Array<[label: string, input: string, expected: string]> = [
      ['keeps plain text', 'all clean', 'all clean'],
      ['turns LF into a space', 'a\nb', 'a b'],
      ['turns CRLF into a space', 'a\r\nb', 'a b'],
      ['turns a bare CR into a space', 'a\rb', 'a b'],
      ['collapses CRLF and the tab after it (an old fold) into one space', 'a\r\n\tb', 'a b'],
      ['collapses several line breaks and their indent into one space', 'a\r\n\r\n  \n\tb', 'a b'],
      ['strips NUL', 'a\0b', 'ab'],
      ['strips other C0 controls and DEL', 'a\x01\x07\x08\x0b\x0c\x1b\x1f\x7fb', 'ab'],
      ['keeps a tab inside the text', 'a\tb', 'a\tb'],
      ['strips a NUL between CR and LF, leaving one break', 'a\r\0\nb', 'a b'],
      ['trims leading and trailing spaces, tabs and breaks', ' \t a b \t\r\n ', 'a b'],
      ['keeps non-ASCII text', 'Été – 日本 😀', 'Été – 日本 😀'],
      ['returns empty for only controls', '\r\n\0\x01', ''],
    ]
    for (const [label, input, expected] of VALUES) {
      it(`${label}`, () => assert.equal(sanitizeValue(input), expected))
    }
  })

  describe('encodeValue()', function () {
    const ASCII = [
      '',
      'plain text',
      'X-Spam: yes',
      '[SPAM] 50% off',
      'a\tb  c',
      '=?UTF-8?B?w4k=?= already encoded',
    ]
    for (const v of ASCII) {
      it(`returns pure-ASCII ${JSON.stringify(v)} unchanged`, () => assert.equal(encodeValue(v), v))
    }

    const ROUND_TRIPS: Array<[label: string, text: string]> = [
      ['Latin with accents and an en dash', 'Été sale – 50% off'],
      ['CJK (3-byte characters)', '日本語のテキストです。これは長い件名のテストです。'.repeat(3)],
      ['emoji (4-byte, astral characters)', '😀🎉👍🏽🇫🇷'.repeat(12)],
      ['mixed scripts and spaces', 'Привет мир — ça va? 你好 😀 ok'],
      ['a long Cyrillic run without spaces', 'Ж'.repeat(200)],
      ['several spaces and a tab between non-ASCII words', 'é  ü\tö'],
      ['leading and trailing spaces', '  é ü  '],
    ]
    for (const [label, text] of ROUND_TRIPS) {
      it(`encodes and decodes back: ${label}`, () => {
        const enc = encodeValue(text)
        assert.match(enc, /^[\t\x20-\x7e]*$/)
        assert.equal(decode(enc), text)
      })

      it(`keeps every encoded word ≤ 75 chars and never splits a character: ${label}`, () => {
        const words = encodedWords(encodeValue(text))
        assert.ok(words.length > 0)
        for (const w of words) {
          assert.ok(w.length <= 75, `${w.length}: ${w}`)
          const m = ENCODED_WORD.exec(w)
          assert.ok(m, w)
          // a split character decodes to U+FFFD, whose bytes differ from the ones sent
          const bytes = Buffer.from(m[2] ?? '', 'base64')
          assert.ok(Buffer.from(bytes.toString('utf8'), 'utf8').equals(bytes), `split character in ${w}`)
        }
      })
    }

    it('keeps ASCII words plain, so filters on "[SPAM]" still match', () => {
      const enc = encodeValue('[SPAM] Été sale')
      assert.ok(enc.startsWith('[SPAM] =?UTF-8?B?'), enc)
      assert.ok(enc.endsWith(' sale'), enc)
    })

    it('uses UTF-8 B encoded-words', () => {
      assert.equal(encodeValue('é'), '=?UTF-8?B?w6k=?=')
    })

    it("leaves an existing encoded-word (rspamd's encoded subject) alone and keeps the space after it", () => {
      const existing = '=?UTF-8?B?W1NQQU1d?='
      const enc = encodeValue(`${existing} Été`)
      assert.ok(enc.startsWith(`${existing} =?UTF-8?B?`), enc)
      assert.equal(decode(enc), '[SPAM] Été')
    })

    it('turns a lone surrogate into U+FFFD instead of throwing', () => {
      assert.equal(decode(encodeValue('a \ud800 b')), 'a \ufffd b')
    })
  })

  describe('prepareField()', function () {
    const INVALID = ['', 'X Spam', 'X-Spam:', 'Bcc\r\n', 'X-Spä', 'A'.repeat(77)]
    for (const name of INVALID) {
      it(`returns undefined for the invalid name ${JSON.stringify(name.slice(0, 20))}`, () => {
        assert.equal(prepareField(name, 'v'), undefined)
      })
    }

    it('returns a short ASCII value unchanged, with the name', () => {
      assert.deepEqual(prepareField('X-Rspamd-Score', '7.3'), { name: 'X-Rspamd-Score', value: '7.3' })
    })

    it('returns an empty value for an empty or all-control value', () => {
      assert.equal(prepareField('X-Rspamd-Report', '')?.value, '')
      assert.equal(prepareField('X-Rspamd-Report', '\r\n\0')?.value, '')
    })

    for (const [name, chars] of [
      ['X-Rspamd-Report', 300],
      ['X-Spam-Report', 2000],
      ['X', 300],
      ['X-A-Rather-Long-Header-Name-For-Reports', 300],
    ] as const) {
      it(`folds a ${chars}-char report at spaces into lines of at most ${SOFT_LINE} chars (${name})`, () => {
        const text = report(chars)
        const f = prepareField(name, text)
        assert.ok(f)
        const lines = physicalLines(name, f.value)
        assert.ok(lines.length > 1, 'folded')
        for (const line of lines) assert.ok(line.length <= SOFT_LINE, `${line.length}: ${line}`)
        assert.equal(unfold(f.value), text, 'unfolding gives the report back')
        assertWellFormed(name, f.value, '\n', 16384, 'report')
      })
    }

    it('folds with CRLF when asked, and each fold is CRLF + the original space', () => {
      const text = report(300)
      const f = prepareField('X-Rspamd-Report', text, { eol: '\r\n' })
      assert.ok(f)
      assert.ok(f.value.includes('\r\n '))
      assert.equal(unfold(f.value, '\r\n'), text)
      assertWellFormed('X-Rspamd-Report', f.value, '\r\n', 16384, 'crlf')
    })

    it('keeps a tab as the fold point when the text has one', () => {
      const text = Array.from({ length: 20 }, (_, i) => `WORD_${i}`).join('\t')
      const f = prepareField('X-T', text)
      assert.ok(f)
      assert.match(f.value, /\n\t/)
      assert.equal(unfold(f.value), text)
    })

    it('never gives a line over 998 octets for a 10 000-char value with no spaces', () => {
      const f = prepareField('X-Long', 'x'.repeat(10_000))
      assert.ok(f)
      const lines = physicalLines('X-Long', f.value)
      assert.ok(lines.length >= 11)
      for (const line of lines) assert.ok(Buffer.byteLength(line) <= MAX_LINE, `${line.length}`)
      // hard breaks insert a fold space; every x is still there
      assert.equal(unfold(f.value).replace(/ /g, ''), 'x'.repeat(10_000))
      assertWellFormed('X-Long', f.value, '\n', 16384, 'long')
    })

    for (const maxTotal of [2000, 500, 64]) {
      it(`truncates a 10 000-char value with no spaces to maxTotal=${maxTotal}, ending in the marker`, () => {
        const f = prepareField('X-Long', 'x'.repeat(10_000), { maxTotal })
        assert.ok(f)
        assert.ok(f.value.length <= maxTotal, `${f.value.length}`)
        assert.ok(f.value.length > maxTotal - 100, `uses the room it has: ${f.value.length}`)
        assert.ok(unfold(f.value).endsWith(TRUNCATED), f.value.slice(-40))
        assertWellFormed('X-Long', f.value, '\n', maxTotal, 'truncated')
      })
    }

    it('truncates at the default 16 KiB', () => {
      const f = prepareField('X-Huge', report(40_000))
      assert.ok(f)
      assert.ok(f.value.length <= 16 * 1024)
      assert.ok(unfold(f.value).endsWith(TRUNCATED))
      assertWellFormed('X-Huge', f.value, '\n', 16 * 1024, 'huge')
    })

    it('does not truncate a value that fits maxTotal exactly', () => {
      const text = report(1000)
      const folded = prepareField('X-R', text)
      assert.ok(folded)
      const f = prepareField('X-R', text, { maxTotal: folded.value.length })
      assert.equal(f?.value, folded.value)
    })

    it('truncates a non-ASCII value between whole encoded-words, which still decode', () => {
      const text = 'Ж'.repeat(5000)
      const f = prepareField('Subject', text, { maxTotal: 1000 })
      assert.ok(f)
      assert.ok(f.value.length <= 1000)
      const decoded = decode(unfold(f.value))
      assert.ok(decoded.endsWith(TRUNCATED), decoded.slice(-20))
      assert.match(decoded.slice(0, -TRUNCATED.length), /^Ж+$/)
      assertWellFormed('Subject', f.value, '\n', 1000, 'non-ascii truncated')
    })

    const INJECTIONS = [
      'ok\r\nBcc: victim@example.com',
      'ok\nBcc: victim@example.com',
      'ok\rBcc: victim@example.com',
      'ok\r\n\r\nBcc: victim@example.com',
      'ok\0\r\nBcc: victim@example.com',
      'ok\r\n.\r\nBcc: victim@example.com',
    ]
    for (const value of INJECTIONS) {
      it(`yields no line starting with "Bcc:" for the injection ${JSON.stringify(value)}`, () => {
        for (const eol of ['\n', '\r\n']) {
          const f = prepareField('X-Evil', value, { eol })
          assert.ok(f)
          for (const line of physicalLines('X-Evil', f.value, eol).slice(1)) {
            assert.doesNotMatch(line, /^bcc:/i)
            assert.notEqual(line, '.')
          }
          assert.equal(unfold(f.value, eol), sanitizeValue(value))
          assertWellFormed('X-Evil', f.value, eol, 16384, 'injection')
        }
      })
    }

    it('RFC 2047-encodes a non-ASCII Subject into lines of at most 78 that decode back', () => {
      const text = '[SPAM] Été sale – 50% off, 日本語のテキストです 😀 and more words after it'
      const f = prepareField('Subject', text.repeat(3))
      assert.ok(f)
      for (const line of physicalLines('Subject', f.value)) assert.ok(line.length <= SOFT_LINE, line)
      assert.equal(decode(unfold(f.value)), text.repeat(3))
      assert.ok(f.value.startsWith('[SPAM] '))
    })

    it('starts a non-ASCII value on the first line even after a long name', () => {
      const name = 'X-'.padEnd(76, 'N')
      const f = prepareField(name, 'ééé ééé')
      assert.ok(f)
      assert.equal(decode(unfold(f.value)), 'ééé ééé')
      assertWellFormed(name, f.value, '\n', 16384, 'long name')
    })

    it('never leaves a continuation line of whitespace only, whatever the whitespace runs', () => {
      const text = `a${' '.repeat(3000)}b${'\t'.repeat(1200)}${'c'.repeat(1500)}`
      const f = prepareField('X-Ws', text)
      assert.ok(f)
      assertWellFormed('X-Ws', f.value, '\n', 16384, 'whitespace')
    })
  })

  describe('prepareField(): 2 000 seeded random values', function () {
    const rand = prng(0x5eed)
    const int = (n: number) => Math.floor(rand() * n)
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T
    const ASCII = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789()[]<>@.,;:"\'%$&*+-/=?_~|{}'
    const ATOMS: ReadonlyArray<() => string> = [
      () => Array.from({ length: 1 + int(12) }, () => pick([...ASCII])).join(''),
      () => pick([' ', '  ', '\t', ' \t ', ' '.repeat(1 + int(200))]),
      () => pick(['\r', '\n', '\r\n', '\r\n\t', '\n ', '\0', '\x01', '\x1b', '\x7f', '\x0b']),
      () => pick(['x', 'Z', '9', '=']).repeat(200 + int(2000)),
      () => pick(['é', 'ü', 'Ж', 'ß', '–', '\u00a0', '\u2028', '\u0301']),
      () => pick(['日本語', '中文字', '한국어', 'עברית', 'العربية']),
      () => pick(['😀', '🎉', '👍🏽', '🇫🇷', '\u{1F9D1}\u200D\u{1F4BB}', '𝔘𝔫𝔦']),
      () => pick(['Ж', '日', '😀']).repeat(50 + int(600)),
    ]
    function randomValue(): string {
      const n = int(8) === 0 ? 40 + int(400) : 1 + int(40)
      let s = ''
      for (let i = 0; i < n; i++) s += pick(ATOMS)()
      return s
    }

    it('gives well-formed, decodable values: no CR, NUL or bare LF, folds only, lines ≤ 998', function () {
      this.timeout(60_000)
      let folded = 0
      let truncated = 0
      let roundTrips = 0
      for (let i = 0; i < 2000; i++) {
        const src = randomValue()
        const name = pick(['X-Rspamd-Report', 'Subject', 'X', 'X-'.padEnd(76, 'N')])
        const eol = i % 3 === 0 ? '\r\n' : '\n'
        const maxTotal = pick([16 * 1024, 16 * 1024, 4096, 1000, 64])
        const f = prepareField(name, src, { eol, maxTotal })
        assert.ok(f, `case ${i}`)
        assertWellFormed(name, f.value, eol, maxTotal, `case ${i}`)
        if (f.value.includes(eol)) folded++
        const text = decode(unfold(f.value, eol))
        if (text.endsWith(TRUNCATED)) {
          truncated++
          continue
        }
        const clean = sanitizeValue(src)
        // a hard break inserts a space, a whitespace run over 64 is cut, and a plain "=?"
        // word may read as an encoded-word: the text comes back exactly in every other case
        if (/[^ \t]{900}|[ \t]{65}|=\?/.test(clean)) continue
        assert.equal(text, clean, `case ${i} round trip`)
        roundTrips++
      }
      assert.ok(folded > 500, `folded ${folded}`)
      assert.ok(truncated > 50, `truncated ${truncated}`)
      assert.ok(roundTrips > 200, `round trips ${roundTrips}`)
    })
  })

  describe('spamBar()', function () {
    const BARS: Array<[score: number, expected: string]> = [
      [0, '/'],
      [0.99, '/'],
      [-0.5, '/'],
      [-0.99, '/'],
      [1, '+'],
      [7.9, '+++++++'],
      [15, '+'.repeat(15)],
      [-1, '-'],
      [-3, '---'],
      [-3.7, '---'],
      [NaN, '/'],
      [50, '+'.repeat(50)],
      [1e9, '+'.repeat(50)],
      [-1e9, '-'.repeat(50)],
      [Infinity, '+'.repeat(50)],
    ]
    for (const [score, expected] of BARS) {
      it(`draws ${JSON.stringify(expected.length > 10 ? `${expected[0]}×${expected.length}` : expected)} for score ${score}`, () => {
        assert.equal(spamBar(score, BAR), expected)
      })
    }

    it('uses the configured characters', () => {
      const bar = { positive: 'S', negative: 'H', neutral: '.' }
      assert.deepEqual([spamBar(2, bar), spamBar(-2, bar), spamBar(0, bar)], ['SS', 'HH', '.'])
    })
  })

  describe('symbolReport()', function () {
    it('lists NAME(score) for non-zero scores, in reply order', () => {
      const symbols = [sym('BAYES_SPAM', 5.1), sym('MIME_GOOD', -0.1), sym('ZERO', 0), sym('R_SPF_FAIL', 1)]
      assert.equal(symbolReport(symbols), 'BAYES_SPAM(5.1) MIME_GOOD(-0.1) R_SPF_FAIL(1)')
    })

    it('is empty without symbols or with zero scores only', () => {
      assert.equal(symbolReport([]), '')
      assert.equal(symbolReport([sym('A', 0), sym('B', -0)]), '')
    })
  })

  describe('rspamdStyle()', function () {
    const HEADER = { bar: 'X-Rspamd-Bar', report: 'X-Rspamd-Report', score: 'X-Rspamd-Score' }
    const r = reply({ score: 7.3, symbols: [sym('BAYES_SPAM', 5.1), sym('R_SPF_FAIL', 2.2), sym('NONE', 0)] })

    it('writes bar, report and score, in 1.6.x order, with raw values', () => {
      assert.deepEqual(rspamdStyle(r, { header: HEADER, spambar: BAR }), [
        { name: 'X-Rspamd-Bar', value: '+++++++' },
        { name: 'X-Rspamd-Report', value: 'BAYES_SPAM(5.1) R_SPF_FAIL(2.2)' },
        { name: 'X-Rspamd-Score', value: '7.3' },
      ])
    })

    it('uses the [header] names', () => {
      const header = { bar: 'X-Spam-Bar', report: 'X-Spam-Report', score: 'X-Spam-Score' }
      assert.deepEqual(
        rspamdStyle(r, { header, spambar: BAR }).map((f) => f.name),
        ['X-Spam-Bar', 'X-Spam-Report', 'X-Spam-Score'],
      )
    })

    const SKIPS: Array<[label: string, header: Config['header'], names: string[]]> = [
      ['bar', { ...HEADER, bar: '' }, ['X-Rspamd-Report', 'X-Rspamd-Score']],
      ['report', { ...HEADER, report: '' }, ['X-Rspamd-Bar', 'X-Rspamd-Score']],
      ['score', { ...HEADER, score: '' }, ['X-Rspamd-Bar', 'X-Rspamd-Report']],
      ['all three', { bar: '', report: '', score: '' }, []],
    ]
    for (const [label, header, names] of SKIPS) {
      it(`skips ${label} when its name is empty`, () => {
        assert.deepEqual(
          rspamdStyle(r, { header, spambar: BAR }).map((f) => f.name),
          names,
        )
      })
    }

    it('prints the score as JS prints the number', () => {
      const values = [0, -2, 12.345678, 1e21].map(
        (score) => rspamdStyle(reply({ score }), { header: HEADER, spambar: BAR })[2]?.value,
      )
      assert.deepEqual(values, ['0', '-2', '12.345678', '1e+21'])
    })

    it('still writes an empty report, so a forged one in the message is replaced', () => {
      const fields = rspamdStyle(reply({ score: 0, symbols: [] }), { header: HEADER, spambar: BAR })
      assert.deepEqual(fields[1], { name: 'X-Rspamd-Report', value: '' })
    })
  })

  describe('rewriteSubject()', function () {
    const CASES: Array<
      [label: string, template: string, old: string | undefined, rspamd: string | undefined, out: string]
    > = [
      ['puts the old subject into the template', '[SPAM] %s', 'Hello', undefined, '[SPAM] Hello'],
      ['puts %s anywhere in the template', 'Re: %s [spam]', 'Hello', undefined, 'Re: Hello [spam]'],
      ['uses a template without %s as it is', '[SPAM]', 'Hello', undefined, '[SPAM]'],
      ['uses an empty old subject when there is none', '[SPAM] %s', undefined, undefined, '[SPAM] '],
      [
        "lets rspamd's subject win over the template",
        '[SPAM] %s',
        'Hello',
        '*** SPAM *** Hello',
        '*** SPAM *** Hello',
      ],
      [
        "takes rspamd's finished subject as it is: a %s in it came from the message",
        '[SPAM] %s',
        'Save 50%s',
        '*** SPAM *** Save 50%s',
        '*** SPAM *** Save 50%s',
      ],
      ['ignores an empty rspamd subject', '[SPAM] %s', 'Hello', '', '[SPAM] Hello'],
      ['ignores a blank rspamd subject', '[SPAM] %s', 'Hello', '  ', '[SPAM] Hello'],
      ['replaces only the first %s', '%s / %s', 'Hi', undefined, 'Hi / %s'],
      [
        'keeps $& and $1 in the old subject literal',
        '[SPAM] %s',
        'Win $& $1 $$ $`',
        undefined,
        '[SPAM] Win $& $1 $$ $`',
      ],
      [
        'does not replace a %s that came in with the old subject',
        '[SPAM] %s',
        'about %s',
        undefined,
        '[SPAM] about %s',
      ],
      ['keeps non-ASCII text raw (encoded later)', '[SPAM] %s', 'Été', undefined, '[SPAM] Été'],
      [
        "passes rspamd's already encoded subject through",
        '[SPAM] %s',
        'x',
        '=?UTF-8?B?W1NQQU1dIMOJdMOp?=',
        '=?UTF-8?B?W1NQQU1dIMOJdMOp?=',
      ],
    ]
    for (const [label, template, old, rspamd, out] of CASES) {
      it(label, () => assert.equal(rewriteSubject(template, old, rspamd), out))
    }
  })

  describe('instancesAt()', function () {
    const CASES: Array<[label: string, positions: number[], total: number, out: number[]]> = [
      ['1 is the first', [1], 3, [0]],
      ['-1 is the last', [-1], 3, [2]],
      ['-3 of 3 is the first', [-3], 3, [0]],
      ['a position past the instances is nothing', [4, -4], 3, []],
      ['nothing of none', [1, -1], 0, []],
      ['one instance named twice goes once', [1, -2, 1], 2, [0]],
      ['a list, in message order', [3, 1], 3, [0, 2]],
      ['0 is not a position here (milterEdits takes it as every instance)', [0], 2, []],
    ]
    for (const [label, positions, total, out] of CASES) {
      it(label, () => assert.deepEqual(instancesAt(positions, total), out))
    }
  })

  describe('milterEdits()', function () {
    const add = (name: string, value: string, order?: number): MilterAdd => ({ name, value, order })
    const milter = (adds: MilterAdd[], removes: string[] = []): Reply['milter'] => ({
      add: adds,
      remove: removes.map((name) => ({ name, positions: [0] })),
    })
    /** the milter block as rspamd sends it, through the reply parser */
    const fromJson = (block: unknown): Reply['milter'] => {
      const parsed = parseReply({ action: 'add header', milter: block })
      assert.ok(parsed.ok)
      return parsed.reply.milter
    }

    it('adds a plain string value and removes that name first', () => {
      const e = milterEdits(fromJson({ add_headers: { 'X-Spamd-Bar': '+++' } }))
      assert.deepEqual(e, {
        remove: ['X-Spamd-Bar'],
        removeAt: [],
        add: [{ name: 'X-Spamd-Bar', value: '+++' }],
        dropped: [],
      })
    })

    it('adds {value, order} entries in rspamd order, stable for ties, unordered ones last', () => {
      const e = milterEdits(
        fromJson({
          add_headers: {
            'X-Third': 'c',
            'X-Second': { value: 'b', order: 2 },
            'X-First': { value: 'a', order: 1 },
            'X-Second-Too': { value: 'b2', order: 2 },
          },
        }),
      )
      assert.deepEqual(
        e.add.map((f) => f.value),
        ['a', 'b', 'b2', 'c'],
      )
    })

    it('adds every value of an array, removing the name once', () => {
      const e = milterEdits(
        fromJson({ add_headers: { 'X-Multi': ['one', { value: 'two', order: 0 }, 'three'] } }),
      )
      assert.deepEqual(
        e.add.map((f) => f.value),
        ['two', 'one', 'three'],
      )
      assert.deepEqual(e.remove, ['X-Multi'])
    })

    it('keeps values raw: preparing them is a later step', () => {
      const e = milterEdits(milter([add('X-Raw', ' Été\r\n ')]))
      assert.equal(e.add[0]?.value, ' Été\r\n ')
    })

    it('replaces, never duplicates: each name is in remove once, whatever its case', () => {
      const e = milterEdits(
        milter([add('X-Spam', '1'), add('x-spam', '2'), add('X-Other', '3')], ['X-SPAM', 'X-Gone', 'x-gone']),
      )
      assert.deepEqual(e.remove, ['X-SPAM', 'X-Gone', 'X-Other'])
      assert.equal(e.add.length, 3)
    })

    it('removes what rspamd asks to remove: every instance for 0, the numbered ones otherwise', () => {
      const e = milterEdits(
        fromJson({
          remove_headers: { 'X-Spam-Flag': 0, 'X-Spamd-Result': 1, 'X-Last': -1, 'X-Some': [1, 3] },
        }),
      )
      assert.deepEqual(e, {
        remove: ['X-Spam-Flag'],
        removeAt: [
          { name: 'X-Spamd-Result', positions: [1] },
          { name: 'X-Last', positions: [-1] },
          { name: 'X-Some', positions: [1, 3] },
        ],
        add: [],
        dropped: [],
      })
    })

    it('takes every instance when a list holds 0, or when rspamd also adds that name', () => {
      const e = milterEdits(
        fromJson({
          remove_headers: { 'X-All': [2, 0], 'X-Replaced': 1 },
          add_headers: { 'x-replaced': 'new' },
        }),
      )
      assert.deepEqual(e.remove, ['X-All', 'x-replaced'])
      assert.deepEqual(e.removeAt, [])
    })

    it('joins the positions of one name sent in two spellings', () => {
      const e = milterEdits({
        add: [],
        remove: [
          { name: 'X-Twice', positions: [1] },
          { name: 'x-twice', positions: [-1] },
        ],
      })
      assert.deepEqual(e.removeAt, [{ name: 'X-Twice', positions: [1, -1] }])
    })

    it('refuses numbered removals of protected headers too', () => {
      const e = milterEdits(fromJson({ remove_headers: { Received: 1, 'DKIM-Signature': [-1] } }))
      assert.deepEqual(e.removeAt, [])
      // one line per kind of refusal, however many names
      assert.deepEqual(e.dropped, ['remove of protected header Received, DKIM-Signature'])
    })

    for (const bad of ['X Bad', 'X-Bad:', 'Bcc\r\nX', '', 'X-Ünï', 'N'.repeat(200), 'X\u007f\u2028Y']) {
      it(`drops the invalid name ${JSON.stringify(bad.slice(0, 20))} from add and remove, and says so`, () => {
        const e = milterEdits(milter([add(bad, 'v'), add('X-Good', 'ok')], [bad]))
        assert.deepEqual(e.add, [{ name: 'X-Good', value: 'ok' }])
        assert.deepEqual(e.remove, ['X-Good'])
        assert.equal(e.dropped.length, 2)
        for (const d of e.dropped) {
          assert.match(d, /invalid header name/)
          assert.ok(d.length < 200, d)
          // it goes to the log: no line breaks or controls from rspamd in it
          // eslint-disable-next-line no-control-regex
          assert.ok(!/[\x00-\x1f\x7f\u2028\u2029]/.test(d), JSON.stringify(d))
        }
      })
    }

    it('protects exactly the trace and structural headers', () => {
      assert.deepEqual([...PROTECTED_HEADERS].sort(), [
        'arc-authentication-results',
        'arc-message-signature',
        'arc-seal',
        'bcc',
        'cc',
        'content-transfer-encoding',
        'content-type',
        'date',
        'dkim-signature',
        'from',
        'in-reply-to',
        'message-id',
        'mime-version',
        'received',
        'references',
        'reply-to',
        'return-path',
        'sender',
        'to',
      ])
    })

    for (const name of [...PROTECTED_HEADERS].flatMap((n) => [n, n.toUpperCase()])) {
      it(`refuses to remove the protected header ${name}`, () => {
        const e = milterEdits(milter([], [name, 'X-Spam']))
        assert.deepEqual(e.remove, ['X-Spam'])
        assert.equal(e.dropped.length, 1)
        assert.match(e.dropped[0] ?? '', /protected/)
      })
    }

    for (const name of [
      'ARC-Seal',
      'ARC-Message-Signature',
      'ARC-Authentication-Results',
      'DKIM-Signature',
      'Received',
    ]) {
      it(`adds a stacked ${name} without removing the ones already there`, () => {
        const e = milterEdits(milter([add(name, 'i=2; ...')]))
        assert.deepEqual(e, { remove: [], removeAt: [], add: [{ name, value: 'i=2; ...' }], dropped: [] })
        assert.ok(STACKED_HEADERS.has(name.toLowerCase()))
      })
    }

    for (const name of ['From', 'To', 'Message-ID', 'Content-Type', 'Date', 'Return-Path']) {
      it(`drops an add of the single-instance protected header ${name}: it would replace or duplicate it`, () => {
        const e = milterEdits(milter([add(name, 'x'), add('X-Ok', 'y')]))
        assert.deepEqual(e.add, [{ name: 'X-Ok', value: 'y' }])
        assert.deepEqual(e.remove, ['X-Ok'])
        assert.equal(e.dropped.length, 1)
        assert.match(e.dropped[0] ?? '', new RegExp(`protected header ${name}`))
      })
    }

    it(`adds at most ${MAX_ADDS_PER_NAME} values of one name (an array of 500) and reports the rest once`, () => {
      const values = Array.from({ length: 500 }, (_, i) => `v${i}`)
      const e = milterEdits(fromJson({ add_headers: { 'X-Flood': values } }))
      assert.equal(e.add.length, MAX_ADDS_PER_NAME)
      assert.deepEqual(
        e.add.map((f) => f.value),
        values.slice(0, MAX_ADDS_PER_NAME),
      )
      assert.deepEqual(e.remove, ['X-Flood'])
      assert.equal(e.dropped.length, 1)
      assert.equal(e.dropped[0], 'add of 400 more value(s) over the limit of 100 per name: 400 X-Flood')
    })

    it(`adds at most ${MAX_ADDS} values in all and reports the rest per name`, () => {
      const block: Record<string, string[]> = {}
      for (let n = 0; n < 7; n++) block[`X-Many-${n}`] = Array.from({ length: 90 }, (_, i) => `${n}.${i}`)
      const e = milterEdits(fromJson({ add_headers: block }))
      assert.equal(e.add.length, MAX_ADDS)
      // 7 × 90 = 630: the first 5 names fit (450), 50 of the 6th, none of the 7th
      assert.deepEqual(e.dropped, [
        `add of 130 more value(s) over the limit of ${MAX_ADDS} added headers: 40 X-Many-5, 90 X-Many-6`,
      ])
      assert.ok(!e.remove.includes('X-Many-6'), 'a name with nothing added is not removed')
    })

    it('returns nothing for an empty milter block', () => {
      assert.deepEqual(milterEdits(milter([])), { remove: [], removeAt: [], add: [], dropped: [] })
    })
  })
})

describe('headers: prepareField() content on the cases the round trip above skips', function () {
  it('decodes truncated, hard-broken and long-whitespace values back to the input (a prefix when cut)', function () {
    this.timeout(60_000)
    const rand = prng(0x2047)
    const int = (n: number) => Math.floor(rand() * n)
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T
    const ATOMS: ReadonlyArray<() => string> = [
      () => Array.from({ length: 1 + int(12) }, () => pick([...'abcXYZ019()[]<>@.,-_'])).join(''),
      () => pick([' ', '\t', ' '.repeat(60 + int(300)), '\r\n\t', '\0']),
      () => 'z'.repeat(900 + int(3000)),
      () => pick(['é', '日本語', '😀', '\u{10348}', '–']).repeat(1 + int(400)),
    ]
    // collapse whitespace runs; drop them entirely where a hard break may have inserted one
    const norm = (s: string, hard: boolean) =>
      hard ? s.replace(/[ \t]+/g, '') : s.replace(/[ \t]+/g, ' ').trim()
    let truncated = 0
    for (let i = 0; i < 500; i++) {
      let src = ''
      for (let n = 1 + int(30); n > 0; n--) src += `${pick(ATOMS)()} `
      const maxTotal = pick([16 * 1024, 4096, 1000])
      const f = prepareField('X-Test', src, { maxTotal })
      assert.ok(f, `case ${i}`)
      let text = decode(unfold(f.value))
      const cut = text.endsWith(TRUNCATED)
      if (cut) {
        truncated++
        text = text.slice(0, -TRUNCATED.length)
      }
      const clean = sanitizeValue(src)
      const hard = /[^ \t]{900}/.test(clean)
      const got = norm(text, hard)
      const want = norm(clean, hard)
      if (cut) assert.ok(want.startsWith(got.trimEnd()) && got.length > 0, `case ${i}: not a prefix`)
      else assert.equal(got, want, `case ${i}`)
    }
    assert.ok(truncated > 50, `truncated ${truncated}`)
  })
})

// ---- header styles ([spam_headers] styles, SPEC §5) ----

const NAMES: Config['header'] = { bar: 'X-Rspamd-Bar', report: 'X-Rspamd-Report', score: 'X-Rspamd-Score' }

function styleCfg(styles: HeaderStyle[], ldaJson = false) {
  return { header: NAMES, spambar: BAR, spamHeaders: { styles, ldaJson } }
}

function symOpts(name: string, score: number, options: string[]): RspamdSymbol {
  return { name, score, options }
}

/** The unfolded value of the one field called `name`. */
function valueOf(fields: Array<{ name: string; value: string | string[] }>, name: string): string | string[] {
  const f = fields.filter((x) => x.name === name)
  assert.equal(f.length, 1, `one ${name}`)
  return f[0]?.value ?? ''
}

describe('headers: styles', function () {
  describe('prepareField() with a list: one item per line', function () {
    it('starts each item on its own continuation line', () => {
      const f = prepareField('X-Spamd-Result', ['default: False [7.00 / 15.00];', 'A(5.00)[x];', 'B(1.00)[]'])
      assert.equal(f?.value, 'default: False [7.00 / 15.00];\n A(5.00)[x];\n B(1.00)[]')
    })
    it('uses the eol it is given', () => {
      assert.equal(prepareField('X-A', ['a;', 'b'], { eol: '\r\n' })?.value, 'a;\r\n b')
    })
    it('still folds an item longer than a line, and sanitises every item', () => {
      const long = report(200)
      const f = prepareField('X-Spam-Report', ['Action: reject;', long, 'x\r\ny\0'])
      assert.ok(f)
      assertWellFormed('X-Spam-Report', f.value, '\n', 16 * 1024, 'list')
      const lines = f.value.split('\n')
      assert.equal(lines[0], 'Action: reject;')
      assert.equal(lines[lines.length - 1], ' x y')
      assert.equal(unfold(f.value), `Action: reject; ${long} x y`)
    })
    it('skips empty items instead of writing whitespace-only lines', () => {
      assert.equal(prepareField('X-A', ['', 'a', '  ', 'b'])?.value, 'a\n b')
    })
    it('truncates a long list with the marker, lines still well-formed', () => {
      const items = Array.from({ length: 500 }, (_, i) => `SYMBOL_${i}(1.00)[option_${i}];`)
      const f = prepareField('X-Spamd-Result', items, { maxTotal: 2000 })
      assert.ok(f)
      assertWellFormed('X-Spamd-Result', f.value, '\n', 2000, 'truncated list')
      assert.ok(f.value.endsWith(TRUNCATED), f.value.slice(-40))
    })
  })

  describe('eximStyle()', function () {
    const r = reply({
      action: 'add header',
      score: 7.25,
      symbols: [sym('SMALL', 0.25), sym('BIG', 7)],
      messages: { smtp_message: 'Spam here' },
    })
    it("writes Exim's X-Spam-Score with one decimal and the bar", () => {
      assert.equal(valueOf(eximStyle(r, { spambar: BAR }), 'X-Spam-Score'), '7.3 (+++++++)')
      assert.equal(valueOf(eximStyle(reply({ score: -2.5 }), { spambar: BAR }), 'X-Spam-Score'), '-2.5 (--)')
      assert.equal(valueOf(eximStyle(reply({ score: 0 }), { spambar: BAR }), 'X-Spam-Score'), '0.0 (/)')
    })
    it('writes X-Spam-Report: the action, the symbols heaviest first, the messages, one per line', () => {
      assert.deepEqual(valueOf(eximStyle(r, { spambar: BAR }), 'X-Spam-Report'), [
        'Action: add header;',
        'Symbol: BIG(7.00);',
        'Symbol: SMALL(0.25);',
        'Message: smtp_message: Spam here',
      ])
    })
  })

  describe('extendedStyle()', function () {
    const symbols = [
      symOpts('MIME_GOOD', -0.1, ['text/plain']),
      symOpts('TEST', 5, ['a', 'b']),
      sym('ZERO', 0),
    ]
    const facts = { rspamdHost: 'mx1.example.net', queueId: 'ABC123' }
    const ACTIONS: Array<[action: string, flag: string]> = [
      ['reject', 'True'],
      ['add header', 'False'],
      ['rewrite subject', 'False'],
      ['soft reject', 'False'],
      ['greylist', 'False'],
      ['no action', 'False'],
    ]
    for (const [action, flag] of ACTIONS) {
      it(`says default: ${flag} for ${action}, as rspamd's x-spamd-result routine`, () => {
        const v = valueOf(
          extendedStyle(reply({ action, score: 4.9, requiredScore: 15, symbols }), facts),
          'X-Spamd-Result',
        )
        assert.equal(Array.isArray(v) ? v[0] : v, `default: ${flag} [4.90 / 15.00];`)
      })
    }
    it('lists every symbol, heaviest first, as SYMBOL(score)[options], ; after all but the last', () => {
      const v = valueOf(
        extendedStyle(reply({ score: 4.9, requiredScore: 15, symbols }), facts),
        'X-Spamd-Result',
      )
      assert.deepEqual(v, [
        'default: False [4.90 / 15.00];',
        'TEST(5.00)[a,b];',
        'MIME_GOOD(-0.10)[text/plain];',
        'ZERO(0.00)[]',
      ])
    })
    it('writes X-Rspamd-Server and X-Rspamd-Queue-Id when known, and leaves them out when not', () => {
      const r = reply({ requiredScore: 15 })
      assert.deepEqual(
        extendedStyle(r, facts).map((f) => f.name),
        ['X-Spamd-Result', 'X-Rspamd-Server', 'X-Rspamd-Queue-Id'],
      )
      assert.equal(valueOf(extendedStyle(r, facts), 'X-Rspamd-Server'), 'mx1.example.net')
      assert.equal(valueOf(extendedStyle(r, facts), 'X-Rspamd-Queue-Id'), 'ABC123')
      assert.deepEqual(
        extendedStyle(r, {}).map((f) => f.name),
        ['X-Spamd-Result'],
      )
    })
    it("takes the required score from thresholds.reject when rspamd sends no required_score, else '-'", () => {
      const a = valueOf(extendedStyle(reply({ score: 1, thresholds: { reject: 20 } }), {}), 'X-Spamd-Result')
      assert.deepEqual(a, ['default: False [1.00 / 20.00]'])
      const b = valueOf(extendedStyle(reply({ score: 1 }), {}), 'X-Spamd-Result')
      assert.deepEqual(b, ['default: False [1.00 / -]'])
    })
  })

  describe('ldaStyle(): what rspamc --mime (rspamd 3.4) writes', function () {
    const ACTIONS: Array<[action: string, spam: boolean]> = [
      ['reject', true],
      ['soft reject', true],
      ['rewrite subject', true],
      ['add header', true],
      ['add_header', true],
      ['greylist', false],
      ['no action', false],
      ['some new action', false],
    ]
    for (const [action, spam] of ACTIONS) {
      it(`${spam ? 'writes X-Spam: yes' : 'writes no X-Spam'} for ${action}, as rspamc`, () => {
        const { fields, dropped } = ldaStyle(reply({ action }), { scanner: 'rspamd-lda 2.0.0' }, false)
        assert.deepEqual(
          fields.filter((f) => f.name === 'X-Spam'),
          spam ? [{ name: 'X-Spam', value: 'yes' }] : [],
        )
        assert.equal(valueOf(fields, 'X-Spam-Action'), action)
        assert.deepEqual(dropped, [])
      })
    }
    it("writes rspamc's set in rspamc's order, the symbols in the reply's order", () => {
      const r = reply({
        score: 7,
        requiredScore: 15,
        symbols: [sym('TEST_ACTION', 5.1), sym('MIME_GOOD', -0.1)],
      })
      const { fields } = ldaStyle(r, { scanner: 'rspamd-lda 2.0.0', scanTimeMs: 32 }, false)
      const lines = fields.map((f) => {
        const p = prepareField(f.name, f.value, { foldWith: f.foldWith })
        return `${p?.name}: ${p?.value}`
      })
      assert.deepEqual(lines, [
        'X-Spam-Scanner: rspamd-lda 2.0.0',
        'X-Spam-Scan-Time: 0.032',
        'X-Spam: yes',
        'X-Spam-Action: add header',
        'X-Spam-Score: 7.00 / 15.00',
        'X-Spam-Level: *******',
        'X-Spam-Symbols: TEST_ACTION,\n\tMIME_GOOD',
      ])
    })
    const SCORES: Array<[score: number, required: number | undefined, value: string, stars: number]> = [
      [7, 15, '7.00 / 15.00', 7],
      [7.3, 15, '7.30 / 15.00', 8],
      [0.01, 15, '0.01 / 15.00', 1],
      [31.2, 15, '31.20 / 15.00', 32],
      [32, 15, '32.00 / 15.00', 32],
      [1000.456, 15, '1000.46 / 15.00', 32],
      [0, 15, '0.00 / 15.00', 0],
      [-3.5, 15, '-3.50 / 15.00', 0],
      [-0.001, 15, '-0.00 / 15.00', 0],
      [5, undefined, '5.00 / 0.00', 5],
    ]
    for (const [score, requiredScore, value, stars] of SCORES) {
      it(`writes X-Spam-Score: ${value} and ${stars} stars for score ${score}`, () => {
        const { fields } = ldaStyle(reply({ score, requiredScore }), {}, false)
        assert.equal(valueOf(fields, 'X-Spam-Score'), value)
        assert.equal(valueOf(fields, 'X-Spam-Level'), '*'.repeat(stars))
      })
    }
    it('writes an empty X-Spam-Symbols for a reply without symbols, as rspamc', () => {
      const { fields } = ldaStyle(reply({ symbols: [] }), {}, false)
      const f = fields.find((x) => x.name === 'X-Spam-Symbols')
      assert.ok(f)
      assert.deepEqual(prepareField(f.name, f.value, { foldWith: f.foldWith }), {
        name: 'X-Spam-Symbols',
        value: '',
      })
    })
    it('folds a long symbol list after each comma, lines within 78 characters', () => {
      const symbols = Array.from({ length: 60 }, (_, i) => sym(`SYMBOL_NUMBER_${i}_WITH_A_LONGISH_NAME`, i))
      const { fields } = ldaStyle(reply({ symbols }), {}, false)
      const f = fields.find((x) => x.name === 'X-Spam-Symbols')
      assert.ok(f)
      const p = prepareField(f.name, f.value, { eol: '\r\n', foldWith: f.foldWith })
      assert.ok(p)
      const lines = `${p.name}: ${p.value}`.split('\r\n')
      assert.equal(lines.length, 60)
      assert.ok(lines.every((l) => l.length <= SOFT_LINE))
      assert.ok(lines.slice(1).every((l) => /^\tSYMBOL_NUMBER_\d+_WITH_A_LONGISH_NAME,?$/.test(l)))
      assertWellFormed('X-Spam-Symbols', p.value, '\r\n', MAX_TOTAL, 'X-Spam-Symbols')
    })
    it('leaves X-Spam-Scan-Time out when the scan time is not known', () => {
      assert.ok(!ldaStyle(reply(), {}, false).fields.some((f) => f.name === 'X-Spam-Scan-Time'))
    })
    it('names haraka-plugin-rspamd as the scanner by default', () => {
      assert.equal(valueOf(ldaStyle(reply(), {}, false).fields, 'X-Spam-Scanner'), 'haraka-plugin-rspamd')
    })
    it('adds X-Spam-Result, base64 of the reply JSON in 76-character lines, only when asked', () => {
      const json = {
        action: 'add header',
        score: 7,
        symbols: { Ä: { score: 1, options: ['ü'.repeat(200)] } },
      }
      assert.ok(!ldaStyle(reply(), { json }, false).fields.some((f) => f.name === 'X-Spam-Result'))
      const { fields } = ldaStyle(reply(), { json }, true)
      const raw = valueOf(fields, 'X-Spam-Result')
      assert.ok(Array.isArray(raw))
      assert.ok(raw.every((l) => l.length <= 76 && /^[A-Za-z0-9+/=]+$/.test(l)))
      const prepared = prepareField('X-Spam-Result', raw, { maxTotal: Infinity })
      assert.ok(prepared)
      assertWellFormed('X-Spam-Result', prepared.value, '\n', Infinity, 'X-Spam-Result')
      const decoded = Buffer.from(prepared.value.replace(/\s+/g, ''), 'base64').toString('utf8')
      assert.deepEqual(JSON.parse(decoded), json)
    })
    it('leaves X-Spam-Result out, and says why, when the reply is too big to carry whole', () => {
      const json = { pad: 'x'.repeat((MAX_RESULT_BASE64 / 4) * 3) }
      const { fields, dropped } = ldaStyle(reply(), { json }, true)
      assert.ok(!fields.some((f) => f.name === 'X-Spam-Result'))
      assert.equal(dropped.length, 1)
      assert.match(dropped[0] ?? '', /X-Spam-Result: the reply is \d+ characters of base64, over 262144/)
    })
    it('ldaFailureStyle() writes the scanner, the scan time (%.3f) and X-Spam-Error with the reason, as rspamc', () => {
      assert.deepEqual(ldaFailureStyle('rspamd-lda 2.0.0', { kind: 'connect', message: 'ECONNREFUSED' }, 4), [
        { name: 'X-Spam-Scanner', value: 'rspamd-lda 2.0.0' },
        { name: 'X-Spam-Scan-Time', value: '0.004' },
        { name: 'X-Spam-Error', value: 'connect: ECONNREFUSED' },
      ])
    })
  })

  describe("printfFixed(), printfGeneral(), spamLevel(): rspamc's number formats", function () {
    const FIXED: Array<[x: number, digits: number, expected: string]> = [
      [7, 2, '7.00'],
      [0.125, 2, '0.12'], // an exact tie rounds to even, as printf (toFixed says 0.13)
      [0.375, 2, '0.38'],
      [-0.125, 2, '-0.12'],
      [2.675, 2, '2.67'], // the double is below the tie
      [1.005, 2, '1.00'],
      [0.135, 2, '0.14'], // the double is above the tie
      [-0.001, 2, '-0.00'],
      [-0, 2, '-0.00'],
      [0.0005, 3, '0.001'], // not a tie in binary
      [2.5, 0, '2'],
      [3.5, 0, '4'],
    ]
    for (const [x, digits, expected] of FIXED) {
      it(`formats ${Object.is(x, -0) ? '-0' : x} with %.${digits}f as ${expected}`, () =>
        assert.equal(printfFixed(x, digits), expected))
    }
    const GENERAL: Array<[x: number, expected: string]> = [
      [0, '0'],
      [0.32, '0.32'],
      [0.008, '0.008'],
      [0.029812, '0.0298'],
      [1.23456, '1.23'],
      [12.345, '12.3'],
      [100, '100'],
      [1234.5, '1.23e+03'],
      [0.00001234, '1.23e-05'],
      [0.0001, '0.0001'],
    ]
    for (const [x, expected] of GENERAL) {
      it(`formats ${x} with {:.3} as ${expected}`, () => assert.equal(printfGeneral(x, 3), expected))
    }
    it(`caps the stars at ${MAX_STARS}`, () => {
      assert.equal(spamLevel(1e9), '*'.repeat(MAX_STARS))
      assert.equal(spamLevel(Number.MAX_VALUE).length, MAX_STARS)
    })
  })

  describe('styleHeaders()', function () {
    const r = reply({ score: 7, requiredScore: 15, symbols: [sym('A', 7)] })
    const facts = { scanner: 's 1', rspamdHost: 'h', queueId: 'q' }
    const NAMES_BY_STYLE: Record<HeaderStyle, string[]> = {
      rspamd: ['X-Rspamd-Bar', 'X-Rspamd-Report', 'X-Rspamd-Score'],
      exim: ['X-Spam-Score', 'X-Spam-Report'],
      extended: ['X-Spamd-Result', 'X-Rspamd-Server', 'X-Rspamd-Queue-Id'],
      lda: ['X-Spam-Scanner', 'X-Spam', 'X-Spam-Action', 'X-Spam-Score', 'X-Spam-Level', 'X-Spam-Symbols'],
    }
    // every non-empty subset, in both orders where it has two or more
    const subsets: HeaderStyle[][] = []
    for (let mask = 1; mask < 1 << HEADER_STYLES.length; mask++) {
      const set = HEADER_STYLES.filter((_, i) => mask & (1 << i))
      subsets.push(set)
      if (set.length > 1) subsets.push([...set].reverse())
    }
    for (const styles of subsets) {
      it(`writes ${styles.join(', ')} in that order`, () => {
        const { fields } = styleHeaders(r, styleCfg(styles), facts)
        // exim and lda share X-Spam-Score: the style listed first writes it
        assert.deepEqual(
          fields.map((f) => f.name),
          [...new Set(styles.flatMap((s) => NAMES_BY_STYLE[s]))],
        )
      })
    }
    it('writes X-Spam-Score in the format of whichever of exim and lda is listed first', () => {
      assert.equal(
        valueOf(styleHeaders(r, styleCfg(['exim', 'lda']), facts).fields, 'X-Spam-Score'),
        '7.0 (+++++++)',
      )
      assert.equal(
        valueOf(styleHeaders(r, styleCfg(['lda', 'exim']), facts).fields, 'X-Spam-Score'),
        '7.00 / 15.00',
      )
    })
    it('passes lda_json on to the lda style', () => {
      const { fields } = styleHeaders(r, styleCfg(['lda'], true), { ...facts, json: { action: 'x' } })
      assert.equal(fields[fields.length - 1]?.name, 'X-Spam-Result')
    })
  })

  describe('rspamdHostName()', function () {
    const CASES: Array<[label: string, target: Config['target'], expected: string]> = [
      ['a UNIX socket', { kind: 'unix', socketPath: '/run/rspamd.sock' }, 'mx.local'],
      ['localhost', { kind: 'tcp', scheme: 'http', host: 'localhost', port: 11333 }, 'mx.local'],
      ['127.0.0.1', { kind: 'tcp', scheme: 'http', host: '127.0.0.1', port: 11333 }, 'mx.local'],
      ['127.3.4.5', { kind: 'tcp', scheme: 'http', host: '127.3.4.5', port: 11333 }, 'mx.local'],
      ['::1', { kind: 'tcp', scheme: 'http', host: '::1', port: 11333 }, 'mx.local'],
      [
        'a remote name',
        { kind: 'tcp', scheme: 'https', host: 'rspamd.example.net', port: 443 },
        'rspamd.example.net',
      ],
      ['a remote address', { kind: 'tcp', scheme: 'http', host: '192.0.2.5', port: 11333 }, '192.0.2.5'],
    ]
    for (const [label, target, expected] of CASES) {
      it(`names ${expected} for ${label}`, () => assert.equal(rspamdHostName(target, 'mx.local'), expected))
    }
  })
})

// ---- golden files: real rspamd 3.4 replies → each style's header block ----
// Regenerate with UPDATE_GOLDEN=1 and review the diff before committing.

const FIXTURES = join(REPO, 'test', 'fixtures')
const GOLDEN_FACTS = {
  scanner: 'haraka-plugin-rspamd 2.0.0',
  rspamdHost: 'mx1.example.net',
  queueId: '4A1B2C3D',
  scanTimeMs: 12.5,
}

function renderStyle(json: Record<string, unknown>, style: HeaderStyle): string {
  const parsed = parseReply(json)
  if (!parsed.ok) throw new Error(parsed.error)
  const { fields, dropped } = styleHeaders(parsed.reply, styleCfg([style], true), { ...GOLDEN_FACTS, json })
  assert.deepEqual(dropped, [])
  return fields
    .map((f) => {
      const p = prepareField(f.name, f.value, { maxTotal: f.maxTotal, foldWith: f.foldWith })
      if (!p) throw new Error(`invalid name ${f.name}`)
      return `${p.name}: ${p.value}\n`
    })
    .join('')
}

describe('headers: golden files (test/fixtures/golden) from real rspamd replies', function () {
  const replies = readdirSync(join(FIXTURES, 'replies')).filter((f) => f.endsWith('.json'))
  it('has a reply for every action rspamd gives in the test setup', () => {
    const actions = replies.map(
      (f) => (JSON.parse(readFileSync(join(FIXTURES, 'replies', f), 'utf8')) as { action: string }).action,
    )
    for (const a of ['no action', 'greylist', 'add header', 'rewrite subject', 'soft reject', 'reject']) {
      assert.ok(actions.includes(a), `a reply with action ${a}`)
    }
  })
  for (const file of replies) {
    for (const style of HEADER_STYLES) {
      const base = `${file.replace(/\.json$/, '')}.${style}.txt`
      it(`${base} matches the ${style} style of replies/${file}`, () => {
        const json = JSON.parse(readFileSync(join(FIXTURES, 'replies', file), 'utf8')) as Record<
          string,
          unknown
        >
        const out = renderStyle(json, style)
        for (const line of out.split('\n').slice(0, -1)) {
          assert.ok(line.length <= MAX_LINE, `line over ${MAX_LINE}`)
          assert.match(line, /^([!-9;-~]+: |[ \t]\S)/, `not a header line: ${line}`)
        }
        const path = join(FIXTURES, 'golden', base)
        if (process.env.UPDATE_GOLDEN === '1') {
          mkdirSync(join(FIXTURES, 'golden'), { recursive: true })
          writeFileSync(path, out)
        }
        assert.equal(out, readFileSync(path, 'utf8'))
      })
    }
  }
})
