// A fake rspamd (/checkv2 over HTTP or HTTPS on 127.0.0.1) that records every request in full and
// misbehaves on purpose — hangs, stalls, resets, garbage, huge replies — for protocol and fault tests.

import { execFile } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { readFile } from 'node:fs/promises'
import * as http from 'node:http'
import * as https from 'node:https'
import * as net from 'node:net'
import { join } from 'node:path'
import * as tls from 'node:tls'
import { replyFor } from './replies'

/**
 * How the server answers the next request (or connection, for close-on-accept).
 * Modes that "never answer" keep the socket open until the client goes away or close().
 */
export type Mode =
  /** read the whole body, answer 200 application/json with the reply spec (default) */
  | 'ok'
  /** like ok, but answer `ms` milliseconds after the body has been read */
  | `delay:${number}`
  /** read the whole body, never answer */
  | 'hang'
  /** never read the body (backpressure builds up on the client) and never answer */
  | 'hang-before-body'
  /** read the body, send 200 headers (Content-Length of the whole reply) and half the JSON, then stall */
  | 'stall-body'
  /** answer this HTTP status with JSON `{"error": "..."}`, as rspamd does */
  | `status:${number}`
  /** answer this HTTP status with an HTML page, as a proxy in front of rspamd would */
  | `html:${number}`
  /** 200 application/json whose body is not JSON */
  | 'garbage'
  /** 200 application/json, a complete HTTP message holding the first half of the JSON reply */
  | 'truncated'
  /** 200 application/json with an empty body */
  | 'empty'
  /**
   * 200 with a JSON-looking body (`{"action":"no action",…,"pad":"xxx…"}`) of exactly this many
   * bytes and a Content-Length, generated in 64 KiB chunks with backpressure respected, stopping
   * when the client goes away (never held in memory)
   */
  | `huge:${number}`
  /** like huge, without Content-Length (chunked), so only counting the bytes can catch it */
  | `huge-chunked:${number}`
  /**
   * reset the connection (TCP RST where node allows it, else destroy) once this many body bytes
   * have arrived, or when the body ends if it is shorter; never answers
   */
  | `reset-on-body:${number}`
  /** destroy every socket as soon as it is accepted (no request is ever seen) */
  | 'close-on-accept'

/** A request as the server saw it; `body` and `bodyComplete` keep changing while it arrives. */
export interface RecordedRequest {
  readonly method: string
  readonly path: string
  readonly headers: http.IncomingHttpHeaders
  /** name, value, name, value… as received: repeated headers (Rcpt) in order, original case */
  readonly rawHeaders: string[]
  /** the body bytes read so far (all of it once bodyComplete) */
  readonly body: Buffer
  readonly bodyBytes: number
  /** the whole body has been read */
  readonly bodyComplete: boolean
  /** the mode the request was answered under */
  readonly mode: Mode
  /** same number = same connection (keep-alive reuse) */
  readonly connectionId: number
  /** reply body bytes handed to the socket so far */
  readonly replyBytes: number
  /** the reply was sent in full */
  readonly replyComplete: boolean
}

export type ReplyFn = (req: RecordedRequest) => object
/** A JSON-able object sent as is, or a function building it from the request. */
export type ReplySpec = object | ReplyFn

/**
 * A 200 reply built in full by the test (mode ok): its own headers (Compression, Message-Offset…) and
 * body bytes (zstd frames, a JSON with a body block…). Content-Length is added unless `chunked`.
 */
export interface RawReply {
  headers: Record<string, string | string[]>
  body: Buffer
  chunked?: boolean
}
export type RawReplyFn = (req: RecordedRequest) => RawReply

export interface StartOptions {
  mode?: Mode
  reply?: ReplySpec
  /**
   * How long the server keeps an idle keep-alive socket (node's default: 5 s). Under 1 s, undici
   * does not reuse the socket at all (it reads `Keep-Alive: timeout=0`), so once a reply is
   * complete the socket closes at once, and any socket still open is one the client failed to close.
   */
  keepAliveMs?: number
  /** answer with `Connection: close` and close the socket after every reply, as rspamd 3.4 does */
  closeEach?: boolean
}

export interface TlsStartOptions extends StartOptions {
  key: string | Buffer
  cert: string | Buffer
}

