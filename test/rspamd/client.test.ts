// src/rspamd/client.ts against fake rspamd servers: the server pool (least busy, round robin), rmilter's
// upstream health (max_errors within error_time → dead for dead_time), and failover that pipes the
// message again from the start on the next server, within one total timeout.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createServer as httpCreateServer } from 'node:http'
import { createHash } from 'node:crypto'
import dns from 'node:dns'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Readable, type Writable } from 'node:stream'
import { parseConfig, type Config } from '../../src/config'
import {
  RspamdClient,
  ScanCancel,
  SMALL_MESSAGE_BYTES,
  type ClientEvent,
  type MessageSource,
  type ScanOutcome,
} from '../../src/rspamd/client'
import { blackHole } from '../support/black-hole'
import { FakeRspamd, makeSelfSignedCert } from '../support/fake-rspamd'
import { replyFor } from '../support/replies'
import { connectionWith, dataPost, loadPlugin, REPO, unregister } from '../support/harness'

/** A message source over a buffer that can be piped again after an unpipe, counting its pipes. */
function bufferSource(message: Buffer): MessageSource & { pipes: number } {
  let current: Readable | undefined
  const chunks: Buffer[] = []
  for (let i = 0; i < message.length; i += 16 * 1024) chunks.push(message.subarray(i, i + 16 * 1024))
  return {
    pipes: 0,
    pipe(dest: Writable) {
      this.pipes++
      current = Readable.from(chunks, { objectMode: false })
      current.pipe(dest)
    },
    unpipe() {
      current?.unpipe()
      current?.destroy()
    },
  }
}

/** A 5 MB message of CRLF lines made by `line(i)`. */
function bigMessage(line: (i: number) => string): Buffer {
  const lines = ['From: a@example.org', 'To: b@example.net', 'Subject: big', '']
  let size = 0
  for (let i = 0; size < 5 * 1024 * 1024; i++) {
    const l = line(i)
    lines.push(l)
    size += l.length + 2
  }
  return Buffer.from(`${lines.join('\r\n')}\r\n`)
}

const run = promisify(execFile)

/** the transports a server can be given (transport = auto picks one of them per server) */
const TRANSPORTS_UNDER_TEST = ['node', 'undici'] as const

const SMALL = Buffer.from('From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello\r\n')

function configFor(servers: string, extra = ''): Config {
  const ini: Record<string, Record<string, string>> = { main: { servers } }
  for (const line of extra.split('\n').filter(Boolean)) {
    const m = /^\[?(\w+)\]?\.(\w+)\s*=\s*(.*)$/.exec(line)
    if (!m) throw new Error(`bad test line ${line}`)
    const [, sec = 'main', key = '', value = ''] = m
    ini[sec] = { ...(ini[sec] ?? {}), [key]: value }
  }
  return parseConfig(ini)
}

describe('client: which transport each server gets', function () {
  const names = (extra = '') =>
    new RspamdClient(configFor('127.0.0.1:11333, https://127.0.0.1:11334, /run/rspamd/normal.sock', extra))
      .health()
      .map((h) => h.transport)

  it('transport = auto: node:http for http:// and unix sockets, undici for https://', () => {
    assert.deepEqual(names(), ['node:http', 'undici', 'node:http'])
  })
  it('transport = node: node:http, and node:https for https://', () => {
    assert.deepEqual(names('main.transport = node'), ['node:http', 'node:https', 'node:http'])
  })
  it('transport = undici: undici for every server', () => {
    assert.deepEqual(names('main.transport = undici'), ['undici', 'undici', 'undici'])
  })
  it('loads undici only once a server uses it (loading it costs ~19 MB of RSS)', async () => {
    // a fresh process: this one has undici loaded by other tests
    const script = `
      const { RspamdClient } = require('./dist/src/rspamd/client.js')
      const { parseConfig } = require('./dist/src/config/index.js')
      const loaded = () => Object.keys(require.cache).some((f) => f.includes('/node_modules/undici/'))
      require('./dist/index.js')
      new RspamdClient(parseConfig({ main: { servers: '127.0.0.1:1, /tmp/none.sock' } }))
      const before = loaded()
      new RspamdClient(parseConfig({ main: { servers: 'https://127.0.0.1:1' } }))
      console.log(JSON.stringify([before, loaded()]))`
    const { stdout } = await run(process.execPath, ['-e', script], { cwd: REPO })
    assert.deepEqual(JSON.parse(stdout.trim().split('\n').pop() ?? ''), [false, true])
  })
})

