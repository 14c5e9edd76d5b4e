// Header names as RFC 5322 reads them (src/message/fields.ts): the one rule by which the plugin (Haraka's
// real Header and transaction) and rspamd-lda remove fields, including `Name : value` (§4.5.8);
// and at most one of each field §3.6 allows once after all edits.

import assert from 'node:assert/strict'
import { Readable, Writable } from 'node:stream'
import { Header } from 'haraka-email-message'
import type { FixturePlugin } from 'haraka-test-fixtures'
import { fieldNameOf, SINGLE_FIELDS } from '../../src/message/fields'
import { run, withoutFields } from '../../src/lda'
import { parseReply } from '../../src/rspamd/reply'
import { parseConfig } from '../../src/config'
import { decide } from '../../src/policy/verdict'
import {
  connectionWith,
  corpus,
  dataPost,
  headerBlock,
  loadPlugin,
  queuedMessage,
  unregister,
} from '../support/harness'
import { FakeRspamd } from '../support/fake-rspamd'
import { replyFor, type RspamdReplyJson } from '../support/replies'

/** [line, the name it carries (lower case), whether in the obsolete `Name :` form]; undefined: no field. */
const NAME_TABLE: [string, string | undefined, boolean?][] = [
  ['X-Spam: yes', 'x-spam', false],
  ['x-spam:yes', 'x-spam', false],
  ['X-SPAM:  yes', 'x-spam', false],
  ['X-Spam : yes', 'x-spam', true],
  ['X-Rspamd-Score\t: -50', 'x-rspamd-score', true],
  ['X-Spam \t : yes', 'x-spam', true],
  ['X-Spam:', 'x-spam', false],
  ['X-Spam: yes\n folded on', 'x-spam', false],
  [' X-Spam: yes', undefined],
  ['\tX-Spam: yes', undefined],
  ['X Spam: yes', undefined],
  ['X-Spam\v: yes', undefined],
  ['X-Spam\u00a0: yes', undefined],
  ['X-Späm: yes', undefined],
  ['X-Spam yes', undefined],
  [': yes', undefined],
  ['', undefined],
]

describe('fieldNameOf(): the header-name rule', function () {
  for (const [line, lower, obsolete] of NAME_TABLE) {
    it(`${JSON.stringify(line)} → ${lower === undefined ? 'no field' : `${lower}${obsolete ? ' (obsolete form)' : ''}`}`, () => {
      const got = fieldNameOf(line)
      if (lower === undefined) assert.equal(got, undefined)
      else assert.deepEqual(got, { lower, obsolete })
    })
  }

  it('lists the fields RFC 5322 §3.6 allows once', () => {
    assert.deepEqual([...SINGLE_FIELDS].sort(), [
      'bcc',
      'cc',
      'date',
      'from',
      'in-reply-to',
      'message-id',
      'references',
      'reply-to',
      'sender',
      'subject',
      'to',
    ])
  })
})

describe("Haraka's Header and `Name : value` (what the rule is needed for)", function () {
  it('keeps such a line in header_list, parses no value for it, and remove() leaves it', () => {
    const h = new Header()
    h.parse(['X-Spam : yes\n', 'X-Spam: no\n', 'Subject: hi\n'])
    assert.deepEqual(
      h.get_all('X-Spam').map((v) => v.trim()),
      ['no'],
    )
    assert.equal(h.header_list.length, 3)
    h.remove('X-Spam')
    assert.deepEqual(h.header_list, ['X-Spam : yes\n', 'Subject: hi\n'])
  })
})

/** Forged verdict headers in every spelling a reader takes for the name, and fields that must stay. */
const FORGED_LINES = [
  'X-Spam : FORGED-1',
  'X-Rspamd-Score\t: FORGED-2',
  'x-spam-score :FORGED-3',
  'X-SPAMD-RESULT \t : FORGED-4',
  'X-Rspamd-Bar:FORGED-5',
]
const KEPT_LINES = ['X-Other : kept-1', 'X-Spam-Other: kept-2', 'X Spam: kept-3']

