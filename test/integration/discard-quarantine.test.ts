// rspamd's discard and quarantine end to end: a real Haraka with Haraka's own queue/quarantine
// plugin (and no queue/discard: the plugin's own queue hook discards), a delivering queue plugin
// after them that ignores queue.wants, and the real rspamd answering `X-Test-Action: discard |
// quarantine` as a force_actions rule would. The last block loads Haraka's queue/discard as well, as
// an operator who already runs it does.

import assert from 'node:assert/strict'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { scratchDir, withTestHeaders } from '../support/harness'
import { RealRspamd, RSPAMD_PORT } from '../support/real-rspamd'
import { Haraka } from './haraka'
import { queuedId, sendMail, type SendResult } from './smtp'

const BASE_INI = `host = 127.0.0.1\nport = ${RSPAMD_PORT}\ntimeout = 10\n[check]\nlocal_ip = true\nprivate_ip = true\n`

/** Every file under `dir` but its tmp/ (queue/quarantine's half-written files), by path. */
function filesUnder(dir: string): string[] {
  const out: string[] = []
  const todo = [dir]
  for (let d = todo.pop(); d !== undefined; d = todo.pop()) {
    for (const name of readdirSync(d)) {
      const p = join(d, name)
      if (statSync(p).isDirectory()) {
        if (!(d === dir && name === 'tmp')) todo.push(p)
      } else out.push(p)
    }
  }
  return out
}