// every client test runs over both transports: node:http (node:https for TLS) and undici
for (const transport of TRANSPORTS_UNDER_TEST) {
  describe(`client over ${transport}: server pool, health and failover`, function () {
    this.timeout(30_000)
    const servers: FakeRspamd[] = []
    const clients: RspamdClient[] = []
    const start = async (mode?: Parameters<typeof FakeRspamd.start>[0]) => {
      const s = await FakeRspamd.start(mode)
      servers.push(s)
      return s
    }
    const client = (cfg: Config, opts: ConstructorParameters<typeof RspamdClient>[1] = {}) => {
      const c = new RspamdClient(cfg, { transport, ...opts })
      clients.push(c)
      return c
    }
    afterEach(async () => {
      await Promise.all(clients.splice(0).map((c) => c.destroy()))
      await Promise.all(servers.splice(0).map((s) => s.close()))
    })

    const scan = (c: RspamdClient, message = SMALL, timeoutMs = 4_000): Promise<ScanOutcome> =>
      c.scan({ headers: {}, source: bufferSource(message), timeoutMs })

    it('a server named by a host name is looked up once for many scans, and again after a failed connection', async () => {
      // every getaddrinfo of the process goes through dns.lookup, ours and net.connect's own alike
      const asked: string[] = []
      const dnsModule = dns as unknown as { lookup: (...args: unknown[]) => void }
      const real = dnsModule.lookup
      dnsModule.lookup = (...args: unknown[]) => {
        // (the fake servers' listen() looks up 127.0.0.1 here too)
        if (args[0] === 'localhost') asked.push(String(args[0]))
        real(...args)
      }
      try {
        // a new connection for every scan, as rspamd itself closes each one
        const good = await start({ reply: replyFor('no action'), closeEach: true })
        const c = client(configFor(`localhost:${good.port}`))
        for (let i = 0; i < 5; i++) assert.equal((await scan(c)).ok, true)
        assert.deepEqual(asked, ['localhost'])
        assert.equal(good.requests.length, 5)

        asked.length = 0
        const refusing = await FakeRspamd.unusedPort()
        const down = client(configFor(`localhost:${refusing}`))
        for (let i = 0; i < 2; i++) assert.equal((await scan(down)).ok, false)
        assert.deepEqual(asked, ['localhost', 'localhost'], 'each failed connection drops the cached answer')
      } finally {
        dnsModule.lookup = real
      }
    })

    it('close() lets a scan in flight fail over to a server it had not used yet (a reload that changes the servers)', async () => {
      const hanging = await start({ mode: 'hang' })
      const good = await start({ reply: replyFor('reject') })
      const c = client(configFor(`127.0.0.1:${hanging.port}, 127.0.0.1:${good.port}`))
      // the first scan goes to the first server: the silent one
      const pending = c.scan({
        headers: {},
        source: bufferSource(SMALL),
        timeoutMs: 2_000,
        sizeHint: SMALL.length,
      })
      await hanging.waitForRequests(1)
      let closed = false
      const closing = c.close().then(() => (closed = true))
      const r = await pending
      assert.ok(r.ok, r.ok ? '' : `${r.error.kind}: ${r.error.message}`)
      assert.equal(r.server, good.url)
      assert.equal(r.reply.action, 'reject')
      await closing
      assert.ok(closed)
    })

    it('close() waits for a scan that is still reading its message before it sends', async () => {
      const good = await start({ reply: replyFor('no action') })
      const c = client(configFor(`127.0.0.1:${good.port}`))
      const slow: MessageSource = {
        pipe(dest: Writable) {
          const r = new Readable({ read() {} })
          setTimeout(() => {
            r.push(SMALL)
            r.push(null)
          }, 100)
          r.pipe(dest)
        },
        unpipe() {},
      }
      const pending = c.scan({ headers: {}, source: slow, timeoutMs: 2_000, sizeHint: SMALL.length })
      const order: string[] = []
      const closing = c.close().then(() => order.push('closed'))
      const r = await pending
      order.push('scanned')
      await closing
      assert.ok(r.ok, r.ok ? '' : `${r.error.kind}: ${r.error.message}`)
      assert.equal(good.requests.length, 1)
      assert.deepEqual(order, ['scanned', 'closed'])
    })

    it('close() with no scan in flight closes at once', async () => {
      const good = await start({ reply: replyFor('no action') })
      const c = client(configFor(`127.0.0.1:${good.port}`))
      assert.equal((await scan(c)).ok, true)
      await c.close()
    })

    it('scans every message on the good server when the others refuse or hang, and reports the figures', async () => {
      const refusing = await FakeRspamd.unusedPort()
      const hanging = await start({ mode: 'hang' })
      const good = await start({ reply: replyFor('no action') })
      const c = client(configFor(`127.0.0.1:${refusing}, 127.0.0.1:${hanging.port}, 127.0.0.1:${good.port}`))
      const results: ScanOutcome[] = []
      for (let i = 0; i < 12; i++) results.push(await scan(c))
      for (const r of results) {
        assert.ok(r.ok, r.ok ? '' : `${r.error.kind}: ${r.error.message}`)
        assert.equal(r.server, good.url)
      }
      assert.equal(good.requests.length, 12, 'the good server scanned every message')
      const retried = results.filter((r) => r.attempts.length > 0)
      const lost = retried.reduce((t, r) => t + r.attempts.reduce((u, a) => u + a.timeMs, 0), 0)
      // each bad server costs one message while its failure is recent, then is tried after the good one
      assert.ok(retried.length >= 1 && retried.length <= 2, `${retried.length} messages failed over`)
      assert.ok(
        hanging.requests.length <= 1,
        'a hanging server is not tried again while its failure is recent',
      )
      console.log(
        `      12 messages: ${retried.length} failed over (${retried.map((r) => r.attempts.map((a) => a.error.kind).join('+')).join(', ')}), ` +
          `${lost.toFixed(0)} ms lost in all`,
      )
    })

    it('spreads scans over live servers: the least busy first, round robin among equals', async () => {
      const a = await start({ mode: 'delay:200' })
      const b = await start({ mode: 'delay:200' })
      const c = client(configFor(`127.0.0.1:${a.port}, 127.0.0.1:${b.port}`))
      // four at once: two each, because each new scan goes to the server with fewer in flight
      await Promise.all([scan(c), scan(c), scan(c), scan(c)])
      assert.equal(a.requests.length, 2)
      assert.equal(b.requests.length, 2)
      // one at a time: they alternate
      for (let i = 0; i < 4; i++) await scan(c)
      assert.equal(a.requests.length, 4)
      assert.equal(b.requests.length, 4)
    })

    it('marks a server dead after max_errors failures within error_time, and tries it again after dead_time', async () => {
      const flaky = await start({ mode: 'close-on-accept' })
      const good = await start()
      let now = 1_000_000
      const events: ClientEvent[] = []
      const c = client(
        configFor(
          `127.0.0.1:${flaky.port}, 127.0.0.1:${good.port}`,
          'upstream.max_errors = 3\nupstream.error_time = 10\nupstream.dead_time = 60',
        ),
        { now: () => now, onEvent: (e) => events.push(e) },
      )
      // six at once: the least-busy rule gives every other one to the flaky server, so it fails
      // three times within error_time (the clock stands still) and is marked dead
      const first = await Promise.all(Array.from({ length: 6 }, () => scan(c)))
      for (const r of first) assert.ok(r.ok && r.server === good.url)
      assert.equal(first.filter((r) => r.attempts.length === 1).length, 3, 'three failed over')
      assert.equal(c.health().find((h) => h.server === flaky.url)?.dead, true)
      assert.match(events.at(-1)?.message ?? '', /marked dead for 60 s after 3 failures without a success/)

      // dead: not tried, even when it is the server round robin would pick
      const seen = flaky.totalConnections
      for (let i = 0; i < 3; i++) assert.ok((await scan(c)).ok)
      assert.equal(flaky.totalConnections, seen, 'no connection to a dead server')

      // after dead_time it is tried again, and a success puts it back
      flaky.setMode('ok')
      now += 61_000
      let onFlaky = 0
      for (let i = 0; i < 4; i++) if ((await scan(c)).server === flaky.url) onFlaky++
      assert.ok(onFlaky >= 1, 'the revived server scans again')
      assert.equal(c.health().find((h) => h.server === flaky.url)?.dead, false)
      assert.match(events.at(-1)?.message ?? '', /answers again/)
    })

    it('marks a refusing server dead at one message every 2 s: tried once per error_time until max_errors, then not for dead_time', async () => {
      const refusing = await FakeRspamd.unusedPort()
      const good = await start()
      let now = 0
      const events: ClientEvent[] = []
      const c = client(
        configFor(
          `127.0.0.1:${refusing}, 127.0.0.1:${good.port}`,
          'upstream.max_errors = 3\nupstream.error_time = 10\nupstream.dead_time = 60',
        ),
        { now: () => now, onEvent: (e) => events.push(e) },
      )
      const failedOver: number[] = []
      for (; now <= 90_000; now += 2_000) {
        const r = await scan(c)
        assert.ok(r.ok && r.server === good.url)
        if (r.attempts.length > 0) failedOver.push(now)
      }
      // once per error_time (10 s) until the third failure in a row marks it dead for 60 s; then
      // one probe, which fails and marks it dead for another 60 s at once
      assert.deepEqual(failedOver, [0, 10_000, 20_000, 80_000])
      assert.deepEqual(
        events.map((e) => [
          e.level,
          /marked dead for 60 s after 3|still fails after 60 s/.exec(e.message)?.[0],
        ]),
        [
          ['warn', 'marked dead for 60 s after 3'],
          ['warn', 'still fails after 60 s'],
        ],
      )
      assert.equal(c.health().find((h) => h.server.endsWith(`:${refusing}`))?.dead, true)
    })

    it('gives a server that failed one scan at a time: a server that accepts and never answers holds up one message, not all', async () => {
      const silent = await start({ mode: 'hang' })
      const good = await start()
      let now = 0
      const c = client(
        configFor(
          `127.0.0.1:${silent.port}, 127.0.0.1:${good.port}`,
          'upstream.max_errors = 4\nupstream.error_time = 10\nupstream.dead_time = 60',
        ),
        { now: () => now },
      )
      // at first both look healthy: the least-busy rule sends half of four to the silent one, and
      // each of those waits half of the 600 ms timeout before failing over
      const first = await Promise.all(Array.from({ length: 4 }, () => scan(c, SMALL, 600)))
      assert.ok(first.every((r) => r.ok && r.server === good.url))
      assert.equal(silent.requests.length, 2)
      assert.equal(c.health().find((h) => h.server === silent.url)?.failures, 2)
      // past error_time it is tried again, but by one scan of the six that arrive together
      now += 11_000
      const second = await Promise.all(Array.from({ length: 6 }, () => scan(c, SMALL, 600)))
      assert.ok(second.every((r) => r.ok && r.server === good.url))
      assert.equal(second.filter((r) => r.attempts.length > 0).length, 1)
      assert.equal(silent.requests.length, 3)
      // a silent server counts as failing: the fourth failure in a row marks it dead
      now += 11_000
      await scan(c, SMALL, 600)
      assert.equal(c.health().find((h) => h.server === silent.url)?.dead, true)
      now += 1_000
      for (let i = 0; i < 4; i++) await scan(c, SMALL, 600)
      assert.equal(silent.requests.length, 4, 'no scan reaches a dead server')
    })

    it('marks a black-hole server (connection attempts dropped) dead, and carries on with the good one', async () => {
      const hole = await blackHole()
      try {
        const good = await start()
        let now = 0
        const events: ClientEvent[] = []
        const c = client(
          configFor(
            `127.0.0.1:${hole.port}, 127.0.0.1:${good.port}`,
            'upstream.max_errors = 2\nupstream.error_time = 10\nupstream.dead_time = 60',
          ),
          { now: () => now, onEvent: (e) => events.push(e) },
        )
        const kinds: string[] = []
        for (; now <= 30_000; now += 2_000) {
          const r = await scan(c, SMALL, 600)
          assert.ok(r.ok && r.server === good.url)
          for (const a of r.attempts) kinds.push(a.error.kind)
        }
        // connect_timeout or the attempt's half of the timeout, whichever ends the connect first
        assert.equal(kinds.length, 2)
        for (const k of kinds) assert.match(k, /^(connect|timeout)$/)
        const warnings = events.filter((e) => e.level !== 'debug')
        assert.match(warnings.at(-1)?.message ?? '', /marked dead for 60 s after 2 failures/)
      } finally {
        hole.close()
      }
    })

    it('keeps what it knows of a server across a reload that keeps the server (a new client for new settings)', async () => {
      const refusing = await FakeRspamd.unusedPort()
      const good = await start()
      const servers = `127.0.0.1:${refusing}, 127.0.0.1:${good.port}`
      const old = client(configFor(servers, 'upstream.max_errors = 1\nupstream.dead_time = 60'))
      await scan(old)
      assert.deepEqual(
        old.health().map((h) => h.dead),
        [true, false],
      )
      const other = await start()
      const next = client(
        configFor(`${servers}, 127.0.0.1:${other.port}`, 'upstream.max_errors = 1\nupstream.dead_time = 120'),
        { previous: old },
      )
      assert.deepEqual(
        next.health().map((h) => h.dead),
        [true, false, false],
      )
      for (let i = 0; i < 4; i++)
        assert.equal((await scan(next)).attempts.length, 0, 'the dead one is skipped')
    })

    it('tries the server that died first when every server is dead, rather than giving up', async () => {
      const a = await start({ mode: 'close-on-accept' })
      const b = await start({ mode: 'close-on-accept' })
      let now = 0
      const c = client(
        configFor(
          `127.0.0.1:${a.port}, 127.0.0.1:${b.port}`,
          'upstream.max_errors = 1\nupstream.dead_time = 300',
        ),
        { now: () => now },
      )
      const r = await scan(c) // a fails (dead), b fails (dead)
      assert.equal(r.ok, false)
      assert.deepEqual(
        c.health().map((h) => h.dead),
        [true, true],
      )
      now += 1_000
      b.setMode('ok')
      a.setMode('ok')
      const again = await scan(c)
      assert.ok(again.ok)
      assert.equal(again.server, a.url, 'a died first, so it is tried first')
    })

    it('re-streams a 5 MB message from the start after a reset, byte-identical on the next server', async () => {
      const resetting = await start({ mode: 'reset-on-body:1000000' })
      const good = await start()
      const c = client(configFor(`127.0.0.1:${resetting.port}, 127.0.0.1:${good.port}`))
      const message = bigMessage((i) => `line ${i} ${'x'.repeat(70)}`)
      const source = bufferSource(message)
      const r = await c.scan({ headers: {}, source, timeoutMs: 10_000 })
      assert.ok(r.ok, r.ok ? '' : r.error.message)
      assert.equal(r.server, good.url)
      assert.equal(r.attempts.length, 1)
      assert.equal(r.attempts[0]?.error.kind, 'network')
      assert.equal(source.pipes, 2, 'piped once per server')
      const body = good.lastRequest?.body ?? Buffer.alloc(0)
      const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex')
      assert.equal(body.length, message.length)
      assert.equal(digest(body), digest(message))
    })

    it('never retries once rspamd has answered, even with an error status', async () => {
      const failing = await start({ mode: 'status:500' })
      const good = await start()
      const c = client(configFor(`127.0.0.1:${failing.port}, 127.0.0.1:${good.port}`))
      const r = await scan(c)
      assert.equal(r.ok, false)
      assert.equal(r.ok ? '' : r.error.kind, 'http')
      assert.equal(r.attempts.length, 0)
      assert.equal(good.requests.length, 0, 'the message went to one server only')
    })

    it('counts a 5xx answer against the server by its status field, a 4xx not', async () => {
      const unwell = await start({ mode: 'status:503' })
      const refusing = await start({ mode: 'status:404' })
      const c = client(
        configFor(
          `127.0.0.1:${unwell.port}, 127.0.0.1:${refusing.port}`,
          'upstream.max_errors = 1\nupstream.dead_time = 60',
        ),
        { now: () => 1_000_000 },
      )
      const first = await scan(c)
      const second = await scan(c)
      assert.ok(!first.ok && first.error.kind === 'http' && first.server === unwell.url)
      assert.equal(first.error.status, 503)
      assert.equal(first.error.code, 'ERR_RSPAMD_HTTP_STATUS')
      assert.ok(!second.ok && second.error.kind === 'http' && second.server === refusing.url)
      assert.equal(second.error.status, 404)
      const health = (server: string) => c.health().find((h) => h.server === server)
      assert.equal(health(unwell.url)?.dead, true, 'a 503 counts (max_errors = 1)')
      assert.equal(health(refusing.url)?.dead, false, 'a 404 does not count')
      assert.equal(health(refusing.url)?.failures, 0)
    })

    it('never retries after a reply that does not parse', async () => {
      const garbage = await start({ mode: 'garbage' })
      const good = await start()
      const c = client(configFor(`127.0.0.1:${garbage.port}, 127.0.0.1:${good.port}`))
      const r = await scan(c)
      assert.equal(r.ok ? '' : r.error.kind, 'parse')
      assert.equal(good.requests.length, 0)
    })

    it('keeps half of the remaining time for the next server when one stays silent', async () => {
      const hanging = await start({ mode: 'hang' })
      const good = await start()
      const c = client(configFor(`127.0.0.1:${hanging.port}, 127.0.0.1:${good.port}`))
      const r = await scan(c, SMALL, 2_000)
      assert.ok(r.ok)
      assert.equal(r.attempts[0]?.error.kind, 'timeout')
      assert.match(
        r.attempts[0]?.error.message ?? '',
        new RegExp(`no reply from ${hanging.url} within (999|1000) ms`),
      )
    })

    it('gives up with one timeout error when the whole budget is spent on the last server', async () => {
      const a = await start({ mode: 'hang' })
      const b = await start({ mode: 'hang' })
      const c = client(configFor(`127.0.0.1:${a.port}, 127.0.0.1:${b.port}`))
      const r = await scan(c, SMALL, 1_000)
      assert.equal(r.ok, false)
      assert.equal(r.ok ? '' : r.error.kind, 'timeout')
      assert.match(r.ok ? '' : r.error.message, /no reply from rspamd within 1000 ms/)
      assert.equal(r.attempts.length, 1)
    })

    it('bounds the connect phase by connect_timeout: a TLS server that never handshakes is left for the next', async () => {
      // a TCP server that accepts and never says a word: the TLS handshake never completes
      const sockets = new Set<Socket>()
      const silent = createServer((sock) => sockets.add(sock.on('close', () => sockets.delete(sock))))
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
      const silentPort = (silent.address() as AddressInfo).port
      const dir = mkdtempSync(join(tmpdir(), 'client-tls-'))
      const { key, cert } = await makeSelfSignedCert(dir)
      rmSync(dir, { recursive: true, force: true })
      const good = await FakeRspamd.startTls({ key, cert })
      servers.push(good)
      const c = client(
        configFor(
          `https://127.0.0.1:${silentPort}, https://127.0.0.1:${good.port}`,
          'main.connect_timeout = 0.3\ntls.reject_unauthorized = false',
        ),
      )
      const r = await scan(c, SMALL, 10_000).finally(() => {
        for (const sock of sockets) sock.destroy()
        silent.close()
      })
      assert.ok(r.ok, r.ok ? '' : r.error.message)
      assert.equal(r.attempts[0]?.error.kind, 'connect', r.attempts[0]?.error.message)
      assert.ok((r.attempts[0]?.timeMs ?? 0) < 5_000, 'left at connect_timeout, not half of the 10 s budget')
    })

    for (const small of [false, true]) {
      it(`stops at once when the SMTP client goes away: no other server tried, its socket closed, no spare one (${small ? 'small' : 'streamed'} message)`, async () => {
        const hanging = await start({ mode: 'hang' })
        const good = await start()
        const c = client(configFor(`127.0.0.1:${hanging.port}, 127.0.0.1:${good.port}`))
        const gone = new ScanCancel()
        const pending = c.scan({
          headers: {},
          source: bufferSource(SMALL),
          timeoutMs: 10_000,
          cancel: gone,
          ...(small ? { sizeHint: SMALL.length } : {}),
        })
        const [req] = await hanging.waitForRequests(1)
        gone.abort()
        const r = await pending
        assert.equal(r.ok ? '' : r.error.kind, 'aborted')
        assert.equal(good.requests.length, 0)
        // undici 7 would open a spare connection for the cancelled request (nodejs/undici#5845)
        await hanging.waitForClosed(req?.connectionId ?? -1, 2_000)
        await hanging.waitForIdle(2_000)
        assert.equal(hanging.totalConnections, 1, 'no spare connection opened after the abort')
      })
    }
  })
}

