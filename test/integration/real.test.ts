// End to end: real rspamd (scripts/rspamd.sh, offline config in test/rspamd-server/) and real Haraka with this
// package installed from its npm tarball, over SMTP. Never skipped: no rspamd or Haraka is a failure.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { promisify } from 'node:util'
import { join } from 'node:path'
import { CORPUS, corpus, headerBlock, withTestHeaders } from '../support/harness'
import { FakeRspamd } from '../support/fake-rspamd'
import { RealRspamd, RSPAMD_PORT } from '../support/real-rspamd'
import { Haraka } from './haraka'
import { queuedId, sendMail, type SendResult } from './smtp'

const run = promisify(execFile)

function bodyOf(message: Buffer): Buffer {
  const i = message.indexOf('\r\n\r\n')
  return message.subarray(i + 4)
}

function headerValue(message: Buffer, name: string): string[] {
  const unfolded = headerBlock(message).replace(/\r\n[ \t]+/g, ' ')
  const re = new RegExp(`^${name}:[ \\t]*(.*)$`, 'gim')
  return [...unfolded.matchAll(re)].map((m) => m[1].replace(/\r$/, ''))
}

// the tests connect from 127.0.0.1, which [check] would skip as a local address
const BASE_INI = `host = 127.0.0.1\nport = ${RSPAMD_PORT}\ntimeout = 10\n[check]\nlocal_ip = true\nprivate_ip = true\n`

const AUTH_USER = 'alice@example.org'
const AUTH_PASS = 'correct horse'

