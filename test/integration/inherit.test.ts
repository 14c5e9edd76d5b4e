// The 1.6.x inheritance API in a real Haraka: a plugin of the operator's (plugins/rspamd_child.js)
// inherits this package's plugin with Haraka's own inherits(), asks the real rspamd itself over HTTP
// and hands the reply to handle_rspamd, which answers for it. This package's plugin is not in
// config/plugins: every verdict below comes through the child.

import assert from 'node:assert/strict'
import { corpus, headerBlock, withTestHeaders } from '../support/harness'
import { RealRspamd, RSPAMD_PORT } from '../support/real-rspamd'
import { Haraka } from './haraka'
import { queuedId, sendMail, type SendResult } from './smtp'

const CHILD = `'use strict'
exports.register = function () {
  this.inherits('rspamd')
  this.register_hook('data_post', 'child_data_post')
}
exports.child_data_post = function (next, connection) {
  if (!this.should_check(connection)) return next()
  const txn = connection.transaction
  const start = Date.now()
  txn.message_stream.get_data((body) => {
    fetch('http://127.0.0.1:${RSPAMD_PORT}/checkv2', {
      method: 'POST',
      body,
      headers: { IP: connection.remote.ip, 'Queue-Id': txn.uuid },
    })
      .then((res) => res.text())
      .then(
        (text) => this.handle_rspamd(next, connection, text, start),
        (err) => this.handle_rspamd(next, connection, { error: String(err) }, start),
      )
  })
}
`

describe('integration: a plugin that inherits this one, in a real Haraka with the real rspamd', function () {
  this.timeout(240_000)
  let haraka: Haraka
  let rspamd: RealRspamd | undefined

  before(async function () {
    rspamd = await RealRspamd.start()
    haraka = await Haraka.start({
      // the tests connect from 127.0.0.1, which [check] would skip as a local address
      rspamdIni: `host = 127.0.0.1\nport = ${RSPAMD_PORT}\ntimeout = 10\n[check]\nlocal_ip = true\nprivate_ip = true\n`,
      scan: false,
      pluginsBefore: ['rspamd_child'],
      extraPlugins: { rspamd_child: CHILD },
    })
  })
  after(async () => {
    await haraka?.stop()
    await rspamd?.restore()
  })

  const send = (data: Buffer): Promise<SendResult> =>
    sendMail({ port: haraka.port, from: 'alice@example.org', to: ['bob@example.net'], data })

  it("rejects GTUBE with handle_rspamd's 550 5.7.1 DSN", async () => {
    const res = await send(corpus('gtube.eml'))
    assert.equal(res.final.code, 550)
    assert.match(res.final.text, /5\.7\.1 Gtube pattern/)
    const line = await haraka.waitForLog(/\[core\].* message .*code=DENY/)
    assert.match(line, /msg="5\.7\.1 Gtube pattern/)
  })

  it('defers a soft reject with 451 4.7.1', async () => {
    const res = await send(withTestHeaders('ham.eml', { 'X-Test-Action': 'soft reject' }))
    assert.equal(res.final.code, 451)
    assert.match(res.final.text, /4\.7\.1 /)
  })

  it("adds the parent's spam headers for add header, and logs the scan as the child's", async () => {
    const res = await send(withTestHeaders('ham.eml', { 'X-Test-Action': 'add header' }))
    assert.equal(res.final.code, 250)
    const q = haraka.queued(queuedId(res.final) ?? '')
    assert.match(headerBlock(q.message), /^X-Rspamd-Score: 7\r$/m)
    await haraka.waitForLog(/\[rspamd_child\].*action="add header".*server="via rspamd_child"/)
    // scanned once, by the child: the parent's register() left its own hooks to a plugin named rspamd
    assert.equal(haraka.log.filter((l) => /action="add header"/.test(l)).length, 1, haraka.log.join('\n'))
    assert.equal(q.rspamd, null, "no results under the parent's name")
  })
})