function forgedMessage(extra: string[] = []): Buffer {
  const head = [...FORGED_LINES, ...KEPT_LINES, ...extra].map((l) => `${l}\r\n`).join('')
  return Buffer.concat([Buffer.from(head), corpus('ham.eml')])
}

async function ldaOutput(message: Buffer, server: FakeRspamd, args: string[] = []): Promise<string> {
  const out: Buffer[] = []
  const code = await run(
    ['--server', `127.0.0.1:${server.port}`, '--styles', 'rspamd,exim,extended', ...args],
    {
      stdin: Readable.from([message]),
      stdout: new Writable({
        write(chunk: Buffer, _enc, cb) {
          out.push(Buffer.from(chunk))
          cb()
        },
      }),
      stderr: new Writable({ write: (_c, _e, cb) => cb() }),
      env: {},
    },
  )
  assert.equal(code, 0)
  return Buffer.concat(out).toString('utf8')
}

describe('forged verdict headers written `Name : value` are removed (plugin and rspamd-lda alike)', function () {
  let server: FakeRspamd
  let plugin: FixturePlugin | undefined
  before(async () => {
    server = await FakeRspamd.start()
  })
  after(async () => {
    await server.close()
  })
  afterEach(async () => {
    if (plugin) await unregister(plugin)
    plugin = undefined
  })

  async function pluginOutput(message: Buffer, ini = ''): Promise<string> {
    plugin = loadPlugin(`host = 127.0.0.1\nport = ${server.port}\n${ini}\n`)
    const conn = await connectionWith(message)
    await dataPost(plugin, conn)
    return (await queuedMessage(conn)).toString('utf8')
  }

  for (const action of ['add header', 'no action'] as const) {
    it(`by the plugin through Haraka's real transaction (remove_foreign, ${action})`, async () => {
      server.setReply(replyFor(action))
      const out = headerBlock(Buffer.from(await pluginOutput(forgedMessage(), 'add_headers = always')))
      assert.doesNotMatch(out, /FORGED/)
      for (const kept of ['kept-1', 'kept-2', 'kept-3']) assert.match(out, new RegExp(kept))
      assert.match(out, /^X-Rspamd-Score: /m, 'ours is written')
    })
  }

  it('by rspamd-lda', async () => {
    server.setReply(replyFor('add header'))
    const out = headerBlock(Buffer.from(await ldaOutput(forgedMessage(), server)))
    assert.doesNotMatch(out, /FORGED/)
    for (const kept of ['kept-1', 'kept-2', 'kept-3']) assert.match(out, new RegExp(kept))
  })

  it("rspamd's numbered removals count `Name:` fields only, as rspamd does, in both", async () => {
    const reply = replyFor('no action', { milter: { remove_headers: { 'X-Foo': 1 } } })
    server.setReply(reply)
    const message = Buffer.concat([
      Buffer.from('X-Foo : obsolete\r\nX-Foo: first\r\nX-Foo: second\r\n'),
      corpus('ham.eml'),
    ])
    const fromPlugin = headerBlock(Buffer.from(await pluginOutput(message)))
    const fromLda = headerBlock(Buffer.from(await ldaOutput(message, server)))
    for (const out of [fromPlugin, fromLda]) {
      assert.doesNotMatch(out, /first/)
      assert.match(out, /X-Foo : obsolete/)
      assert.match(out, /X-Foo: second/)
    }
  })

  it("rspamd's removal of every instance (0) takes the `Name :` ones too, in both", async () => {
    server.setReply(replyFor('no action', { milter: { remove_headers: { 'X-Foo': 0 } } }))
    const message = Buffer.concat([Buffer.from('X-Foo : GONE-1\r\nx-foo: GONE-2\r\n'), corpus('ham.eml')])
    for (const out of [
      headerBlock(Buffer.from(await pluginOutput(message))),
      headerBlock(Buffer.from(await ldaOutput(message, server))),
    ]) {
      assert.doesNotMatch(out, /GONE/)
    }
  })

  it('withoutFields() drops by the same rule', () => {
    const head = Buffer.from(
      [...FORGED_LINES, ...KEPT_LINES, 'X-Spam: plain', ' continued FORGED-7', 'Subject: s'].join('\n') +
        '\n',
    )
    const names = new Set([
      'x-spam',
      'x-rspamd-score',
      'x-spam-score',
      'x-spamd-result',
      'x-rspamd-bar',
      'x-spam-status',
    ])
    const out = withoutFields(head, names).toString('latin1')
    assert.equal(out, `${KEPT_LINES.join('\n')}\nSubject: s\n`)
  })
})