describe('plugin: failover with Haraka’s message_stream piped again', function () {
  this.timeout(30_000)

  it('delivers a 5 MB message byte-identical to the second server after the first resets mid-body', async () => {
    const resetting = await FakeRspamd.start({ mode: 'reset-on-body:1000000' })
    const good = await FakeRspamd.start({ reply: replyFor('add header') })
    const plugin = loadPlugin(`servers = 127.0.0.1:${resetting.port}, 127.0.0.1:${good.port}\n`)
    try {
      // leading dots too: the second pipe must undo the dot-stuffing again
      const message = bigMessage((i) => (i % 97 === 0 ? `.dot ${i}` : `line ${i} ${'y'.repeat(60)}`))
      const conn = await connectionWith(message)
      const res = await dataPost(plugin, conn)
      assert.equal(res.code, undefined, 'accepted')
      const body = good.lastRequest?.body ?? Buffer.alloc(0)
      assert.equal(body.length, message.length)
      assert.ok(body.equals(message), 'byte-identical on the second server')
      const r = conn.transaction?.results.get('rspamd') as { failover?: string[]; action?: string }
      assert.equal(r.action, 'add header')
      assert.equal(r.failover?.length, 1)
      assert.match(r.failover?.[0] ?? '', new RegExp(`^${resetting.url}: network: `))
      assert.equal(res.calls(), 1)
    } finally {
      await unregister(plugin)
      await resetting.close()
      await good.close()
    }
  })
})

