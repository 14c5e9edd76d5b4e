// src/rspamd/reply.ts: rspamd's JSON → Reply. A full rspamd 3.x reply parsed field by field, broken replies
// as errors, and wrong-typed fields as warnings with safe defaults.

import assert from 'node:assert/strict'
import { parseReply, parseReplyBody, type ParseResult, type Reply } from '../../src/rspamd/reply'

const DKIM =
  'v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;\r\n\ts=dkim; t=1714556096; h=from:subject;\r\n\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=Yq3Q1qJ3Kpo6vQ0p'

/** What rspamd 3.8 answers on /checkv2 for a spammy message with milter_headers and dkim_signing. */
const RSPAMD_REPLY = `{
  "is_skipped": false,
  "score": 16.5,
  "required_score": 15.0,
  "action": "reject",
  "thresholds": {"reject": 15.0, "add header": 6.0, "rewrite subject": 8.0, "greylist": 4.0},
  "symbols": {
    "BAYES_SPAM": {"name": "BAYES_SPAM", "score": 5.1, "metric_score": 5.1,
      "description": "Message probably spam, probability of spam", "options": ["100.00%"]},
    "URIBL_BLACK": {"name": "URIBL_BLACK", "score": 7.5, "metric_score": 7.5,
      "description": "A domain in the message is listed in URIBL.com black", "options": ["spam.example.biz:url"]},
    "R_DKIM_REJECT": {"name": "R_DKIM_REJECT", "score": 0.7, "metric_score": 1.0,
      "description": "DKIM verification failed", "options": ["example.com:s=mail", "bad sig"]},
    "GTUBE": {"name": "GTUBE", "score": 0.0, "metric_score": 0.0}
  },
  "messages": {"smtp_message": "Spam message rejected", "other": "note"},
  "subject": "*** SPAM *** Lunch on Thursday?",
  "milter": {
    "add_headers": {
      "X-Spamd-Bar": {"value": "++++++++", "order": 0},
      "X-Virus": "no",
      "X-Spam-Flag": [{"value": "YES", "order": 1}, "YES2"]
    },
    "remove_headers": {"X-Spamd-Bar": 1, "X-Spam-Flag": 0}
  },
  "dkim-signature": ${JSON.stringify(DKIM)},
  "message-id": "20240501093456.000001@mail.example.org",
  "time_real": 0.023461,
  "urls": ["spam.example.biz"]
}`

const EXPECTED: Reply = {
  action: 'reject',
  score: 16.5,
  requiredScore: 15,
  isSkipped: false,
  symbols: [
    {
      name: 'BAYES_SPAM',
      score: 5.1,
      metricScore: 5.1,
      description: 'Message probably spam, probability of spam',
      options: ['100.00%'],
    },
    {
      name: 'URIBL_BLACK',
      score: 7.5,
      metricScore: 7.5,
      description: 'A domain in the message is listed in URIBL.com black',
      options: ['spam.example.biz:url'],
    },
    {
      name: 'R_DKIM_REJECT',
      score: 0.7,
      metricScore: 1,
      description: 'DKIM verification failed',
      options: ['example.com:s=mail', 'bad sig'],
    },
    { name: 'GTUBE', score: 0, metricScore: 0, description: undefined, options: [] },
  ],
  messages: { smtp_message: 'Spam message rejected', other: 'note' },
  smtpMessage: 'Spam message rejected',
  subject: '*** SPAM *** Lunch on Thursday?',
  milter: {
    add: [
      { name: 'X-Spamd-Bar', value: '++++++++', order: 0 },
      { name: 'X-Virus', value: 'no' },
      { name: 'X-Spam-Flag', value: 'YES', order: 1 },
      { name: 'X-Spam-Flag', value: 'YES2' },
    ],
    remove: [
      { name: 'X-Spamd-Bar', positions: [1] },
      { name: 'X-Spam-Flag', positions: [0] },
    ],
    addRcpt: [],
    delRcpt: [],
  },
  dkimSignatures: [DKIM],
  messageId: '20240501093456.000001@mail.example.org',
  timeReal: 0.023461,
  thresholds: { reject: 15, 'add header': 6, 'rewrite subject': 8, greylist: 4 },
}