describe('integration: real Haraka + real rspamd over SMTP', function () {
  this.timeout(240_000)
  let haraka: Haraka
  let rspamd: RealRspamd | undefined

  before(async function () {
    rspamd = await RealRspamd.start()
    // spool to disk after 1 MiB, as a production Haraka would for big mail, so memory shows the plugin
    haraka = await Haraka.start({
      rspamdIni: BASE_INI,
      spoolAfter: 1024 * 1024,
      // Haraka's own auth plugin, so that a sender can be authenticated as on a submission port
      pluginsBefore: ['auth/flat_file'],
      extraConfig: { 'auth_flat_file.ini': `[core]\nmethods=PLAIN\n[users]\n${AUTH_USER}=${AUTH_PASS}\n` },
    })
  })
  after(async () => {
    await haraka?.stop()
    await rspamd?.restore()
  })

  const send = (data: Buffer, to = ['bob@example.net']): Promise<SendResult> =>
    sendMail({ port: haraka.port, from: 'alice@example.org', to, data })

  it('loads this package from the Haraka directory, not the copy bundled with Haraka', async () => {
    const line = await haraka.waitForLog(/haraka-plugin-rspamd \S+ from /)
    assert.match(line, /haraka-plugin-rspamd 2\.\d+\.\d+ from /)
    assert.ok(line.includes(join(haraka.dir, 'node_modules', 'haraka-plugin-rspamd', 'dist')), line)
  })

  it('runs Haraka on the Node that runs the tests (CI runs the suite once per Node version)', () => {
    assert.equal(haraka.executable(), realpathSync(process.execPath))
  })

  it('accepts ham (no action) and queues the body byte for byte', async () => {
    const res = await send(corpus('ham.eml'))
    assert.equal(res.final.code, 250, res.final.text)
    const id = queuedId(res.final)
    assert.ok(id, res.final.text)
    const q = haraka.queued(id)
    assert.equal(q.rspamd?.action, 'no action')
    assert.equal(q.rspamd?.verdict, 'accept', 'a 2.x result (1.6.x records no verdict)')
    assert.ok(bodyOf(q.message).equals(bodyOf(corpus('ham.eml'))), 'body unchanged')
    assert.deepEqual(headerValue(q.message, 'X-Rspamd-Score'), [], 'no spam headers for ham')
  })

  it("rejects GTUBE with 550 and rspamd's smtp_message", async () => {
    const res = await send(corpus('gtube.eml'))
    assert.equal(res.final.code, 550)
    assert.match(res.final.text, /5\.7\.1 Gtube pattern/)
    // Haraka's own per-message line prints the reply text, not "[object Object]"
    const line = await haraka.waitForLog(/\[core\].* message .*code=DENY/)
    assert.match(line, /msg="5\.7\.1 Gtube pattern/)
  })

  it('rejects a score over the reject threshold with [reject] message when rspamd sends none', async () => {
    const res = await send(withTestHeaders('ham.eml', { 'X-Test-Action': 'reject' }))
    assert.equal(res.final.code, 550)
    assert.match(res.final.text, /5\.7\.1 Detected as spam/)
  })

  it('defers a soft reject with 451', async () => {
    const res = await send(withTestHeaders('ham.eml', { 'X-Test-Action': 'soft reject' }))
    assert.equal(res.final.code, 451)
    assert.match(res.final.text, /4\.7\.1 Test soft reject/)
  })

  it('accepts greylist (stateless, as 1.6.x)', async () => {
    const res = await send(withTestHeaders('ham.eml', { 'X-Test-Action': 'greylist' }))
    assert.equal(res.final.code, 250)
  })

  it('adds the spam headers for add header, folded and well-formed', async () => {
    const res = await send(withTestHeaders('ham.eml', { 'X-Test-Action': 'add header' }))
    assert.equal(res.final.code, 250)
    const q = haraka.queued(queuedId(res.final) ?? '')
    assert.deepEqual(headerValue(q.message, 'X-Rspamd-Score'), ['7'])
    assert.deepEqual(headerValue(q.message, 'X-Rspamd-Bar'), ['+++++++'])
    assert.match(headerValue(q.message, 'X-Rspamd-Report')[0] ?? '', /TEST_ACTION\([\d.]+\)/)
    for (const line of headerBlock(q.message).split('\r\n')) assert.ok(Buffer.byteLength(line) <= 998)
    assert.ok(bodyOf(q.message).equals(bodyOf(corpus('ham.eml'))))
  })

  it("rewrites the subject with rspamd's subject", async () => {
    const res = await send(withTestHeaders('ham.eml', { 'X-Test-Action': 'rewrite subject' }))
    assert.equal(res.final.code, 250)
    const q = haraka.queued(queuedId(res.final) ?? '')
    assert.deepEqual(headerValue(q.message, 'Subject'), ['*** SPAM *** Garden club meets on Wednesday'])
  })

  it('rewrites the subject of a ~280 KB Subject folded over 300 lines (10⁵ words), the forged verdict headers gone', async () => {
    // issue 22: this threw RangeError in the header code and went out unmarked, forged headers kept
    const subject = Array.from({ length: 300 }, () => `free money${' x'.repeat(460)}`).join('\r\n ')
    const ham = corpus('ham.eml')
      .toString()
      .replace(/^Subject:.*\r\n/m, '')
    const message = Buffer.from(
      `X-Test-Action: rewrite subject\r\nX-Spam: no\r\nX-Rspamd-Score: -50\r\nSubject: ${subject}\r\n${ham}`,
    )
    const res = await send(message)
    assert.equal(res.final.code, 250, res.final.text)
    const q = haraka.queued(queuedId(res.final) ?? assert.fail(res.final.text))
    assert.equal(q.rspamd?.action, 'rewrite subject')
    const written = headerValue(q.message, 'Subject')
    assert.equal(written.length, 1)
    assert.match(written[0] ?? '', /^\*\*\* SPAM \*\*\* free money x x/)
    assert.ok((written[0] ?? '').endsWith('[truncated]'), 'cut to the 16 KiB cap')
    assert.deepEqual(headerValue(q.message, 'X-Spam'), [])
    assert.deepEqual(headerValue(q.message, 'X-Rspamd-Score'), [])
    for (const line of headerBlock(q.message).split('\r\n')) assert.ok(Buffer.byteLength(line) <= 998)
  })

  it("applies rspamd's milter headers: adds X-Test-Added, removes X-Test-Remove", async () => {
    const res = await send(withTestHeaders('ham.eml', { 'X-Test-Milter': 'yes', 'X-Test-Remove': 'bye' }))
    assert.equal(res.final.code, 250)
    const q = haraka.queued(queuedId(res.final) ?? '')
    assert.deepEqual(headerValue(q.message, 'X-Test-Added'), ['1'])
    assert.deepEqual(headerValue(q.message, 'X-Test-Remove'), [])
  })

  it("applies rspamd's envelope changes: the queue sees the recipient and sender a Lua rule set", async () => {
    const res = await send(
      withTestHeaders('ham.eml', {
        'X-Test-Milter-Rcpt': '<archive@example.org>',
        'X-Test-Milter-Del-Rcpt': 'carol@example.net',
        'X-Test-Milter-From': 'bounces@example.org',
      }),
      ['bob@example.net', 'carol@example.net'],
    )
    assert.equal(res.final.code, 250, res.final.text)
    const q = haraka.queued(queuedId(res.final) ?? '')
    assert.equal(q.mail_from, 'bounces@example.org')
    assert.deepEqual(q.rcpt_to, ['bob@example.net', 'archive@example.org'])
    // Haraka's own class for the added recipient, as for the one from RCPT TO
    assert.equal(q.address_class[1], q.address_class[0])
    assert.equal(q.address_class[0], 'Address')
  })

  it("keeps the recipients when rspamd's del_rcpt would remove every one", async () => {
    const res = await send(withTestHeaders('ham.eml', { 'X-Test-Milter-Del-Rcpt': 'bob@example.net' }))
    assert.equal(res.final.code, 250, res.final.text)
    const q = haraka.queued(queuedId(res.final) ?? '')
    assert.deepEqual(q.rcpt_to, ['bob@example.net'])
    assert.ok(
      haraka.log.some((l) => l.includes('would leave no recipient')),
      'the refusal is logged',
    )
  })

  it("removes only the instance rspamd's milter block numbers (X-Test-Remove: 1 of two)", async () => {
    const message = Buffer.concat([
      Buffer.from('X-Test-Remove: first\r\nX-Test-Remove: second\r\n'),
      withTestHeaders('ham.eml', { 'X-Test-Milter': 'yes' }),
    ])
    const res = await send(message)
    assert.equal(res.final.code, 250)
    const q = haraka.queued(queuedId(res.final) ?? '')
    assert.deepEqual(headerValue(q.message, 'X-Test-Remove'), ['second'])
    assert.deepEqual(headerValue(q.message, 'X-Test-Added'), ['1'])
  })

  it('sends dot-stuffed lines to rspamd and the queue as the author wrote them', async () => {
    const res = await send(corpus('leading-dots.eml'))
    assert.equal(res.final.code, 250)
    const q = haraka.queued(queuedId(res.final) ?? '')
    assert.ok(bodyOf(q.message).equals(bodyOf(corpus('leading-dots.eml'))))
  })

  it('does not scan an authenticated sender with [check] authenticated=false, and scans it when true', async () => {
    const auth = { user: AUTH_USER, pass: AUTH_PASS }
    const sendAuthed = () =>
      sendMail({
        port: haraka.port,
        from: AUTH_USER,
        to: ['bob@example.net'],
        data: corpus('gtube.eml'),
        auth,
      })
    // GTUBE would be rejected if it were scanned: a 250 and the skip result prove it was not
    const skipped = await sendAuthed()
    assert.equal(skipped.final.code, 250, skipped.final.text)
    const q = haraka.queued(queuedId(skipped.final) ?? assert.fail(skipped.final.text))
    // Haraka relays for an authenticated sender: both reasons are recorded, as 1.6.x recorded them
    assert.deepEqual(q.rspamd?.skip, ['authed', 'relay'], 'haraka-results keeps skip as a list')
    assert.equal(q.rspamd?.action, undefined, 'no rspamd verdict for a skipped message')

    // an operator who wants outbound mail scanned too; [reject] authenticated=false (the default)
    // turns the reject into headers for an authenticated sender instead of refusing their mail
    const reloaded = haraka.waitForLog(/rspamd\.ini reloaded/, 20_000, true)
    haraka.writeRspamdIni(`${BASE_INI}authenticated = true\nrelay = true\n`)
    await reloaded
    try {
      const scanned = await sendAuthed()
      assert.equal(scanned.final.code, 250, scanned.final.text)
      const qs = haraka.queued(queuedId(scanned.final) ?? assert.fail(scanned.final.text))
      assert.equal(qs.rspamd?.action, 'reject')
      assert.deepEqual(qs.rspamd?.skip ?? [], [], 'scanned, not skipped')
      assert.ok(headerValue(qs.message, 'X-Rspamd-Score').length === 1, 'spam headers instead of a reject')
    } finally {
      const restored = haraka.waitForLog(/rspamd\.ini reloaded/, 20_000, true)
      haraka.writeRspamdIni(BASE_INI)
      await restored
    }
  })

  it('streams a 25 MB message to rspamd and queues it unchanged (prints Haraka’s peak RSS growth)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'large-'))
    try {
      const file = join(dir, 'large.eml')
      await run(process.execPath, [join(CORPUS, 'make-large.mjs'), '25', file])
      const data = readFileSync(file)
      const before = haraka.peakRss()
      const res = await sendMail({
        port: haraka.port,
        from: 'a@example.org',
        to: ['b@example.net'],
        data,
        timeoutMs: 120_000,
      })
      const growth = haraka.peakRss() - before
      assert.equal(res.final.code, 250, res.final.text)
      const q = haraka.queued(queuedId(res.final) ?? '')
      assert.equal(typeof q.rspamd?.action, 'string', 'rspamd scanned it')
      assert.ok(bodyOf(q.message).equals(bodyOf(data)), 'body unchanged')
      console.log(
        `      25 MB message (${data.length} bytes): Haraka peak RSS grew ${(growth / 2 ** 20).toFixed(1)} MiB; scan ${q.rspamd?.time} s`,
      )
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  /** Write the operator's rspamd.ini and wait until Haraka has reloaded it. */
  async function reconfigure(ini: string): Promise<void> {
    const reloaded = haraka.waitForLog(/rspamd\.ini reloaded/, 20_000, true)
    haraka.writeRspamdIni(ini)
    await reloaded
  }

  // each reload costs haraka-config's 5 s of file-watch settling: as few configs as the cases allow
  it('greylists with state when [greylist] enabled (451, 451 on an early retry, 250 after the delay) and skips mail over max_size', async () => {
    const delayMs = 2000
    await reconfigure(`max_size = 100k\n${BASE_INI}[greylist]\nenabled = true\ndelay = ${delayMs / 1000}\n`)
    const message = withTestHeaders('ham.eml', { 'X-Test-Action': 'greylist' })
    const to = ['greylisted@example.net']
    const firstStart = Date.now()
    const first = await send(message, to)
    const firstEnd = Date.now()
    assert.equal(first.final.code, 451, first.final.text)
    assert.match(first.final.text, /4\.7\.1 Try again later/)

    const early = await send(message, to)
    // the triplet was recorded between firstStart and firstEnd: only a retry that ended within the
    // delay of firstStart is certainly early (on a slow machine it may come later, and may pass)
    if (Date.now() - firstStart < delayMs) assert.equal(early.final.code, 451, early.final.text)

    // the greylist delay is wall-clock time in a real Haraka: wait it out from the end of the first attempt
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstEnd + delayMs - Date.now())))
    const retry = await send(message, to)
    assert.equal(retry.final.code, 250, retry.final.text)
    const q = haraka.queued(queuedId(retry.final) ?? '')
    assert.equal(q.rspamd?.action, 'greylist')
    assert.equal(q.rspamd?.greylist, 'passed')

    // another recipient is a new triplet: deferred again
    const other = await send(message, ['someone-else@example.net'])
    assert.equal(other.final.code, 451, other.final.text)

    // over max_size: not scanned, so not greylisted either
    const filler = Buffer.from(`${'filler '.repeat(10)}\r\n`.repeat(2000))
    const big = await send(Buffer.concat([message, filler]), to.concat('big@example.net'))
    assert.equal(big.final.code, 250, big.final.text)
    const qb = haraka.queued(queuedId(big.final) ?? '')
    assert.deepEqual(qb.rspamd?.skip, ['size'])
    assert.ok(
      haraka.logged(/\[rspamd\] +skip=size size=\d+ why="message over max_size \(102400 bytes\)"/).length > 0,
      'size skip logged',
    )
  })

  it('does not scan a whitelisted client or mail to a skip_ports port', async () => {
    try {
      const cases: Array<[ini: string, skip: string]> = [
        // BASE_INI ends in [check]: these keys go there
        [`${BASE_INI}whitelist = 192.0.2.0/24, 127.0.0.0/8\n`, 'whitelist'],
        [`${BASE_INI}skip_ports = 587, ${haraka.port}\n`, 'port'],
      ]
      for (const [ini, skip] of cases) {
        await reconfigure(ini)
        const res = await send(withTestHeaders('ham.eml', { 'X-Test-Action': 'reject' }))
        assert.equal(res.final.code, 250, `${skip}: ${res.final.text}`)
        const q = haraka.queued(queuedId(res.final) ?? '')
        assert.deepEqual(q.rspamd?.skip, [skip])
        assert.equal(q.rspamd?.action, undefined, `${skip}: not scanned`)
      }
    } finally {
      await reconfigure(BASE_INI)
    }
  })

  it('fails over from a server that refuses to the real rspamd, then keeps to the live one', async () => {
    const refusing = await FakeRspamd.unusedPort()
    // `servers` replaces host/port; the BASE_INI [check] keys stay
    const pool = `servers = 127.0.0.1:${refusing}, 127.0.0.1:${RSPAMD_PORT}\nconnect_timeout = 0.5\n${BASE_INI}`
    try {
      await reconfigure(pool)
      const first = await send(corpus('gtube.eml'))
      assert.equal(first.final.code, 550, 'the real rspamd scanned it after the failover')
      assert.match(first.final.text, /Gtube pattern/)
      await haraka.waitForLog(new RegExp(`failed over from http://127\\.0\\.0\\.1:${refusing}: connect: `))

      // the refusing server failed lately: the next message goes straight to the live one
      const second = await send(corpus('ham.eml'))
      assert.equal(second.final.code, 250)
      const q = haraka.queued(queuedId(second.final) ?? assert.fail(second.final.text))
      assert.equal(q.rspamd?.server, `http://127.0.0.1:${RSPAMD_PORT}`)
      assert.equal(q.rspamd?.failover, undefined, 'no failover for the second message')
      assert.ok(bodyOf(q.message).equals(bodyOf(corpus('ham.eml'))))
    } finally {
      await reconfigure(BASE_INI)
    }
  })

  it('removes forged verdict headers of every style from a clean message (remove_foreign default)', async () => {
    const res = await send(corpus('spoofed-verdict-headers.eml'))
    assert.equal(res.final.code, 250)
    const q = haraka.queued(queuedId(res.final) ?? assert.fail(res.final.text))
    assert.equal(q.rspamd?.action, 'no action', 'the corpus message is clean for the offline rspamd')
    for (const name of [
      'X-Rspamd-Score',
      'X-Rspamd-Bar',
      'X-Spam',
      'X-Spam-Action',
      'X-Spamd-Result',
      'X-Spam-Score',
    ]) {
      assert.deepEqual(headerValue(q.message, name), [], `${name} was forged and must be gone`)
    }
    assert.ok(bodyOf(q.message).equals(bodyOf(corpus('spoofed-verdict-headers.eml'))))
  })

  it('replaces forged verdict headers when add_headers=always, then follows [defer] when rspamd stops', async () => {
    const reloaded = haraka.waitForLog(/rspamd\.ini reloaded/, 20_000, true)
    haraka.writeRspamdIni(`add_headers = always\n${BASE_INI}`)
    await reloaded
    const res = await send(corpus('spoofed-verdict-headers.eml'))
    assert.equal(res.final.code, 250)
    const q = haraka.queued(queuedId(res.final) ?? '')
    const score = headerValue(q.message, 'X-Rspamd-Score')
    assert.equal(score.length, 1)
    assert.notEqual(score[0], '-42.0', 'the forged score is gone')

    // rspamd goes away: accept unscanned by default …
    await rspamd?.stop()
    const down = await send(corpus('ham.eml'))
    assert.equal(down.final.code, 250)
    const qd = haraka.queued(queuedId(down.final) ?? '')
    assert.match(String((qd.rspamd?.err as string[] | undefined)?.[0]), /^connect: /)
    // … or 451 once the operator sets [defer] error=true, picked up without a restart
    const reloadedAgain = haraka.waitForLog(/rspamd\.ini reloaded/, 20_000, true)
    haraka.writeRspamdIni(`${BASE_INI}[defer]\nerror = true\n`)
    await reloadedAgain
    const deferred = await send(corpus('ham.eml'))
    assert.equal(deferred.final.code, 451)
    assert.match(deferred.final.text, /Rspamd scan error/)
  })
})
