// The CPU-heavy test rule of the offline rspamd (X-Test-Burn in test/rspamd-server/rspamd.local.lua),
// which bench/overload.ts uses to saturate a real rspamd: it runs when asked, is capped, and ignores
// values that are not a positive number. Straight to rspamd's /checkv2, no Haraka.

import assert from 'node:assert/strict'
import { withTestHeaders } from '../support/harness'
import { RealRspamd, RSPAMD_PORT } from '../support/real-rspamd'

interface Symbol {
  options?: string[]
}

async function scan(headers: Record<string, string>): Promise<Record<string, Symbol>> {
  const res = await fetch(`http://127.0.0.1:${RSPAMD_PORT}/checkv2`, {
    method: 'POST',
    headers: { IP: '192.0.2.10', From: 'alice@example.org', Rcpt: 'bob@example.net' },
    body: withTestHeaders('ham.eml', headers),
  })
  assert.equal(res.status, 200)
  const json = (await res.json()) as { symbols?: Record<string, Symbol> }
  return json.symbols ?? {}
}

describe('real rspamd: the X-Test-Burn rule', function () {
  this.timeout(120_000)
  let rspamd: RealRspamd | undefined

  before(async () => {
    rspamd = await RealRspamd.start()
  })
  after(async () => {
    await rspamd?.restore()
  })

  it('burns the milliseconds the header asks for and says so in TEST_BURN', async () => {
    const symbols = await scan({ 'X-Test-Burn': '40', 'X-Test-Action': 'add header' })
    assert.deepEqual(symbols.TEST_BURN?.options, ['40ms'])
    assert.ok(symbols.TEST_ACTION, 'the other test rules still run')
  })

  it('caps the burn at 1000 ms, so that no header holds a worker for long', async () => {
    const symbols = await scan({ 'X-Test-Burn': '99999' })
    assert.deepEqual(symbols.TEST_BURN?.options, ['1000ms'])
  })

  it('does nothing without the header, or with a value that is not a positive number', async () => {
    assert.equal((await scan({})).TEST_BURN, undefined)
    for (const bad of ['abc', '-5', '0', 'nan']) {
      assert.equal((await scan({ 'X-Test-Burn': bad })).TEST_BURN, undefined, bad)
    }
  })
})
