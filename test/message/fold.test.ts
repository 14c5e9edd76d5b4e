// src/message/fold.ts: sanitising, RFC 2047 encoding, folding and the caps of every value we write,
// read back by an independent decoder (test/support/header-reader.ts).

import assert from 'node:assert/strict'

import {
  encodeValue,
  isFieldName,
  MAX_LINE,
  prepareField,
  sanitizeValue,
  SOFT_LINE,
  TRUNCATED,
} from '../../src/message/fold'
import { prng } from '../support/prng'
import {
  assertWellFormed,
  decode,
  ENCODED_WORD,
  encodedWords,
  physicalLines,
  report,
  unfold,
} from '../support/header-reader'

describe('fold', function () {
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
})

describe('fold: prepareField() content on the cases the round trip above skips', function () {
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
