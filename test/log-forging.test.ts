// Log lines cannot be forged: every path that puts outside text (a reply body, an error page,
// names from the reply, server names from the config, library errors quoting them) into a log line
// of the plugin or a line of rspamd-lda's stderr writes one line without control characters.

import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createTcpServer, type AddressInfo } from 'node:net'
import { Readable, Writable } from 'node:stream'
import type { FixtureConnection, FixturePlugin } from 'haraka-test-fixtures'
import { forLog, LOG_TEXT_MAX } from '../src/escape'
import { run } from '../src/lda'
import { parseReplyBody } from '../src/rspamd/reply'
import {
  captureLogs,
  connectionWith,
  corpus,
  dataPost,
  loadPlugin,
  nextLog,
  rewriteConfig,
  unregister,
} from './support/harness'
import { replyFor } from './support/replies'

/** What a line must never hold: C0 controls (CR, LF, ESC, TAB…), DEL, C1 controls, U+2028/2029. */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/

/** A hostile text: a forged line after CR LF, a terminal escape (ESC and C1 CSI), NEL, U+2028, NUL. */
const HOSTILE = 'x\r\nFORGED ok\x1b[2J\u009b31m\u0085next\u2028line\u2029\x7f\x00\tend'

function assertSafe(lines: readonly string[], mustQuote = 'FORGED'): void {
  assert.ok(lines.length > 0, 'something was logged')
  for (const line of lines) assert.ok(!UNSAFE.test(line), `a control character in ${JSON.stringify(line)}`)
  assert.ok(
    lines.some((l) => l.includes(mustQuote)),
    `the outside text is quoted (escaped), not dropped: ${JSON.stringify(lines)}`,
  )
}

/** An HTTP server answering every request with `status` and `body`. */
async function rawServer(status: number, body: string | (() => string)): Promise<Server & { port: number }> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(status, { 'Content-Type': 'application/json', Connection: 'close' })
      res.end(typeof body === 'string' ? body : body())
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return Object.assign(server, { port: (server.address() as AddressInfo).port })
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()))
}

/** Every line the plugin object itself logs (not per connection) from now on. */
function capturePluginLogs(plugin: FixturePlugin): string[] {
  const lines: string[] = []
  const p = plugin as unknown as Record<string, unknown>
  for (const level of ['logerror', 'logwarn', 'loginfo'] as const) {
    p[level] = (msg: unknown) => lines.push(`${level.slice(3).toUpperCase()} ${String(msg)}`)
  }
  return lines
}

describe('forLog()', function () {
  const table: [string, string, string][] = [
    ['plain text', 'rspamd said no', 'rspamd said no'],
    ['CR LF', 'a\r\nb', 'a\\u000d\\u000ab'],
    ['ESC and TAB', '\x1b[2J\tx', '\\u001b[2J\\u0009x'],
    ['DEL and NUL', '\x7f\x00', '\\u007f\\u0000'],
    ['C1 controls (CSI, NEL)', '\u009b31m\u0085', '\\u009b31m\\u0085'],
    ['U+2028/2029', '\u2028\u2029', '\\u2028\\u2029'],
    ['non-ASCII text', 'Grüße ✓ 😀', 'Grüße ✓ 😀'],
  ]
  for (const [label, input, want] of table) {
    it(`escapes ${label}`, () => assert.equal(forLog(input), want))
  }

  it(`cuts long text to ${LOG_TEXT_MAX} characters with a marker, never inside a surrogate pair`, () => {
    assert.equal(forLog('a'.repeat(1000)), `${'a'.repeat(LOG_TEXT_MAX - 3)}...`)
    assert.equal(forLog('a😀😀😀', 5), 'a...')
    assert.equal(forLog('a😀😀😀', 6), 'a😀...')
  })

  it('is idempotent: an escaped text escaped again is the same', () => {
    for (const text of [HOSTILE, 'a\\u000d', '\u0085'.repeat(50)]) {
      const once = forLog(text, 10_000)
      assert.equal(forLog(once, 10_000), once)
      assert.ok(!UNSAFE.test(once))
    }
  })
})

describe("a 200 reply that is not JSON: V8's message quotes the body", function () {
  it('is escaped in the parse error', () => {
    const r = parseReplyBody(HOSTILE)
    assert.ok(!r.ok)
    assertSafe([r.error])
  })
})

