// src/policy/verdict.ts: Reply + Config + sender facts → Verdict. Every action × every flag that changes the
// answer or the header edits, each expectation from a small rule written out here, and the [defer]
// policy for every kind of failed scan.

import assert from 'node:assert/strict'
import {
  type AddHeaders,
  type Config,
  HEADER_STYLES,
  type HeaderStyle,
  parseConfig,
  QUARANTINE_ACTIONS,
  type QuarantineAction,
} from '../../src/config'
import { verdictHeaderNames } from '../../src/message/styles'
import type { Reply } from '../../src/rspamd/reply'
import type { ScanErrorKind } from '../../src/errors'
import {
  decide,
  finalAction,
  isKnownAction,
  localAction,
  onFailure,
  queuePluginProblem,
  smtpText,
  type Verdict,
} from '../../src/policy/verdict'

const BASE = parseConfig({}, {})

const KNOWN_ACTIONS = [
  'no action',
  'greylist',
  'add header',
  'rewrite subject',
  'soft reject',
  'reject',
  'discard',
  'quarantine',
]
/** with one action rspamd 3.4 does not have: treated as no action */
const ACTIONS = [...KNOWN_ACTIONS, 'spam trap']

const RSPAMD_SMTP_MESSAGE = 'Spam message rejected by rspamd'
const RSPAMD_SUBJECT = '*** SPAM *** Lunch on Thursday?'
const OLD_SUBJECT = 'Lunch on Thursday?'
const DKIM = 'v=1; a=rsa-sha256; d=example.org; s=dkim; b=Yq3Q1qJ3Kpo6vQ0p'
const MILTER_ADD = { name: 'X-Virus', value: 'no' }
const MILTER_REMOVED = 'X-Spamd-Bar'

interface Flags {
  rejectSpam: boolean
  rejectAuthenticated: boolean
  softReject: boolean
  rewriteSubject: boolean
  addHeaders: AddHeaders
  smtpMessage: boolean
  dkim: boolean
  rmilter: boolean
  quarantine: QuarantineAction
}

const DEFAULT_FLAGS: Flags = {
  rejectSpam: true,
  rejectAuthenticated: false,
  softReject: true,
  rewriteSubject: true,
  addHeaders: 'sometimes',
  smtpMessage: true,
  dkim: true,
  rmilter: true,
  quarantine: 'queue',
}

function cfgFor(f: Partial<Flags>): Config {
  const flags = { ...DEFAULT_FLAGS, ...f }
  return {
    ...BASE,
    addHeaders: flags.addHeaders,
    reject: { ...BASE.reject, spam: flags.rejectSpam, authenticated: flags.rejectAuthenticated },
    softReject: { ...BASE.softReject, enabled: flags.softReject },
    rewriteSubject: { enabled: flags.rewriteSubject },
    smtpMessage: { enabled: flags.smtpMessage },
    dkim: { enabled: flags.dkim },
    rmilterHeaders: { enabled: flags.rmilter },
    quarantine: { action: flags.quarantine },
  }
}

function replyFor(action: string, extra: Partial<Reply> = {}): Reply {
  return {
    action,
    score: 7.3,
    requiredScore: 15,
    isSkipped: false,
    symbols: [
      { name: 'BAYES_SPAM', score: 5.1, metricScore: 5.1, options: ['99.00%'] },
      { name: 'R_SPF_FAIL', score: 2.2, options: [] },
    ],
    messages: {},
    milter: { add: [], remove: [], addRcpt: [], delRcpt: [] },
    dkimSignatures: [],
    thresholds: {},
    ...extra,
  }
}

/** A reply carrying everything that can turn into a header edit. */
function fullReply(action: string, smtpMessage?: string): Reply {
  return replyFor(action, {
    messages: smtpMessage === undefined ? {} : { smtp_message: smtpMessage },
    smtpMessage,
    subject: RSPAMD_SUBJECT,
    milter: {
      add: [MILTER_ADD],
      remove: [{ name: MILTER_REMOVED, positions: [0] }],
      addRcpt: [],
      delRcpt: [],
    },
    dkimSignatures: [DKIM],
  })
}

function unfold(v: string): string {
  return v.replace(/\r?\n[ \t]+/g, ' ')
}

function accepted(v: Verdict): Extract<Verdict, { kind: 'accept' }> {
  if (v.kind !== 'accept') assert.fail(`expected accept, got ${v.kind} ${JSON.stringify(v)}`)
  return v
}

function names(list: string[]): string[] {
  return list.map((n) => n.toLowerCase())
}

function describeFlags(f: Partial<Flags>): string {
  return Object.entries(f)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(' ')
}

// ---- the independent rules the matrix is checked against ----

/**
 * SPEC §4: reject → 550 when the sender's [reject] flag says so; soft reject → 451 unless disabled;
 * discard → discard for every sender; quarantine → what [quarantine] action names (queue: quarantine).
 */
function expectedKind(action: string, f: Flags, authenticated: boolean): Verdict['kind'] {
  if (action === 'discard') return 'discard'
  if (action === 'quarantine') {
    const byAction = { queue: 'quarantine', reject: 'deny', soft_reject: 'defer', accept: 'accept' } as const
    return byAction[f.quarantine]
  }
  if (action === 'reject' && (authenticated ? f.rejectAuthenticated : f.rejectSpam)) return 'deny'
  if (action === 'soft reject' && f.softReject) return 'defer'
  return 'accept'
}

/** rspamd's smtp_message when enabled and sent, else the [reject] / [soft_reject] message. */
function expectedMessage(kind: 'deny' | 'defer', f: Flags, rspamdMessage: string | undefined): string {
  if (f.smtpMessage && rspamdMessage !== undefined) return rspamdMessage
  return kind === 'deny' ? BASE.reject.message : BASE.softReject.message
}

