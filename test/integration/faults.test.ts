// Fault injection end to end: real Haraka with this package installed from its npm tarball, the fake
// rspamd of test/support misbehaving, and an SMTP client. The most important modes under both [defer]
// values, the client going away, and a load of 200 messages against a hanging and a resetting rspamd.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { FakeRspamd, type Mode } from '../support/fake-rspamd'
import { CORPUS, corpus } from '../support/harness'
import { Haraka } from './haraka'
import { queuedId, sendMail, type SendResult } from './smtp'

const run = promisify(execFile)

function bodyOf(message: Buffer): Buffer {
  return message.subarray(message.indexOf('\r\n\r\n') + 4)
}
const MiB = 1024 * 1024
const TIMEOUT_S = 1

interface Row {
  name: string
  mode: Mode
  policy: 'error' | 'timeout'
  /** the start of the error the plugin records and logs */
  err: RegExp
  /** send the 30 MB message */
  large?: boolean
}

const ROWS: Row[] = [
  { name: 'accepts, then never answers (hang)', mode: 'hang', policy: 'timeout', err: /^timeout: no reply/ },
  {
    name: 'answers headers, then stalls the body (stall-body)',
    mode: 'stall-body',
    policy: 'timeout',
    err: /^timeout: no reply/,
  },
  {
    name: 'resets the socket while a 30 MB message is sent (reset-on-body)',
    mode: 'reset-on-body:1048576',
    policy: 'error',
    err: /^network: /,
    large: true,
  },
  {
    name: 'closes right after accept (close-on-accept)',
    mode: 'close-on-accept',
    policy: 'error',
    err: /^network: /,
  },
  {
    name: 'HTTP 500 with JSON {"error": …}',
    mode: 'status:500',
    policy: 'error',
    err: /^http: HTTP 500: fake/,
  },
  {
    name: 'HTTP 502 with an HTML page',
    mode: 'html:502',
    policy: 'error',
    err: /^http: HTTP 502: 502 Bad Gateway/,
  },
  { name: '200 with non-JSON (garbage)', mode: 'garbage', policy: 'error', err: /^parse: reply is not JSON/ },
  { name: 'a 50 MB reply (huge)', mode: `huge:${50 * MiB}`, policy: 'error', err: /^too-large: / },
]

/** Lines that mean an error escaped the plugin or next() ran twice. */
const ESCAPED = /unhandled|uncaught|TypeError|ReferenceError|callback multiple times|\[CRIT\]/i