describe('log forging through the plugin (haraka-test-fixtures, real transaction)', function () {
  let plugin: FixturePlugin | undefined
  const servers: Server[] = []
  afterEach(async () => {
    if (plugin) await unregister(plugin)
    plugin = undefined
    for (const s of servers.splice(0)) await closeServer(s)
  })

  async function scanWith(ini: string): Promise<{ conn: FixtureConnection; logs: string[] }> {
    plugin = loadPlugin(ini)
    const conn = await connectionWith(corpus('ham.eml'))
    const logs = captureLogs(conn)
    await dataPost(plugin, conn)
    return { conn, logs }
  }

  it('a 200 reply whose body is not JSON: the error line', async () => {
    const s = await rawServer(200, HOSTILE)
    servers.push(s)
    const { logs } = await scanWith(`host = 127.0.0.1\nport = ${s.port}\n`)
    assertSafe(logs)
    assert.ok(logs.some((l) => /^ERROR parse: reply is not JSON/.test(l)))
  })

  it('an error page (a proxy’s HTML with C1 controls) of a 502: the error line', async () => {
    const s = await rawServer(502, `<html><body>${HOSTILE}</body></html>`)
    servers.push(s)
    const { logs } = await scanWith(`host = 127.0.0.1\nport = ${s.port}\n`)
    assertSafe(logs)
    assert.ok(logs.some((l) => /^ERROR http: HTTP 502/.test(l)))
  })

  it('an unknown action with a C1 control (NEL) in it', async () => {
    const s = await rawServer(
      200,
      JSON.stringify(replyFor('no action', { action: 'quarantine\u0085FORGED' })),
    )
    servers.push(s)
    const { logs } = await scanWith(`host = 127.0.0.1\nport = ${s.port}\n`)
    assertSafe(logs)
  })

  it("warnings about the reply's fields, keyed by names from the reply", async () => {
    const reply = replyFor('no action') as unknown as Record<string, unknown>
    reply.symbols = { [`A${HOSTILE}`]: 'not a symbol' }
    const s = await rawServer(200, JSON.stringify(reply))
    servers.push(s)
    const { logs } = await scanWith(`host = 127.0.0.1\nport = ${s.port}\n`)
    assertSafe(logs)
    assert.ok(logs.some((l) => l.startsWith('WARN reply from')))
  })

  it("header names from rspamd's milter block that are refused", async () => {
    const reply = replyFor('add header', {
      milter: { add_headers: { [`X-${HOSTILE}`]: 'v' }, remove_headers: { [`Y-${HOSTILE}`]: 1 } },
    })
    const s = await rawServer(200, JSON.stringify(reply))
    servers.push(s)
    const { logs } = await scanWith(`host = 127.0.0.1\nport = ${s.port}\n`)
    assertSafe(logs)
    assert.equal(logs.filter((l) => l.startsWith('WARN header edit refused: ')).length, 2)
  })

  it('the "marked dead … (last: …)" warning quotes the reply that failed (with ESC sequences)', async () => {
    const a = await rawServer(200, HOSTILE)
    const b = await rawServer(200, HOSTILE)
    servers.push(a, b)
    plugin = loadPlugin(`servers = 127.0.0.1:${a.port}, 127.0.0.1:${b.port}\n[upstream]\nmax_errors = 1\n`)
    const pluginLogs = capturePluginLogs(plugin)
    const conn = await connectionWith(corpus('ham.eml'))
    const logs = captureLogs(conn)
    await dataPost(plugin, conn)
    const dead = pluginLogs.filter((l) => l.includes('marked dead'))
    assert.equal(dead.length, 1, JSON.stringify(pluginLogs))
    assertSafe(dead)
    assertSafe(logs)
  })

  it('a server from the config with ESC in it is refused at start-up, and the error quotes it escaped', async () => {
    const good = await rawServer(200, JSON.stringify(replyFor('no action')))
    servers.push(good)
    const socket = '/nonexistent/FORGED\x1b[2J\u0085.sock'
    // [main] servers is checked at load (no controls in a socket path): the ConfigError Haraka prints
    // at start-up quotes the value, and must stay one safe line
    assert.throws(
      () => loadPlugin(`servers = ${socket}, 127.0.0.1:${good.port}\n[upstream]\nmax_errors = 1\n`),
      (err: Error) => {
        assertSafe([err.message])
        assert.match(err.message, /servers/)
        return true
      },
    )
  })
})

