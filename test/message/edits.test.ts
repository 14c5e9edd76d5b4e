// src/message/edits.ts: editsFor(), the one assembly of a message's header edits. The plugin's verdict
// (decide()) and rspamd-lda (run(), in this process against the fake rspamd) both get their edits from
// it: the same reply gives the same removes and the same adds through both, in the order each promises.

import assert from 'node:assert/strict'
import { Readable, Writable } from 'node:stream'
import { type Config, parseConfig } from '../../src/config'
import { editsFor, type EditOptions, forgedHeaderNames, unscannedEdits } from '../../src/message/edits'
import { ldaFailureStyle, verdictHeaderNames } from '../../src/message/styles'
import { decide } from '../../src/policy/verdict'
import { parseReply, type Reply } from '../../src/rspamd/reply'
import { run } from '../../src/lda'
import { FakeRspamd } from '../support/fake-rspamd'
import {
  DKIM_SIGNATURE_EXAMPLE,
  replyFor,
  type RspamdReplyJson,
  withDkim,
  withMilter,
} from '../support/replies'

/** rspamd's milter block with a bit of everything: a replaced header, a numbered remove, a stacked add. */
const MILTER = {
  add_headers: {
    'X-Spamd-Bar': { value: '+++', order: 0 },
    'X-Virus': 'no',
    'ARC-Seal': 'i=1; a=rsa-sha256; cv=none; d=example.org; s=arc; b=abc',
  },
  remove_headers: { 'X-Old': 0, 'Authentication-Results': 1 },
}

function json(action: Parameters<typeof replyFor>[0] = 'add header'): RspamdReplyJson {
  return withDkim(withMilter(replyFor(action), MILTER))
}

function parsed(j: RspamdReplyJson): Reply {
  const p = parseReply(j as unknown as Record<string, unknown>)
  if (!p.ok) throw new Error(p.error)
  return p.reply
}

function config(ini: Record<string, Record<string, unknown>> = {}): Config {
  return parseConfig(ini, {})
}

const STYLE = { scanner: 'test 1', rspamdHost: 'mx.example', scanTimeMs: 12 }
/** The plugin's options when it writes spam headers and does not rewrite. */
const PLUGIN: EditOptions = { spamHeaders: true, rewriteSubject: false, style: STYLE }
/** rspamd-lda's options. */
const LDA: EditOptions = { spamHeaders: true, rewriteSubject: false, stylesFirst: true, style: STYLE }

const names = (fields: ReadonlyArray<{ name: string }>) => fields.map((f) => f.name)

describe('editsFor()', function () {
  it('is what decide() accepts a message with', () => {
    const cfg = config({ main: { add_headers: 'always' }, spam_headers: { styles: 'rspamd,extended' } })
    const reply = parsed(json())
    const v = decide(reply, cfg, { authenticated: false, style: STYLE })
    assert.equal(v.kind, 'accept')
    assert.ok(v.kind === 'accept')
    assert.deepEqual(v.edits, editsFor(reply, cfg, PLUGIN))
  })

  it('removes the forged verdict headers, rspamd’s removes, our styles’ names, then each name added', () => {
    const cfg = config({ spam_headers: { styles: 'rspamd' } })
    const e = editsFor(parsed(json()), cfg, PLUGIN)
    const verdict = verdictHeaderNames(cfg)
    assert.deepEqual(e.remove.slice(0, verdict.length), verdict)
    // rspamd's whole remove, then the adds' names not already gone; stacked ARC-Seal and DKIM stay
    assert.deepEqual(e.remove.slice(verdict.length), ['X-Old', 'X-Spamd-Bar', 'X-Virus'])
    assert.deepEqual(e.removeAt, [{ name: 'Authentication-Results', positions: [1] }])
    assert.deepEqual(e.dropped, [])
  })

  it('without remove_foreign and without spam headers, removes only rspamd’s and the names it adds', () => {
    const cfg = config({ spam_headers: { remove_foreign: false } })
    const e = editsFor(parsed(json()), cfg, { ...PLUGIN, spamHeaders: false })
    assert.deepEqual(e.remove, ['X-Old', 'X-Spamd-Bar', 'X-Virus'])
    assert.deepEqual(names(e.add), ['DKIM-Signature', 'X-Spamd-Bar', 'X-Virus', 'ARC-Seal'])
  })

  it('without remove_foreign, still removes every name of the styles it writes', () => {
    const cfg = config({ spam_headers: { remove_foreign: false, styles: 'lda' } })
    const e = editsFor(parsed(json('no action')), cfg, LDA)
    // X-Spam is written only for spam: a forged one goes all the same
    assert.ok(!names(e.add).includes('X-Spam'))
    assert.ok(e.remove.includes('X-Spam'))
    assert.ok(!e.remove.includes('X-Spamd-Result'), 'another style’s name stays')
  })

  it('gives the plugin and rspamd-lda the same removes, and the same adds in their own orders', () => {
    const cfg = config({ spam_headers: { styles: 'lda,extended' } })
    const reply = parsed(json())
    const plugin = editsFor(reply, cfg, PLUGIN)
    const lda = editsFor(reply, cfg, LDA)
    assert.deepEqual(lda.remove, plugin.remove)
    assert.deepEqual(lda.removeAt, plugin.removeAt)
    const rspamds = ['DKIM-Signature', 'X-Spamd-Bar', 'X-Virus', 'ARC-Seal']
    const styles = names(plugin.add).filter((n) => !rspamds.includes(n))
    assert.deepEqual(styles.slice(0, 2), ['X-Spam-Scanner', 'X-Spam-Scan-Time'])
    assert.ok(styles.includes('X-Spamd-Result'))
    // the plugin: rspamd's, then ours (Haraka puts each on top); rspamd-lda: rspamc's set, then rspamd's
    assert.deepEqual(names(plugin.add), [...rspamds, ...styles])
    assert.deepEqual(names(lda.add), [...styles, ...rspamds])
    const byName = (fields: typeof plugin.add) => [...fields].sort((a, b) => a.name.localeCompare(b.name))
    assert.deepEqual(byName(lda.add), byName(plugin.add))
  })

  it('lists the refusals in the order of the adds', () => {
    const cfg = config({ spam_headers: { styles: 'lda', lda_json: true } })
    const j = withMilter(replyFor('add header'), { add_headers: { 'Bad Name': 'x' } })
    const reply = parsed(j)
    const facts = { ...STYLE, json: j as unknown as Record<string, unknown>, replyBytes: 1e9 }
    const plugin = editsFor(reply, cfg, { ...PLUGIN, style: facts }).dropped
    const lda = editsFor(reply, cfg, { ...LDA, style: facts }).dropped
    assert.equal(plugin.length, 2)
    assert.match(plugin[0] ?? '', /^add of invalid header name/)
    assert.match(plugin[1] ?? '', /^X-Spam-Result: /)
    assert.deepEqual(lda, [plugin[1], plugin[0]])
  })

  it('writes a rewritten Subject first, so it wins over rspamd’s, in either order', () => {
    const cfg = config()
    const j = withMilter(replyFor('rewrite subject'), { add_headers: { Subject: 'from rspamd' } })
    for (const opts of [PLUGIN, LDA]) {
      const e = editsFor(parsed(j), cfg, { ...opts, rewriteSubject: true, subject: 'Lunch on Thursday?' })
      assert.deepEqual(e.add[0], { name: 'Subject', value: '*** SPAM *** Lunch on Thursday?' })
      assert.equal(names(e.add).filter((n) => n === 'Subject').length, 1)
      assert.match(e.dropped.join('\n'), /add of 1 more subject value\(s\)/)
    }
  })

  it('writes no Subject when not asked to (rspamd-lda), whatever [rewrite_subject] says', () => {
    const cfg = config({ rewrite_subject: { enabled: true } })
    const e = editsFor(parsed(replyFor('rewrite subject')), cfg, LDA)
    assert.ok(!names(e.add).includes('Subject'))
  })

  it('folds with the line end it is given', () => {
    const cfg = config()
    const j = withDkim(replyFor('add header'), DKIM_SIGNATURE_EXAMPLE)
    const crlf = editsFor(parsed(j), cfg, { ...LDA, eol: '\r\n' })
    const dkim = crlf.add.find((f) => f.name === 'DKIM-Signature')?.value ?? ''
    assert.match(dkim, /\r\n[ \t]/)
    assert.doesNotMatch(dkim, /(?<!\r)\n/)
  })
})

