// Property-based fuzzing (fast-check, fixed seed): random and hostile rspamd replies and header
// values never make the plugin throw, and every header it writes is well-formed.
// Replay a failure with FUZZ_SEED=<seed printed below> (and the path fast-check prints).

import assert from 'node:assert/strict'
import fc from 'fast-check'
import type { FixturePlugin } from 'haraka-test-fixtures'
import { parseConfig } from '../src/config'
import { parseReply } from '../src/rspamd/reply'
import { decide } from '../src/policy/verdict'
import { FakeRspamd } from './support/fake-rspamd'
import {
  DENY,
  DENYSOFT,
  assertWellFormed,
  captureLogs,
  connectionWith,
  corpus,
  dataPost,
  loadPlugin,
  queuedMessage,
  unregister,
} from './support/harness'

const SEED = Number(process.env.FUZZ_SEED ?? 20261125)
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f\u2028\u2029]/
/** what would break an SMTP reply line (non-ASCII text does not: Haraka sends it as UTF-8) */
// eslint-disable-next-line no-control-regex
const SMTP_BREAK = /[\x00-\x1f\x7f]/
/** what a header line must not hold once written: controls (tab aside) and anything not ASCII */
// eslint-disable-next-line no-control-regex
const NOT_HEADER_TEXT = /[\x00-\x08\x0a-\x1f\x7f-\uffff]/

/** Characters that break headers: line breaks, NUL, controls, colons, RFC 2047 markers, non-ASCII. */
const nasty = fc.constantFrom(
  '\r',
  '\n',
  '\r\n',
  '\u0000',
  '\u0007',
  '\u007f',
  '\t',
  ' ',
  ':',
  '=?',
  '?=',
  '=?UTF-8?B?',
  '%s',
  '$&',
  'é',
  '€',
  '\u2028',
  '😀',
  '\ud800',
  'x'.repeat(90),
)
/** Strings mixing ordinary text, hostile pieces and any unicode. */
const text = fc
  .array(fc.oneof(fc.string({ unit: 'grapheme', maxLength: 12 }), nasty, fc.string({ unit: 'binary' })), {
    maxLength: 12,
  })
  .map((parts) => parts.join(''))
const longText = fc.oneof(
  { weight: 5, arbitrary: text },
  { weight: 1, arbitrary: fc.tuple(text, fc.integer({ min: 100, max: 3000 })).map(([t, n]) => t.repeat(n)) },
)
/** Any JSON value, for fields of the wrong type. */
const junk = fc.jsonValue({ maxDepth: 2 })
const headerName = fc.oneof(
  fc.constantFrom(
    'X-Spam',
    'X-Virus',
    'Subject',
    'From',
    'Received',
    'DKIM-Signature',
    'X-Rspamd-Score',
    'Bcc',
  ),
  fc.stringMatching(/^[!-9;-~]{1,20}$/),
  text,
)
const milterValue = fc.oneof(
  longText,
  fc.record({ value: longText, order: fc.oneof(fc.integer(), junk) }, { requiredKeys: ['value'] }),
  fc.array(fc.oneof(longText, fc.record({ value: longText })), { maxLength: 120 }),
  junk,
)
const reply = fc.record(
  {
    action: fc.oneof(
      fc.constantFrom('no action', 'greylist', 'add header', 'rewrite subject', 'soft reject', 'reject'),
      text,
      junk,
    ),
    score: fc.oneof(fc.double({ noNaN: true }), junk),
    required_score: fc.oneof(fc.double({ noNaN: true }), junk),
    is_skipped: fc.oneof(fc.boolean(), junk),
    symbols: fc.oneof(
      fc.dictionary(
        text,
        fc.oneof(
          fc.record({
            name: text,
            score: fc.oneof(fc.double({ noNaN: true }), junk),
            options: fc.array(text),
          }),
          junk,
        ),
        { maxKeys: 30 },
      ),
      junk,
    ),
    messages: fc.oneof(fc.record({ smtp_message: fc.oneof(longText, junk) }), junk),
    subject: fc.oneof(longText, junk),
    milter: fc.oneof(
      fc.record({
        add_headers: fc.oneof(fc.dictionary(headerName, milterValue, { maxKeys: 12 }), junk),
        remove_headers: fc.oneof(fc.dictionary(headerName, fc.oneof(fc.nat(), junk), { maxKeys: 8 }), junk),
      }),
      junk,
    ),
    'dkim-signature': fc.oneof(longText, fc.array(longText, { maxLength: 3 }), junk),
  },
  { requiredKeys: [] },
)
/** Subjects a sender can put in a message: one line, any characters but CR and LF. */
const messageSubject = fc.option(
  fc.string({ unit: 'grapheme', maxLength: 200 }).map((s) => s.replace(/[\r\n]/g, ' ')),
  { nil: undefined },
)