/** How long the wait* helpers wait before rejecting. */
export const DEFAULT_WAIT_MS = 5000

const HUGE_CHUNK = Buffer.alloc(64 * 1024, 'x')

type ParsedMode =
  | {
      kind:
        | 'ok'
        | 'hang'
        | 'hang-before-body'
        | 'stall-body'
        | 'garbage'
        | 'truncated'
        | 'empty'
        | 'close-on-accept'
    }
  | { kind: 'delay' | 'huge' | 'huge-chunked' | 'reset-on-body'; n: number }
  | { kind: 'status' | 'html'; n: number }

const SIMPLE_MODES = new Set<string>([
  'ok',
  'hang',
  'hang-before-body',
  'stall-body',
  'garbage',
  'truncated',
  'empty',
  'close-on-accept',
])

function parseMode(mode: Mode): ParsedMode {
  if (SIMPLE_MODES.has(mode)) return { kind: mode } as ParsedMode
  const m = /^(delay|huge|huge-chunked|reset-on-body|status|html):(\d+)$/.exec(mode)
  if (!m) throw new Error(`fake rspamd: unknown mode ${JSON.stringify(mode)}`)
  const n = Number(m[2])
  if (!Number.isSafeInteger(n)) throw new Error(`fake rspamd: bad number in mode ${mode}`)
  if ((m[1] === 'status' || m[1] === 'html') && (n < 200 || n > 599)) {
    throw new Error(`fake rspamd: status must be 200-599 in mode ${mode}`)
  }
  return { kind: m[1] as 'delay' | 'huge' | 'huge-chunked' | 'reset-on-body' | 'status' | 'html', n }
}

class Recorded implements RecordedRequest {
  readonly method: string
  readonly path: string
  readonly headers: http.IncomingHttpHeaders
  readonly rawHeaders: string[]
  bodyBytes = 0
  bodyComplete = false
  replyBytes = 0
  replyComplete = false
  private chunks: Buffer[] = []

  constructor(
    req: http.IncomingMessage,
    readonly mode: Mode,
    readonly connectionId: number,
  ) {
    this.method = req.method ?? ''
    this.path = req.url ?? ''
    this.headers = req.headers
    this.rawHeaders = [...req.rawHeaders]
  }

  /** Concatenated lazily: appending each chunk to one Buffer would be quadratic for big messages. */
  get body(): Buffer {
    if (this.chunks.length !== 1) this.chunks = [Buffer.concat(this.chunks)]
    return this.chunks[0]
  }

  add(chunk: Buffer): void {
    this.chunks.push(chunk)
    this.bodyBytes += chunk.length
  }
}

/** Destroys with a TCP RST when the socket is plain TCP; TLS sockets are only destroyed. */
function reset(socket: net.Socket): void {
  if (!(socket instanceof tls.TLSSocket)) {
    try {
      socket.resetAndDestroy()
      return
    } catch {
      // not a TCP handle (already closed): fall through
    }
  }
  socket.destroy()
}

export class FakeRspamd {
  readonly requests: RecordedRequest[] = []
  /** live sockets right now */
  openConnections = 0
  /** sockets accepted since start */
  totalConnections = 0
  /** connection ids (RecordedRequest.connectionId) of the sockets closed so far */
  readonly closedConnections = new Set<number>()

  private parsed: ParsedMode
  private replySpec: ReplySpec | undefined
  private rawReplyFn: RawReplyFn | undefined
  private readonly sockets = new Set<net.Socket>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private readonly changes = new EventEmitter()
  private readonly connectionIds = new WeakMap<net.Socket, number>()
  private closing: Promise<void> | undefined

  private constructor(
    private readonly server: http.Server | https.Server,
    readonly port: number,
    readonly url: string,
    private mode: Mode,
    reply: ReplySpec | undefined,
  ) {
    this.parsed = parseMode(mode)
    this.replySpec = reply
    this.changes.setMaxListeners(0)
  }

  /** An HTTP fake rspamd on 127.0.0.1 and a free port. */
  static async start(opts: StartOptions = {}): Promise<FakeRspamd> {
    return FakeRspamd.listen(http.createServer(), 'http', opts)
  }