describe('integration: discard and quarantine through a real Haraka and the real rspamd', function () {
  this.timeout(240_000)
  let haraka: Haraka
  let rspamd: RealRspamd | undefined
  const quarantineDir = scratchDir('quarantine')

  before(async function () {
    rspamd = await RealRspamd.start()
    haraka = await Haraka.start({
      rspamdIni: BASE_INI,
      pluginsBefore: ['queue/quarantine'],
      extraConfig: { 'quarantine.ini': `[main]\nquarantine_path=${quarantineDir}\n` },
    })
  })
  after(async () => {
    await haraka?.stop()
    await rspamd?.restore()
  })

  const send = (action: string): Promise<SendResult> =>
    sendMail({
      port: haraka.port,
      from: 'alice@example.org',
      to: ['bob@example.net'],
      data: withTestHeaders('ham.eml', { 'X-Test-Action': action }),
    })

  it('says nothing at start-up: queue/quarantine is loaded, before the delivering queue plugin', () => {
    assert.deepEqual(haraka.logged(/\[quarantine\] action/), [])
  })

  it('discard: 250, nothing queued, nothing quarantined, verdict=discard in the log', async () => {
    const queued = haraka.queuedIds().length
    const quarantined = filesUnder(quarantineDir).length
    const res = await send('discard')
    assert.equal(res.final.code, 250, res.final.text)
    assert.doesNotMatch(res.final.text, /queued as/, 'the delivering queue plugin never saw it')
    await haraka.waitForLog(/discarding the message: rspamd's action is discard/)
    assert.equal(haraka.queuedIds().length, queued)
    assert.equal(filesUnder(quarantineDir).length, quarantined)
    assert.ok(
      haraka.logged(/\[rspamd\].*action=discard .*verdict=discard/).length >= 1,
      haraka.log.join('\n'),
    )
  })

  it('quarantine ([quarantine] action = queue): 250, the message in the quarantine folder with the spam headers, not queued', async () => {
    const queued = haraka.queuedIds().length
    const before = new Set(filesUnder(quarantineDir))
    const res = await send('quarantine')
    assert.equal(res.final.code, 250, res.final.text)
    assert.doesNotMatch(res.final.text, /queued as/)
    assert.equal(haraka.queuedIds().length, queued)
    const added = filesUnder(quarantineDir).filter((f) => !before.has(f))
    assert.equal(added.length, 1, added.join(', '))
    const stored = readFileSync(added[0], 'latin1')
    assert.match(stored, /^X-Test-Action: quarantine$/m)
    assert.match(stored, /^X-Rspamd-Score: /m, 'marked as spam')
    assert.match(added[0], /\/\d{8}\/[0-9A-F-.]+$/i, 'queue/quarantine names it <date>/<uuid>')
    assert.ok(haraka.logged(/\[rspamd\].*action=quarantine .*verdict=quarantine/).length >= 1)
  })

  for (const [how, code] of [
    ['soft_reject', 451],
    ['reject', 550],
  ] as const) {
    it(`quarantine with [quarantine] action = ${how}: ${code} with rspamd's text, nothing stored`, async () => {
      haraka.writeRspamdIni(`${BASE_INI}[quarantine]\naction = ${how}\n`)
      await haraka.waitForLog(/rspamd\.ini reloaded/, 20_000, true)
      const before = filesUnder(quarantineDir).length
      const queued = haraka.queuedIds().length
      const res = await send('quarantine')
      assert.equal(res.final.code, code, res.final.text)
      assert.match(res.final.text, /Test quarantine/)
      assert.equal(filesUnder(quarantineDir).length, before)
      assert.equal(haraka.queuedIds().length, queued)
    })
  }

  it('quarantine with [quarantine] action = accept: delivered (queued) with the spam headers', async () => {
    haraka.writeRspamdIni(`${BASE_INI}[quarantine]\naction = accept\n`)
    await haraka.waitForLog(/rspamd\.ini reloaded/, 20_000, true)
    const before = filesUnder(quarantineDir).length
    const res = await send('quarantine')
    assert.equal(res.final.code, 250, res.final.text)
    const id = queuedId(res.final)
    assert.ok(id, res.final.text)
    assert.match(haraka.queued(id).message.toString('latin1'), /^X-Rspamd-Score: /m)
    assert.equal(filesUnder(quarantineDir).length, before)
  })
})

describe('integration: quarantine without queue/quarantine in config/plugins', function () {
  this.timeout(240_000)
  let haraka: Haraka
  let rspamd: RealRspamd | undefined

  before(async function () {
    rspamd = await RealRspamd.start()
    haraka = await Haraka.start({ rspamdIni: BASE_INI })
  })
  after(async () => {
    await haraka?.stop()
    await rspamd?.restore()
  })

  it('says so at start-up, with the line to add', () => {
    const lines = haraka.logged(/queue\/quarantine is not in config\/plugins/)
    assert.equal(lines.length, 1, haraka.log.join('\n'))
    assert.match(lines[0], /add the line "queue\/quarantine" to config\/plugins/)
  })

  // in the queue phase Haraka answers a DENYSOFT with 450 whatever the code of the reply (4.7.1 kept)
  it('defers a message rspamd quarantines (450 4.7.1), never delivers it', async () => {
    const queued = haraka.queuedIds().length
    const res = await sendMail({
      port: haraka.port,
      from: 'alice@example.org',
      to: ['bob@example.net'],
      data: withTestHeaders('ham.eml', { 'X-Test-Action': 'quarantine' }),
    })
    assert.equal(res.final.code, 450, res.final.text)
    assert.match(res.final.text, /^4\.7\.1 Message held for review/)
    assert.equal(haraka.queuedIds().length, queued)
  })

  it('still discards without queue/discard: 250, nothing queued', async () => {
    const queued = haraka.queuedIds().length
    const res = await sendMail({
      port: haraka.port,
      from: 'alice@example.org',
      to: ['bob@example.net'],
      data: withTestHeaders('ham.eml', { 'X-Test-Action': 'discard' }),
    })
    assert.equal(res.final.code, 250, res.final.text)
    assert.equal(haraka.queuedIds().length, queued)
  })
})

describe('integration: discard with queue/discard in config/plugins', function () {
  // an operator who already runs Haraka's queue/discard: the two agree (queue.wants = discard), the
  // message is answered 250 once and delivered nowhere, and ham still reaches the delivering queue
  this.timeout(240_000)
  let haraka: Haraka
  let rspamd: RealRspamd | undefined

  before(async function () {
    rspamd = await RealRspamd.start()
    haraka = await Haraka.start({ rspamdIni: BASE_INI, pluginsBefore: ['queue/discard'] })
  })
  after(async () => {
    await haraka?.stop()
    await rspamd?.restore()
  })

  const send = (headers: Record<string, string>): Promise<SendResult> =>
    sendMail({
      port: haraka.port,
      from: 'alice@example.org',
      to: ['bob@example.net'],
      data: withTestHeaders('ham.eml', headers),
    })

  it('loads queue/discard (the plugin list Haraka logs names it)', () => {
    assert.equal(haraka.logged(/loading queue\/discard$/).length, 1, haraka.log.join('\n'))
  })

  it('discard: 250, nothing queued, one discard line', async () => {
    const queued = haraka.queuedIds().length
    const discards = haraka.logged(/discarding (the )?message/).length
    const res = await send({ 'X-Test-Action': 'discard' })
    assert.equal(res.final.code, 250, res.final.text)
    assert.doesNotMatch(res.final.text, /queued as/)
    await haraka.waitForLog(/\[rspamd\].*action=discard .*verdict=discard/)
    assert.equal(haraka.queuedIds().length, queued)
    // our queue hook (priority -100) answers first; queue/discard never has to
    const lines = haraka.logged(/discarding (the )?message/)
    assert.equal(lines.length, discards + 1, lines.join('\n'))
  })

  it('no action: queue/discard lets it through to the delivering queue plugin', async () => {
    const queued = haraka.queuedIds().length
    const res = await send({ 'X-Test-Action': 'no action' })
    assert.equal(res.final.code, 250, res.final.text)
    assert.match(res.final.text, /queued as/)
    assert.equal(haraka.queuedIds().length, queued + 1)
  })
})
