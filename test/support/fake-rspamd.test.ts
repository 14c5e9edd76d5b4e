// The fake rspamd does what each mode promises, seen from real clients (undici, raw TCP), so
// protocol and fault tests built on it test the plugin and not the fake.

import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import * as net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { Agent, request } from 'undici'
import { FakeRspamd, makeSelfSignedCert, type Mode, type StartOptions } from './fake-rspamd'
import { replyFor, SCORES, withDkim, withMilter, type RspamdAction } from './replies'

const MESSAGE = Buffer.from('From: alice@example.org\r\nSubject: hi\r\n\r\nHello\r\n')

function codeOf(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) return String(err.code)
  return undefined
}

/** Resolves with the error a promise rejects with (fails if it resolves). */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection')
}

describe('fake rspamd', function () {
  let servers: FakeRspamd[] = []
  let agents: Agent[] = []
  let sockets: net.Socket[] = []

  async function fake(opts?: StartOptions): Promise<FakeRspamd> {
    const s = await FakeRspamd.start(opts)
    servers.push(s)
    return s
  }
  function agent(opts?: ConstructorParameters<typeof Agent>[0]): Agent {
    const a = new Agent(opts)
    agents.push(a)
    return a
  }
  function post(s: FakeRspamd, dispatcher: Agent, body: Buffer = MESSAGE, headers: string[] = []) {
    return request(`${s.url}/checkv2`, { method: 'POST', dispatcher, body, headers })
  }
  /** A raw HTTP/1.1 request head, for tests that need to see the TCP-level outcome. */
  function rawPost(s: FakeRspamd, bodyLength: number): net.Socket {
    const sock = net.connect(s.port, '127.0.0.1')
    sockets.push(sock)
    sock.write(`POST /checkv2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${bodyLength}\r\n\r\n`)
    return sock
  }

  afterEach(async () => {
    for (const sock of sockets) sock.destroy()
    await Promise.all(agents.map((a) => a.destroy()))
    await Promise.all(servers.map((s) => s.close()))
    for (const s of servers) assert.equal(s.openConnections, 0)
    servers = []
    agents = []
    sockets = []
  })

  describe('ok', function () {
    it('answers 200 application/json with a realistic no-action reply by default', async () => {
      const s = await fake()
      const res = await post(s, agent())
      assert.equal(res.statusCode, 200)
      assert.equal(res.headers['content-type'], 'application/json')
      const json = (await res.body.json()) as Record<string, unknown>
      assert.equal(json.action, 'no action')
      assert.equal(json.score, 1.2)
      assert.equal(json.required_score, 15)
      assert.equal(json.is_skipped, false)
      assert.equal(typeof json.symbols, 'object')
    })

    it('records method, path, body and repeated Rcpt headers in order', async () => {
      const s = await fake()
      const res = await post(s, agent(), MESSAGE, [
        'From',
        'alice@example.org',
        'Rcpt',
        'bob@example.net',
        'Rcpt',
        'carol@example.net',
        'Queue-Id',
        'Q1',
      ])
      await res.body.dump()
      assert.equal(s.requests.length, 1)
      const req = s.lastRequest
      assert.ok(req)
      assert.equal(req.method, 'POST')
      assert.equal(req.path, '/checkv2')
      assert.ok(req.body.equals(MESSAGE))
      assert.equal(req.bodyBytes, MESSAGE.length)
      assert.equal(req.bodyComplete, true)
      assert.equal(req.replyComplete, true)
      assert.equal(req.mode, 'ok')
      assert.equal(req.headers['queue-id'], 'Q1')
      const rcpts = req.rawHeaders.filter((_, i) => i % 2 === 1 && req.rawHeaders[i - 1] === 'Rcpt')
      assert.deepEqual(rcpts, ['bob@example.net', 'carol@example.net'])
    })

    it('records a streamed (chunked) body of several MiB in full', async () => {
      const s = await fake()
      const big = Buffer.alloc(5 * 1024 * 1024 + 3, 'm')
      async function* chunks() {
        for (let i = 0; i < big.length; i += 100_000) yield big.subarray(i, i + 100_000)
      }
      const body = Readable.from(chunks())
      const res = await request(`${s.url}/checkv2`, { method: 'POST', dispatcher: agent(), body })
      await res.body.dump()
      assert.equal(s.lastRequest?.headers['transfer-encoding'], 'chunked')
      assert.ok(s.lastRequest?.body.equals(big))
    })

    it('sends the reply spec, or what a reply function builds from the request', async () => {
      const s = await fake({ reply: replyFor('reject') })
      const a = agent()
      assert.equal(((await (await post(s, a)).body.json()) as { action: string }).action, 'reject')
      s.setReply((req) => ({ action: 'no action', echo: req.headers['queue-id'], n: s.requests.length }))
      const res = await post(s, a, MESSAGE, ['Queue-Id', 'ABC123'])
      assert.deepEqual(await res.body.json(), { action: 'no action', echo: 'ABC123', n: 2 })
    })

    it('answers 500 with {"error"} when a reply function throws', async () => {
      const s = await fake({
        reply: () => {
          throw new Error('boom')
        },
      })
      const res = await post(s, agent())
      assert.equal(res.statusCode, 500)
      assert.match(((await res.body.json()) as { error: string }).error, /boom/)
    })

    it('changes behaviour between requests with setMode, on a kept-alive connection', async () => {
      const s = await fake()
      const a = agent({ connections: 1 }) // one socket, so the second request must reuse it
      await (await post(s, a)).body.dump()
      s.setMode('status:500')
      const res = await post(s, a)
      assert.equal(res.statusCode, 500)
      await res.body.dump()
      assert.deepEqual(
        s.requests.map((r) => r.mode),
        ['ok', 'status:500'],
      )
      assert.equal(s.requests[0].connectionId, s.requests[1].connectionId, 'keep-alive reused')
      assert.equal(s.totalConnections, 1)
      assert.equal(s.openConnections, 1)
      await a.close()
      await s.waitForIdle()
      assert.equal(s.openConnections, 0)
    })

    it('refuses an unknown mode', async () => {
      const s = await fake()
      assert.throws(() => s.setMode('nope' as Mode), /unknown mode/)
      assert.throws(() => s.setMode('status:42'), /200-599/)
      await assert.rejects(FakeRspamd.start({ mode: 'huge:' as Mode }), /unknown mode/)
    })
  })

  describe('slow and silent modes', function () {
    it('delay:<ms> answers after the delay', async () => {
      const s = await fake({ mode: 'delay:5' })
      const res = await post(s, agent())
      assert.equal(res.statusCode, 200)
      assert.equal(((await res.body.json()) as { action: string }).action, 'no action')
    })

    it('delay:<ms> lets a client header timeout fire, and close() does not wait for the delay', async () => {
      const s = await fake({ mode: 'delay:600000' })
      const err = await rejection(post(s, agent({ headersTimeout: 50 })))
      assert.equal(codeOf(err), 'UND_ERR_HEADERS_TIMEOUT')
      const pending = post(s, agent())
      await s.waitForBody(1)
      await s.close()
      assert.equal(codeOf(await rejection(pending)), 'UND_ERR_SOCKET')
    })

    it('hang reads the body, never answers, and keeps the socket until close()', async () => {
      const s = await fake({ mode: 'hang' })
      let settled = false
      const pending = post(s, agent()).finally(() => (settled = true))
      const req = await s.waitForBody(0)
      assert.ok(req.body.equals(MESSAGE))
      assert.equal(s.openConnections, 1)
      assert.equal(req.replyBytes, 0)
      assert.equal(settled, false)
      await s.close()
      assert.equal(s.openConnections, 0)
      assert.equal(codeOf(await rejection(pending)), 'UND_ERR_SOCKET')
    })

    it('hang releases the socket when the client goes away', async () => {
      const s = await fake({ mode: 'hang' })
      const controller = new AbortController()
      const pending = request(`${s.url}/checkv2`, {
        method: 'POST',
        dispatcher: agent(),
        body: MESSAGE,
        signal: controller.signal,
      })
      await s.waitForBody(0)
      controller.abort()
      await rejection(pending)
      await s.waitForIdle()
      assert.equal(s.openConnections, 0)
    })

    it('hang-before-body never reads the body, so the client stays blocked sending it', async () => {
      const s = await fake({ mode: 'hang-before-body' })
      const pending = post(s, agent(), Buffer.alloc(32 * 1024 * 1024, 'b'))
      const [req] = await s.waitForRequests(1)
      assert.equal(req.bodyBytes, 0)
      assert.equal(req.body.length, 0)
      assert.equal(req.bodyComplete, false)
      assert.equal(req.headers['content-length'], String(32 * 1024 * 1024))
      await s.close()
      // unread bytes in the server's receive buffer turn its close into a reset
      assert.ok(['UND_ERR_SOCKET', 'ECONNRESET'].includes(codeOf(await rejection(pending)) ?? ''))
    })

    it('stall-body sends headers and part of the JSON, then nothing until the socket closes', async () => {
      const s = await fake({ mode: 'stall-body' })
      const res = await post(s, agent())
      assert.equal(res.statusCode, 200)
      const length = Number(res.headers['content-length'])
      const it = res.body[Symbol.asyncIterator]()
      const first = (await it.next()) as IteratorResult<Buffer>
      assert.ok(!first.done)
      assert.equal(first.value.subarray(0, 2).toString(), '{"')
      assert.ok(first.value.length < length)
      assert.equal(s.lastRequest?.replyBytes, Math.floor(length / 2))
      assert.equal(s.lastRequest?.replyComplete, false)
      const rest = it.next()
      await s.close()
      assert.equal(codeOf(await rejection(rest)), 'UND_ERR_SOCKET')
    })
  })

  describe('error and broken replies', function () {
    const cases: { mode: Mode; status: number; type: string; check: (body: string) => void }[] = [
      {
        mode: 'status:503',
        status: 503,
        type: 'application/json',
        check: (b) => assert.match((JSON.parse(b) as { error: string }).error, /503/),
      },
      {
        mode: 'status:200',
        status: 200,
        type: 'application/json',
        check: (b) => assert.equal(typeof (JSON.parse(b) as { error: string }).error, 'string'),
      },
      {
        mode: 'html:502',
        status: 502,
        type: 'text/html',
        check: (b) => assert.match(b, /<h1>502 Bad Gateway<\/h1>/),
      },
      {
        mode: 'garbage',
        status: 200,
        type: 'application/json',
        check: (b) => assert.throws(() => JSON.parse(b)),
      },
      {
        mode: 'truncated',
        status: 200,
        type: 'application/json',
        check: (b) => {
          assert.ok(b.startsWith('{"'))
          assert.throws(() => JSON.parse(b))
        },
      },
      { mode: 'empty', status: 200, type: 'application/json', check: (b) => assert.equal(b, '') },
    ]
    for (const c of cases) {
      it(`${c.mode} answers ${c.status} ${c.type} with a complete HTTP message`, async () => {
        const s = await fake({ mode: c.mode })
        const res = await post(s, agent())
        assert.equal(res.statusCode, c.status)
        assert.equal(res.headers['content-type'], c.type)
        const body = await res.body.text()
        assert.equal(Buffer.byteLength(body, 'latin1') > 0 || c.mode === 'empty', true)
        assert.equal(Number(res.headers['content-length']), s.lastRequest?.replyBytes)
        c.check(body)
      })
    }
  })

  describe('huge replies', function () {
    it('huge:<bytes> sends exactly that many bytes of JSON-looking text with a Content-Length', async () => {
      const size = 3 * 1024 * 1024 + 7
      const s = await fake({ mode: `huge:${size}` })
      const res = await post(s, agent())
      assert.equal(res.headers['content-length'], String(size))
      const text = await res.body.text()
      assert.equal(text.length, size)
      const json = JSON.parse(text) as { action: string; pad: string }
      assert.equal(json.action, 'no action')
      assert.match(json.pad, /^x+$/)
      assert.equal(s.lastRequest?.replyComplete, true)
    })

    it('huge-chunked:<bytes> sends the bytes chunked, without Content-Length', async () => {
      const size = 1024 * 1024
      const s = await fake({ mode: `huge-chunked:${size}` })
      const res = await post(s, agent())
      assert.equal(res.headers['content-length'], undefined)
      assert.equal(res.headers['transfer-encoding'], 'chunked')
      let bytes = 0
      for await (const chunk of res.body) bytes += (chunk as Buffer).length
      assert.equal(bytes, size)
    })

    it('huge:<bytes> follows backpressure and stops generating when the client aborts', async () => {
      const size = 1024 * 1024 * 1024
      const s = await fake({ mode: `huge:${size}` })
      const res = await post(s, agent())
      let got = 0
      for await (const chunk of res.body) {
        got += (chunk as Buffer).length
        if (got >= 1024 * 1024) break // leaving the loop destroys the body and the socket
      }
      await s.waitForIdle()
      const req = s.lastRequest
      assert.ok(req)
      const sent = req.replyBytes
      assert.ok(sent >= got, `sent ${sent} >= read ${got}`)
      assert.ok(sent < 64 * 1024 * 1024, `stopped early, not buffered: ${sent} bytes generated`)
      assert.equal(req.replyComplete, false)
      await new Promise((resolve) => setImmediate(resolve))
      assert.equal(req.replyBytes, sent, 'no more bytes generated after the client went away')
    })
  })

  describe('connection faults', function () {
    it('reset-on-body:<bytes> resets the TCP connection once that many body bytes arrived', async () => {
      const s = await fake({ mode: 'reset-on-body:1024' })
      const sock = rawPost(s, 4 * 1024 * 1024)
      sock.write(Buffer.alloc(4 * 1024 * 1024, 'r'))
      const [err] = (await once(sock, 'error')) as [NodeJS.ErrnoException]
      assert.equal(err.code, 'ECONNRESET')
      const req = s.lastRequest
      assert.ok(req)
      assert.ok(req.bodyBytes >= 1024)
      assert.equal(req.bodyComplete, false)
      await s.waitForIdle()
    })

    it('reset-on-body:<bytes> resets at the end of a shorter body, and undici sees a socket error', async () => {
      const s = await fake({ mode: 'reset-on-body:1000000' })
      const err = await rejection(post(s, agent()))
      assert.ok(['ECONNRESET', 'UND_ERR_SOCKET'].includes(codeOf(err) ?? ''), `got ${codeOf(err)}`)
      assert.equal(s.lastRequest?.bodyComplete, true)
      assert.equal(s.lastRequest?.replyBytes, 0)
    })

    it('close-on-accept closes every connection before reading a request', async () => {
      const s = await fake({ mode: 'close-on-accept' })
      const sock = rawPost(s, MESSAGE.length)
      sock.on('error', () => {}) // may be a reset as much as an end
      const data: Buffer[] = []
      sock.on('data', (d: Buffer) => data.push(d))
      await once(sock, 'close')
      assert.equal(Buffer.concat(data).length, 0)
      const err = await rejection(post(s, agent()))
      assert.ok(['UND_ERR_SOCKET', 'ECONNRESET'].includes(codeOf(err) ?? ''), `got ${codeOf(err)}`)
      assert.ok(s.totalConnections >= 2)
      assert.equal(s.requests.length, 0)
      await s.waitForIdle()
    })

    it('unusedPort() gives a port where connections are refused', async () => {
      const port = await FakeRspamd.unusedPort()
      const err = await rejection(
        request(`http://127.0.0.1:${port}/checkv2`, { method: 'POST', body: MESSAGE, dispatcher: agent() }),
      )
      assert.equal(codeOf(err), 'ECONNREFUSED')
    })
  })

  describe('connection accounting', function () {
    it('counts open and total connections; close() destroys live ones and brings open to 0', async () => {
      const s = await fake()
      const a = agent()
      const b = agent()
      await (await post(s, a)).body.dump()
      await (await post(s, b)).body.dump()
      assert.equal(s.totalConnections, 2)
      assert.equal(s.openConnections, 2)
      await b.close()
      await s.waitForConnections(1)
      assert.equal(s.openConnections, 1)
      await s.close()
      assert.equal(s.openConnections, 0)
      assert.equal(s.totalConnections, 2)
      await s.close() // twice is fine
    })

    it('wait helpers reject with a clear message when the event does not come', async () => {
      const s = await fake()
      await (await post(s, agent())).body.dump()
      await assert.rejects(
        s.waitForIdle(20),
        /timed out after 20 ms waiting for open connections to drop to 0/,
      )
      await assert.rejects(
        s.waitForRequests(5, 20),
        /timed out after 20 ms waiting for 5 request\(s\) \(have 1\)/,
      )
      await s.waitForAccepted(1)
    })
  })

  describe('TLS', function () {
    let dir: string
    let tlsFiles: Awaited<ReturnType<typeof makeSelfSignedCert>>
    before(async function () {
      dir = mkdtempSync(join(tmpdir(), 'fake-rspamd-tls-'))
      tlsFiles = await makeSelfSignedCert(dir)
    })
    after(() => rmSync(dir, { recursive: true, force: true }))

    async function tlsFake(opts: StartOptions = {}): Promise<FakeRspamd> {
      const s = await FakeRspamd.startTls({ ...opts, key: tlsFiles.key, cert: tlsFiles.cert })
      servers.push(s)
      return s
    }

    it('serves /checkv2 over https with the self-signed cert (rejectUnauthorized: false)', async () => {
      const s = await tlsFake({ reply: replyFor('add header') })
      assert.match(s.url, /^https:\/\/127\.0\.0\.1:\d+$/)
      const res = await post(s, agent({ connect: { rejectUnauthorized: false } }))
      assert.equal(res.statusCode, 200)
      assert.equal(((await res.body.json()) as { action: string }).action, 'add header')
      assert.ok(s.lastRequest?.body.equals(MESSAGE))
    })

    it('has a cert that verifies for IP 127.0.0.1 when trusted as a CA', async () => {
      const s = await tlsFake()
      const res = await post(s, agent({ connect: { ca: tlsFiles.cert } }))
      assert.equal(res.statusCode, 200)
      await res.body.dump()
      const err = await rejection(post(s, agent()))
      assert.match(String(codeOf(err)), /SELF_SIGNED|UNABLE_TO_VERIFY|DEPTH_ZERO/)
    })

    it('fails modes over TLS too (hang until close)', async () => {
      const s = await tlsFake({ mode: 'hang' })
      const pending = post(s, agent({ connect: { rejectUnauthorized: false } }))
      await s.waitForBody(0)
      await s.close()
      assert.equal(s.openConnections, 0)
      await rejection(pending)
    })
  })
})

