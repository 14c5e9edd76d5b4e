// rspamd's envelope changes through the plugin (haraka-test-fixtures, the fake rspamd): its
// change_from, add_rcpt and del_rcpt applied to the transaction with Haraka's own address class,
// bad addresses logged and dropped, never a transaction without recipients, [milter_envelope]
// enabled = false, and the milter switches this plugin does not apply named in the log.

import assert from 'node:assert/strict'
import type { Address as AddressClass } from '@haraka/email-address' with { 'resolution-mode': 'import' }
import type { FixturePlugin } from 'haraka-test-fixtures'
import { FakeRspamd } from './support/fake-rspamd'
import { replyFor, type RspamdMilterJson } from './support/replies'
import {
  captureLogs,
  connectionWith,
  corpus,
  dataPost,
  DENY,
  iniFor,
  loadPlugin,
  unregister,
} from './support/harness'

// The package's types describe its ES module build; a CommonJS file (as Haraka is, and as tsconfig's
// node16 resolution reads this one) gets its CommonJS build from require(), the same class Haraka uses.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Address } = require('@haraka/email-address') as { Address: typeof AddressClass }
type Address = AddressClass

describe('plugin: envelope changes of the milter block', function () {
  let fake: FakeRspamd
  let plugin: FixturePlugin | undefined
  before(async () => {
    fake = await FakeRspamd.start({ keepAliveMs: 1 })
  })
  after(async () => {
    await fake?.close()
  })
  afterEach(async () => {
    if (plugin) await unregister(plugin)
    plugin = undefined
  })

  /** Scan ham with rspamd answering `action` and `milter`; the transaction's envelope after, and the log. */
  async function scan(
    milter: RspamdMilterJson,
    opts: { ini?: string; action?: Parameters<typeof replyFor>[0]; haraka?: boolean } = {},
  ) {
    fake.setReply(replyFor(opts.action ?? 'no action', { milter }))
    plugin = loadPlugin(iniFor(fake, opts.ini ?? ''))
    const conn = await connectionWith(corpus('ham.eml'), { rcpts: ['alice@example.net', 'bob@example.net'] })
    const txn = conn.transaction as unknown as { mail_from: unknown; rcpt_to: unknown[] }
    if (opts.haraka !== false) {
      // the addresses as Haraka makes them from MAIL FROM and RCPT TO
      txn.mail_from = new Address('<sender@example.com>')
      txn.rcpt_to = ['<alice@example.net>', '<bob@example.net>'].map((a) => new Address(a))
    } else {
      // plain objects with the fields plugins read, not instances of Haraka's address class
      const plainAddress = (a: string) => ({ address: a, isNull: () => a === '' })
      txn.mail_from = plainAddress('sender@example.com')
      txn.rcpt_to = ['alice@example.net', 'bob@example.net'].map(plainAddress)
    }
    const logs = captureLogs(conn)
    const res = await dataPost(plugin, conn)
    const addr = (a: unknown) => (a as Address).address
    return {
      code: res.code,
      logs,
      from: txn.mail_from,
      rcpts: txn.rcpt_to,
      fromText: addr(txn.mail_from),
      rcptTexts: txn.rcpt_to.map(addr),
    }
  }

  it("applies change_from, add_rcpt and del_rcpt with Haraka's address class", async () => {
    const r = await scan({
      change_from: '<bounces@example.org>',
      add_rcpt: ['archive@example.org'],
      del_rcpt: ['bob@example.net'],
    })
    assert.equal(r.code, undefined)
    assert.equal(r.fromText, 'bounces@example.org')
    assert.deepEqual(r.rcptTexts, ['alice@example.net', 'archive@example.org'])
    assert.ok(r.from instanceof Address)
    for (const a of r.rcpts) assert.ok(a instanceof Address)
    assert.equal((r.rcpts[1] as Address).format(), '<archive@example.org>')
    const changed = r.logs.filter((l) => l.includes('envelope changed'))
    assert.deepEqual(changed, [
      'INFO envelope changed: milter.change_from: "sender@example.com" → "bounces@example.org"',
      'INFO envelope changed: milter.add_rcpt: "archive@example.org"',
      'INFO envelope changed: milter.del_rcpt: "bob@example.net"',
    ])
  })

  it('changes the sender to the null sender', async () => {
    const r = await scan({ change_from: '<>' })
    assert.equal((r.from as Address).isNull(), true)
  })

  it('drops bad addresses with a warning naming the field, escaped, and applies the rest', async () => {
    const r = await scan({
      change_from: 'evil@example.org\r\nRCPT TO:<x@example.com>',
      add_rcpt: ['ok@example.org', 'two words@example.org', 'a@b.c\nDATA'],
      del_rcpt: ['nobody@example.net'],
    })
    assert.equal(r.fromText, 'sender@example.com')
    assert.deepEqual(r.rcptTexts, ['alice@example.net', 'bob@example.net', 'ok@example.org'])
    const refused = r.logs.filter((l) => l.includes('envelope change refused'))
    assert.deepEqual(refused, [
      'WARN envelope change refused: milter.change_from (control characters): "evil@example.org\\r\\nRCPT TO:<x@example.com>"',
      'WARN envelope change refused: milter.add_rcpt (a bad local part): "two words@example.org"',
      'WARN envelope change refused: milter.add_rcpt (control characters): "a@b.c\\nDATA"',
      'WARN envelope change refused: milter.del_rcpt (not a recipient): "nobody@example.net"',
    ])
    for (const l of r.logs) assert.ok(!/[\r\n]/.test(l), l)
  })

  it('keeps the recipients when del_rcpt would remove every one', async () => {
    const r = await scan({ del_rcpt: ['alice@example.net', 'bob@example.net'] })
    assert.equal(r.code, undefined)
    assert.deepEqual(r.rcptTexts, ['alice@example.net', 'bob@example.net'])
    assert.ok(
      r.logs.some((l) =>
        /^WARN envelope change refused: milter\.del_rcpt \(would leave no recipient/.test(l),
      ),
    )
  })

  it('applies nothing with [milter_envelope] enabled = false, and says so', async () => {
    const r = await scan(
      { add_rcpt: ['archive@example.org'], del_rcpt: ['bob@example.net'] },
      { ini: '[milter_envelope]\nenabled = false' },
    )
    assert.deepEqual(r.rcptTexts, ['alice@example.net', 'bob@example.net'])
    assert.ok(
      r.logs.includes(
        'WARN envelope change refused: milter.add_rcpt (1), milter.del_rcpt (1): not applied ([milter_envelope] enabled = false)',
      ),
      r.logs.join('\n'),
    )
  })

  it('changes no envelope of a rejected message', async () => {
    const r = await scan({ add_rcpt: ['archive@example.org'] }, { action: 'reject' })
    assert.equal(r.code, DENY)
    assert.deepEqual(r.rcptTexts, ['alice@example.net', 'bob@example.net'])
  })

  it('refuses the changes, with a warning, when the transaction holds no address objects', async () => {
    const r = await scan({ add_rcpt: ['archive@example.org'] }, { haraka: false })
    assert.equal(r.rcpts.length, 2)
    assert.ok(
      r.logs.includes(
        "WARN envelope change refused: this Haraka's transaction has no address objects to copy",
      ),
    )
  })

  it('names reject = discard, no_action and spam_header in the log, and applies the action', async () => {
    const rej = await scan({ reject: 'discard', no_action: true }, { action: 'reject' })
    assert.equal(rej.code, DENY)
    assert.ok(
      rej.logs.includes('WARN milter.reject = discard: not applied, a reject is handled as [reject] says'),
    )
    assert.ok(rej.logs.includes('WARN milter.no_action: not applied, rspamd\'s action "reject" is'))
    const add = await scan({ spam_header: 'Yes' }, { action: 'add header' })
    assert.ok(
      add.logs.includes(
        'WARN milter.spam_header: not applied, the [spam_headers] styles write the verdict headers',
      ),
    )
  })
})