/** add_headers: always; never; sometimes = rspamd said add header, or a reject was let through. */
function expectSpamHeaders(action: string, f: Flags): boolean {
  if (f.addHeaders === 'always') return true
  if (f.addHeaders === 'never') return false
  return action === 'add header' || action === 'reject' || action === 'quarantine'
}

const SPAM_HEADERS = [BASE.header.bar, BASE.header.report, BASE.header.score]

describe('verdict', function () {
  describe('decide(): kind, code, status and message', function () {
    const BOOLS = [true, false]
    for (const action of ACTIONS) {
      for (const authenticated of BOOLS) {
        for (const rejectSpam of BOOLS) {
          for (const rejectAuthenticated of BOOLS) {
            for (const softReject of BOOLS) {
              const f: Flags = { ...DEFAULT_FLAGS, rejectSpam, rejectAuthenticated, softReject }
              const kind = expectedKind(action, f, authenticated)
              const who = authenticated ? 'an authenticated' : 'an unauthenticated'
              const flags = `reject.spam=${rejectSpam} reject.authenticated=${rejectAuthenticated} soft_reject.enabled=${softReject}`
              const what =
                kind === 'deny'
                  ? 'denies with 550 5.7.1'
                  : kind === 'defer'
                    ? 'defers with 451 4.7.1'
                    : kind === 'accept'
                      ? 'accepts'
                      : `answers ${kind}`
              it(`${what} "${action}" from ${who} sender with ${flags}`, () => {
                const v = decide(fullReply(action), cfgFor(f), { authenticated, subject: OLD_SUBJECT })
                assert.equal(v.kind, kind)
                if (v.kind === 'deny') {
                  assert.equal(v.code, 550)
                  assert.equal(v.status, '5.7.1')
                  assert.equal(v.message, BASE.reject.message)
                }
                if (v.kind === 'defer') {
                  assert.equal(v.code, 451)
                  assert.equal(v.status, '4.7.1')
                  assert.equal(v.message, BASE.softReject.message)
                  assert.equal(v.reason, 'soft reject')
                }
              })
            }
          }
        }
      }
    }
  })

  describe('decide(): the SMTP reply text', function () {
    for (const action of ['reject', 'soft reject']) {
      for (const smtpMessage of [true, false]) {
        for (const rspamdMessage of [RSPAMD_SMTP_MESSAGE, undefined]) {
          const f: Flags = { ...DEFAULT_FLAGS, smtpMessage }
          const kind = expectedKind(action, f, false)
          if (kind !== 'deny' && kind !== 'defer') continue
          const expected = expectedMessage(kind, f, rspamdMessage)
          const sent = rspamdMessage === undefined ? 'no smtp_message' : 'an smtp_message'
          it(`answers "${action}" with ${JSON.stringify(expected)} when rspamd sends ${sent} and smtp_message.enabled=${smtpMessage}`, () => {
            const v = decide(fullReply(action, rspamdMessage), cfgFor(f), { authenticated: false })
            assert.equal(v.kind, kind as Verdict['kind'])
            if (v.kind === 'deny' || v.kind === 'defer') assert.equal(v.message, expected)
          })
        }
      }
    }

    const CUSTOM: Array<[label: string, ini: Record<string, unknown>, action: string, expected: string]> = [
      [
        '[reject] message',
        { reject: { message: 'Go away' }, smtp_message: { enabled: false } },
        'reject',
        'Go away',
      ],
      [
        '[soft_reject] message',
        { soft_reject: { message: 'Later' }, smtp_message: { enabled: false } },
        'soft reject',
        'Later',
      ],
    ]
    for (const [label, ini, action, expected] of CUSTOM) {
      it(`answers "${action}" with the configured ${label}`, () => {
        const v = decide(fullReply(action, RSPAMD_SMTP_MESSAGE), parseConfig(ini, {}), {
          authenticated: false,
        })
        assert.ok(v.kind === 'deny' || v.kind === 'defer', v.kind)
        if (v.kind === 'deny' || v.kind === 'defer') assert.equal(v.message, expected)
      })
    }

    const HOSTILE: Array<[label: string, sent: string, expected: string]> = [
      ['CR LF inside', 'Spam\r\n250 OK', 'Spam 250 OK'],
      ['a bare LF', 'Spam\nrejected', 'Spam rejected'],
      ['NUL and other controls', 'Spam\0\x1brejected', 'Spam rejected'],
      ['surrounding whitespace', '  Spam  \r\n', 'Spam'],
      ['only CR LF (falls back to the configured text)', '\r\n', BASE.reject.message],
      ['an empty string (falls back to the configured text)', '', BASE.reject.message],
    ]
    for (const [label, sent, expected] of HOSTILE) {
      it(`sanitises rspamd's smtp_message with ${label}`, () => {
        const v = decide(fullReply('reject', sent), cfgFor({}), { authenticated: false })
        assert.equal(v.kind, 'deny')
        if (v.kind === 'deny') assert.equal(v.message, expected)
      })
    }

    it('cuts an overlong smtp_message to one SMTP reply line', () => {
      const v = decide(fullReply('reject', 'x'.repeat(5000)), cfgFor({}), { authenticated: false })
      assert.equal(v.kind, 'deny')
      if (v.kind === 'deny') {
        assert.ok(v.message.length <= 400, `length ${v.message.length}`)
        assert.ok(v.message.startsWith('xxx'))
      }
    })
  })

  describe('decide(): header edits when the message is accepted', function () {
    const ADD_HEADERS: AddHeaders[] = ['always', 'never', 'sometimes']
    // discard writes nothing (tested below); quarantine with [quarantine] action = accept is delivered
    for (const action of ACTIONS.filter((a) => a !== 'discard')) {
      for (const addHeaders of ADD_HEADERS) {
        for (const rewriteSubject of [true, false]) {
          for (const dkim of [true, false]) {
            for (const rmilter of [true, false]) {
              // let reject and soft reject through so every action ends in accept
              const f: Flags = {
                ...DEFAULT_FLAGS,
                rejectSpam: false,
                softReject: false,
                quarantine: 'accept',
                addHeaders,
                rewriteSubject,
                dkim,
                rmilter,
              }
              const spam = expectSpamHeaders(action, f)
              const subject = rewriteSubject && action === 'rewrite subject'
              const parts = [
                spam ? 'adds X-Rspamd-*' : 'no X-Rspamd-*',
                subject ? 'rewrites Subject' : 'keeps Subject',
                dkim ? 'adds DKIM-Signature' : 'no DKIM-Signature',
                rmilter ? 'applies milter' : 'ignores milter',
              ]
              const label = describeFlags({ addHeaders, rewriteSubject, dkim, rmilter })
              it(`accepts "${action}" with ${label}: ${parts.join(', ')}`, () => {
                const v = accepted(
                  decide(fullReply(action), cfgFor(f), { authenticated: false, subject: OLD_SUBJECT }),
                )
                const added = v.edits.add.map((h) => h.name.toLowerCase())
                const removed = names(v.edits.remove)

                for (const h of SPAM_HEADERS) {
                  assert.equal(added.includes(h.toLowerCase()), spam, `${h} added`)
                  // written or not, [spam_headers] remove_foreign (on by default) removes forged ones
                  assert.ok(removed.includes(h.toLowerCase()), `${h} removed first`)
                }

                const subjects = v.edits.add.filter((h) => h.name.toLowerCase() === 'subject')
                assert.equal(subjects.length, subject ? 1 : 0, 'Subject fields')
                if (subject) {
                  assert.equal(unfold(subjects[0]?.value ?? ''), RSPAMD_SUBJECT)
                  assert.ok(removed.includes('subject'), 'old Subject removed')
                } else assert.ok(!removed.includes('subject'), 'Subject removed without a rewrite')

                const sigs = v.edits.add.filter((h) => h.name.toLowerCase() === 'dkim-signature')
                assert.deepEqual(
                  sigs.map((h) => unfold(h.value)),
                  dkim ? [DKIM] : [],
                )
                assert.ok(!removed.includes('dkim-signature'), 'existing DKIM signatures are kept')

                const virus = v.edits.add.filter(
                  (h) => h.name.toLowerCase() === MILTER_ADD.name.toLowerCase(),
                )
                assert.deepEqual(
                  virus.map((h) => h.value),
                  rmilter ? [MILTER_ADD.value] : [],
                )
                assert.equal(
                  removed.includes(MILTER_REMOVED.toLowerCase()),
                  rmilter,
                  `${MILTER_REMOVED} removed`,
                )
                assert.equal(
                  removed.includes(MILTER_ADD.name.toLowerCase()),
                  rmilter,
                  `${MILTER_ADD.name} removed first`,
                )

                // nothing else is added
                const expectedCount = (spam ? 3 : 0) + (subject ? 1 : 0) + (dkim ? 1 : 0) + (rmilter ? 1 : 0)
                assert.equal(v.edits.add.length, expectedCount, JSON.stringify(v.edits.add))
                assert.deepEqual(v.edits.dropped, [])
              })
            }
          }
        }
      }
    }

    it('adds nothing and removes nothing for "no action" with the defaults and a plain reply', () => {
      const cfg = { ...BASE, spamHeaders: { ...BASE.spamHeaders, removeForeign: false } }
      const v = accepted(decide(replyFor('no action'), cfg, { authenticated: false, subject: OLD_SUBJECT }))
      assert.deepEqual(v.edits, { remove: [], removeAt: [], add: [], dropped: [] })
    })

    it('with the defaults (remove_foreign on) only removes forged verdict headers for "no action"', () => {
      const v = accepted(decide(replyFor('no action'), BASE, { authenticated: false, subject: OLD_SUBJECT }))
      assert.deepEqual(v.edits.add, [])
      assert.deepEqual(v.edits.remove, verdictHeaderNames(BASE))
    })

    it('writes the score into the score header and the symbols into the report', () => {
      const v = accepted(decide(replyFor('add header'), BASE, { authenticated: false }))
      const get = (n: string) => unfold(v.edits.add.find((h) => h.name === n)?.value ?? '')
      assert.match(get(BASE.header.score), /7\.3/)
      assert.match(get(BASE.header.report), /BAYES_SPAM/)
      assert.match(get(BASE.header.report), /R_SPF_FAIL/)
      assert.match(get(BASE.header.bar), /^\++$/)
    })

    it('leaves out a spam header whose [header] name is empty', () => {
      const cfg = parseConfig({ main: { add_headers: 'always' }, header: { bar: '' } }, {})
      const v = accepted(decide(replyFor('no action'), cfg, { authenticated: false }))
      const added = v.edits.add.map((h) => h.name)
      assert.deepEqual(added.sort(), ['X-Rspamd-Report', 'X-Rspamd-Score'])
    })

    it('uses the configured [header] names', () => {
      const cfg = parseConfig(
        {
          main: { add_headers: 'always' },
          header: { bar: 'X-Spam-Bar', report: 'X-Spam-Report', score: 'X-Spam-Score' },
        },
        {},
      )
      const v = accepted(decide(replyFor('no action'), cfg, { authenticated: false }))
      assert.deepEqual(v.edits.add.map((h) => h.name).sort(), ['X-Spam-Bar', 'X-Spam-Report', 'X-Spam-Score'])
      assert.deepEqual(names(v.edits.remove).sort(), names(verdictHeaderNames(cfg)).sort())
      assert.ok(names(v.edits.remove).includes('x-spam-bar'))
      assert.ok(!names(v.edits.remove).includes('x-rspamd-bar'))
    })

    it('adds every DKIM-Signature rspamd sends, in order', () => {
      const second = 'v=1; a=rsa-sha256; d=example.net; s=s2; b=abc'
      const v = accepted(
        decide(replyFor('no action', { dkimSignatures: [DKIM, second] }), BASE, { authenticated: false }),
      )
      assert.deepEqual(
        v.edits.add.filter((h) => h.name === 'DKIM-Signature').map((h) => unfold(h.value)),
        [DKIM, second],
      )
    })

    it('drops a milter header with an invalid name and says so', () => {
      const reply = replyFor('no action', {
        milter: { add: [{ name: 'X Bad', value: 'v' }, MILTER_ADD], remove: [], addRcpt: [], delRcpt: [] },
      })
      const v = accepted(decide(reply, BASE, { authenticated: false }))
      assert.deepEqual(
        v.edits.add.map((h) => h.name),
        [MILTER_ADD.name],
      )
      assert.ok(v.edits.dropped.length >= 1)
      assert.ok(
        v.edits.dropped.some((d) => d.includes('X Bad')),
        JSON.stringify(v.edits.dropped),
      )
    })

    it('never leaves CR, LF or NUL in an added value', () => {
      const reply = replyFor('rewrite subject', {
        subject: 'Hi\r\nBcc: victim@example.com',
        milter: {
          add: [{ name: 'X-Evil', value: 'a\r\nX-Injected: 1\0' }],
          remove: [],
          addRcpt: [],
          delRcpt: [],
        },
      })
      const v = accepted(decide(reply, BASE, { authenticated: false }))
      assert.ok(v.edits.add.length >= 2)
      for (const h of v.edits.add)
        assert.doesNotMatch(unfold(h.value), /[\r\n\0]/, `${h.name}: ${JSON.stringify(h.value)}`)
    })
  })

  describe('decide(): [spam_headers] styles', function () {
    // remove_foreign=false here: what the styles themselves remove (the names they write)
    const ALL = {
      ...BASE,
      spamHeaders: { styles: HEADER_STYLES.slice(), ldaJson: true, removeForeign: false },
    }
    const STYLE_NAMES = [
      'X-Rspamd-Bar',
      'X-Rspamd-Report',
      'X-Rspamd-Score',
      'X-Spam-Score',
      'X-Spam-Report',
      'X-Spamd-Result',
      'X-Rspamd-Server',
      'X-Rspamd-Queue-Id',
      'X-Spam-Scanner',
      'X-Spam',
      'X-Spam-Action',
      'X-Spam-Level',
      'X-Spam-Symbols',
      'X-Spam-Result',
    ]
    const style = {
      scanner: 'haraka-plugin-rspamd 2.0.0',
      rspamdHost: 'mx1.example.net',
      queueId: 'Q1',
      json: { action: 'add header', score: 7.3 },
    }
    for (const addHeaders of ['always', 'sometimes', 'never'] as AddHeaders[]) {
      for (const action of ['add header', 'no action']) {
        const written = addHeaders === 'always' || (addHeaders === 'sometimes' && action === 'add header')
        it(`${written ? 'writes' : 'does not write'} every style for "${action}" with add_headers=${addHeaders}`, () => {
          const v = accepted(
            decide(replyFor(action), { ...ALL, addHeaders }, { authenticated: false, style }),
          )
          const added = v.edits.add.map((h) => h.name)
          const removed = names(v.edits.remove)
          for (const n of STYLE_NAMES) {
            // as rspamc, the lda style writes X-Spam (yes) only for the actions above greylist
            assert.equal(
              added.includes(n),
              written && (n !== 'X-Spam' || action !== 'no action'),
              `${n} added`,
            )
            // a forged verdict header of any style we write must not survive next to ours
            assert.equal(removed.includes(n.toLowerCase()), written, `${n} removed first`)
          }
        })
      }
    }
    for (const addHeaders of ['always', 'sometimes', 'never'] as AddHeaders[]) {
      for (const styles of [['rspamd'], ['lda'], HEADER_STYLES.slice()] as HeaderStyle[][]) {
        it(`removes every style's verdict headers with remove_foreign (add_headers=${addHeaders}, styles=${styles.join(',')})`, () => {
          const cfg = { ...BASE, addHeaders, spamHeaders: { styles, ldaJson: false, removeForeign: true } }
          const v = accepted(decide(replyFor('no action'), cfg, { authenticated: false, style }))
          const removed = names(v.edits.remove)
          for (const n of STYLE_NAMES) assert.ok(removed.includes(n.toLowerCase()), `${n} removed`)
        })
      }
    }
    it('removes the [header] names the operator configured, not the defaults, with remove_foreign', () => {
      const cfg = {
        ...BASE,
        header: { bar: 'X-My-Bar', report: '', score: 'X-My-Score' },
        spamHeaders: { styles: ['rspamd' as const], ldaJson: false, removeForeign: true },
      }
      const removed = names(
        accepted(decide(replyFor('no action'), cfg, { authenticated: false })).edits.remove,
      )
      assert.ok(removed.includes('x-my-bar') && removed.includes('x-my-score'))
      assert.ok(!removed.includes('x-rspamd-bar'), 'a name nobody configured is left alone')
    })

    it('writes each style header once, folded and single-valued', () => {
      const v = accepted(
        decide(replyFor('add header'), { ...ALL, addHeaders: 'always' }, { authenticated: false, style }),
      )
      for (const n of STYLE_NAMES) assert.equal(v.edits.add.filter((h) => h.name === n).length, 1, n)
      const result = v.edits.add.find((h) => h.name === 'X-Spam-Result')?.value ?? ''
      assert.deepEqual(
        JSON.parse(Buffer.from(result.replace(/\s+/g, ''), 'base64').toString('utf8')),
        style.json,
      )
      const spamd = v.edits.add.find((h) => h.name === 'X-Spamd-Result')?.value ?? ''
      assert.equal(spamd, 'default: False [7.30 / 15.00];\n BAYES_SPAM(5.10)[99.00%];\n R_SPF_FAIL(2.20)[]')
    })
    it('only the rspamd style by default', () => {
      const v = accepted(decide(replyFor('add header'), BASE, { authenticated: false, style }))
      assert.deepEqual(
        v.edits.add.map((h) => h.name),
        ['X-Rspamd-Bar', 'X-Rspamd-Report', 'X-Rspamd-Score'],
      )
    })
    it('reports a too-large X-Spam-Result as dropped instead of writing a cut one', () => {
      const json = { pad: 'x'.repeat(300 * 1024) }
      const v = accepted(
        decide(
          replyFor('add header'),
          { ...ALL, addHeaders: 'always' },
          { authenticated: false, style: { json } },
        ),
      )
      assert.ok(!v.edits.add.some((h) => h.name === 'X-Spam-Result'))
      assert.ok(
        v.edits.dropped.some((d) => d.startsWith('X-Spam-Result:')),
        v.edits.dropped.join('; '),
      )
    })
  })

  describe('decide(): the rewritten Subject', function () {
    const SUBJECTS: Array<
      [label: string, template: string, old: string | undefined, rspamd: string | undefined, expected: string]
    > = [
      ["rspamd's subject", '[SPAM] %s', OLD_SUBJECT, RSPAMD_SUBJECT, RSPAMD_SUBJECT],
      [
        'the default template when rspamd sends none',
        '[SPAM] %s',
        OLD_SUBJECT,
        undefined,
        `[SPAM] ${OLD_SUBJECT}`,
      ],
      ['a custom template', '*** SPAM *** %s', 'Hello', undefined, '*** SPAM *** Hello'],
      ['a template with %s in the middle', 'Re: %s [spam]', 'Hello', undefined, 'Re: Hello [spam]'],
    ]
    for (const [label, template, old, rspamd, expected] of SUBJECTS) {
      it(`rewrites the Subject with ${label}`, () => {
        const cfg = { ...BASE, subject: template }
        const v = accepted(
          decide(replyFor('rewrite subject', { subject: rspamd }), cfg, {
            authenticated: false,
            subject: old,
          }),
        )
        const subject = v.edits.add.filter((h) => h.name === 'Subject')
        assert.equal(subject.length, 1)
        assert.equal(unfold(subject[0]?.value ?? ''), expected)
      })
    }

    it('rewrites a message without a Subject from the template', () => {
      const v = accepted(decide(replyFor('rewrite subject'), BASE, { authenticated: false }))
      const subject = v.edits.add.filter((h) => h.name === 'Subject')
      assert.equal(subject.length, 1)
      assert.equal(unfold(subject[0]?.value ?? '').trim(), '[SPAM]')
    })
  })

  describe("[thresholds]: the more severe of rspamd's action and the local one", function () {
    // least to most severe, as rspamd orders its actions; an unknown action counts as no action
    // discard and quarantine, which have no threshold, above every other: no local value overrides them
    const ORDER = [
      'no action',
      'greylist',
      'add header',
      'rewrite subject',
      'soft reject',
      'reject',
      'quarantine',
      'discard',
    ]
    const rank = (a: string) => Math.max(0, ORDER.indexOf(a))
    const SETS: Array<Record<string, number>> = [
      {},
      { add_header: 5 },
      { reject: 15 },
      { soft_reject: 9 },
      { add_header: 5, rewrite_subject: 7, soft_reject: 12, reject: 15 },
    ]
    const KEY_ACTION: Record<string, string> = {
      add_header: 'add header',
      rewrite_subject: 'rewrite subject',
      soft_reject: 'soft reject',
      reject: 'reject',
    }
    /** the most severe action whose threshold the score reaches */
    function expectedLocal(score: number, set: Record<string, number>): string {
      const reached = Object.entries(set)
        .filter(([, t]) => score >= t)
        .map(([k]) => KEY_ACTION[k])
      return reached.reduce((a, b) => (rank(b) > rank(a) ? b : a), 'no action')
    }
    for (const set of SETS) {
      const cfg = parseConfig({ thresholds: set }, {})
      const label = JSON.stringify(set)
      for (const action of ACTIONS) {
        for (const score of [-5, 0, 4.99, 5, 7, 9.5, 12, 14.99, 15, 100]) {
          const local = expectedLocal(score, set)
          const final = rank(local) > rank(action) ? local : action
          const kind = expectedKind(final, DEFAULT_FLAGS, false)
          it(`"${action}" at score ${score} with thresholds ${label} → ${final} (${kind})`, () => {
            const reply = replyFor(action, { score })
            assert.equal(finalAction(reply, cfg), final)
            const v = decide(reply, cfg, { authenticated: false, subject: OLD_SUBJECT })
            assert.equal(v.kind, kind)
            if (v.kind === 'accept') {
              const added = v.edits.add.map((h) => h.name)
              assert.equal(
                added.includes(BASE.header.score),
                expectSpamHeaders(final, DEFAULT_FLAGS),
                'spam headers',
              )
              assert.equal(added.includes('Subject'), final === 'rewrite subject', 'Subject rewritten')
            }
          })
        }
      }
    }

    const ROWS: Array<
      [
        label: string,
        ini: Record<string, unknown>,
        reply: Partial<Reply> & { action: string },
        kind: Verdict['kind'],
      ]
    > = [
      [
        'no action at 16 with reject=15 is rejected',
        { thresholds: { reject: 15 } },
        { action: 'no action', score: 16 },
        'deny',
      ],
      [
        'a score exactly at the threshold counts',
        { thresholds: { reject: 15 } },
        { action: 'no action', score: 15 },
        'deny',
      ],
      [
        "rspamd's reject stays a reject below a local add_header",
        { thresholds: { add_header: 5 } },
        { action: 'reject', score: 3 },
        'deny',
      ],
      [
        'add header at 13 with soft_reject=12 is deferred',
        { thresholds: { soft_reject: 12 } },
        { action: 'add header', score: 13 },
        'defer',
      ],
      [
        'a local reject is delivered when [reject] spam=false',
        { thresholds: { reject: 15 }, reject: { spam: false } },
        { action: 'no action', score: 20 },
        'accept',
      ],
      [
        'a local soft reject is accepted when [soft_reject] enabled=false',
        { thresholds: { soft_reject: 12 }, soft_reject: { enabled: false } },
        { action: 'no action', score: 13 },
        'accept',
      ],
      [
        'an unknown action is raised by a local reject',
        { thresholds: { reject: 15 } },
        { action: 'spam trap', score: 20 },
        'deny',
      ],
      [
        'discard stays discard over a local reject',
        { thresholds: { reject: 15 } },
        { action: 'discard', score: 20 },
        'discard',
      ],
      [
        'quarantine stays quarantine over a local reject',
        { thresholds: { reject: 15 } },
        { action: 'quarantine', score: 20 },
        'quarantine',
      ],
      [
        'a reply rspamd skipped keeps its action whatever the score',
        { thresholds: { reject: -1 } },
        { action: 'no action', score: 0, isSkipped: true },
        'accept',
      ],
    ]
    for (const [label, ini, reply, kind] of ROWS) {
      it(label, () => {
        const v = decide(replyFor(reply.action, reply), parseConfig(ini, {}), { authenticated: false })
        assert.equal(v.kind, kind)
      })
    }

    it('uses [reject] message for a reject that only the local threshold made', () => {
      const v = decide(
        replyFor('no action', { score: 30 }),
        parseConfig({ thresholds: { reject: 15 } }, {}),
        {
          authenticated: false,
        },
      )
      assert.deepEqual(v, { kind: 'deny', code: 550, status: '5.7.1', message: BASE.reject.message })
    })

    it('adds the spam headers when a local add_header raises a greylist', () => {
      const v = accepted(
        decide(replyFor('greylist', { score: 6 }), parseConfig({ thresholds: { add_header: 5 } }, {}), {
          authenticated: false,
          greylist: 'deferred',
        }),
      )
      assert.ok(v.edits.add.some((h) => h.name === BASE.header.score))
    })

    it('gives no local action below every threshold, or without thresholds', () => {
      assert.equal(localAction(4, { addHeader: 5, reject: 15 }), undefined)
      assert.equal(localAction(1000, {}), undefined)
    })
  })

  describe('[greylist]: a greylist verdict with state', function () {
    const STATES = [undefined, 'deferred', 'passed'] as const
    for (const enabled of [false, true]) {
      for (const state of STATES) {
        const defers = enabled && state === 'deferred'
        it(`${defers ? 'defers with 451 4.7.1' : 'accepts'} greylist with greylist.enabled=${enabled} and the triplet ${state ?? 'not checked'}`, () => {
          const cfg = parseConfig({ greylist: { enabled } }, {})
          const v = decide(replyFor('greylist'), cfg, { authenticated: false, greylist: state })
          if (!defers) return assert.equal(v.kind, 'accept')
          assert.deepEqual(v, {
            kind: 'defer',
            code: 451,
            status: '4.7.1',
            message: 'Try again later',
            reason: 'greylist',
          })
        })
      }
    }

    for (const action of ACTIONS.filter((a) => a !== 'greylist')) {
      it(`does not greylist "${action}" even when the caller says deferred`, () => {
        const cfg = parseConfig({ greylist: { enabled: true }, reject: { spam: false } }, {})
        const v = decide(replyFor(action), cfg, { authenticated: false, greylist: 'deferred' })
        assert.ok(v.kind !== 'defer' || v.reason !== 'greylist', JSON.stringify(v))
      })
    }

    it("answers with [greylist] message, or rspamd's smtp_message when it sends one", () => {
      const cfg = parseConfig({ greylist: { enabled: true, message: 'Greylisted, come back later' } }, {})
      const own = decide(replyFor('greylist'), cfg, { authenticated: false, greylist: 'deferred' })
      assert.equal(own.kind === 'defer' && own.message, 'Greylisted, come back later')
      const fromRspamd = decide(fullReply('greylist', 'Greylisted by rspamd'), cfg, {
        authenticated: false,
        greylist: 'deferred',
      })
      assert.equal(fromRspamd.kind === 'defer' && fromRspamd.message, 'Greylisted by rspamd')
    })
  })

  describe('[ham] ok: next(OK) for a clean verdict', function () {
    const CASES: Array<
      [label: string, ham: Record<string, unknown>, reply: Partial<Reply> & { action: string }, ok: boolean]
    > = [
      ['no action with ok=false (the default)', {}, { action: 'no action', score: 0 }, false],
      ['no action with ok=true', { ok: true }, { action: 'no action', score: 0 }, true],
      [
        'no action with a high score and no max_score',
        { ok: true },
        { action: 'no action', score: 4.5 },
        true,
      ],
      ['no action at max_score', { ok: true, max_score: 1 }, { action: 'no action', score: 1 }, true],
      ['no action over max_score', { ok: true, max_score: 1 }, { action: 'no action', score: 1.01 }, false],
      [
        'no action under a negative max_score',
        { ok: true, max_score: -2 },
        { action: 'no action', score: -3 },
        true,
      ],
      ['greylist', { ok: true }, { action: 'greylist', score: 5 }, false],
      ['add header', { ok: true }, { action: 'add header', score: 7 }, false],
      ['rewrite subject', { ok: true }, { action: 'rewrite subject', score: 9 }, false],
      ['an unknown action', { ok: true }, { action: 'spam trap', score: 0 }, false],
      [
        'a reply rspamd skipped (not really scanned)',
        { ok: true },
        { action: 'no action', score: 0, isSkipped: true },
        false,
      ],
    ]
    for (const [label, ham, reply, ok] of CASES) {
      it(`${ok ? 'returns ok' : 'continues'} for ${label}`, () => {
        const v = decide(replyFor(reply.action, reply), parseConfig({ ham }, {}), { authenticated: false })
        assert.equal(v.kind, ok ? 'ok' : 'accept')
      })
    }

    it('does not return ok when a local threshold raised no action', () => {
      const cfg = parseConfig({ ham: { ok: true }, thresholds: { add_header: 3 } }, {})
      assert.equal(decide(replyFor('no action', { score: 4 }), cfg, { authenticated: false }).kind, 'accept')
    })

    it('still carries the header edits (add_headers=always, DKIM) with ok', () => {
      const cfg = parseConfig({ main: { add_headers: 'always' }, ham: { ok: true } }, {})
      const v = decide(replyFor('no action', { score: 0.5, dkimSignatures: [DKIM] }), cfg, {
        authenticated: false,
      })
      assert.equal(v.kind, 'ok')
      if (v.kind === 'ok') {
        const added = v.edits.add.map((h) => h.name)
        assert.ok(added.includes(BASE.header.score))
        assert.ok(added.includes('DKIM-Signature'))
      }
    })
  })

  describe('onFailure(): the [defer] policy', function () {
    const KINDS: ScanErrorKind[] = ['timeout', 'connect', 'network', 'http', 'parse', 'too-large', 'aborted']
    for (const kind of KINDS) {
      for (const deferError of [true, false]) {
        for (const deferTimeout of [true, false]) {
          const defers = kind === 'timeout' ? deferTimeout : deferError
          it(`${defers ? 'defers with 451 4.7.1' : 'accepts unchanged'} on ${kind} with defer.error=${deferError} defer.timeout=${deferTimeout}`, () => {
            const cfg = { ...BASE, defer: { error: deferError, timeout: deferTimeout } }
            const v = onFailure({ kind, message: `${kind} happened` }, cfg)
            if (!defers) {
              assert.deepEqual(v, {
                kind: 'accept',
                edits: { remove: [], removeAt: [], add: [], dropped: [] },
              })
              return
            }
            assert.equal(v.kind, 'defer')
            if (v.kind === 'defer') {
              assert.equal(v.code, 451)
              assert.equal(v.status, '4.7.1')
              assert.equal(v.reason, kind)
              assert.equal(v.message, kind === 'timeout' ? 'Rspamd scan timeout' : 'Rspamd scan error')
              assert.doesNotMatch(v.message, /[\r\n]/)
            }
          })
        }
      }
    }
  })

  describe('smtpText()', function () {
    const CASES: Array<[label: string, input: string, expected: string]> = [
      ['plain text unchanged', 'Detected as spam', 'Detected as spam'],
      ['CR LF to a space', 'a\r\nb', 'a b'],
      ['a bare CR', 'a\rb', 'a b'],
      ['a bare LF', 'a\nb', 'a b'],
      ['NUL', 'a\0b', 'a b'],
      ['a run of controls to one space', 'a\r\n\r\n\t\0b', 'a b'],
      ['DEL', 'a\x7fb', 'a b'],
      ['leading and trailing whitespace trimmed', ' \r\n a \r\n', 'a'],
      ['an empty string', '', ''],
      ['non-ASCII kept', 'Spam détecté', 'Spam détecté'],
      ['exactly 400 characters kept', 'y'.repeat(400), 'y'.repeat(400)],
    ]
    for (const [label, input, expected] of CASES) {
      it(`gives ${label}`, () => {
        assert.equal(smtpText(input), expected)
      })
    }

    for (const len of [401, 512, 1000, 100000]) {
      it(`cuts ${len} characters to at most 400, marked`, () => {
        const out = smtpText('z'.repeat(len))
        assert.ok(out.length <= 400, `length ${out.length}`)
        assert.ok(out.endsWith('...'))
        assert.ok(out.startsWith('z'.repeat(300)))
      })
    }

    it('counts octets, not characters: 200 four-character CJK words fit a 512-octet reply line', () => {
      const out = smtpText('垃圾邮件'.repeat(200))
      assert.ok(out.endsWith('...'))
      assert.ok(Buffer.byteLength(out) <= 400, `${Buffer.byteLength(out)} octets`)
      assert.ok(Buffer.byteLength(`550 5.7.1 ${out}\r\n`) <= 512)
      assert.ok(out.startsWith('垃圾邮件'.repeat(30)))
    })

    it('never cuts inside a character (no lone surrogate, no partial UTF-8)', () => {
      for (const unit of ['😀', 'é', 'a😀', 'ab€', 'xy😀']) {
        const out = smtpText(unit.repeat(300))
        assert.ok(!/[\ud800-\udbff](?![\udc00-\udfff])/.test(out), `lone surrogate for ${unit}`)
        assert.equal(Buffer.from(out, 'utf8').toString('utf8'), out)
        assert.ok(
          Buffer.byteLength(out) <= 400 && Buffer.byteLength(out) >= 394,
          `${Buffer.byteLength(out)} octets`,
        )
      }
    })

    it('keeps a non-ASCII text of exactly 400 octets whole', () => {
      const text = 'é'.repeat(200)
      assert.equal(smtpText(text), text)
      assert.ok(smtpText(`${text}x`).endsWith('...'))
    })
  })

  describe("rspamd's discard and quarantine", function () {
    for (const authenticated of [false, true]) {
      for (const addHeaders of ['always', 'never', 'sometimes'] as AddHeaders[]) {
        it(`discards with no header edit for ${authenticated ? 'an authenticated' : 'an unauthenticated'} sender, add_headers=${addHeaders}`, () => {
          const v = decide(fullReply('discard', 'Test discard'), cfgFor({ addHeaders }), {
            authenticated,
            subject: OLD_SUBJECT,
          })
          assert.deepEqual(v, { kind: 'discard' })
        })
      }
    }

    it('discards whatever [reject], [soft_reject] and [quarantine] say', () => {
      for (const q of QUARANTINE_ACTIONS) {
        const f = { rejectSpam: false, softReject: false, quarantine: q }
        assert.equal(decide(replyFor('discard'), cfgFor(f), { authenticated: false }).kind, 'discard')
      }
    })

    /** rspamd's smtp_message ("Test quarantine"), or the [reject] / [soft_reject] text without one */
    const ROWS: Array<[how: QuarantineAction, kind: Verdict['kind'], withText: string, without: string]> = [
      ['queue', 'quarantine', '', ''],
      ['reject', 'deny', 'Test quarantine', BASE.reject.message],
      ['soft_reject', 'defer', 'Test quarantine', BASE.softReject.message],
      ['accept', 'accept', '', ''],
    ]
    for (const [how, kind, withText, without] of ROWS) {
      it(`[quarantine] action = ${how}: ${kind}`, () => {
        const cfg = parseConfig({ quarantine: { action: how } }, {})
        const v = decide(fullReply('quarantine', 'Test quarantine'), cfg, { authenticated: false })
        assert.equal(v.kind, kind)
        const bare = decide(fullReply('quarantine'), cfg, { authenticated: false })
        if (v.kind === 'deny' || v.kind === 'defer') {
          assert.equal(v.code, kind === 'deny' ? 550 : 451)
          assert.equal(v.message, withText)
          assert.equal(bare.kind === 'deny' || bare.kind === 'defer' ? bare.message : '', without)
        }
        if (v.kind === 'defer') assert.equal(v.reason, 'quarantine')
        if (v.kind === 'quarantine' || v.kind === 'accept') {
          // marked, as the spam it is: the quarantined copy and a delivered one alike
          const added = v.edits.add.map((h) => h.name)
          for (const h of SPAM_HEADERS) assert.ok(added.includes(h), `${h} in ${added.join(', ')}`)
        }
      })
    }

    it('the default [quarantine] action is queue', () => {
      assert.equal(BASE.quarantine.action, 'queue')
      assert.equal(decide(replyFor('quarantine'), BASE, { authenticated: false }).kind, 'quarantine')
    })

    it('quarantines with add_headers = never and writes no spam header then', () => {
      const v = decide(replyFor('quarantine'), cfgFor({ addHeaders: 'never' }), { authenticated: false })
      assert.equal(v.kind, 'quarantine')
      if (v.kind === 'quarantine') {
        const added = v.edits.add.map((h) => h.name)
        for (const h of SPAM_HEADERS) assert.ok(!added.includes(h), h)
      }
    })
  })

  describe('queuePluginProblem(): [quarantine] against config/plugins', function () {
    const queue = parseConfig({}, {})
    it('says nothing when queue/quarantine is listed before the delivering plugin', () => {
      assert.equal(queuePluginProblem(queue, ['rspamd', 'queue/quarantine', 'queue/smtp_forward']), undefined)
      assert.equal(queuePluginProblem(queue, ['queue/discard', 'queue/quarantine', 'queue/lmtp']), undefined)
    })
    it('names the missing plugin and the line to add', () => {
      const why = queuePluginProblem(queue, ['rspamd', 'queue/smtp_forward'])
      assert.match(why ?? '', /queue\/quarantine is not in config\/plugins/)
      assert.match(why ?? '', /add the line "queue\/quarantine" to config\/plugins/)
      assert.match(why ?? '', /deferred \(450\)/)
    })
    it('names a queue plugin listed before it', () => {
      const why = queuePluginProblem(queue, ['queue/smtp_forward', 'queue/quarantine'])
      assert.match(why ?? '', /queue\/smtp_forward comes before queue\/quarantine/)
    })
    for (const how of ['reject', 'soft_reject', 'accept']) {
      it(`needs no plugin with [quarantine] action = ${how}`, () => {
        assert.equal(queuePluginProblem(parseConfig({ quarantine: { action: how } }, {}), []), undefined)
      })
    }
  })

  describe('isKnownAction()', function () {
    for (const action of KNOWN_ACTIONS) {
      it(`knows "${action}"`, () => assert.equal(isKnownAction(action), true))
    }
    for (const action of ['spam trap', 'custom', '', 'Reject', 'Discard', 'no_action', 'softreject']) {
      it(`does not know ${JSON.stringify(action)}`, () => assert.equal(isKnownAction(action), false))
    }
  })
})