/** `Name: value` as Haraka writes it: every physical line ≤ 998 octets, ASCII, continuations indented. */
function assertFieldWellFormed(name: string, value: string): void {
  assert.match(name, /^[!-9;-~]+$/, `field name ${JSON.stringify(name)}`)
  const lines = `${name}: ${value}`.split('\n')
  lines.forEach((line, i) => {
    assert.ok(Buffer.byteLength(line) <= 998, `line over 998 octets in ${name}`)
    assert.ok(!NOT_HEADER_TEXT.test(line), `control or non-ASCII in ${name}: ${JSON.stringify(line)}`)
    if (i > 0) assert.match(line, /^[ \t]+\S/, `continuation of ${name} is indented and not blank`)
  })
}

describe('fuzz (fast-check)', function () {
  this.timeout(60_000)
  before(() => console.log(`      fuzz seed ${SEED} (replay with FUZZ_SEED=${SEED})`))

  it('decide() never throws on any reply, and every header it writes is well-formed', () => {
    const configs = [
      parseConfig({ main: { add_headers: 'always' } }),
      parseConfig({ main: { add_headers: 'sometimes', subject: '%s %s [SPAM]' }, reject: { spam: 'false' } }),
      parseConfig({
        main: { add_headers: 'always' },
        spam_headers: { styles: 'rspamd, exim, extended, lda', lda_json: 'true' },
        thresholds: { add_header: '5', rewrite_subject: '8', reject: '12' },
        ham: { ok: 'true' },
      }),
    ]
    fc.assert(
      fc.property(
        reply,
        messageSubject,
        fc.boolean(),
        fc.nat(configs.length - 1),
        (json, subject, authenticated, c) => {
          const parsed = parseReply(json)
          if (!parsed.ok) return
          const verdict = decide(parsed.reply, configs[c], {
            authenticated,
            subject,
            style: { scanner: 'fuzz 1.0', rspamdHost: 'rspamd.example.net', queueId: 'Q1', json },
          })
          if (verdict.kind === 'discard') return
          if (verdict.kind === 'accept' || verdict.kind === 'ok' || verdict.kind === 'quarantine') {
            for (const f of verdict.edits.add) assertFieldWellFormed(f.name, f.value)
            for (const n of verdict.edits.remove) assert.match(n, /^[!-9;-~]+$/)
          } else {
            assert.ok(!SMTP_BREAK.test(verdict.message) && verdict.message.length <= 400, 'one SMTP line')
          }
        },
      ),
      { seed: SEED, numRuns: 1000 },
    )
  })

  describe('through the plugin and a fake rspamd', function () {
    let fake: FakeRspamd
    let plugin: FixturePlugin
    before(async () => {
      fake = await FakeRspamd.start({ keepAliveMs: 1 })
      plugin = loadPlugin(
        `host = 127.0.0.1\nport = ${fake.port}\nadd_headers = always\n` +
          '[spam_headers]\nstyles = rspamd, exim, extended, lda\nlda_json = true\n',
      )
    })
    after(async () => {
      await unregister(plugin)
      await fake.close()
    })

    it('never throws, calls next() once, and the queued message stays well-formed', async () => {
      const ham = corpus('ham.eml')
        .toString()
        .replace(/^Subject: .*\r\n/m, '')
      await fc.assert(
        fc.asyncProperty(reply, messageSubject, async (json, subject) => {
          fake.setReply(json)
          const conn = await connectionWith(subject === undefined ? ham : `Subject: ${subject}\r\n${ham}`)
          const logs = captureLogs(conn)
          const res = await dataPost(plugin, conn)
          // a reply's text reaches the log: it must not forge log lines or carry control characters
          for (const l of logs)
            assert.ok(!CONTROL.test(l), `log line with a control character: ${JSON.stringify(l)}`)
          assert.ok([undefined, DENY, DENYSOFT].includes(res.code), `next(${res.code})`)
          assertWellFormed(await queuedMessage(conn))
          assert.equal(res.calls(), 1)
        }),
        { seed: SEED, numRuns: 100 },
      )
    })
  })
})
