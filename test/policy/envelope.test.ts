// src/policy/envelope.ts and the milter block's envelope fields of src/rspamd/reply.ts: rspamd's
// change_from, add_rcpt and del_rcpt read within caps, each address validated, the changes planned
// as rspamd's milter sends them (adds, then deletions), never leaving no recipient; and the
// switches this plugin does not apply (reject, no_action, spam_header) each named in a log line.

import assert from 'node:assert/strict'
import { parseReply, MAX_RCPT_ITEMS } from '../../src/rspamd/reply'
import {
  envelopeChanges,
  MAX_ADD_RCPT,
  parseAddress,
  type RcptEntry,
  unappliedSwitches,
} from '../../src/policy/envelope'

const ON = { milterEnvelope: { enabled: true } }
const OFF = { milterEnvelope: { enabled: false } }
const NOW = { from: 'sender@example.org', rcpts: ['alice@example.net', 'Bob@Example.NET'] }

function milterOf(milter: unknown) {
  const r = parseReply({ action: 'no action', score: 0, milter })
  assert.ok(r.ok)
  return { milter: r.reply.milter, warnings: r.warnings }
}

function changes(add: string[] = [], del: string[] = [], changeFrom?: string, now = NOW, cfg = ON) {
  return envelopeChanges({ addRcpt: add, delRcpt: del, changeFrom }, now, cfg)
}

/** The planned recipient list as addresses, for comparing. */
function listOf(rcpts: readonly RcptEntry[] | undefined, now = NOW): string[] | undefined {
  return rcpts?.map((e) => ('keep' in e ? (now.rcpts[e.keep] as string) : `+${e.add}`))
}