/** A Redis that answers every command with an error quoting HOSTILE's ESC and NEL (RESP errors are one line). */
async function hostileRedis(): Promise<{ port: number; close: () => Promise<void> }> {
  const answer = Buffer.from('-ERR FORGED\x1b[2J\u009b31m\u0085x\r\n', 'utf8')
  const server = createTcpServer((sock) => {
    let buf = Buffer.alloc(0)
    sock.on('error', () => undefined)
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      // one error per complete RESP command (an array of bulk strings)
      for (;;) {
        const used = commandLength(buf)
        if (used === 0) break
        buf = buf.subarray(used)
        sock.write(answer)
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

/** The length of the first whole RESP command in `b`, 0 when it is not all there yet. */
function commandLength(b: Buffer): number {
  if (b.length === 0 || b[0] !== 0x2a) return 0
  const head = b.indexOf('\r\n')
  if (head < 0) return 0
  let at = head + 2
  for (let k = Number(b.subarray(1, head).toString()); k > 0; k--) {
    const end = b.indexOf('\r\n', at)
    if (end < 0) return 0
    at = end + 2 + Number(b.subarray(at + 1, end).toString()) + 2
    if (at > b.length) return 0
  }
  return at
}

describe("log forging through the greylist store's errors", function () {
  let plugin: FixturePlugin | undefined
  const closers: (() => Promise<void>)[] = []
  afterEach(async () => {
    if (plugin) await unregister(plugin)
    plugin = undefined
    for (const c of closers.splice(0)) await c()
  })

  it('a Redis error (its text quotes the reply) in the warning of a greylisted message', async () => {
    const redis = await hostileRedis()
    closers.push(redis.close)
    const rspamd = await rawServer(200, JSON.stringify(replyFor('greylist')))
    closers.push(() => closeServer(rspamd))
    plugin = loadPlugin(
      `host = 127.0.0.1\nport = ${rspamd.port}\n[greylist]\nenabled = true\nstore = redis\n`,
      { files: { 'redis.ini': `[server]\nhost = 127.0.0.1\nport = ${redis.port}\n` } },
    )
    const p = plugin
    await new Promise<void>((done) => (p.rspamd_init_master as (n: () => void, s: unknown) => void)(done, {}))
    const conn = await connectionWith(corpus('ham.eml'))
    const logs = captureLogs(conn)
    await dataPost(plugin, conn)
    const store = logs.filter((l) => l.includes('greylist store'))
    assert.equal(store.length, 1, JSON.stringify(logs))
    assertSafe(store)
  })
})

describe('log forging through config text (start-up warnings, reload)', function () {
  let plugin: FixturePlugin | undefined
  afterEach(async () => {
    if (plugin) await unregister(plugin)
    plugin = undefined
  })

  // ini text cannot hold CR, LF or U+2028/2029 (haraka-config's line ends), nor a control in a
  // key; a section name and a value hold ESC and C1 controls
  const INI_HOSTILE = 'FORGED\x1b(2J\u009b31m\u0085x'

  it('the "not used" warning names unknown sections as the file spells them', async () => {
    plugin = loadPlugin(`host = 127.0.0.1\n[s${INI_HOSTILE}]\nk = 5\n`, { register: false })
    const warned = nextLog(plugin, 'logwarn', /not used/)
    plugin.register()
    assertSafe([await warned])
  })

  it('a refused reload quotes the bad value', async () => {
    plugin = loadPlugin('host = 127.0.0.1\n')
    const refused = nextLog(plugin, 'logerror', /reload refused/)
    rewriteConfig(plugin, `host = 127.0.0.1\nadd_headers = ${INI_HOSTILE}\n`)
    assertSafe([await refused])
  })
})

describe("log forging through rspamd-lda's stderr", function () {
  const servers: Server[] = []
  afterEach(async () => {
    for (const s of servers.splice(0)) await closeServer(s)
  })

  async function lda(args: string[]): Promise<{ code: number; stderr: string[]; stdout: string }> {
    const out: Buffer[] = []
    const err: Buffer[] = []
    const sink = (into: Buffer[]) =>
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          into.push(Buffer.from(chunk))
          cb()
        },
      })
    const code = await run(args, {
      stdin: Readable.from([corpus('ham.eml')]),
      stdout: sink(out),
      stderr: sink(err),
      env: {},
    })
    const text = Buffer.concat(err).toString('utf8')
    assert.ok(text.endsWith('\n'), 'every line ends')
    return { code, stderr: text.slice(0, -1).split('\n'), stdout: Buffer.concat(out).toString('utf8') }
  }

  it('a 200 reply whose body is not JSON', async () => {
    const s = await rawServer(200, HOSTILE)
    servers.push(s)
    const r = await lda(['--server', `127.0.0.1:${s.port}`])
    assert.equal(r.code, 0)
    assertSafe(r.stderr)
    assert.match(r.stderr.join('\n'), /scan failed, delivering unscanned: parse/)
  })

  it('an error page of a 502, with --tempfail', async () => {
    const s = await rawServer(502, `<p>${HOSTILE}</p>`)
    servers.push(s)
    const r = await lda(['--server', `127.0.0.1:${s.port}`, '--tempfail'])
    assert.equal(r.code, 75)
    assertSafe(r.stderr)
  })

  it('warnings about the reply and refused header names', async () => {
    const reply = replyFor('add header', {
      milter: { add_headers: { [`X-${HOSTILE}`]: 'v' } },
    }) as unknown as Record<string, unknown>
    reply.symbols = { [`A${HOSTILE}`]: 'not a symbol' }
    const s = await rawServer(200, JSON.stringify(reply))
    servers.push(s)
    const r = await lda(['--server', `127.0.0.1:${s.port}`])
    assert.equal(r.code, 0)
    assertSafe(r.stderr)
    assert.equal(r.stderr.filter((l) => l.includes('header left out')).length, 1)
    assert.equal(r.stderr.filter((l) => l.includes('reply from')).length, 1)
  })

  it('a server named by the command line (a socket path with ESC)', async () => {
    const r = await lda(['--server', '/nonexistent/FORGED\x1b[2J\u0085.sock'])
    assertSafe(r.stderr)
  })
})