  /** An HTTPS fake rspamd (see makeSelfSignedCert). */
  static async startTls(opts: TlsStartOptions): Promise<FakeRspamd> {
    return FakeRspamd.listen(https.createServer({ key: opts.key, cert: opts.cert }), 'https', opts)
  }

  /** A port nothing listens on (bound then released), for connection-refused tests. */
  static async unusedPort(): Promise<number> {
    const probe = net.createServer()
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject)
      probe.listen(0, '127.0.0.1', resolve)
    })
    const port = (probe.address() as net.AddressInfo).port
    await new Promise<void>((resolve) => probe.close(() => resolve()))
    return port
  }

  private static async listen(
    server: http.Server | https.Server,
    scheme: 'http' | 'https',
    opts: StartOptions,
  ): Promise<FakeRspamd> {
    const mode = opts.mode ?? 'ok'
    parseMode(mode) // a bad mode fails before anything listens
    // hang modes must hang until the test says so, not until node's 300 s request timeout
    server.requestTimeout = 0
    if (opts.keepAliveMs !== undefined) server.keepAliveTimeout = opts.keepAliveMs
    if (opts.closeEach) {
      server.prependListener('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
        res.shouldKeepAlive = false
      })
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
    const port = (server.address() as net.AddressInfo).port
    const fake = new FakeRspamd(server, port, `${scheme}://127.0.0.1:${port}`, mode, opts.reply)
    fake.attach()
    return fake
  }

  /** Mode ok answers with this reply, built by the test in full, from now on; undefined: the JSON again. */
  setRawReply(fn: RawReplyFn | undefined): void {
    this.rawReplyFn = fn
  }

  /** The mode for requests (and connections) from now on. */
  setMode(mode: Mode): void {
    this.parsed = parseMode(mode)
    this.mode = mode
  }

  /** The JSON sent by ok, delay, stall-body and truncated; undefined = replyFor('no action'). */
  setReply(spec: ReplySpec | undefined): void {
    this.replySpec = spec
  }

  get lastRequest(): RecordedRequest | undefined {
    return this.requests[this.requests.length - 1]
  }

  /** Resolves when at least n requests (in total, since start) have arrived (headers read). */
  waitForRequests(n: number, timeoutMs = DEFAULT_WAIT_MS): Promise<RecordedRequest[]> {
    return this.waitUntil(
      () => this.requests.length >= n,
      () => `${n} request(s) (have ${this.requests.length})`,
      timeoutMs,
    ).then(() => this.requests.slice(0, n))
  }

  /** Resolves when the body of requests[index] (default: the last) has been read in full. */
  waitForBody(index = this.requests.length - 1, timeoutMs = DEFAULT_WAIT_MS): Promise<RecordedRequest> {
    return this.waitUntil(
      () => this.requests[index]?.bodyComplete === true,
      () => `the body of request #${index} (have ${this.requests[index]?.bodyBytes ?? 'no request'} bytes)`,
      timeoutMs,
    ).then(() => this.requests[index])
  }

  /** Resolves when at least n connections (in total) have been accepted. */
  waitForAccepted(n: number, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    return this.waitUntil(
      () => this.totalConnections >= n,
      () => `${n} accepted connection(s) (have ${this.totalConnections})`,
      timeoutMs,
    )
  }

  /** Resolves when openConnections has dropped to n or fewer. */
  waitForConnections(n: number, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    return this.waitUntil(
      () => this.openConnections <= n,
      () => `open connections to drop to ${n} (have ${this.openConnections})`,
      timeoutMs,
    )
  }

  /** Resolves when the socket with this connection id (RecordedRequest.connectionId) has closed. */
  waitForClosed(connectionId: number, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    return this.waitUntil(
      () => this.closedConnections.has(connectionId),
      () => `connection ${connectionId} to close`,
      timeoutMs,
    )
  }

  /** Resolves when no socket is open (note: a keep-alive client pool holds one until closed). */
  waitForIdle(timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    return this.waitForConnections(0, timeoutMs)
  }

  /**
   * Stops listening, destroys every socket, cancels delayed answers; resolves once the server is
   * closed and openConnections is 0. Safe to call twice.
   */
  close(): Promise<void> {
    if (!this.closing) {
      for (const t of this.timers) clearTimeout(t)
      this.timers.clear()
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
      for (const s of this.sockets) s.destroy()
      this.closing = closed.then(() => this.waitForIdle())
    }
    return this.closing
  }

  private waitUntil(done: () => boolean, what: () => string, timeoutMs: number): Promise<void> {
    if (done()) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!done()) return
        clearTimeout(timer)
        this.changes.off('change', check)
        resolve()
      }
      const timer = setTimeout(() => {
        this.changes.off('change', check)
        reject(new Error(`fake rspamd: timed out after ${timeoutMs} ms waiting for ${what()}`))
      }, timeoutMs)
      this.changes.on('change', check)
    })
  }

  private changed(): void {
    this.changes.emit('change')
  }

  private attach(): void {
    // 'connection' sees the TCP socket for http and https alike
    this.server.on('connection', (socket: net.Socket) => {
      this.totalConnections += 1
      this.openConnections += 1
      this.sockets.add(socket)
      const id = this.totalConnections
      this.connectionIds.set(socket, id)
      socket.once('close', () => {
        this.closedConnections.add(id)
        this.sockets.delete(socket)
        this.openConnections -= 1
        this.changed()
      })
      if (this.parsed.kind === 'close-on-accept' || this.closing) socket.destroy()
      this.changed()
    })
    if (this.server instanceof https.Server) {
      // the TLS socket wraps the TCP one: give it the same connection id
      let next = 0
      this.server.on('secureConnection', (socket: tls.TLSSocket) => {
        next += 1
        this.connectionIds.set(socket, next)
      })
      this.server.on('tlsClientError', (_err: Error, socket: tls.TLSSocket) => socket.destroy())
    }
    // the default handler may write a 400 into a socket we want silent
    this.server.on('clientError', (_err: Error, socket: net.Socket) => socket.destroy())
    this.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.handle(req, res))
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const mode = this.parsed
    const record = new Recorded(req, this.mode, this.connectionIds.get(req.socket) ?? 0)
    this.requests.push(record)
    req.on('error', () => {}) // the client going away is what several modes are for
    res.on('error', () => {})
    res.on('finish', () => {
      record.replyComplete = true
      this.changed()
    })
    this.changed()

    if (mode.kind === 'hang-before-body') return // not consumed: the socket stops reading

    if (mode.kind === 'reset-on-body') {
      const doReset = () => {
        req.removeAllListeners('data')
        reset(req.socket)
        this.changed()
      }
      if (mode.n === 0) return doReset()
      req.on('data', (chunk: Buffer) => {
        record.add(chunk)
        this.changed()
        if (record.bodyBytes >= mode.n) doReset()
      })
      req.on('end', () => {
        record.bodyComplete = true
        doReset()
      })
      return
    }

    req.on('data', (chunk: Buffer) => {
      record.add(chunk)
      this.changed()
    })
    req.on('end', () => {
      record.bodyComplete = true
      this.changed()
      this.answer(mode, record, res)
    })
  }

  private replyJson(record: RecordedRequest): Buffer {
    const spec = this.replySpec ?? replyFor('no action')
    const json = typeof spec === 'function' ? (spec as ReplyFn)(record) : spec
    return Buffer.from(JSON.stringify(json))
  }

  private answer(mode: ParsedMode, record: Recorded, res: http.ServerResponse): void {
    const send = (status: number, type: string, body: Buffer | string) => {
      const buf = typeof body === 'string' ? Buffer.from(body) : body
      res.writeHead(status, { 'Content-Type': type, 'Content-Length': buf.length, Server: 'rspamd/3.8.4' })
      record.replyBytes += buf.length
      res.end(buf)
    }
    const json = 'application/json'
    let body: Buffer
    try {
      body = this.replyJson(record)
    } catch (err) {
      return send(500, json, JSON.stringify({ error: `fake rspamd: reply function threw: ${String(err)}` }))
    }
    switch (mode.kind) {
      case 'ok': {
        const raw = this.rawReplyFn?.(record)
        if (!raw) return send(200, json, body)
        const headers: http.OutgoingHttpHeaders = {
          'Content-Type': json,
          Server: 'rspamd/3.8.4',
          ...raw.headers,
        }
        if (!raw.chunked) headers['Content-Length'] = raw.body.length
        res.writeHead(200, headers)
        record.replyBytes += raw.body.length
        res.end(raw.body)
        return
      }
      case 'delay': {
        const timer = setTimeout(() => {
          this.timers.delete(timer)
          if (!res.destroyed) send(200, json, body)
        }, mode.n)
        this.timers.add(timer)
        res.once('close', () => {
          clearTimeout(timer)
          this.timers.delete(timer)
        })
        return
      }
      case 'hang':
        return
      case 'stall-body': {
        res.writeHead(200, { 'Content-Type': json, 'Content-Length': body.length, Server: 'rspamd/3.8.4' })
        const part = body.subarray(0, Math.max(1, Math.floor(body.length / 2)))
        record.replyBytes += part.length
        res.write(part)
        return
      }
      case 'status':
        return send(mode.n, json, JSON.stringify({ error: `fake rspamd: status ${mode.n}` }))
      case 'html':
        return send(
          mode.n,
          'text/html',
          `<html>\r\n<head><title>${mode.n} ${http.STATUS_CODES[mode.n] ?? 'Error'}</title></head>\r\n` +
            `<body>\r\n<center><h1>${mode.n} ${http.STATUS_CODES[mode.n] ?? 'Error'}</h1></center>\r\n` +
            '<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n',
        )
      case 'garbage':
        return send(200, json, 'Internal mix-up: <b>this is not JSON</b> \u0000\u00ff\r\n')
      case 'truncated':
        return send(200, json, body.subarray(0, Math.floor(body.length / 2)))
      case 'empty':
        return send(200, json, Buffer.alloc(0))
      case 'huge':
      case 'huge-chunked':
        void this.writeHuge(res, record, mode.n, mode.kind === 'huge-chunked')
        return
      default:
        // hang-before-body, reset-on-body and close-on-accept never get here
        return
    }
  }

  /** Writes `total` bytes of JSON-looking text in slices of one shared buffer, waiting for drain. */
  private async writeHuge(res: http.ServerResponse, record: Recorded, total: number, chunked: boolean) {
    const headers: http.OutgoingHttpHeaders = { 'Content-Type': 'application/json', Server: 'rspamd/3.8.4' }
    if (!chunked) headers['Content-Length'] = total
    res.writeHead(200, headers)
    const head = Buffer.from('{"action":"no action","score":1.2,"required_score":15,"pad":"')
    const tail = Buffer.from('"}')
    const padBytes = Math.max(0, total - head.length - tail.length)
    let left = total
    const pieces = function* (): Generator<Buffer> {
      yield head
      for (let pad = padBytes; pad > 0; pad -= HUGE_CHUNK.length) {
        yield pad >= HUGE_CHUNK.length ? HUGE_CHUNK : HUGE_CHUNK.subarray(0, pad)
      }
      yield tail
    }
    for (const piece of pieces()) {
      if (left === 0) break
      if (res.destroyed || res.socket === null) return // the client went away: stop generating
      const out = piece.length > left ? piece.subarray(0, left) : piece
      left -= out.length
      record.replyBytes += out.length
      if (!res.write(out)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off('drain', done)
            res.off('close', done)
            resolve()
          }
          res.on('drain', done)
          res.on('close', done)
        })
      }
    }
    if (!res.destroyed) res.end()
  }
}

/** A throwaway self-signed cert for 127.0.0.1 / localhost, written into dir with the openssl CLI. */
export async function makeSelfSignedCert(
  dir: string,
): Promise<{ key: Buffer; cert: Buffer; keyFile: string; certFile: string }> {
  const keyFile = join(dir, 'fake-rspamd.key')
  const certFile = join(dir, 'fake-rspamd.crt')
  await new Promise<void>((resolve, reject) => {
    execFile(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        keyFile,
        '-out',
        certFile,
        '-days',
        '2',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
      ],
      (err, _stdout, stderr) =>
        err ? reject(new Error(`openssl failed: ${err.message}\n${stderr}`)) : resolve(),
    )
  })
  const [key, cert] = await Promise.all([readFile(keyFile), readFile(certFile)])
  return { key, cert, keyFile, certFile }
}