describe('milter envelope fields', function () {
  describe('parseReply()', function () {
    it('reads change_from, add_rcpt, del_rcpt, reject, no_action and spam_header', () => {
      const { milter, warnings } = milterOf({
        change_from: '<new@example.org>',
        add_rcpt: ['a@example.com', 'b@example.com'],
        del_rcpt: ['c@example.com'],
        reject: 'discard',
        no_action: true,
        spam_header: { 'X-Spam': 'yes' },
      })
      assert.deepEqual(warnings, [])
      assert.equal(milter.changeFrom, '<new@example.org>')
      assert.deepEqual(milter.addRcpt, ['a@example.com', 'b@example.com'])
      assert.deepEqual(milter.delRcpt, ['c@example.com'])
      assert.equal(milter.reject, 'discard')
      assert.equal(milter.noAction, true)
      assert.equal(milter.spamHeader, 'object')
      assert.equal(milterOf({ spam_header: 'Yes' }).milter.spamHeader, 'string')
    })

    const wrong: Array<[string, unknown, string]> = [
      ['change_from: 5', { change_from: 5 }, 'milter.change_from'],
      ['change_from: [..]', { change_from: ['a@b.c'] }, 'milter.change_from'],
      ['add_rcpt: "a@b.c"', { add_rcpt: 'a@b.c' }, 'milter.add_rcpt'],
      ['add_rcpt: {..}', { add_rcpt: { a: 'a@b.c' } }, 'milter.add_rcpt'],
      ['add_rcpt: [5]', { add_rcpt: [5] }, 'milter.add_rcpt'],
      ['del_rcpt: [null]', { del_rcpt: [null] }, 'milter.del_rcpt'],
      ['del_rcpt: true', { del_rcpt: true }, 'milter.del_rcpt'],
      ['reject: 1', { reject: 1 }, 'milter.reject'],
      ['no_action: "yes"', { no_action: 'yes' }, 'milter.no_action'],
      ['spam_header: 3', { spam_header: 3 }, 'milter.spam_header'],
      ['spam_header: [..]', { spam_header: ['x'] }, 'milter.spam_header'],
    ]
    for (const [what, milter, field] of wrong) {
      it(`warns naming ${field} for ${what}, and reads nothing of it`, () => {
        const r = milterOf(milter)
        assert.equal(r.warnings.length, 1, r.warnings.join('\n'))
        assert.ok(r.warnings[0]?.startsWith(`ignored ${field}:`), r.warnings[0])
        assert.deepEqual([r.milter.addRcpt, r.milter.delRcpt], [[], []])
        assert.equal(
          r.milter.changeFrom ?? r.milter.reject ?? r.milter.noAction ?? r.milter.spamHeader,
          undefined,
        )
      })
    }

    it(`reads 10⁵ add_rcpt entries as far as ${MAX_RCPT_ITEMS}, and counts the rest in one warning`, () => {
      const many = Array.from({ length: 100_000 }, (_, i) => `r${i}@example.com`)
      const t0 = performance.now()
      const r = milterOf({ add_rcpt: many, del_rcpt: many })
      const ms = performance.now() - t0
      assert.equal(r.milter.addRcpt.length, MAX_RCPT_ITEMS)
      assert.equal(r.milter.delRcpt.length, MAX_RCPT_ITEMS)
      assert.deepEqual(r.warnings, [
        `ignored ${100_000 - MAX_RCPT_ITEMS} more milter.add_rcpt entries: over ${MAX_RCPT_ITEMS}`,
        `ignored ${100_000 - MAX_RCPT_ITEMS} more milter.del_rcpt entries: over ${MAX_RCPT_ITEMS}`,
      ])
      assert.ok(ms < 500, `${ms} ms`)
    })

    it('lists at most 20 warnings for 10⁵ bad entries', () => {
      const r = milterOf({ add_rcpt: Array.from({ length: 100_000 }, () => 7) })
      assert.ok(r.warnings.length <= 22, String(r.warnings.length))
      assert.deepEqual(r.milter.addRcpt, [])
    })
  })

  describe('parseAddress()', function () {
    const good: Array<[string, string]> = [
      ['a@example.com', 'a@example.com'],
      ['<a@example.com>', 'a@example.com'],
      ['first.last+tag@sub.example.com', 'first.last+tag@sub.example.com'],
      ['"with space"@example.com', '"with space"@example.com'],
      ['user@[192.0.2.1]', 'user@[192.0.2.1]'],
      ['user@[IPv6:2001:db8::1]', 'user@[IPv6:2001:db8::1]'],
      ['jürgen@bücher.example', 'jürgen@bücher.example'],
    ]
    for (const [raw, address] of good) {
      it(`takes ${raw}`, () => assert.deepEqual(parseAddress(raw, false), { ok: true, address }))
    }
    const bad: Array<[string, string]> = [
      ['a@example.com\r\nRCPT TO:<evil@example.com>', 'control characters'],
      ['a@example.com\n', 'control characters'],
      ['a\u0085@example.com', 'control characters'],
      ['a\u2028@example.com', 'control characters'],
      ['a\ud800@example.com', 'control characters'],
      ['a\0@example.com', 'control characters'],
      ['<>', 'the null address'],
      ['', 'the null address'],
      ['@relay.example:a@example.com', 'a source route'],
      ['no-at-sign', 'not local@domain'],
      ['a@', 'not local@domain'],
      ['@example.com', 'a source route'],
      ['a b@example.com', 'a bad local part'],
      ['a..b@example.com', 'a bad local part'],
      ['.a@example.com', 'a bad local part'],
      ['"a\\"@example.com', 'a bad local part'],
      [`${'l'.repeat(65)}@example.com`, 'a bad local part'],
      ['a@exa mple.com', 'a bad domain'],
      ['a@-example.com', 'a bad domain'],
      ['a@example..com', 'a bad domain'],
      ['a@<example.com>', 'a bad domain'],
      ['a@[1.2.3.4', 'a bad domain'],
      [`a@${'d'.repeat(250)}.com`, 'over 256 octets'],
      [`a@${'x'.repeat(1_000_000)}`, 'over 256 octets'],
    ]
    for (const [raw, why] of bad) {
      it(`refuses ${JSON.stringify(raw.slice(0, 50))}: ${why}`, () =>
        assert.deepEqual(parseAddress(raw, false), { ok: false, why }))
    }
    it('takes the null sender where it is allowed', () => {
      assert.deepEqual(parseAddress('<>', true), { ok: true, address: '' })
      assert.deepEqual(parseAddress('', true), { ok: true, address: '' })
    })
  })

  describe('envelopeChanges()', function () {
    it('plans nothing when rspamd asks for nothing', () => {
      assert.deepEqual(changes(), { applied: [], refused: [] })
    })

    it('changes the sender, to the null sender too', () => {
      const p = changes([], [], '<new@example.org>')
      assert.equal(p.from, 'new@example.org')
      assert.equal(p.rcpts, undefined)
      assert.deepEqual(p.applied, ['milter.change_from: "sender@example.org" → "new@example.org"'])
      assert.equal(changes([], [], '<>').from, '')
    })

    it('does not count a change_from to the same sender as a change', () => {
      assert.deepEqual(changes([], [], 'sender@example.org'), { applied: [], refused: [] })
    })

    it('refuses a bad change_from, naming the field, escaped', () => {
      const p = changes([], [], 'x@example.org\r\nDATA')
      assert.equal(p.from, undefined)
      assert.deepEqual(p.refused, ['milter.change_from (control characters): "x@example.org\\r\\nDATA"'])
      assert.ok(!/[\r\n]/.test(p.refused.join('')))
    })

    it('adds recipients after the current ones, in the reply order', () => {
      const p = changes(['archive@example.org', '<copy@example.org>'])
      assert.deepEqual(listOf(p.rcpts), [
        'alice@example.net',
        'Bob@Example.NET',
        '+archive@example.org',
        '+copy@example.org',
      ])
      assert.deepEqual(p.applied, ['milter.add_rcpt: "archive@example.org", "copy@example.org"'])
    })

    it('removes recipients, matching the domain in any case and the local part as is', () => {
      const p = changes([], ['bob@example.net', 'alice@EXAMPLE.net'])
      assert.deepEqual(listOf(p.rcpts), ['Bob@Example.NET'])
      assert.deepEqual(p.refused, ['milter.del_rcpt (not a recipient): "bob@example.net"'])
      assert.deepEqual(p.applied, ['milter.del_rcpt: "alice@example.net"'])
    })

    it('applies the adds before the deletions, as rspamd milter sends them (an SRS-like rewrite)', () => {
      const p = changes(
        ['alice@relay.example.net', 'gone@example.org'],
        ['alice@example.net', 'gone@example.org'],
      )
      assert.deepEqual(listOf(p.rcpts), ['Bob@Example.NET', '+alice@relay.example.net'])
    })

    it('never leaves no recipient: every deletion is refused, the recipients stay', () => {
      const p = changes([], ['alice@example.net', 'Bob@example.net'])
      assert.equal(p.rcpts, undefined)
      assert.deepEqual(p.applied, [])
      assert.equal(p.refused.length, 1)
      assert.match(p.refused[0] as string, /^milter\.del_rcpt \(would leave no recipient/)
      // deleting everyone but a recipient rspamd added is a redirect, and is applied
      const q = changes(['quarantine@example.org'], ['alice@example.net', 'Bob@example.net'])
      assert.deepEqual(listOf(q.rcpts), ['+quarantine@example.org'])
    })

    it('adds no recipient twice, and drops bad ones with their reason', () => {
      const p = changes([
        'ALICE@example.net',
        'alice@Example.net',
        'x@example.org',
        'x@example.org',
        'bad address@example.org',
        'a@b.c\nRCPT TO:<evil@example.com>',
      ])
      assert.deepEqual(listOf(p.rcpts), [
        'alice@example.net',
        'Bob@Example.NET',
        '+ALICE@example.net',
        '+x@example.org',
      ])
      assert.deepEqual(p.refused, [
        'milter.add_rcpt (already a recipient): "alice@Example.net", "x@example.org"',
        'milter.add_rcpt (a bad local part): "bad address@example.org"',
        'milter.add_rcpt (control characters): "a@b.c\\nRCPT TO:<evil@example.com>"',
      ])
    })

    it(`adds at most ${MAX_ADD_RCPT} recipients of 10⁵ asked (as read, ${MAX_RCPT_ITEMS}), in a few lines`, () => {
      const { milter } = milterOf({
        add_rcpt: Array.from({ length: 100_000 }, (_, i) => `r${i}@example.com`),
      })
      const t0 = performance.now()
      const p = envelopeChanges(milter, NOW, ON)
      const ms = performance.now() - t0
      assert.equal(p.rcpts?.length, NOW.rcpts.length + MAX_ADD_RCPT)
      assert.deepEqual(p.refused, [
        `milter.add_rcpt: ${MAX_RCPT_ITEMS - MAX_ADD_RCPT} more over the limit of ${MAX_ADD_RCPT}`,
      ])
      assert.equal(p.applied.length, 1)
      assert.match(p.applied[0] as string, / and 95 more$/)
      assert.ok(ms < 200, `${ms} ms`)
    })

    it('deletes 1000 of 1000 + 1 recipients in one pass', () => {
      const rcpts = Array.from({ length: 1001 }, (_, i) => `r${i}@example.com`)
      const now = { from: '', rcpts }
      const p = envelopeChanges({ addRcpt: [], delRcpt: rcpts.slice(1) }, now, ON)
      assert.deepEqual(listOf(p.rcpts, now), ['r0@example.com'])
    })

    it('applies nothing with [milter_envelope] enabled = false, and says what was asked', () => {
      const p = changes(['a@example.org'], ['alice@example.net'], 'x@example.org', NOW, OFF)
      assert.equal(p.from, undefined)
      assert.equal(p.rcpts, undefined)
      assert.deepEqual(p.refused, [
        'milter.change_from, milter.add_rcpt (1), milter.del_rcpt (1): not applied ([milter_envelope] enabled = false)',
      ])
    })
  })

  describe('unappliedSwitches()', function () {
    it('names reject = discard / quarantine when the action is reject', () => {
      assert.deepEqual(unappliedSwitches({ reject: 'discard' }, 'reject'), [
        'milter.reject = discard: not applied, a reject is handled as [reject] says',
      ])
      assert.equal(unappliedSwitches({ reject: 'quarantine' }, 'reject').length, 1)
      // milter.c: another value keeps the reject, and the field only changes a reject
      assert.deepEqual(unappliedSwitches({ reject: 'reject' }, 'reject'), [])
      assert.deepEqual(unappliedSwitches({ reject: 'discard' }, 'add header'), [])
    })

    it('names no_action: true for any action but no action', () => {
      assert.deepEqual(unappliedSwitches({ noAction: true }, 'reject'), [
        'milter.no_action: not applied, rspamd\'s action "reject" is',
      ])
      assert.deepEqual(unappliedSwitches({ noAction: false }, 'reject'), [])
      assert.deepEqual(unappliedSwitches({ noAction: true }, 'no action'), [])
    })

    it('names spam_header for add header, the one action milter.c reads it for', () => {
      assert.deepEqual(unappliedSwitches({ spamHeader: 'string' }, 'add header'), [
        'milter.spam_header: not applied, the [spam_headers] styles write the verdict headers',
      ])
      assert.deepEqual(unappliedSwitches({ spamHeader: 'object' }, 'reject'), [])
    })
  })
})
