// Greylisting across Haraka's cluster workers: real Haraka with nodes=2, real rspamd answering `greylist`,
// triplets in a real Redis (scripts/redis.sh). The first attempt is deferred, every retry after the delay
// passes whichever worker takes it; with Redis stopped mid-run mail flows per [defer] and scanning goes on.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO, withTestHeaders } from '../support/harness'
import { REDIS_INI, redisServer } from '../support/redis'
import { Haraka } from './haraka'
import { queuedId, sendMail } from './smtp'

const run = promisify(execFile)
const RSPAMD_PORT = Number(process.env.RSPAMD_PORT ?? 11343)

async function rspamd(cmd: 'start' | 'stop'): Promise<void> {
  await run('bash', [join(REPO, 'scripts', 'rspamd.sh'), cmd], {
    timeout: 300_000,
    env: { ...process.env, RSPAMD_PORT: String(RSPAMD_PORT) },
  })
}

const DELAY_S = 2
// the tests connect from 127.0.0.1, which [check] would skip as a local address
const INI =
  `host = 127.0.0.1\nport = ${RSPAMD_PORT}\ntimeout = 10\n[check]\nlocal_ip = true\nprivate_ip = true\n` +
  `[greylist]\nenabled = true\ndelay = ${DELAY_S}\nstore = redis\nkey_prefix = it-cluster:\n`

describe('integration: greylisting in Redis across Haraka cluster workers (nodes=2)', function () {
  this.timeout(240_000)
  let haraka: Haraka

  before(async function () {
    await Promise.all([rspamd('start'), redisServer('start')])
    haraka = await Haraka.start({ rspamdIni: INI, nodes: 2, extraConfig: { 'redis.ini': REDIS_INI } })
  })
  after(async () => {
    await haraka?.stop()
    await Promise.all([rspamd('stop'), redisServer('stop')])
  })

  const greylisted = withTestHeaders('ham.eml', { 'X-Test-Action': 'greylist' })
  const send = (data = greylisted, to = ['carol@example.net']) =>
    sendMail({ port: haraka.port, from: 'dave@example.org', to, data })

  it('loads this package in each worker and connects each to Redis', async () => {
    const loaded = await haraka.waitForLog(/haraka-plugin-rspamd \S+ from /)
    assert.ok(loaded.includes(join(haraka.dir, 'node_modules', 'haraka-plugin-rspamd', 'dist')), loaded)
    await haraka.waitForLog(/greylist store: connected to redis:\/\/127\.0\.0\.1:\d+\/0/)
    assert.deepEqual(haraka.logged(/store = memory with \d+ cluster workers/), [], 'no per-worker warning')
  })

  it('defers the first attempt with 451 and passes every attempt after the delay, on either worker', async () => {
    const firstEnd = await send().then((res) => {
      assert.equal(res.final.code, 451, res.final.text)
      assert.match(res.final.text, /4\.7\.1 Try again later/)
      return Date.now()
    })
    // the greylist delay is wall-clock time in a real Haraka (and in Redis): wait it out
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstEnd + DELAY_S * 1000 - Date.now())))
    const workers = new Set<number>()
    const codes: number[] = []
    for (let i = 0; i < 6; i++) {
      const res = await send()
      codes.push(res.final.code)
      const id = queuedId(res.final)
      if (id) workers.add(haraka.queued(id).pid)
    }
    assert.deepEqual(codes, [250, 250, 250, 250, 250, 250])
    // the cluster hands connections round-robin: the retries reached both workers
    assert.equal(workers.size, 2, `queued by workers ${[...workers].join(', ')}`)
  })

  it('keeps mail flowing per [defer] when Redis stops mid-run; Haraka stays up and goes on scanning', async () => {
    const CONNECTED = /greylist store: connected to/
    const connected = haraka.logged(CONNECTED).length
    await redisServer('stop')
    try {
      const codes: number[] = []
      for (let i = 0; i < 4; i++) {
        const res = await send(greylisted, [`new${i}@example.net`])
        codes.push(res.final.code)
        if (res.final.code === 250) {
          assert.equal(haraka.queued(queuedId(res.final) ?? '').rspamd?.greylist, 'error')
        }
      }
      // [defer] error = false (the default): accepted, though these triplets are new
      assert.deepEqual(codes, [250, 250, 250, 250])
      assert.ok(
        haraka.logged(/greylist store redis:\/\/\S+: error: .*; accepting per \[defer\] error/).length > 0,
      )
      const spam = await send(withTestHeaders('ham.eml', { 'X-Test-Action': 'reject' }))
      assert.equal(spam.final.code, 550, 'still scanning')
    } finally {
      await redisServer('start')
    }
    // back: both workers reconnect on their own, and greylisting resumes (a new triplet is deferred)
    await haraka.waitForLogCount(CONNECTED, connected + 2)
    for (let i = 0; i < 4; i++) {
      const res = await send(greylisted, [`after-restart-${i}@example.net`])
      assert.equal(res.final.code, 451, res.final.text)
    }
  })
})
