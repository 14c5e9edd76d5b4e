// Fault injection: the built plugin in haraka-test-fixtures against a fake rspamd that misbehaves in
// every way the issue lists, each mode under both [defer] values, and rspamd replies or messages
// crafted to break the headers we write. One row per mode, so the output reads as the list of faults.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { FixturePlugin } from 'haraka-test-fixtures'
import { FakeRspamd, makeSelfSignedCert, type Mode } from './support/fake-rspamd'
import { replyFor } from './support/replies'
import {
  CORPUS,
  DENYSOFT,
  assertWellFormed,
  captureLogs,
  connectionWith,
  corpus,
  dataPost,
  headerBlock,
  iniFor,
  loadPlugin,
  queuedMessage,
  replyCode,
  replyText,
  unregister,
  type HookResult,
} from './support/harness'

const run = promisify(execFile)
const MB = 1024 * 1024

/** What a row expects: a failure that follows [defer] (which key, the logged error), or a delivery. */
type Expect =
  | { kind: 'fail'; policy: 'error' | 'timeout'; log: RegExp }
  | { kind: 'accept'; action: string; warn?: RegExp }

interface Row {
  /** the fault, as it reads in the test output */
  name: string
  /** which fake answers: the plain HTTP one (default), the TLS one, or none (a closed port) */
  target?: 'http' | 'tls' | 'refused'
  mode?: Mode
  reply?: object
  /** rspamd.ini timeout in s (default 1): the bound the client must be answered within, + 1 s */
  timeout?: number
  /** the message (default ham.eml) */
  message?: () => Buffer
  expect: Expect
  /** extra check on the fake afterwards */
  after?: (fake: FakeRspamd) => void
}

let large: Buffer | undefined
/** a 30 MB message (corpus make-large.mjs), made once per run */
const largeMessage = () => {
  if (!large) throw new Error('the large message was not made in before()')
  return large
}

const fail = (policy: 'error' | 'timeout', log: RegExp): Expect => ({ kind: 'fail', policy, log })
const timedOut = fail('timeout', /^timeout: no reply from rspamd within 1000 ms/)

const ROWS: Row[] = [
  { name: 'connection refused', target: 'refused', expect: fail('error', /^connect: ECONNREFUSED/) },
  { name: 'accepts, then never answers (hang)', mode: 'hang', expect: timedOut },
  { name: 'accepts, never reads the body (hang-before-body)', mode: 'hang-before-body', expect: timedOut },
  { name: 'answers headers, then stalls the body (stall-body)', mode: 'stall-body', expect: timedOut },
  {
    name: 'answers just under the timeout (delay:1200, timeout=2)',
    mode: 'delay:1200',
    timeout: 2,
    expect: { kind: 'accept', action: 'no action' },
  },
  {
    name: 'answers just over the timeout (delay:2600, timeout=2)',
    mode: 'delay:2600',
    timeout: 2,
    expect: fail('timeout', /^timeout: no reply from rspamd within 2000 ms/),
  },
  {
    name: 'resets the socket while a 30 MB message is sent (reset-on-body:1048576)',
    mode: 'reset-on-body:1048576',
    timeout: 10,
    message: largeMessage,
    expect: fail('error', /^network: /),
    after: (fake) => {
      const req = fake.lastRequest
      assert.ok(req && req.bodyBytes >= MB && !req.bodyComplete, 'reset part-way through the body')
    },
  },
  {
    name: 'closes right after accept (close-on-accept)',
    mode: 'close-on-accept',
    expect: fail('error', /^network: /),
  },
  ...[500, 400, 404].map((status) => ({
    name: `HTTP ${status} with JSON {"error": …} (status:${status})`,
    mode: `status:${status}` as Mode,
    expect: fail('error', new RegExp(`^http: HTTP ${status}: fake rspamd: status ${status}`)),
  })),
  ...[500, 400, 404].map((status) => ({
    name: `HTTP ${status} with an HTML page (html:${status})`,
    mode: `html:${status}` as Mode,
    expect: fail('error', new RegExp(`^http: HTTP ${status}: ${status} \\w`)),
  })),
  {
    name: '200 with non-JSON (garbage)',
    mode: 'garbage',
    expect: fail('error', /^parse: reply is not JSON/),
  },
  {
    name: '200 with truncated JSON (truncated)',
    mode: 'truncated',
    expect: fail('error', /^parse: reply is not JSON/),
  },
  { name: '200 with an empty body (empty)', mode: 'empty', expect: fail('error', /^parse: empty reply/) },
  {
    name: '200 with action: 42',
    reply: replyFor('add header', { action: 42 as unknown as string }),
    expect: fail('error', /^parse: reply has no action \(got 42\)/),
  },
  {
    name: '200 with score: "x"',
    reply: replyFor('add header', { score: 'x' as unknown as number }),
    expect: { kind: 'accept', action: 'add header', warn: /ignored score: "x"/ },
  },
  {
    name: '200 with symbols: []',
    reply: replyFor('add header', { symbols: [] as unknown as Record<string, never> }),
    expect: { kind: 'accept', action: 'add header', warn: /ignored symbols: an array/ },
  },
  {
    name: '200 with milter: "x"',
    reply: replyFor('add header', { milter: 'x' as unknown as object }),
    expect: { kind: 'accept', action: 'add header', warn: /ignored milter: "x"/ },
  },
  {
    name: '200 with an unknown action ("spam trap")',
    reply: replyFor('no action', { action: 'spam trap' }),
    expect: { kind: 'accept', action: 'spam trap', warn: /unknown action "spam trap" .*: accepting/ },
  },
  ...(['huge', 'huge-chunked'] as const).map((kind) => ({
    name: `a 50 MB reply${kind === 'huge' ? ' with Content-Length' : ', chunked'} (${kind}:52428800)`,
    mode: `${kind}:${50 * MB}` as Mode,
    timeout: 10,
    expect: fail('error', /^too-large: reply (of 52428800 bytes )?is over the 16777216 byte cap/),
    after: (fake: FakeRspamd) => {
      const req = fake.lastRequest
      assert.ok(req && !req.replyComplete, 'the reply was not read to its end')
      // what the fake handed to its socket: at most the cap plus what the socket buffers held
      assert.ok(req.replyBytes < 24 * MB, `read stopped near the cap (fake wrote ${req.replyBytes} bytes)`)
    },
  })),
  {
    name: 'a TLS server with a certificate we do not trust (scheme=https)',
    target: 'tls',
    expect: fail('error', /^connect: .*self.signed certificate/i),
    after: (fake) => assert.ok(fake.totalConnections > 0, 'the handshake was tried'),
  },
]

