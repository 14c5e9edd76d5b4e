// src/message/styles.ts: the four [spam_headers] styles (rspamd, exim, extended, lda), rspamc's number
// formats, and the golden files from real rspamd replies.

import assert from 'node:assert/strict'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { parseReply, type RspamdSymbol } from '../../src/rspamd/reply'
import { type Config, HEADER_STYLES, type HeaderStyle } from '../../src/config'
import { MAX_LINE, MAX_TOTAL, prepareField, SOFT_LINE } from '../../src/message/fold'
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
import { REPO } from '../support/harness'
import { assertWellFormed, BAR, reply, sym } from '../support/header-reader'

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

describe('styles', function () {
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

describe('styles: golden files (test/fixtures/golden) from real rspamd replies', function () {
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
