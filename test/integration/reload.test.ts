// A mistyped rspamd.ini on a running Haraka (this package installed from its npm tarball, the fake rspamd
// of test/support): the reload is refused with the key named, Haraka keeps running and keeps scanning
// with the config it had. Before issue 22, the https host:port typo killed Haraka from haraka-config's
// watch timer; a boolean typo silently read as false.

import assert from 'node:assert/strict'
import { FakeRspamd } from '../support/fake-rspamd'
import { corpus } from '../support/harness'
import { replyFor } from '../support/replies'
import { Haraka } from './haraka'
import { queuedId, sendMail } from './smtp'

describe('integration: real Haraka, a bad rspamd.ini reload', function () {
  this.timeout(120_000)
  let fake: FakeRspamd
  let haraka: Haraka

  const ini = (extra: string) =>
    `host = 127.0.0.1\nport = ${fake.port}\n[check]\nlocal_ip = true\nprivate_ip = true\n${extra}\n`

  before(async () => {
    fake = await FakeRspamd.start()
    fake.setReply(replyFor('reject'))
    haraka = await Haraka.start({ rspamdIni: ini('') })
  })
  after(async () => {
    await haraka?.stop()
    await fake?.close()
  })

  // [label, what the operator wrote, the key the refusal names]
  const TYPOS: Array<[string, string, string]> = [
    ['the port typed into an https host', 'scheme = https\nhost = rspamd.example.com:11334', 'host'],
    ['a boolean typo that would have turned rejecting off', '[reject]\nspam = flase', 'reject\\.spam'],
  ]
  for (const [label, typo, key] of TYPOS) {
    it(`refuses ${label}, naming ${key.replace('\\', '')}; Haraka stays up and scans with the old config`, async () => {
      const pid = haraka.pid
      assert.ok(pid !== undefined, 'Haraka runs')
      const refused = haraka.waitForLog(/rspamd\.ini reload refused/, 20_000, true)
      // the typo after the good lines: the last value of a key wins in haraka-config
      haraka.writeRspamdIni(ini('').replace(/\n\[check\]/, `\n${typo}\n[check]`))
      assert.match(await refused, new RegExp(`${key} = `))

      const before = fake.requests.length
      const res = await sendMail({
        port: haraka.port,
        from: 'alice@example.org',
        to: ['bob@example.net'],
        data: corpus('gtube.eml'),
      })
      assert.equal(haraka.pid, pid, 'the same Haraka process')
      assert.equal(fake.requests.length, before + 1, 'scanned by the rspamd of the running config')
      // [reject] spam = true of the running config: rspamd's reject is a 550
      assert.equal(res.final.code, 550, res.final.text)
      assert.equal(queuedId(res.final), undefined)
      assert.deepEqual(haraka.logged(/uncaught|Invalid URL|\[CRIT\]/i), [])
    })
  }

  it('names every bad key of a refused file on a line of its own, and the same file at the next start says the same, without a stack trace', async () => {
    const bad = ini('').replace(/\n\[check\]/, '\nadd_headers = bogus\n[reject]\nspam = flase\n[check]')
    const refusedLines = /rspamd\.ini reload refused/
    const before = haraka.logged(refusedLines).length
    haraka.writeRspamdIni(bad)
    await haraka.waitForLogCount(refusedLines, before + 2)
    const lines = haraka.logged(refusedLines).slice(before)
    assert.equal(lines.length, 2, lines.join('\n'))
    assert.match(lines[0] ?? '', /add_headers = "bogus": expected always, never or sometimes/)
    assert.match(lines[1] ?? '', /reject\.spam = "flase": expected true or false/)

    // the operator restarts Haraka without fixing the file: it does not start, and says why as clearly
    let log = ''
    await assert.rejects(Haraka.start({ rspamdIni: bad }), (err: Error) => {
      log = err.message
      return /exited with/.test(err.message)
    })
    const crit = log.split('\n').filter((l) => /\[CRIT\]/.test(l))
    assert.ok(
      crit.some((l) => /add_headers = "bogus": expected always, never or sometimes/.test(l)),
      log,
    )
    assert.ok(
      crit.some((l) => /reject\.spam = "flase": expected true or false/.test(l)),
      log,
    )
    assert.deepEqual(
      crit.filter((l) => /\bat (\S+ \()?\/\S+:\d+:\d+\)?$/.test(l)),
      [],
      'no stack frame in the log',
    )
    // and the running Haraka went on with its config all along
    assert.ok(haraka.pid !== undefined)
  })
})