/** Exceptions and rejections nobody handled, while a test runs. */
const escaped: unknown[] = []
const onEscape = (err: unknown) => escaped.push(err)

describe('faults: a misbehaving rspamd, per [defer] (haraka-test-fixtures)', function () {
  this.timeout(60_000)
  let http: FakeRspamd
  let tls: FakeRspamd
  let dir: string
  let plugin: FixturePlugin | undefined

  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'faults-'))
    const file = join(dir, 'large.eml')
    await run(process.execPath, [join(CORPUS, 'make-large.mjs'), '30', file])
    large = readFileSync(file)
    // sockets close as soon as a reply is complete: one left open is one the plugin did not close
    http = await FakeRspamd.start({ keepAliveMs: 1 })
    const cert = await makeSelfSignedCert(dir)
    tls = await FakeRspamd.startTls({ key: cert.key, cert: cert.cert, keepAliveMs: 1 })
    process.on('uncaughtException', onEscape)
    process.on('unhandledRejection', onEscape)
  })
  after(async () => {
    process.off('uncaughtException', onEscape)
    process.off('unhandledRejection', onEscape)
    await http?.close()
    await tls?.close()
    rmSync(dir, { recursive: true, force: true })
    large = undefined
  })
  afterEach(async () => {
    if (plugin) await unregister(plugin)
    plugin = undefined
  })

  for (const row of ROWS) {
    // transport = auto under both [defer] values, then the transport auto did not pick (undici for
    // http://, node:https for https://): every fault behaves the same over both
    const other = row.target === 'tls' ? 'node' : 'undici'
    for (const [defer, transport] of [
      [false, 'auto'],
      [true, 'auto'],
      [true, other],
    ] as const) {
      const e = row.expect
      const outcome =
        e.kind === 'accept'
          ? `delivers (${e.action})`
          : defer
            ? `451 with defer.${e.policy}=true`
            : `accepts unscanned with defer.${e.policy}=false`
      it(`${row.name} → ${outcome}${transport === 'auto' ? '' : ` (transport = ${transport})`}`, async () => {
        const timeout = row.timeout ?? 1
        const fake = row.target === 'tls' ? tls : http
        const port = row.target === 'refused' ? await FakeRspamd.unusedPort() : fake.port
        fake.setMode(row.mode ?? 'ok')
        fake.setReply(row.reply)
        const scheme = row.target === 'tls' ? 'scheme = https\n' : ''
        plugin = loadPlugin(
          `host = 127.0.0.1\nport = ${port}\n${scheme}timeout = ${timeout}\ntransport = ${transport}\n` +
            `[defer]\nerror = ${defer}\ntimeout = ${defer}\n`,
        )
        const conn = await connectionWith(row.message ? row.message() : corpus('ham.eml'))
        const logs = captureLogs(conn)
        escaped.length = 0
        const before = fake.requests.length

        const start = performance.now()
        const res: HookResult = await dataPost(plugin, conn)
        const ms = performance.now() - start
        // a correctness bound on hangs (the plugin's own timeout fired), not a speed check
        assert.ok(ms < timeout * 1000 + 1000, `answered after ${Math.round(ms)} ms, timeout is ${timeout} s`)

        const txn = conn.transaction
        assert.ok(txn)
        const result = txn.results.get('rspamd')
        if (e.kind === 'fail') {
          if (defer) {
            assert.equal(res.code, DENYSOFT)
            assert.equal(replyCode(res.msg), 451)
            const text = e.policy === 'timeout' ? 'Rspamd scan timeout' : 'Rspamd scan error'
            assert.equal(replyText(res.msg), `4.7.1 ${text}`)
          } else assert.equal(res.code, undefined, 'accepted')
          const err = result?.err as string[] | undefined
          assert.ok(err?.length === 1, 'one error recorded')
          assert.match(err[0], e.log)
          const errors = logs.filter((l) => l.startsWith('ERROR'))
          assert.equal(errors.length, 1, `one error logged: ${errors.join(' | ')}`)
          assert.match(
            errors[0],
            new RegExp(`${defer ? 'deferring with 451' : 'accepting'} per \\[defer\\]\\)$`),
          )
          assert.equal(txn.header.get('X-Rspamd-Score'), '', 'no verdict headers on an unscanned message')
        } else {
          assert.equal(res.code, undefined, 'delivered')
          assert.equal(result?.action, e.action)
          assert.deepEqual(result?.err ?? [], [], 'no error recorded')
          if (e.warn)
            assert.ok(
              logs.some((l) => l.startsWith('WARN') && e.warn?.test(l)),
              logs.join('\n'),
            )
        }
        const reaches = row.target !== 'refused' && row.target !== 'tls' && row.mode !== 'close-on-accept'
        assert.equal(fake.requests.length, before + (reaches ? 1 : 0), 'requests that reached the fake')
        row.after?.(fake)

        // every socket the scan opened is closed by the plugin itself (the pool is still open).
        // Should a transport keep an idle connection after a reply body was dropped mid-stream (the
        // 50 MB rows), it closes it after its 4 s idle timeout: hence a wait longer than that
        await fake.waitForIdle(10_000)
        await new Promise((r) => setImmediate(r))
        assert.equal(res.calls(), 1, 'next() called exactly once')
        assert.deepEqual(escaped, [], 'no exception escaped')
        if (process.env.PRINT_FAULT_LOGS)
          console.log(`        log: ${logs.filter((l) => !l.startsWith('INFO')).join(' | ')}`)
      })
    }
  }
})

