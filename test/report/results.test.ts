// src/report/results.ts: the results record other plugins read, the failure record and the fields of
// the one log line, from plain values. The plugin tests check them through Haraka's objects; these
// check each field and text where it is built, and a reply of 10⁵ symbols.
import assert from 'node:assert/strict'
import { httpStatusError, scanError } from '../../src/errors'
import type { Verdict } from '../../src/policy/verdict'
import { parseReply, type Reply } from '../../src/rspamd/reply'
import { failoverTexts, failureReport, outcomeText, scanReport } from '../../src/report/results'
import { replyFor } from '../support/replies'

function reply(json: unknown): Reply {
  const r = parseReply(json)
  assert.ok(r.ok)
  return r.reply
}

const ACCEPT: Verdict = { kind: 'accept', edits: { remove: [], removeAt: [], add: [], dropped: [] } }
const DEFER: Verdict = {
  kind: 'defer',
  code: 451,
  status: '4.7.1',
  message: 'Rspamd scan error',
  reason: 'connect',
}

describe('report: results record and log line', () => {
  it('outcomeText(): the [defer] outcome in the log words, with the verdict code', () => {
    assert.equal(outcomeText(DEFER), 'deferring with 451')
    assert.equal(outcomeText(ACCEPT), 'accepting')
    assert.equal(outcomeText(undefined), 'accepting')
  })

  it('failoverTexts(): one escaped line per failed server', () => {
    const texts = failoverTexts([
      { server: 'http://127.0.0.1:1', error: scanError('connect', 'ECONNREFUSED\r\nFORGED ok'), timeMs: 2 },
      { server: 'http://127.0.0.1:2', error: httpStatusError(503, 'HTTP 503: busy'), timeMs: 5 },
    ])
    assert.equal(texts.length, 2)
    assert.ok(!/[\r\n]/.test(texts[0] ?? ''), texts[0])
    assert.match(texts[0] ?? '', /^http:\/\/127\.0\.0\.1:1: connect: ECONNREFUSED.*FORGED ok \(2 ms\)$/)
    assert.equal(texts[1], 'http://127.0.0.1:2: http: HTTP 503: busy (5 ms)')
  })

  it('scanReport(): the record 1.6.x had, the verdict, local action and greylist, and the line with code and reply', () => {
    const r = reply(replyFor('greylist', { score: 6.66666 }))
    const { record, line } = scanReport({
      reply: r,
      action: 'soft reject',
      verdict: { kind: 'defer', code: 451, status: '4.7.1', message: 'Try again later', reason: 'greylist' },
      greylist: 'deferred',
      server: 'http://127.0.0.1:11333',
      timeMs: 4.1,
      size: 1234,
      attempts: [{ server: 'http://127.0.0.1:1', error: scanError('connect', 'refused'), timeMs: 1 }],
    })
    assert.equal(record.action, 'greylist')
    assert.equal(record.local_action, 'soft reject')
    assert.equal(record.score, 6.66666)
    assert.equal(record.time, 0.0041)
    assert.equal(record.verdict, 'defer')
    assert.equal(record.greylist, 'deferred')
    assert.equal(record.size, 1234)
    assert.ok(Array.isArray(record.symbols))
    assert.equal(record.is_spam, false, 'greylist is not spam to rspamc')
    assert.match(
      String(record.human),
      /^action: greylist, is_spam: false, score: 6\.66666, .*failover: http:\/\/127\.0\.0\.1:1\(connect\), symbols: /,
    )
    assert.equal(line.action, 'greylist')
    assert.equal(line.local_action, 'soft reject')
    assert.equal(line.score, 6.667)
    assert.equal(line.code, 451)
    assert.equal(line.reply, '4.7.1 Try again later')
    assert.equal(line.failover, 'http://127.0.0.1:1(connect)')
  })

  it('scanReport(): an accepted message has no code, reply or local_action', () => {
    const { record, line } = scanReport({
      reply: reply(replyFor('add header')),
      action: 'add header',
      verdict: ACCEPT,
      server: 's',
      timeMs: 1,
      size: 1,
      attempts: [],
    })
    assert.equal('local_action' in record, false)
    assert.equal('greylist' in record, false)
    assert.equal(line.code, undefined)
    assert.equal(line.reply, undefined)
    assert.equal(line.failover, undefined)
  })

  it('scanReport(): 10⁵ symbols give every score in the record and a human text and line of bounded length', () => {
    const symbols: Record<string, { name: string; score: number }> = {}
    for (let i = 0; i < 100_000; i++) symbols[`SYM_${i}`] = { name: `SYM_${i}`, score: i % 7 }
    const { record, line } = scanReport({
      reply: reply(replyFor('add header', { symbols } as never)),
      action: 'add header',
      verdict: ACCEPT,
      server: 's',
      timeMs: 1,
      size: 1,
      attempts: [],
    })
    assert.equal((record.symbols as string[]).length, 100_000)
    assert.equal(Object.keys(record.symbol_scores as object).length, 100_000)
    assert.equal((record.symbol_scores as Record<string, number>).SYM_99999, 99_999 % 7)
    assert.ok(String(record.human).length <= 16 * 1024, `human is ${String(record.human).length} long`)
    assert.ok(String(line.symbols).length < 16 * 1024)
  })

  it('failureReport(): the err text of 1.6.x-style failures and the line with the defer code', () => {
    const r = failureReport({
      error: scanError('timeout', 'no answer within 29000 ms'),
      verdict: { ...DEFER, message: 'Rspamd scan timeout', reason: 'timeout' },
      server: 'http://127.0.0.1:11333',
      timeMs: 29000,
      size: 10,
      attempts: [],
      unremoved: 'boom',
    })
    assert.equal(
      r.err,
      'timeout: no answer within 29000 ms (server http://127.0.0.1:11333, 29000 ms; deferring with 451 per [defer]); the verdict headers could not be removed: boom',
    )
    assert.deepEqual(
      { ...r.line },
      {
        error: 'timeout',
        verdict: 'defer',
        code: 451,
        server: 'http://127.0.0.1:11333',
        ms: 29000,
        size: 10,
        failover: undefined,
      },
    )
    const accepted = failureReport({ error: scanError('parse', 'x\r\ny'), verdict: ACCEPT, attempts: [] })
    assert.equal(accepted.err, 'parse: x\\u000d\\u000ay (accepting per [defer])')
    assert.equal(accepted.line.code, undefined)
  })
})
