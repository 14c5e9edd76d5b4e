// Overload end to end (issue 26): a real Haraka with this package, `timeout = 2`, and a fake rspamd that
// finishes 25 scans a second one at a time (test/support/overload-rspamd.ts), offered about three times
// that for a few seconds. With generous bounds (bench/overload.ts measures the exact figures): most of
// rspamd's capacity becomes verdicts on messages, few scans are done for nobody, every SMTP client is
// answered in time and once, and no socket to rspamd is left behind. Without a concurrency limit in the
// plugin (every message sent to rspamd at once) the backlog makes most scans finish after their timeout:
// this test fails on a plugin without one.

import assert from 'node:assert/strict'
import { OverloadRspamd, SCAN_HEADER } from '../support/overload-rspamd'
import { corpus, headerBlock } from '../support/harness'
import { prng } from '../support/prng'
import { Haraka } from './haraka'
import { queuedId, sendMail } from './smtp'

const CAPACITY = 25
const TIMEOUT_S = 2
const RATE = 3 * CAPACITY
const ARRIVALS_MS = 8000
const MAX_SESSIONS = 60

interface Answer {
  code: number
  ms: number
  scanned: boolean
  error?: string
}

describe('integration: real Haraka + a saturated fake rspamd (issue 26)', function () {
  this.timeout(240_000)
  let haraka: Haraka | undefined
  let fake: OverloadRspamd | undefined

  before(async () => {
    fake = await OverloadRspamd.start('fifo', CAPACITY)
    haraka = await Haraka.start({
      rspamdIni:
        `host = 127.0.0.1\nport = ${fake.port}\ntimeout = ${TIMEOUT_S}\n` +
        '[check]\nlocal_ip = true\nprivate_ip = true\n',
    })
  })
  after(async () => {
    await haraka?.stop()
    await fake?.close()
  })

  it(`at ~3× capacity: goodput ≥ 0.5, wasted scans ≤ 25 %, every client answered once within timeout + 2 s`, async () => {
    const h = haraka as Haraka
    const server = fake as OverloadRspamd
    const data = corpus('ham.eml')
    const random = prng(26)
    const answers: Answer[] = []
    const sessions: Promise<void>[] = []
    let open = 0
    const waiting: (() => void)[] = []
    const one = async () => {
      if (open < MAX_SESSIONS) open++
      else await new Promise<void>((resolve) => waiting.push(resolve))
      try {
        const res = await sendMail({
          port: h.port,
          from: 'alice@example.org',
          to: ['bob@example.net'],
          data,
          timeoutMs: 60_000,
        })
        const id = queuedId(res.final)
        const scanned =
          res.final.code === 250 && id !== undefined
            ? new RegExp(`^${SCAN_HEADER}:`, 'im').test(headerBlock(h.queued(id).message))
            : false
        // one final reply per session: sendMail reads exactly one after the dot
        answers.push({ code: res.final.code, ms: res.dataMs, scanned })
      } catch (err) {
        answers.push({ code: 0, ms: NaN, scanned: false, error: String(err) })
      } finally {
        const next = waiting.shift()
        if (next) next()
        else open--
      }
    }
    const before = server.snapshot()
    const start = performance.now()
    for (let at = 0; at < ARRIVALS_MS; at += (-Math.log(1 - random()) * 1000) / RATE) {
      const wait = start + at - performance.now()
      if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait))
      sessions.push(one())
    }
    await Promise.all(sessions)
    const wallS = (performance.now() - start) / 1000
    // whatever rspamd still has queued finishes, and every connection to it closes
    await server.drained(30_000)
    const after = server.snapshot()

    const scanned = answers.filter((a) => a.scanned).length
    const performed = after.performed - before.performed
    const wasted = after.wasted - before.wasted
    const goodput = scanned / (wallS * CAPACITY)
    const slowest = Math.max(...answers.map((a) => a.ms))
    const summary =
      `${answers.length} messages in ${wallS.toFixed(1)} s, ${scanned} with a verdict (goodput ` +
      `${goodput.toFixed(2)}), rspamd performed ${performed} scans, ${wasted} for nobody; slowest answer ` +
      `${slowest.toFixed(0)} ms; codes ${[...new Set(answers.map((a) => a.code))].join(', ')}`
    console.log(`      ${summary}`)

    assert.deepEqual(
      answers.filter((a) => a.error !== undefined).map((a) => a.error),
      [],
      'every session ends with an answer',
    )
    // accepted unscanned per [defer] timeout = false, or scanned: nothing else
    assert.deepEqual(
      answers.filter((a) => a.code !== 250),
      [],
    )
    assert.equal(server.openConnections, 0, 'no socket left on the fake rspamd')
    assert.deepEqual(h.logged(/ran callback multiple times|timed out on hook|Plugin rspamd failed/), [])
    assert.ok(slowest <= (TIMEOUT_S + 2) * 1000, `an answer after ${slowest.toFixed(0)} ms: ${summary}`)
    assert.ok(goodput >= 0.5, `goodput ${goodput.toFixed(2)} < 0.5: ${summary}`)
    assert.ok(wasted <= 0.25 * performed, `${wasted} of ${performed} scans wasted: ${summary}`)
  })
})
