// What an operator reads: a real Haraka with log.ini format=logfmt and the real rspamd. Each message
// the plugin handles gives one line whose fields logfmt keeps apart (skipped ones too, with the
// [check] key that would scan them), and Haraka's own per-message line carries the reply text.

import assert from 'node:assert/strict'
import { corpus, withTestHeaders } from '../support/harness'
import { RealRspamd, RSPAMD_PORT } from '../support/real-rspamd'
import { Haraka } from './haraka'
import { sendMail } from './smtp'

/** One logfmt line as key → value (quoted values unescaped as Haraka escapes them). */
function parseLogfmt(line: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const m of line.matchAll(/(\w+)=("((?:[^"\\]|\\.)*)"|\S*)/g)) {
    const [, key = '', raw = '', quoted] = m
    out[key] =
      quoted === undefined ? raw : quoted.replace(/\\(.)/g, (_all, c: string) => (c === 'n' ? '\n' : c))
  }
  return out
}

const BASE = `host = 127.0.0.1\nport = ${RSPAMD_PORT}\ntimeout = 10\n`

describe('integration: the log as an operator reads it (real Haraka, format=logfmt)', function () {
  this.timeout(240_000)
  let haraka: Haraka
  let rspamd: RealRspamd | undefined

  before(async () => {
    rspamd = await RealRspamd.start()
    haraka = await Haraka.start({
      rspamdIni: BASE,
      extraConfig: { 'log.ini': '[main]\nlevel=info\ntimestamps=false\nformat=logfmt\n' },
    })
  })
  after(async () => {
    await haraka?.stop()
    await rspamd?.restore()
  })

  const send = (data: Buffer) =>
    sendMail({ port: haraka.port, from: 'alice@example.org', to: ['bob@example.net'], data })

  /** The plugin's lines that have `key`, parsed, from the log so far. */
  const pluginLines = (key: string) =>
    haraka
      .logged(/origin=rspamd/)
      .map(parseLogfmt)
      .filter((f) => key in f)

  it('says at start-up which clients [check] leaves unscanned', async () => {
    const line = await haraka.waitForLog(/not scanned, per \[check\]/)
    const f = parseLogfmt(line)
    assert.match(f.message ?? '', /clients on this machine \(local_ip = false\)/)
    assert.match(f.message ?? '', /clients on private networks \(private_ip = false\)/)
  })

  it('logs a message it skips, with the reason and the key that would scan it', async () => {
    const res = await send(corpus('ham.eml'))
    assert.equal(res.final.code, 250, res.final.text)
    await haraka.waitForLog(/origin=rspamd .*skip=/)
    const [f] = pluginLines('skip')
    assert.equal(f?.skip, 'local_ip,private_ip')
    assert.match(f?.why ?? '', /\[check\] local_ip = true scans it/)
    assert.match(f?.size ?? '', /^\d+$/)
  })

  it('after a reload that scans local clients: one line of fields per message, and Haraka prints the reply', async () => {
    haraka.writeRspamdIni(`${BASE}[check]\nlocal_ip = true\nprivate_ip = true\n`)
    await haraka.waitForLog(/rspamd\.ini reloaded/, 30_000)

    const rejected = await send(corpus('gtube.eml'))
    assert.equal(rejected.final.code, 550)
    await haraka.waitForLog(/origin=rspamd .*verdict=deny/)
    const deny = pluginLines('verdict').find((f) => f.verdict === 'deny')
    assert.equal(deny?.action, 'reject')
    assert.equal(deny?.code, '550')
    assert.match(deny?.reply ?? '', /^5\.7\.1 Gtube pattern/)
    assert.match(deny?.server ?? '', new RegExp(`:${RSPAMD_PORT}$`))
    const core = haraka.logged(/origin=core .*code=DENY/).map(parseLogfmt)
    assert.match(core.at(-1)?.msg ?? '', /^5\.7\.1 Gtube pattern/, 'not "[object Object]"')

    const marked = await send(withTestHeaders('ham.eml', { 'X-Test-Action': 'add header' }))
    assert.equal(marked.final.code, 250)
    await haraka.waitForLog(/origin=rspamd .*action="add header"/)
    const add = pluginLines('verdict').find((f) => f.action === 'add header')
    assert.equal(add?.verdict, 'accept')
    assert.match(add?.score ?? '', /^-?\d+(\.\d+)?$/)
    assert.match(add?.ms ?? '', /^\d+(\.\d+)?$/)
    assert.ok(add?.symbols, 'the symbols are a field of their own')
    assert.equal(add?.code, undefined, 'no SMTP code of ours for an accepted message')
  })
})