for (const transport of TRANSPORTS_UNDER_TEST) {
  describe(`client over ${transport}: small messages as one Buffer, large ones streamed`, function () {
    this.timeout(30_000)
    const servers: FakeRspamd[] = []
    const clients: RspamdClient[] = []
    afterEach(async () => {
      await Promise.all(clients.splice(0).map((c) => c.destroy()))
      await Promise.all(servers.splice(0).map((s) => s.close()))
    })
    const start = async (opts?: Parameters<typeof FakeRspamd.start>[0]) => {
      const s = await FakeRspamd.start(opts)
      servers.push(s)
      return s
    }
    const client = (cfg: Config) => {
      const c = new RspamdClient(cfg, { transport })
      clients.push(c)
      return c
    }
    const ok = (r: ScanOutcome) => assert.ok(r.ok, r.ok ? '' : `${r.error.kind}: ${r.error.message}`)

    for (const size of [SMALL_MESSAGE_BYTES - 1024, 4 * SMALL_MESSAGE_BYTES]) {
      it(`fails the scan at once when the message cannot be read part way (${size > SMALL_MESSAGE_BYTES ? 'streamed' : 'read whole'})`, async () => {
        const s = await start({ reply: replyFor('no action') })
        const c = client(configFor(`127.0.0.1:${s.port}`))
        // what Haraka's message_stream does on a read error of its spool file: index.ts's
        // messageSource destroys the destination with the error
        const failing: MessageSource = {
          pipe(dest: Writable) {
            let sent = 0
            const chunk = Buffer.alloc(16 * 1024, 'a')
            const r = new Readable({
              read() {
                if (sent >= size / 2) {
                  setImmediate(() =>
                    dest.destroy(Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' })),
                  )
                  return
                }
                sent += chunk.length
                this.push(chunk)
              },
            })
            r.pipe(dest)
          },
          unpipe() {},
        }
        const t0 = performance.now()
        const r = await c.scan({ headers: {}, source: failing, timeoutMs: 5_000, sizeHint: size })
        assert.ok(!r.ok)
        assert.equal(r.error.kind, 'network')
        assert.match(r.error.message, /reading the message: .*EIO/)
        assert.ok(performance.now() - t0 < 2_500, 'failed at once, not at the timeout')
        assert.equal(r.attempts.length, 0, 'not tried again on another server')
        // nothing was left half-sent: the server saw no complete request
        assert.equal(s.requests.length, 0)
      })
    }

    for (const row of [
      {
        what: 'sends a message of at most SMALL_MESSAGE_BYTES with a Content-Length',
        extra: -SMALL.length,
        whole: true,
      },
      { what: 'streams a message over SMALL_MESSAGE_BYTES, chunked', extra: 1, whole: false },
    ]) {
      it(`${row.what}, byte-identical`, async () => {
        const s = await start()
        const c = client(configFor(`127.0.0.1:${s.port}`))
        const message = Buffer.concat([SMALL, Buffer.alloc(SMALL_MESSAGE_BYTES + row.extra, 'a')])
        const r = await c.scan({
          headers: {},
          source: bufferSource(message),
          timeoutMs: 10_000,
          sizeHint: message.length,
        })
        ok(r)
        const req = s.lastRequest
        assert.equal(req?.headers['content-length'], row.whole ? String(message.length) : undefined)
        assert.equal(req?.headers['transfer-encoding'], row.whole ? undefined : 'chunked')
        assert.ok(req?.body.equals(message), 'byte-identical')
        assert.equal(r.bytesSent, message.length)
      })
    }

    for (const small of [true, false]) {
      it(`sends non-ASCII header values (SMTPUTF8 addresses) as their UTF-8 bytes (${small ? 'small' : 'streamed'} message)`, async () => {
        const s = await start()
        const c = client(configFor(`127.0.0.1:${s.port}`))
        const rcpts = ['jörg@exämple.org', 'δοκιμή@παράδειγμα.δοκιμή', '用户@例子.广告', 'plain@example.net']
        const message = small ? SMALL : Buffer.concat([SMALL, Buffer.alloc(SMALL_MESSAGE_BYTES, 'u')])
        const headers = { From: 'ñandú@example.org', Rcpt: rcpts }
        const r = await c.scan({
          headers,
          source: bufferSource(message),
          timeoutMs: 10_000,
          sizeHint: message.length,
        })
        ok(r)
        // node's server hands header bytes over as latin1: back to bytes, then read as UTF-8
        const raw = s.lastRequest?.rawHeaders ?? []
        const values = (name: string) =>
          raw
            .filter((_, i) => i % 2 === 1 && raw[i - 1]?.toLowerCase() === name.toLowerCase())
            .map((v) => Buffer.from(v, 'latin1').toString('utf8'))
        assert.deepEqual(values('Rcpt'), rcpts)
        assert.deepEqual(values('From'), ['ñandú@example.org'])
        assert.deepEqual(headers.Rcpt, rcpts, "the caller's headers are left as they were")
      })
    }

    it('fails a scan whose header no HTTP client would write, without trying the next server or throwing', async () => {
      const a = await start()
      const b = await start()
      const c = client(configFor(`127.0.0.1:${a.port}, 127.0.0.1:${b.port}`))
      for (const small of [true, false]) {
        const message = small ? SMALL : Buffer.concat([SMALL, Buffer.alloc(SMALL_MESSAGE_BYTES, 'v')])
        const r = await c.scan({
          headers: { Helo: 'bad\u0001helo' },
          source: bufferSource(message),
          timeoutMs: 10_000,
          sizeHint: message.length,
        })
        assert.equal(r.ok ? '' : r.error.kind, 'network')
        assert.match(r.ok ? '' : r.error.message, /^(ERR_INVALID_CHAR|UND_ERR_INVALID_ARG): /)
        assert.equal(r.attempts.length, 0, 'no other server tried')
      }
      assert.equal(a.requests.length + b.requests.length, 0)
    })

    it('reuses connections the server keeps alive: 10 scans one after another over one (or two)', async () => {
      const s = await start()
      const c = client(configFor(`127.0.0.1:${s.port}`))
      for (let i = 0; i < 10; i++) {
        ok(
          await c.scan({
            headers: {},
            source: bufferSource(SMALL),
            timeoutMs: 10_000,
            sizeHint: SMALL.length,
          }),
        )
      }
      assert.equal(s.requests.length, 10)
      // undici may open a second one when a scan starts before it has put the first back in its pool
      assert.ok(s.totalConnections <= 2, `${s.totalConnections} connections for 10 scans`)
    })

    it('opens a connection per scan against a server that closes after every reply (as rspamd does), and leaves none open', async () => {
      const s = await start({ closeEach: true })
      const c = client(configFor(`127.0.0.1:${s.port}`))
      const scans = Array.from({ length: 12 }, (_, i) => {
        const message = i % 2 === 0 ? SMALL : Buffer.concat([SMALL, Buffer.alloc(SMALL_MESSAGE_BYTES, 'k')])
        return c.scan({
          headers: {},
          source: bufferSource(message),
          timeoutMs: 10_000,
          sizeHint: message.length,
        })
      })
      for (const r of await Promise.all(scans)) ok(r)
      assert.equal(s.requests.length, 12)
      assert.equal(s.totalConnections, 12)
      await s.waitForIdle(2_000)
    })

    it('waits for a verdict slower than the 4 s idle timeout of pooled connections', async () => {
      const s = await start({ mode: 'delay:4500' })
      const c = client(configFor(`127.0.0.1:${s.port}`))
      ok(
        await c.scan({ headers: {}, source: bufferSource(SMALL), timeoutMs: 10_000, sizeHint: SMALL.length }),
      )
    })

    it('close() lets a scan in flight finish, then closes', async () => {
      const s = await start({ mode: 'delay:300' })
      const c = client(configFor(`127.0.0.1:${s.port}`))
      const pending = c.scan({
        headers: {},
        source: bufferSource(SMALL),
        timeoutMs: 10_000,
        sizeHint: SMALL.length,
      })
      await s.waitForRequests(1)
      let closed = false
      const closing = c.close().then(() => (closed = true))
      const r = await pending
      ok(r)
      await closing
      assert.ok(closed)
      await s.waitForIdle(2_000)
    })

    it('reads a small message once and sends the same bytes to the next server after a failure', async () => {
      const resetting = await start({ mode: 'reset-on-body:10' })
      const good = await start()
      const c = client(configFor(`127.0.0.1:${resetting.port}, 127.0.0.1:${good.port}`))
      const source = bufferSource(SMALL)
      const r = await c.scan({ headers: {}, source, timeoutMs: 10_000, sizeHint: SMALL.length })
      ok(r)
      assert.equal(r.server, good.url)
      assert.equal(r.attempts.length, 1)
      assert.equal(source.pipes, 1, 'read once, sent twice')
      assert.ok(good.lastRequest?.body.equals(SMALL))
    })

    it('reports a message that cannot be read as a network error, without retrying', async () => {
      const a = await start()
      const b = await start()
      const c = client(configFor(`127.0.0.1:${a.port}, 127.0.0.1:${b.port}`))
      const source: MessageSource = {
        pipe(dest: Writable) {
          setImmediate(() => dest.destroy(new Error('spool file vanished')))
        },
        unpipe() {},
      }
      const r = await c.scan({ headers: {}, source, timeoutMs: 10_000, sizeHint: 100 })
      assert.equal(r.ok ? '' : r.error.kind, 'network')
      assert.match(r.ok ? '' : r.error.message, /reading the message: spool file vanished/)
      assert.equal(a.requests.length + b.requests.length, 0)
    })

    // undici 7 (nodejs/undici#5845) would re-queue a cancelled request and open a spare connection
    // for it that no request uses; our connector closes cancelled sockets without an error, so the
    // request is dropped instead, and nothing stays open.
    for (const small of [true, false]) {
      it(`closes its socket to a hung server at once when the scan times out (${small ? 'small' : 'streamed'} message)`, async () => {
        const hung = await start({ mode: 'hang' })
        const c = client(configFor(`127.0.0.1:${hung.port}`))
        const message = small ? SMALL : Buffer.concat([SMALL, Buffer.alloc(SMALL_MESSAGE_BYTES, 'c')])
        for (let i = 0; i < 5; i++) {
          const r = await c.scan({
            headers: {},
            source: bufferSource(message),
            timeoutMs: 200,
            sizeHint: message.length,
          })
          assert.equal(r.ok ? '' : r.error.kind, 'timeout')
          const id = hung.requests[i]?.connectionId ?? -1
          // an idle socket would stay for undici's keepAliveTimeout (4 s); an aborted one goes at once
          await hung.waitForClosed(id, 2_000)
        }
        assert.equal(hung.requests.length, 5)
        assert.equal(hung.totalConnections, 5, 'one connection per scan, no spare ones')
        await hung.waitForIdle(2_000)
      })
    }
  })
}

for (const transport of TRANSPORTS_UNDER_TEST) {
  describe(`client over ${transport}: rspamd's error text reaches the log as one line`, function () {
    for (const [label, status, body] of [
      ['a JSON error of a 500', 500, JSON.stringify({ error: 'bad\nERROR [rspamd] forged\r\u2028x\u007f' })],
      ['a JSON error of a 200', 200, JSON.stringify({ error: 'bad\nERROR [rspamd] forged\r\u2028x\u007f' })],
      ['an HTML page of a 502', 502, '<p>bad\nERROR [rspamd] forged\r\u2028x\u007f</p>'],
    ] as const) {
      it(`escapes or folds line breaks and controls of ${label}`, async () => {
        const server = httpCreateServer((req, res) => {
          req.resume()
          req.on('end', () => {
            res.writeHead(status, { 'Content-Type': 'application/json', Connection: 'close' })
            res.end(body)
          })
        })
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
        const c = new RspamdClient(configFor(`127.0.0.1:${(server.address() as AddressInfo).port}`), {
          transport,
        })
        try {
          const r = await c.scan({ headers: {}, source: bufferSource(SMALL), timeoutMs: 4_000 })
          assert.ok(!r.ok)
          assert.match(r.error.message, /bad/)
          assert.match(r.error.message, /forged/)
          // eslint-disable-next-line no-control-regex
          assert.ok(!/[\x00-\x1f\x7f\u2028\u2029]/.test(r.error.message), JSON.stringify(r.error.message))
        } finally {
          await c.destroy()
          await new Promise((resolve) => server.close(resolve))
        }
      })
    }
  })
}