function ok(r: ParseResult): { reply: Reply; warnings: string[] } {
  if (!r.ok) assert.fail(`expected a reply, got error: ${r.error}`)
  return r
}

const MINIMAL = { action: 'no action', score: 1.5 }

describe('reply', function () {
  describe('a realistic rspamd 3.x reply', function () {
    it('parses every field exactly', () => {
      const r = ok(parseReplyBody(RSPAMD_REPLY))
      assert.deepEqual(r.reply, EXPECTED)
      assert.deepEqual(r.warnings, [])
    })

    it('parses the same from a Buffer', () => {
      assert.deepEqual(ok(parseReplyBody(Buffer.from(RSPAMD_REPLY))).reply, EXPECTED)
    })

    it('parses the same from already-parsed JSON and returns that JSON', () => {
      const json: unknown = JSON.parse(RSPAMD_REPLY)
      const r = parseReply(json)
      assert.ok(r.ok)
      assert.deepEqual(r.reply, EXPECTED)
      assert.equal(r.json, json)
    })

    it('reads dkim-signature given as an array', () => {
      const json = { ...MINIMAL, 'dkim-signature': [DKIM, 'v=1; d=example.net; b=abc'] }
      const r = ok(parseReply(json))
      assert.deepEqual(r.reply.dkimSignatures, [DKIM, 'v=1; d=example.net; b=abc'])
      assert.deepEqual(r.warnings, [])
    })

    it('reads is_skipped=true', () => {
      assert.equal(ok(parseReply({ ...MINIMAL, is_skipped: true })).reply.isSkipped, true)
    })

    it('uses the object key as the name of a symbol without one', () => {
      const r = ok(parseReply({ ...MINIMAL, symbols: { FOO: { score: 2 } } }))
      assert.deepEqual(r.reply.symbols, [
        { name: 'FOO', score: 2, metricScore: undefined, description: undefined, options: [] },
      ])
    })

    it('gives safe empty defaults for a reply with only an action', () => {
      const r = ok(parseReply({ action: 'no action' }))
      assert.deepEqual(r.reply, {
        action: 'no action',
        score: 0,
        requiredScore: undefined,
        isSkipped: false,
        symbols: [],
        messages: {},
        smtpMessage: undefined,
        subject: undefined,
        milter: { add: [], remove: [], addRcpt: [], delRcpt: [] },
        dkimSignatures: [],
        messageId: undefined,
        timeReal: undefined,
        thresholds: {},
      })
      assert.deepEqual(r.warnings, [])
    })
  })

  describe('action', function () {
    const ACTIONS: Array<[sent: string, expected: string]> = [
      ['no action', 'no action'],
      ['greylist', 'greylist'],
      ['add header', 'add header'],
      ['rewrite subject', 'rewrite subject'],
      ['soft reject', 'soft reject'],
      ['reject', 'reject'],
      ['REJECT', 'reject'],
      ['  Add Header  ', 'add header'],
      ['\tSoft Reject\n', 'soft reject'],
      ['discard', 'discard'],
    ]
    for (const [sent, expected] of ACTIONS) {
      it(`reads action ${JSON.stringify(sent)} as ${JSON.stringify(expected)}`, () => {
        assert.equal(ok(parseReply({ ...MINIMAL, action: sent })).reply.action, expected)
      })
    }
  })

  describe('errors', function () {
    const ERRORS: Array<[label: string, body: string, error: RegExp]> = [
      ['an empty body', '', /empty/],
      ['a body of whitespace', ' \r\n\t', /empty/],
      ['a body that is not JSON', '<html>502 Bad Gateway</html>', /not JSON/],
      ['truncated JSON', RSPAMD_REPLY.slice(0, 200), /not JSON/],
      ['a JSON array', '[{"action":"reject"}]', /not a JSON object/],
      ['JSON null', 'null', /not a JSON object/],
      ['a JSON string', '"reject"', /not a JSON object/],
      ['a JSON number', '42', /not a JSON object/],
      ['an rspamd error reply', '{"error":"Message has no body"}', /Message has no body/],
      ['an error reply with an action', '{"error":"boom","action":"reject"}', /boom/],
      ['no action', '{"score": 3}', /no action/],
      ['action: 42', '{"action": 42, "score": 3}', /no action/],
      ['action: null', '{"action": null}', /no action/],
      ['action: ""', '{"action": ""}', /no action/],
      ['action of spaces', '{"action": "   "}', /no action/],
      ['action as an object', '{"action": {"name": "reject"}}', /no action/],
      // it is logged and recorded: a line break in it would forge log lines
      ['an action with a line break inside', '{"action": "no action\\r\\n[ERROR] forged"}', /no action/],
      ['an action of NUL', '{"action": "\\u0000"}', /no action/],
      ['an action of 200 characters', JSON.stringify({ action: 'x'.repeat(200) }), /no action/],
    ]
    for (const [label, body, error] of ERRORS) {
      it(`returns an error, not a reply, for ${label}`, () => {
        const r = parseReplyBody(body)
        assert.equal(r.ok, false)
        if (!r.ok) assert.match(r.error, error)
      })
    }
  })

  describe('warnings and safe defaults', function () {
    const WARNINGS: Array<
      [label: string, extra: Record<string, unknown>, check: (r: Reply) => void, field: string]
    > = [
      ['score: "x"', { score: 'x' }, (r) => assert.equal(r.score, 0), 'score'],
      ['score: null', { score: null }, (r) => assert.equal(r.score, 0), 'score'],
      [
        'required_score: "15"',
        { required_score: '15' },
        (r) => assert.equal(r.requiredScore, undefined),
        'required_score',
      ],
      ['is_skipped: "yes"', { is_skipped: 'yes' }, (r) => assert.equal(r.isSkipped, false), 'is_skipped'],
      ['symbols: []', { symbols: [] }, (r) => assert.deepEqual(r.symbols, []), 'symbols'],
      ['symbols: "x"', { symbols: 'x' }, (r) => assert.deepEqual(r.symbols, []), 'symbols'],
      [
        'a symbol that is not an object',
        { symbols: { BAD: 5, GOOD: { name: 'GOOD', score: 1 } } },
        (r) =>
          assert.deepEqual(
            r.symbols.map((s) => s.name),
            ['GOOD'],
          ),
        'symbols.BAD',
      ],
      [
        'a symbol without a numeric score (dropped)',
        { symbols: { NOSCORE: { name: 'NOSCORE', score: '3' }, GOOD: { name: 'GOOD', score: 1 } } },
        (r) =>
          assert.deepEqual(
            r.symbols.map((s) => s.name),
            ['GOOD'],
          ),
        'symbols.NOSCORE.score',
      ],
      [
        'a symbol with no score at all (dropped)',
        { symbols: { NOSCORE: { name: 'NOSCORE' } } },
        (r) => assert.deepEqual(r.symbols, []),
        'symbols.NOSCORE.score',
      ],
      [
        'messages: 5',
        { messages: 5 },
        (r) => assert.deepEqual([r.messages, r.smtpMessage], [{}, undefined]),
        'messages',
      ],
      [
        'messages.smtp_message: 5',
        { messages: { smtp_message: 5, other: 'ok' } },
        (r) => assert.deepEqual([r.messages, r.smtpMessage], [{ other: 'ok' }, undefined]),
        'messages.smtp_message',
      ],
      ['subject: 7', { subject: 7 }, (r) => assert.equal(r.subject, undefined), 'subject'],
      [
        'milter: "x"',
        { milter: 'x' },
        (r) => assert.deepEqual(r.milter, { add: [], remove: [], addRcpt: [], delRcpt: [] }),
        'milter',
      ],
      [
        'milter: []',
        { milter: [] },
        (r) => assert.deepEqual(r.milter, { add: [], remove: [], addRcpt: [], delRcpt: [] }),
        'milter',
      ],
      [
        'milter.add_headers: "x"',
        { milter: { add_headers: 'x' } },
        (r) => assert.deepEqual(r.milter, { add: [], remove: [], addRcpt: [], delRcpt: [] }),
        'milter.add_headers',
      ],
      [
        'a milter header value of 5',
        { milter: { add_headers: { 'X-Bad': 5, 'X-Good': 'ok' } } },
        (r) => assert.deepEqual(r.milter.add, [{ name: 'X-Good', value: 'ok' }]),
        'milter.add_headers.X-Bad',
      ],
      [
        'a milter header {value: 5}',
        { milter: { add_headers: { 'X-Bad': { value: 5, order: 1 } } } },
        (r) => assert.deepEqual(r.milter.add, []),
        'milter.add_headers.X-Bad',
      ],
      [
        'milter.remove_headers: 1',
        { milter: { remove_headers: 1 } },
        (r) => assert.deepEqual(r.milter.remove, []),
        'milter.remove_headers',
      ],
      [
        'a milter remove count of "a"',
        { milter: { remove_headers: { 'X-Bad': 'a', 'X-Good': 0 } } },
        (r) => assert.deepEqual(r.milter.remove, [{ name: 'X-Good', positions: [0] }]),
        'milter.remove_headers.X-Bad',
      ],
      [
        'a milter remove position of 1.5 in a list (rspamd takes integers only)',
        { milter: { remove_headers: { 'X-List': [1, 1.5, -1, '2'], 'X-Empty': [] } } },
        (r) => assert.deepEqual(r.milter.remove, [{ name: 'X-List', positions: [1, -1] }]),
        'milter.remove_headers.X-List',
      ],
      [
        'dkim-signature: 5',
        { 'dkim-signature': 5 },
        (r) => assert.deepEqual(r.dkimSignatures, []),
        'dkim-signature',
      ],
      [
        'dkim-signature: ""',
        { 'dkim-signature': '' },
        (r) => assert.deepEqual(r.dkimSignatures, []),
        'dkim-signature',
      ],
      [
        'a dkim-signature array with a bad element',
        { 'dkim-signature': ['v=1; b=a', null, 'v=1; b=b'] },
        (r) => assert.deepEqual(r.dkimSignatures, ['v=1; b=a', 'v=1; b=b']),
        'dkim-signature',
      ],
    ]
    for (const [label, extra, check, field] of WARNINGS) {
      it(`warns about ${label} and keeps a safe default`, () => {
        const r = ok(parseReply({ ...MINIMAL, ...extra }))
        check(r.reply)
        assert.equal(r.reply.action, 'no action')
        assert.ok(
          r.warnings.some((w) => w.includes(field)),
          `no warning naming ${field}: ${JSON.stringify(r.warnings)}`,
        )
      })
    }

    it('drops a non-numeric threshold and a non-numeric time_real quietly', () => {
      const r = ok(parseReply({ ...MINIMAL, thresholds: { reject: 'x', greylist: 4 }, time_real: 'slow' }))
      assert.deepEqual(r.reply.thresholds, { greylist: 4 })
      assert.equal(r.reply.timeReal, undefined)
    })

    it('keeps only string options of a symbol', () => {
      const r = ok(parseReply({ ...MINIMAL, symbols: { S: { score: 1, options: ['a', 2, null, 'b'] } } }))
      assert.deepEqual(r.reply.symbols[0]?.options, ['a', 'b'])
    })

    it('names a hostile key in a warning without control characters and at a bounded length', () => {
      const evil = 'X\r\n[ERROR] forged log line\u0000'
      const r = ok(
        parseReply({
          ...MINIMAL,
          symbols: { [evil]: 'x', ['S'.repeat(5000)]: null },
          milter: { remove_headers: { [evil]: 'all' }, add_headers: { [evil]: 42 } },
          messages: { [evil]: 1 },
          score: 'a\u007fb\u2028c',
        }),
      )
      assert.equal(r.warnings.length, 6)
      for (const w of r.warnings) {
        // eslint-disable-next-line no-control-regex
        assert.ok(!/[\x00-\x1f\x7f\u2028\u2029]/.test(w), `control character in ${JSON.stringify(w)}`)
        assert.ok(w.length < 200, `warning of ${w.length} characters`)
        if (w.includes('forged')) assert.ok(w.includes('X\\u000d\\u000a[ERROR] forged log line\\u0000'), w)
      }
    })

    it('rejects Infinity-like scores as not numeric', () => {
      // JSON cannot carry Infinity, but a parsed object handed to parseReply can
      const r = ok(parseReply({ ...MINIMAL, score: Number.POSITIVE_INFINITY }))
      assert.equal(r.reply.score, 0)
      assert.ok(r.warnings.some((w) => w.includes('score')))
    })
  })
})
