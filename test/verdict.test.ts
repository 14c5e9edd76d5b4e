// src/verdict.ts: Reply + Config + sender facts → Verdict. Every action × every flag that changes the
// answer or the header edits, each expectation from a small rule written out here, and the [defer]
// policy for every kind of failed scan.

import assert from 'node:assert/strict'
import { type AddHeaders, type Config, HEADER_STYLES, parseConfig } from '../src/config'
import type { Reply } from '../src/reply'
import { decide, isKnownAction, onFailure, type ScanErrorKind, smtpText, type Verdict } from '../src/verdict'

const BASE = parseConfig({}, {})

const KNOWN_ACTIONS = ['no action', 'greylist', 'add header', 'rewrite subject', 'soft reject', 'reject']
const ACTIONS = [...KNOWN_ACTIONS, 'discard']

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
    milter: { add: [], remove: [] },
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
    milter: { add: [MILTER_ADD], remove: [{ name: MILTER_REMOVED, count: 1 }] },
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

/** SPEC §4: reject → 550 when the sender's [reject] flag says so; soft reject → 451 unless disabled. */
function expectedKind(action: string, f: Flags, authenticated: boolean): 'deny' | 'defer' | 'accept' {
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
  return action === 'add header' || action === 'reject'
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
                    : 'accepts'
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
          if (kind === 'accept') continue
          const expected = expectedMessage(kind, f, rspamdMessage)
          const sent = rspamdMessage === undefined ? 'no smtp_message' : 'an smtp_message'
          it(`answers "${action}" with ${JSON.stringify(expected)} when rspamd sends ${sent} and smtp_message.enabled=${smtpMessage}`, () => {
            const v = decide(fullReply(action, rspamdMessage), cfgFor(f), { authenticated: false })
            assert.equal(v.kind, kind as Verdict['kind'])
            if (v.kind !== 'accept') assert.equal(v.message, expected)
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
        assert.notEqual(v.kind, 'accept')
        if (v.kind !== 'accept') assert.equal(v.message, expected)
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
    for (const action of ACTIONS) {
      for (const addHeaders of ADD_HEADERS) {
        for (const rewriteSubject of [true, false]) {
          for (const dkim of [true, false]) {
            for (const rmilter of [true, false]) {
              // let reject and soft reject through so every action ends in accept
              const f: Flags = {
                ...DEFAULT_FLAGS,
                rejectSpam: false,
                softReject: false,
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
                  assert.equal(removed.includes(h.toLowerCase()), spam, `${h} removed first`)
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
      const v = accepted(decide(replyFor('no action'), BASE, { authenticated: false, subject: OLD_SUBJECT }))
      assert.deepEqual(v.edits, { remove: [], add: [], dropped: [] })
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
      assert.deepEqual(names(v.edits.remove).sort(), ['x-spam-bar', 'x-spam-report', 'x-spam-score'])
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
        milter: { add: [{ name: 'X Bad', value: 'v' }, MILTER_ADD], remove: [] },
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
        milter: { add: [{ name: 'X-Evil', value: 'a\r\nX-Injected: 1\0' }], remove: [] },
      })
      const v = accepted(decide(reply, BASE, { authenticated: false }))
      assert.ok(v.edits.add.length >= 2)
      for (const h of v.edits.add)
        assert.doesNotMatch(unfold(h.value), /[\r\n\0]/, `${h.name}: ${JSON.stringify(h.value)}`)
    })
  })

  describe('decide(): [spam_headers] styles', function () {
    const ALL = { ...BASE, spamHeaders: { styles: HEADER_STYLES.slice(), ldaJson: true } }
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
            assert.equal(added.includes(n), written, `${n} added`)
            // a forged verdict header of any style we write must not survive next to ours
            assert.equal(removed.includes(n.toLowerCase()), written, `${n} removed first`)
          }
        })
      }
    }
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
              assert.deepEqual(v, { kind: 'accept', edits: { remove: [], add: [], dropped: [] } })
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
  })

  describe('isKnownAction()', function () {
    for (const action of KNOWN_ACTIONS) {
      it(`knows "${action}"`, () => assert.equal(isKnownAction(action), true))
    }
    for (const action of ['discard', 'quarantine', '', 'Reject', 'no_action', 'softreject']) {
      it(`does not know ${JSON.stringify(action)}`, () => assert.equal(isKnownAction(action), false))
    }
  })
})
