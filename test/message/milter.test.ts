// src/message/milter.ts: rspamd's milter block within what it may do: protected and stacked headers,
// numbered removes, the caps on what a reply may add or remove.

import assert from 'node:assert/strict'

import { parseReply, type MilterAdd, type Reply } from '../../src/rspamd/reply'
import {
  instancesAt,
  MAX_ADDS,
  MAX_ADDS_PER_NAME,
  milterEdits,
  PROTECTED_HEADERS,
  STACKED_HEADERS,
} from '../../src/message/milter'

describe('milter', function () {
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
    const milter = (adds: MilterAdd[], removes: string[] = []): Parameters<typeof milterEdits>[0] => ({
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