describe('forgedHeaderNames(), unscannedEdits(): a message going on without a verdict', function () {
  it('with remove_foreign, every style’s verdict headers go', () => {
    const cfg = config()
    assert.deepEqual(forgedHeaderNames(cfg), verdictHeaderNames(cfg))
    assert.deepEqual(unscannedEdits(cfg), {
      remove: verdictHeaderNames(cfg),
      removeAt: [],
      add: [],
      dropped: [],
    })
  })

  it('without it, those of the configured styles', () => {
    const cfg = config({ spam_headers: { remove_foreign: false, styles: 'exim' } })
    assert.deepEqual(forgedHeaderNames(cfg), ['X-Spam-Score', 'X-Spam-Report'])
  })

  it('rspamd-lda’s failure headers are added, the forged ones removed', () => {
    const cfg = config()
    const e = unscannedEdits(cfg, ldaFailureStyle('t 1', { kind: 'timeout', message: 'slow' }, 1500), '\r\n')
    assert.deepEqual(names(e.add), ['X-Spam-Scanner', 'X-Spam-Scan-Time', 'X-Spam-Error'])
    assert.deepEqual(e.remove, verdictHeaderNames(cfg))
  })
})

describe('editsFor() through rspamd-lda: what it writes is what editsFor() gives', function () {
  this.timeout(20_000)
  let server: FakeRspamd
  before(async () => {
    server = await FakeRspamd.start()
  })
  after(async () => {
    await server.close()
  })

  it('the same reply: the plugin’s adds, in rspamc’s order, after the message’s own headers', async () => {
    const j = json()
    server.setReply(j)
    const msg = 'From: a@example.org\nX-Old: 1\nX-Spam: no\nSubject: hi\n\nbody\n'
    let out = ''
    let err = ''
    const sink = (f: (s: string) => void) =>
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          f(chunk.toString())
          cb()
        },
      })
    const code = await run(['--server', `127.0.0.1:${server.port}`], {
      stdin: Readable.from([Buffer.from(msg)]),
      stdout: sink((s) => (out += s)),
      stderr: sink((s) => (err += s)),
      env: {},
    })
    assert.equal(code, 0, err)
    const head = out.slice(0, out.indexOf('\n\n') + 1)
    const written = [...head.matchAll(/^([!-9;-~]+):/gm)].map((m) => m[1])
    // the lda style, then rspamd's; X-Old and the forged X-Spam gone (this reply is spam: ours is there)
    const cfg = config({ spam_headers: { styles: 'lda' } })
    const plugin = editsFor(parsed(j), cfg, PLUGIN)
    const lda = editsFor(parsed(j), cfg, LDA)
    assert.deepEqual(written, ['From', 'Subject', ...names(lda.add)])
    assert.deepEqual([...names(lda.add)].sort(), [...names(plugin.add)].sort())
    assert.equal(out.match(/^X-Spam: /gm)?.length, 1)
  })
})