describe('at most one of each field RFC 5322 §3.6 allows once', function () {
  const cfg = parseConfig({}, {})

  function editsFor(json: RspamdReplyJson) {
    const parsed = parseReply(json)
    assert.ok(parsed.ok)
    const v = decide(parsed.reply, cfg, { authenticated: false, subject: 'Lunch' })
    assert.ok(v.kind === 'accept' || v.kind === 'ok')
    return v.edits
  }

  it('our rewritten Subject wins over a Subject in milter.add_headers, which is dropped and reported', () => {
    const edits = editsFor(
      replyFor('rewrite subject', {
        milter: { add_headers: { Subject: ['from rspamd 1', 'from rspamd 2'] } },
      }),
    )
    const subjects = edits.add.filter((f) => f.name.toLowerCase() === 'subject')
    assert.equal(subjects.length, 1)
    assert.equal(subjects[0]?.value, '*** SPAM *** Lunch on Thursday?')
    assert.ok(
      edits.dropped.some((d) => /2 more subject/i.test(d)),
      JSON.stringify(edits.dropped),
    )
    assert.ok(
      edits.remove.some((n) => n.toLowerCase() === 'subject'),
      "the message's own goes",
    )
  })

  it("without a rewrite, rspamd's first Subject replaces the message's, the others are dropped", () => {
    const edits = editsFor(replyFor('add header', { milter: { add_headers: { subject: ['one', 'two'] } } }))
    assert.deepEqual(
      edits.add.filter((f) => f.name.toLowerCase() === 'subject').map((f) => f.value),
      ['one'],
    )
    assert.ok(edits.dropped.some((d) => /1 more subject/i.test(d)))
  })

  describe('through the plugin and rspamd-lda', function () {
    let server: FakeRspamd
    let plugin: FixturePlugin | undefined
    before(async () => {
      server = await FakeRspamd.start()
    })
    after(async () => {
      await server.close()
    })
    afterEach(async () => {
      if (plugin) await unregister(plugin)
      plugin = undefined
    })

    it('the plugin writes one Subject for rewrite subject + a milter Subject', async () => {
      server.setReply(
        replyFor('rewrite subject', { milter: { add_headers: { Subject: ['rspamd 1', 'rspamd 2'] } } }),
      )
      plugin = loadPlugin(`host = 127.0.0.1\nport = ${server.port}\n`)
      const conn = await connectionWith(corpus('ham.eml'))
      await dataPost(plugin, conn)
      const head = headerBlock(await queuedMessage(conn))
      assert.deepEqual(head.match(/^subject[ \t]*:.*$/gim), ['Subject: *** SPAM *** Lunch on Thursday?'])
    })

    it('rspamd-lda writes one Subject for several milter Subjects', async () => {
      server.setReply(
        replyFor('add header', { milter: { add_headers: { Subject: ['rspamd 1', 'rspamd 2'] } } }),
      )
      const head = headerBlock(Buffer.from(await ldaOutput(corpus('ham.eml'), server)))
      assert.deepEqual(head.match(/^subject[ \t]*:.*$/gim), ['Subject: rspamd 1'])
    })
  })
})