describe('integration: real Haraka + a misbehaving rspamd over SMTP', function () {
  this.timeout(240_000)
  let fake: FakeRspamd
  let haraka: Haraka
  let dir: string
  let large: Buffer

  const ini = (extra: string) =>
    `host = 127.0.0.1\nport = ${fake.port}\ntimeout = ${TIMEOUT_S}\n` +
    `[check]\nlocal_ip = true\nprivate_ip = true\n${extra}\n`

  /** Rewrite rspamd.ini and wait until the running Haraka has it. */
  async function reload(text: string): Promise<void> {
    const reloaded = haraka.waitForLog(/rspamd\.ini reloaded/, 20_000, true)
    haraka.writeRspamdIni(text)
    await reloaded
  }

  const send = (data: Buffer, timeoutMs = 60_000): Promise<SendResult> =>
    sendMail({ port: haraka.port, from: 'alice@example.org', to: ['bob@example.net'], data, timeoutMs })

  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'faults-it-'))
    const file = join(dir, 'large.eml')
    await run(process.execPath, [join(CORPUS, 'make-large.mjs'), '30', file])
    large = readFileSync(file)
    fake = await FakeRspamd.start({ keepAliveMs: 1 })
    haraka = await Haraka.start({ rspamdIni: ini(''), spoolAfter: MiB })
  })
  after(async () => {
    await haraka?.stop()
    await fake?.close()
    rmSync(dir, { recursive: true, force: true })
  })
  afterEach(() => {
    fake.setMode('ok')
  })

  for (const defer of [false, true]) {
    describe(`[defer] error=${defer}, timeout=${defer}`, function () {
      before(() => reload(ini(`[defer]\nerror = ${defer}\ntimeout = ${defer}`)))

      for (const row of ROWS) {
        it(`${row.name} → ${defer ? '451' : '250, queued unscanned'}`, async () => {
          fake.setMode(row.mode)
          const seen = fake.requests.length
          const res = await send(row.large ? large : corpus('ham.eml'), 120_000)
          if (!row.large) {
            // a bound on hangs (the plugin's timeout fired, not Haraka's 30 s), not a speed check
            assert.ok(
              res.dataMs < (TIMEOUT_S + 1) * 1000,
              `answered ${Math.round(res.dataMs)} ms after the dot`,
            )
          }
          if (defer) {
            assert.equal(res.final.code, 451, res.final.text)
            const text = row.policy === 'timeout' ? 'Rspamd scan timeout' : 'Rspamd scan error'
            assert.equal(res.final.text, `4.7.1 ${text}`)
          } else {
            assert.equal(res.final.code, 250, res.final.text)
            const q = haraka.queued(queuedId(res.final) ?? '')
            const err = q.rspamd?.err as string[] | undefined
            assert.equal(err?.length, 1)
            assert.match(err?.[0] ?? '', row.err)
            if (row.large) assert.ok(bodyOf(q.message).equals(bodyOf(large)), 'the whole message was queued')
          }
          assert.equal(fake.requests.length, seen + (row.mode === 'close-on-accept' ? 0 : 1))
          // the plugin closed every socket it opened to the fake. After an aborted scan the pool
          // opens one spare connection that carries no request and idles out after undici's
          // keepAliveTimeout, 4 s (nodejs/undici#5845): hence the wait longer than that
          await fake.waitForIdle(10_000)
          assert.deepEqual(haraka.logged(ESCAPED), [])
        })
      }

      it(`connection refused → ${defer ? '451' : '250, queued unscanned'}`, async () => {
        // the last of its group: the next group's before() points Haraka back at the fake
        const port = await FakeRspamd.unusedPort()
        await reload(ini(`[defer]\nerror = ${defer}`).replace(`port = ${fake.port}`, `port = ${port}`))
        const res = await send(corpus('ham.eml'))
        assert.equal(res.final.code, defer ? 451 : 250, res.final.text)
        if (!defer) {
          const err = haraka.queued(queuedId(res.final) ?? '').rspamd?.err as string[] | undefined
          assert.match(err?.[0] ?? '', /^connect: ECONNREFUSED/)
        }
      })
    })
  }

  describe('the SMTP client goes away', function () {
    // a long timeout: the rspamd request must end because the client went, not because it timed out
    before(() => reload(ini('').replace(`timeout = ${TIMEOUT_S}`, 'timeout = 20')))
    after(() => reload(ini('')))

    it('during the scan: the rspamd request is aborted, nothing is queued, no error escapes', async () => {
      fake.setMode('hang')
      const seen = fake.requests.length
      const queuedBefore = haraka.queuedIds().length
      const logBefore = haraka.log.length
      await sendMail({
        port: haraka.port,
        from: 'alice@example.org',
        to: ['bob@example.net'],
        data: corpus('ham.eml'),
        dropAfterData: true,
      })
      await fake.waitForRequests(seen + 1)
      // closed by the abort, long before the plugin's own 20 s timeout
      await fake.waitForIdle(10_000)
      await haraka.waitForLog(/client dropped connection|disconnect/, 10_000)
      assert.equal(haraka.queuedIds().length, queuedBefore, 'nothing queued')
      const after = haraka.log.slice(logBefore)
      assert.deepEqual(
        after.filter((l) => ESCAPED.test(l)),
        [],
      )
      assert.deepEqual(
        after.filter((l) => /\[rspamd\].*(timeout|score)/.test(l)),
        [],
        'nothing recorded for the gone transaction',
      )
    })

    it('during DATA: no scan is started, no error is logged', async () => {
      const seen = fake.requests.length
      const logBefore = haraka.log.length
      const socket = connect({ host: '127.0.0.1', port: haraka.port })
      const replies: string[] = []
      await new Promise<void>((resolve, reject) => {
        socket.setEncoding('latin1')
        socket.on('error', reject)
        const script = [
          'EHLO client.example.org',
          'MAIL FROM:<alice@example.org>',
          'RCPT TO:<bob@example.net>',
          'DATA',
        ]
        socket.on('data', (chunk: string) => {
          replies.push(chunk)
          // one command per final reply line; after 354, half a message and gone
          if (!/^\d{3} /m.test(chunk)) return
          const line = script.shift()
          if (line) socket.write(`${line}\r\n`)
          else {
            socket.write(corpus('ham.eml').subarray(0, 200))
            socket.destroy()
            resolve()
          }
        })
      })
      await haraka.waitForLog(/client dropped connection|client half closed/, 10_000)
      assert.ok(replies.join('').includes('354'), replies.join(''))
      assert.equal(fake.requests.length, seen, 'no request to rspamd')
      assert.deepEqual(
        haraka.log.slice(logBefore).filter((l) => ESCAPED.test(l) || /\[ERROR\].*rspamd/.test(l)),
        [],
      )
    })
  })

  describe('load: 200 messages at concurrency 20', function () {
    before(() => reload(ini('')))

    for (const mode of ['hang', 'reset-on-body:0'] as const) {
      it(`against ${mode}: every client answered, sockets closed, Haraka's memory printed`, async () => {
        fake.setMode(mode)
        const total = 200
        const before = haraka.rss()
        let started = 0
        const codes: number[] = []
        const worker = async () => {
          while (started < total) {
            started++
            const res = await send(corpus('ham.eml'))
            codes.push(res.final.code)
          }
        }
        const t0 = performance.now()
        await Promise.all(Array.from({ length: 20 }, worker))
        const seconds = (performance.now() - t0) / 1000
        await fake.waitForIdle(10_000)
        const after = haraka.rss()
        assert.equal(codes.length, total)
        assert.deepEqual(
          codes.filter((c) => c !== 250),
          [],
          'every message accepted per [defer]',
        )
        assert.deepEqual(haraka.logged(ESCAPED), [])
        console.log(
          `      ${mode}: ${total} messages in ${seconds.toFixed(1)} s; Haraka RSS ${(before / MiB).toFixed(1)} → ` +
            `${(after / MiB).toFixed(1)} MiB (peak so far ${(haraka.peakRss() / MiB).toFixed(1)} MiB)`,
        )
        // a leak guard, generous: V8 keeps the heap it grew, but 200 small messages must not hold 64 MiB
        assert.ok(after - before < 64 * MiB, `RSS grew ${((after - before) / MiB).toFixed(1)} MiB`)
      })
    }
  })
})