/** The field names of a message's header block, in order. */
function headerNames(message: Buffer): string[] {
  return headerBlock(message)
    .split('\r\n')
    .filter((l) => l !== '' && !/^[ \t]/.test(l))
    .map((l) => l.slice(0, l.indexOf(':')))
}

/** A header's values in a queued message, unfolded. */
function valuesOf(message: Buffer, name: string): string[] {
  const unfolded = headerBlock(message).replace(/\r\n[ \t]+/g, ' ')
  return unfolded
    .split('\r\n')
    .filter((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`))
    .map((l) => l.slice(name.length + 1).trim())
}

describe('faults: hostile headers (haraka-test-fixtures)', function () {
  let fake: FakeRspamd
  let plugin: FixturePlugin | undefined
  before(async () => {
    fake = await FakeRspamd.start({ keepAliveMs: 1 })
  })
  after(async () => {
    await fake?.close()
  })
  afterEach(async () => {
    if (plugin) await unregister(plugin)
    plugin = undefined
  })

  /** Scan `message` with rspamd answering `reply`; the queued message and the log. */
  async function scan(
    reply: object,
    message: Buffer | string = corpus('ham.eml'),
    ini = '',
  ): Promise<{ queued: Buffer; logs: string[]; code: number | undefined }> {
    fake.setReply(reply)
    plugin = loadPlugin(iniFor(fake, ini))
    const conn = await connectionWith(message)
    const logs = captureLogs(conn)
    const res = await dataPost(plugin, conn)
    const queued = await queuedMessage(conn)
    assertWellFormed(queued)
    return { queued, logs, code: res.code }
  }

  describe("rspamd's milter block", function () {
    it('strips CR/LF from added values: nothing is smuggled in as a header of its own', async () => {
      const { queued } = await scan(
        replyFor('no action', {
          milter: {
            add_headers: {
              'X-Inject': 'a\r\nBcc: victim@example.com',
              'X-Inject-Lf': 'b\nX-Rspamd-Score: -100\n',
              'X-Inject-Cr': 'c\rSubject: free money',
              'X-Inject-Nul': 'd\u0000e\r\n\r\nbody text',
            },
          },
        }),
      )
      const names = headerNames(queued).map((n) => n.toLowerCase())
      for (const smuggled of ['bcc', 'x-rspamd-score']) assert.ok(!names.includes(smuggled), smuggled)
      assert.equal(names.filter((n) => n === 'subject').length, 1)
      assert.deepEqual(valuesOf(queued, 'X-Inject'), ['a Bcc: victim@example.com'])
      assert.deepEqual(valuesOf(queued, 'X-Inject-Nul'), ['de body text'])
      const ham = corpus('ham.eml')
      const body = ham.subarray(ham.indexOf('\r\n\r\n'))
      assert.equal(
        queued.indexOf('\r\n\r\n'),
        queued.length - body.length,
        'the body still starts after the one blank line',
      )
    })

    const badNames = [
      'X Spaced',
      'X-Colon:Name',
      'X-Ünïcode',
      'Bcc:evil@example.com\r\nX-A',
      '',
      'X-Tab\tName',
    ]
    it('drops added headers whose names are not RFC 5322 field names, and logs each', async () => {
      const add: Record<string, string> = { 'X-Good': 'kept' }
      for (const n of badNames) add[n] = 'v'
      const { queued, logs } = await scan(replyFor('no action', { milter: { add_headers: add } }))
      const names = headerNames(queued)
      assert.deepEqual(
        names.filter((n) => !headerNames(corpus('ham.eml')).includes(n)),
        ['X-Good'],
        'only the valid one was added',
      )
      // one line for them all, naming the first few and counting the rest
      const refused = logs.filter((l) => /^WARN header edit refused: add of invalid header name/.test(l))
      assert.equal(refused.length, 1, logs.join('\n'))
      assert.match(refused[0] ?? '', new RegExp(` and ${badNames.length - 5} more$`))
    })

    it('folds 10 000-character values, with and without spaces, into lines of at most 998 octets', async () => {
      const words = Array.from({ length: 1000 }, (_, i) => `word${i}`)
        .join(' ')
        .slice(0, 10_000)
      const { queued } = await scan(
        replyFor('no action', {
          milter: { add_headers: { 'X-Words': words, 'X-Solid': 'x'.repeat(10_000) } },
        }),
      )
      assert.deepEqual(valuesOf(queued, 'X-Words'), [words], 'a long value with spaces is folded, not cut')
      const solid = valuesOf(queued, 'X-Solid')
      assert.equal(solid.length, 1)
      // no whitespace to fold at: broken hard, so unfolding leaves spaces where the breaks were
      assert.equal(solid[0].replace(/ /g, ''), 'x'.repeat(10_000))
    })

    it('adds at most 100 of an array of 500 values, and logs the rest once', async () => {
      const values = Array.from({ length: 500 }, (_, i) => `v${i}`)
      const { queued, logs } = await scan(
        replyFor('no action', { milter: { add_headers: { 'X-Flood': values } } }),
      )
      assert.deepEqual(valuesOf(queued, 'X-Flood'), values.slice(0, 100))
      assert.equal(
        logs.filter((l) => /400 more value\(s\) over the limit of 100 per name: 400 X-Flood$/.test(l)).length,
        1,
      )
    })

    describe('removes only the instances rspamd numbers, the others staying where they were', function () {
      const AR = ['mx.example; spf=pass', 'relay.example; dkim=pass', 'origin.example; dmarc=pass']
      const message = () =>
        `${AR.map((v) => `Authentication-Results: ${v}\r\n`).join('')}X-Between: kept\r\n${corpus('ham.eml').toString()}`
      const ROWS: Array<[label: string, positions: number | number[], left: string[]]> = [
        ['1: the first', 1, [AR[1], AR[2]] as string[]],
        ['-1: the last', -1, [AR[0], AR[1]] as string[]],
        ['[1, 3]: the first and the third', [1, 3], [AR[1]] as string[]],
        ['[-2]: the second from the end', [-2], [AR[0], AR[2]] as string[]],
        ['4: none, there are three', 4, AR],
        ['0: every one', 0, []],
      ]
      for (const [label, positions, left] of ROWS) {
        it(label, async () => {
          const { queued, logs } = await scan(
            replyFor('no action', { milter: { remove_headers: { 'Authentication-Results': positions } } }),
            message(),
          )
          assert.deepEqual(valuesOf(queued, 'Authentication-Results'), left)
          // the ones kept are still above X-Between, as in the message
          const lines = headerBlock(queued).split('\r\n')
          const between = lines.indexOf('X-Between: kept')
          assert.ok(between >= 0)
          for (const v of left) {
            const at = lines.indexOf(`Authentication-Results: ${v}`)
            assert.ok(at >= 0 && at < between, `${v} kept in place`)
          }
          assert.deepEqual(
            logs.filter((l) => /header edit|cannot remove/.test(l)),
            [],
          )
        })
      }
    })

    it('removes every instance, with a warning, where the header object is not shaped as Haraka makes it', async () => {
      fake.setReply(replyFor('no action', { milter: { remove_headers: { 'X-Check': 1 } } }))
      plugin = loadPlugin(iniFor(fake))
      const conn = await connectionWith(`X-Check: one\r\nX-Check: two\r\n${corpus('ham.eml').toString()}`)
      // parsed values out of step with the lines: which line is the first cannot be told
      const header = conn.transaction?.header as unknown as { headers: Record<string, string[]> }
      header.headers['x-check']?.push('a third value without a line')
      const logs = captureLogs(conn)
      await dataPost(plugin, conn)
      const queued = await queuedMessage(conn)
      assert.deepEqual(valuesOf(queued, 'X-Check'), [])
      assert.ok(
        logs.includes(
          "WARN cannot remove single X-Check headers from this Haraka's transaction: removing every one",
        ),
        logs.join('\n'),
      )
    })

    it('removes every instance of a numbered header that rspamd also adds', async () => {
      const message = `X-Check: one\r\nX-Check: two\r\n${corpus('ham.eml').toString()}`
      const { queued } = await scan(
        replyFor('no action', {
          milter: { remove_headers: { 'X-Check': 1 }, add_headers: { 'X-Check': 'ours' } },
        }),
        message,
      )
      assert.deepEqual(valuesOf(queued, 'X-Check'), ['ours'])
    })

    it('refuses to remove trace and structural headers (Received, From, …) and logs it', async () => {
      const message = `Received: from a.example by b.example; Tue, 24 Nov 2026 10:00:00 +0000\r\n${corpus('ham.eml').toString()}`
      const { queued, logs } = await scan(
        replyFor('no action', {
          milter: { remove_headers: { Received: 0, From: 1, 'Message-ID': 0, 'X-Mailer': 0 } },
        }),
        message,
      )
      assert.equal(valuesOf(queued, 'Received').length, 1)
      assert.equal(valuesOf(queued, 'From').length, 1)
      assert.equal(valuesOf(queued, 'Message-ID').length, 1)
      assert.ok(
        logs.includes('WARN header edit refused: remove of protected header Received, From, Message-ID'),
        logs.join('\n'),
      )
    })
  })

  describe('forged verdict headers (spoofed-verdict-headers.eml)', function () {
    it('replaces the forged X-Rspamd-* headers with ours', async () => {
      const { queued } = await scan(replyFor('add header'), corpus('spoofed-verdict-headers.eml'))
      assert.deepEqual(valuesOf(queued, 'X-Rspamd-Score'), ['6.5'])
      assert.deepEqual(valuesOf(queued, 'X-Rspamd-Bar'), ['++++++'])
    })

    it("replaces the forged X-Spam-* headers with rspamd's milter ones", async () => {
      const { queued } = await scan(
        replyFor('add header', {
          milter: {
            add_headers: {
              'X-Spam': 'Yes',
              'X-Spam-Action': 'add header',
              'X-Spamd-Result': 'default: True [6.50 / 15.00]',
            },
          },
        }),
        corpus('spoofed-verdict-headers.eml'),
      )
      assert.deepEqual(valuesOf(queued, 'X-Spam'), ['Yes'])
      assert.deepEqual(valuesOf(queued, 'X-Spam-Action'), ['add header'])
      assert.deepEqual(valuesOf(queued, 'X-Spamd-Result'), ['default: True [6.50 / 15.00]'])
    })
  })

  it('writes a non-ASCII [spambar] bar RFC 2047-encoded, decoding to the bar', async () => {
    const { queued } = await scan(replyFor('add header'), corpus('ham.eml'), '[spambar]\npositive = ★\n')
    const raw = valuesOf(queued, 'X-Rspamd-Bar')[0] ?? ''
    assert.ok(/^[\x20-\x7e]+$/.test(raw), `written as ASCII: ${raw}`)
    const conn = await connectionWith(queued)
    assert.equal(
      conn.transaction?.header
        .get_decoded('X-Rspamd-Bar')
        .replace(/\r?\n[ \t]*/g, '')
        .trim(),
      '★★★★★★',
    )
  })

  describe('subject rewrite', function () {
    const rewrite = () => {
      const r = replyFor('rewrite subject')
      delete (r as { subject?: unknown }).subject
      return r
    }
    const withSubject = (subject: string | undefined) => {
      const ham = corpus('ham.eml')
        .toString()
        .replace(/^Subject: .*\r\n/m, '')
      return subject === undefined ? ham : `Subject: ${subject}\r\n${ham}`
    }
    const decoded = async (queued: Buffer) => {
      const conn = await connectionWith(queued)
      return conn.transaction?.header
        .get_decoded('Subject')
        .replace(/\r?\n[ \t]*/g, ' ')
        .trim()
    }

    it('an RFC 2047 subject stays encoded and decodes to the rewritten text', async () => {
      const { queued } = await scan(rewrite(), corpus('utf8-subject.eml'))
      assert.ok(/^[\x20-\x7e]*$/.test(valuesOf(queued, 'Subject')[0] ?? ''), 'written as ASCII')
      assert.equal(await decoded(queued), '[SPAM] Menü der Woche – Crème brûlée & 抹茶')
    })

    it('a 1 000-character subject is folded, whole', async () => {
      const long = Array.from({ length: 200 }, (_, i) => `w${String(i).padStart(3, '0')}`).join(' ')
      assert.equal(long.length, 999)
      const { queued } = await scan(rewrite(), withSubject(long))
      assert.deepEqual(valuesOf(queued, 'Subject'), [`[SPAM] ${long}`])
    })

    it('a subject holding %s and $& is copied literally', async () => {
      const { queued } = await scan(rewrite(), withSubject('100%s off, $& and $1 %s'))
      assert.deepEqual(valuesOf(queued, 'Subject'), ['[SPAM] 100%s off, $& and $1 %s'])
    })

    it('a message without a Subject gets one: the template with an empty %s', async () => {
      const { queued } = await scan(rewrite(), withSubject(undefined))
      assert.deepEqual(valuesOf(queued, 'Subject'), ['[SPAM]'])
    })
  })
})

describe('faults: the SMTP client goes away (haraka-test-fixtures)', function () {
  let fake: FakeRspamd
  let plugin: FixturePlugin | undefined
  before(async () => {
    fake = await FakeRspamd.start({ keepAliveMs: 1, mode: 'hang' })
  })
  after(async () => {
    if (plugin) await unregister(plugin)
    await fake?.close()
  })

  it('before the hook runs (its socket already closed): no rspamd request outlives it', async () => {
    // a timeout far beyond the waits below: only the client's departure can end the request
    plugin = loadPlugin(`host = 127.0.0.1\nport = ${fake.port}\ntimeout = 25\n`, { timeout: 30 })
    const conn = await connectionWith(corpus('ham.eml'))
    // Haraka's socket emitted 'close' before data_post ran: a listener added now never fires
    conn.client = Object.assign(new EventEmitter(), { destroyed: true })
    captureLogs(conn)
    const res = await dataPost(plugin, conn)
    await fake.waitForIdle()
    await new Promise((r) => setImmediate(r))
    assert.equal(res.calls(), 1)
    const err = conn.transaction?.results.get('rspamd')?.err as string[] | undefined
    assert.match(err?.[0] ?? '', /^aborted: /)
  })
})