describe('rspamd reply fixtures', function () {
  const actions: RspamdAction[] = [
    'no action',
    'greylist',
    'add header',
    'rewrite subject',
    'soft reject',
    'reject',
  ]
  for (const action of actions) {
    it(`replyFor('${action}') is a well-formed rspamd 3.x reply whose symbols add up to its score`, () => {
      const r = replyFor(action)
      assert.equal(r.action, action)
      assert.equal(r.score, SCORES[action])
      assert.equal(r.required_score, 15)
      const symbols = Object.entries(r.symbols)
      assert.ok(symbols.length >= 3 && symbols.length <= 8)
      for (const [name, sym] of symbols) {
        assert.equal(sym.name, name)
        assert.ok(Array.isArray(sym.options))
        assert.equal(typeof sym.metric_score, 'number')
      }
      const sum = symbols.reduce((t, [, sym]) => t + sym.score, 0)
      assert.ok(Math.abs(sum - r.score) < 1e-9, `${action}: symbols sum to ${sum}`)
      assert.equal(r.subject !== undefined, action === 'rewrite subject')
      if (action === 'reject') assert.equal(r.messages.smtp_message, 'Spam message rejected')
    })
  }

  it('merges extras over the top level and returns fresh objects', () => {
    const a = replyFor('reject', { messages: { smtp_message: 'Go away' } })
    assert.deepEqual(a.messages, { smtp_message: 'Go away' })
    const b = replyFor('reject')
    b.symbols.BAYES_SPAM.score = 99
    assert.equal(replyFor('reject').symbols.BAYES_SPAM.score, 5.1)
    assert.notEqual(a['message-id'], b['message-id'])
  })

  it('withMilter and withDkim add the milter block and a dkim-signature', () => {
    const r = withDkim(withMilter(replyFor('add header')))
    assert.deepEqual(r.milter, {
      add_headers: { 'X-Spamd-Bar': { value: '+++', order: 0 }, 'X-Virus': 'no' },
      remove_headers: { 'X-Spamd-Bar': 1 },
    })
    assert.match(String(r['dkim-signature']), /^v=1; a=rsa-sha256;/)
    assert.deepEqual(withDkim(replyFor('no action'), ['a', 'b'])['dkim-signature'], ['a', 'b'])
  })
})
