// The [subject] template is filled with the message's decoded Subject: the rewritten Subject must
// decode, once, to exactly that text — never decode a second time (src/message/subject.ts rewriteSubject).

import assert from 'node:assert/strict'
import { Header } from 'haraka-email-message'
import type { FixturePlugin } from 'haraka-test-fixtures'
import { prepareField } from '../../src/message/fold'
import { literalSubject, rewriteSubject } from '../../src/message/subject'
import { FakeRspamd } from '../support/fake-rspamd'
import { connectionWith, corpus, dataPost, loadPlugin, unregister } from '../support/harness'
import { replyFor } from '../support/replies'

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64')
/** A text that is itself an encoded-word: what a Subject encoded twice decodes to, once. */
const INNER = `=?UTF-8?B?${b64('FREE money')}?=`

/** What a reader shows: the Subject written as Haraka writes it, then decoded by Haraka's Header. */
function readerSees(value: string): string {
  const field = prepareField('Subject', value)
  assert.ok(field)
  const h = new Header()
  h.add_end(field.name, field.value)
  return h.get_decoded('Subject').replace(/\n[ \t]*/g, ' ')
}

describe('the subject template decodes once', function () {
  const cases: [string, string][] = [
    ['an encoded-word', INNER],
    ['an encoded-word between words', `Re: ${INNER} today`],
    ['two adjacent encoded-words (their space must survive)', `${INNER} ${INNER}`],
    ['an encoded-word inside a word', `x${INNER}y`],
    ['a Q encoded-word', '=?ISO-8859-1?Q?Gr=FC=DFe?='],
    ['non-ASCII words next to an encoded-word', `Grüße ${INNER} 抹茶`],
    ['a long run of encoded-words', Array.from({ length: 12 }, () => INNER).join(' ')],
    ['nothing that looks encoded', 'Lunch on Thursday?'],
    ['a lone =?', 'a =? b'],
  ]
  for (const [label, subject] of cases) {
    it(`a decoded Subject holding ${label} reads as it was`, () => {
      assert.equal(readerSees(rewriteSubject('[SPAM] %s', subject)), `[SPAM] ${subject}`)
    })
  }

  it("leaves rspamd's own subject (already encoded by rspamd) as it is", () => {
    const fromRspamd = `[SPAM] =?UTF-8?B?${b64('Grüße')}?=`
    assert.equal(rewriteSubject('[SPAM] %s', INNER, fromRspamd), fromRspamd)
    assert.equal(readerSees(fromRspamd), '[SPAM] Grüße')
  })

  it('leaves text without `=?` untouched (prepareField encodes it as any value)', () => {
    assert.equal(literalSubject('Grüße aus Köln'), 'Grüße aus Köln')
  })

  describe('through the plugin (a message whose Subject is encoded twice)', function () {
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

    it('writes a Subject that decodes to the template around the once-decoded text', async () => {
      const reply = replyFor('rewrite subject')
      delete (reply as { subject?: unknown }).subject
      server.setReply(reply)
      plugin = loadPlugin(`host = 127.0.0.1\nport = ${server.port}\nsubject = [SPAM] %s\n`)
      const message = corpus('ham.eml')
        .toString('latin1')
        .replace(/^Subject: .*$/m, `Subject: =?UTF-8?B?${b64(INNER)}?=`)
      const conn = await connectionWith(Buffer.from(message, 'latin1'))
      assert.equal(conn.transaction?.header.get_decoded('Subject').trim(), INNER)
      await dataPost(plugin, conn)
      const decoded = conn.transaction?.header
        .get_decoded('Subject')
        .replace(/\n[ \t]*/g, ' ')
        .trim()
      assert.equal(decoded, `[SPAM] ${INNER}`)
    })
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
