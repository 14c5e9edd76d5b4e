// A scan over the network: upstream health and failover across rspamd servers, a streaming POST (or
// one Buffer for a small message), one total timeout, and a capped read of the reply. The bytes go
// through a Transport (transport.ts). Failures come back as values, never thrown.

import { Transform, Writable, type TransformCallback } from 'node:stream'
import type { Config, Target, TransportKind, UpstreamConfig } from '../config'
import { forLog } from '../escape'
import type { RequestHeaders } from './request'
import { parseReplyBody, type Reply, rspamdErrorText } from './reply'
import { describeTarget, makeTransport, type Transport } from './transport'
import {
  ClientGone,
  ConnectTimeout,
  httpStatusError,
  isServerError,
  type ScanError,
  scanError,
  type ScanErrorKind,
  TimeoutReason,
} from '../errors'

/** rspamd replies are a few KiB; anything near this is broken or hostile. */
export const MAX_REPLY_BYTES = 16 * 1024 * 1024
/** How much of an error reply we read to report rspamd's {"error": …}. */
const MAX_ERROR_BODY = 64 * 1024
/**
 * Haraka's message_stream emits one small chunk per line and undici writes each chunk it is
 * given; gathering them into 64 KiB writes cut the CPU cost of a 1 MB message ~12× (SPEC §1).
 */
export const COALESCE_BYTES = 64 * 1024
/**
 * Messages up to this size are read whole and sent as one Buffer with a Content-Length: no stream
 * plumbing and no chunked encoding for most mail, and no more memory than one coalesced batch.
 */
export const SMALL_MESSAGE_BYTES = COALESCE_BYTES

/** Where the message comes from: something that can write it into a stream, and stop. */
export interface MessageSource {
  /** start writing the whole message (CRLF line endings) into dest, then end it */
  pipe(dest: Writable): void
  /** stop writing (timeout, error, abort); must be safe to call at any time */
  unpipe(): void
}

export interface ScanRequest {
  headers: RequestHeaders
  /** the message, streamed */
  source: MessageSource
  /** total time for connect + send + reply, in ms */
  timeoutMs: number
  /** aborts the scan (the SMTP client went away) */
  cancel?: ScanCancel
  /** the message's size as the MTA counted it: at most SMALL_MESSAGE_BYTES, it is sent as a Buffer */
  sizeHint?: number
}

/**
 * Stops a scan from outside (the SMTP client went away). One per message, so lighter than an
 * AbortController (an EventTarget and its event objects): a flag and at most one listener.
 */
export class ScanCancel {
  aborted = false
  private listener: (() => void) | undefined

  abort(): void {
    if (this.aborted) return
    this.aborted = true
    const listener = this.listener
    this.listener = undefined
    listener?.()
  }

  /** the scan's listener (one scan per ScanCancel); undefined to stop listening */
  listen(fn: (() => void) | undefined): void {
    this.listener = fn
  }
}

/** Why a scan stopped early, and how to cancel what it is waiting for. */
interface ScanStop {
  reason: TimeoutReason | ClientGone | undefined
  cancel: ((why: TimeoutReason | ClientGone) => void) | undefined
}

export type ScanResult =
  | {
      ok: true
      reply: Reply
      json: Record<string, unknown>
      /** the reply's size as received */
      replyBytes: number
      warnings: string[]
      timeMs: number
      server: string
      bytesSent: number
    }
  | { ok: false; error: ScanError; timeMs: number; server: string; bytesSent: number }

/** A scan's result with the servers it failed on before the last one (failover). */
export type ScanOutcome = ScanResult & { attempts: Attempt[] }

/** Gathers small chunks into writes of about `size` bytes; holds at most one batch, never the message. */
export class Coalescer extends Transform {
  private parts: Buffer[] = []
  private held = 0
  bytes = 0

  constructor(private readonly size = COALESCE_BYTES) {
    super()
  }

  override _transform(chunk: Buffer | string, _enc: BufferEncoding, cb: TransformCallback): void {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    this.bytes += buf.length
    this.parts.push(buf)
    this.held += buf.length
    if (this.held >= this.size) this.release()
    cb()
  }

  override _flush(cb: TransformCallback): void {
    this.release()
    cb()
  }

  private release(): void {
    if (this.held === 0) return
    const out = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.held)
    this.parts = []
    this.held = 0
    this.push(out)
  }
}

/** A scan error's message is cut here (its parts are cut smaller where they are made). */
const ERROR_TEXT_MAX = 1000

/** One failed try of a scan that then moved to another server. */
export interface Attempt {
  server: string
  error: ScanError
  timeMs: number
}

export type ClientEvent = { level: 'warn' | 'info'; message: string }

export interface ClientOptions {
  /** reply size cap (tests lower it) */
  maxReplyBytes?: number
  /** connections per server; null = unlimited */
  connections?: number | null
  /** overrides the config's `transport` */
  transport?: TransportKind
  /** the clock for upstream health, in ms (tests move it) */
  now?: () => number
  /** servers marked dead and back again, for the plugin's log */
  onEvent?: (e: ClientEvent) => void
  /** the client this one replaces (a reload): servers in both keep the health it saw */
  previous?: RspamdClient
}

/** Kinds of failure that count against a server's health (a client that went away does not). */
const HEALTH_ERRORS: ReadonlySet<ScanErrorKind> = new Set([
  'connect',
  'network',
  'timeout',
  'parse',
  'too-large',
])

/** Whether a failure counts against the server's health: one of HEALTH_ERRORS, or a 5xx answer (by its status). */
export function countsAgainstHealth(error: ScanError): boolean {
  return HEALTH_ERRORS.has(error.kind) || isServerError(error)
}

/**
 * One rspamd server: its transport and its health. A failure counts until the server's next
 * success, however long ago it happened (rmilter counted so too): at one message every few
 * seconds a server that never answers must still reach `max_errors`, and it is only tried once
 * per `error_time` (see RspamdClient.pick). `max_errors` failures in a row mark it dead for
 * `dead_time`; after that one message probes it: a success puts it back, a failure marks it dead
 * for another `dead_time` at once.
 */
class Upstream {
  readonly server: string
  readonly transport: Transport
  inFlight = 0
  /** failures since the last success */
  failures = 0
  /** when the last of them happened (ms) */
  lastFailureAt = 0
  /** dead until then (ms); stays set after it passes until a success: the server is on probation */
  deadUntil = 0
  diedAt = 0

  constructor(
    readonly target: Target,
    cfg: Config,
    opts: ClientOptions,
  ) {
    this.server = describeTarget(target)
    this.transport = makeTransport(target, cfg, { connections: opts.connections, kind: opts.transport })
  }

  isDead(now: number): boolean {
    return now < this.deadUntil
  }

  /** It failed since its last success, or came back from dead without a success yet: one probe at a time. */
  get suspect(): boolean {
    return this.failures > 0 || this.deadUntil > 0
  }

  /** It failed within the last `error_time`: tried after the servers that did not. */
  failedLately(now: number, errorTimeMs: number): boolean {
    return this.failures > 0 && now - this.lastFailureAt < errorTimeMs
  }

  /** Counts a failure: 'dead' when it just made the server dead, 'relapsed' when a probe after dead_time failed. */
  fail(now: number, up: UpstreamConfig): 'dead' | 'relapsed' | undefined {
    // a scan that started before the server died and fails now: it died of that already
    if (this.isDead(now)) return undefined
    this.failures++
    this.lastFailureAt = now
    const probation = this.deadUntil > 0
    if (!probation && this.failures < up.maxErrors) return undefined
    this.failures = 0
    this.diedAt = now
    this.deadUntil = now + up.deadTime * 1000
    return probation ? 'relapsed' : 'dead'
  }

  /** A success: the count starts again; true when the server was dead before. */
  succeed(): boolean {
    const wasDead = this.deadUntil > 0
    this.failures = 0
    this.deadUntil = 0
    return wasDead
  }

  /** Takes over another client's view of the same server (a reload that keeps it keeps its health). */
  inherit(from: Upstream): void {
    this.failures = from.failures
    this.lastFailureAt = from.lastFailureAt
    this.deadUntil = from.deadUntil
    this.diedAt = from.diedAt
  }
}

/**
 * rspamd servers (one, or `servers`): picks one per scan, streams the message, and on a failure
 * before rspamd answered moves to the next server within the same total timeout.
 */
export class RspamdClient {
  /** what the log calls this client: the server, or the list of them */
  readonly server: string
  private readonly upstreams: Upstream[]
  private readonly path: string
  private readonly maxReplyBytes: number
  private readonly upstreamCfg: UpstreamConfig
  private readonly now: () => number
  private readonly onEvent: (e: ClientEvent) => void
  /** round-robin cursor: among equally good servers, the next one after the last used */
  private cursor = 0
  /** scans started and not yet settled: close() waits for them, not only for requests already sent */
  private scansInFlight = 0
  private whenIdle: (() => void)[] = []

  constructor(cfg: Config, opts: ClientOptions = {}) {
    const targets = cfg.targets.length > 0 ? cfg.targets : [cfg.target]
    this.upstreams = targets.map((t) => new Upstream(t, cfg, opts))
    for (const u of this.upstreams) {
      const before = opts.previous?.upstreams.find((p) => p.server === u.server)
      if (before) u.inherit(before)
    }
    this.server = this.upstreams.map((u) => u.server).join(', ')
    this.path = cfg.path
    this.maxReplyBytes = opts.maxReplyBytes ?? MAX_REPLY_BYTES
    this.upstreamCfg = cfg.upstream
    this.now = opts.now ?? Date.now
    this.onEvent = opts.onEvent ?? (() => undefined)
  }

  /** The servers, each with whether it is now skipped as dead and its transport (for tests and status). */
  health(): { server: string; dead: boolean; failures: number; inFlight: number; transport: string }[] {
    const now = this.now()
    return this.upstreams.map((u) => ({
      server: u.server,
      dead: u.isDead(now),
      failures: u.failures,
      inFlight: u.inFlight,
      transport: u.transport.name,
    }))
  }

  /**
   * The server for the next try, among those not tried yet: a live one — not failed within
   * `error_time`, then fewest scans in flight (least busy: rspamd's time per message varies with its
   * size far more than round robin assumes), then round robin — else any server left, the dead one
   * that died first before the others. A server that failed since its last success (or is on
   * probation after dead_time) takes one scan at a time: a server that never answers holds up one
   * message, not every message that arrives meanwhile.
   */
  private pick(tried: ReadonlySet<Upstream>): Upstream | undefined {
    const now = this.now()
    const windowMs = this.upstreamCfg.errorTime * 1000
    const n = this.upstreams.length
    let best: Upstream | undefined
    let bestLate = 0
    for (let i = 0; i < n; i++) {
      const u = this.upstreams[(this.cursor + i) % n]
      if (!u || tried.has(u) || u.isDead(now) || (u.suspect && u.inFlight > 0)) continue
      const late = u.failedLately(now, windowMs) ? 1 : 0
      if (!best || late < bestLate || (late === bestLate && u.inFlight < best.inFlight)) {
        best = u
        bestLate = late
      }
    }
    if (best) {
      this.cursor = (this.upstreams.indexOf(best) + 1) % n
      return best
    }
    // every server left is dead or busy being probed: rather than give up, the likeliest one
    let fallback: Upstream | undefined
    for (const u of this.upstreams) {
      if (tried.has(u)) continue
      if (!fallback || u.diedAt < fallback.diedAt) fallback = u
    }
    return fallback
  }

  /**
   * Send one message to rspamd and read its verdict. Never throws, never rejects.
   * A failure at connect, or a connection that breaks (or a server that stays silent) before
   * rspamd answered, moves to the next server with the message sent again from the start;
   * an answer of any kind is final.
   */
  async scan(req: ScanRequest): Promise<ScanOutcome> {
    this.scansInFlight++
    try {
      return await this.scanOnce(req)
    } finally {
      if (--this.scansInFlight === 0) for (const f of this.whenIdle.splice(0)) f()
    }
  }

  private async scanOnce(req: ScanRequest): Promise<ScanOutcome> {
    const start = performance.now()
    // Plain callbacks, not AbortControllers: the timer or the SMTP client leaving stops the scan,
    // which cancels the attempt in flight (a cost paid per message, so kept to a closure or two).
    const stop: ScanStop = { reason: undefined, cancel: undefined }
    const halt = (why: TimeoutReason | ClientGone) => {
      if (stop.reason) return
      stop.reason = why
      stop.cancel?.(why)
    }
    const timer = setTimeout(() => halt(new TimeoutReason(req.timeoutMs, true, this.server)), req.timeoutMs)
    const onOuterAbort = () => halt(new ClientGone())
    if (req.cancel?.aborted) onOuterAbort()
    else req.cancel?.listen(onOuterAbort)

    const headers = wireHeaders(req.headers)
    const tried = new Set<Upstream>()
    const attempts: Attempt[] = []
    // a small message is read whole once and sent as a Buffer (with Content-Length) to each server
    // tried; a larger one is streamed, piped again from the start for each server
    const small = req.sizeHint !== undefined && req.sizeHint <= SMALL_MESSAGE_BYTES
    let whole: Buffer | undefined
    try {
      for (;;) {
        const up = this.pick(tried)
        // pick() only comes back empty once every server was tried, and the loop ends before that
        if (!up) throw new Error('no rspamd server left to try')
        tried.add(up)
        const remaining = req.timeoutMs - (performance.now() - start)
        const another = this.upstreams.length > tried.size
        // leave half of what is left for the next server, in case this one never answers; the
        // last server has the rest of the total timeout
        const attemptMs = another ? Math.max(1, Math.floor(remaining / 2)) : undefined
        if (small && whole === undefined) {
          const read = await readWhole(req.source, stop)
          if (read instanceof Error) {
            const error = scanError('network', `reading the message: ${forLog(read.message)}`)
            return { ok: false, error, timeMs: elapsed(start), server: up.server, bytesSent: 0, attempts }
          }
          whole = read
        }
        const { result, retryable } = await this.attempt(up, req, headers, whole, stop, attemptMs)
        this.account(up, result)
        const timeMs = elapsed(start)
        if (result.ok || !retryable || !another || stop.reason) {
          return { ...result, timeMs, attempts }
        }
        attempts.push({ server: up.server, error: result.error, timeMs: result.timeMs })
      }
    } finally {
      clearTimeout(timer)
      req.cancel?.listen(undefined)
    }
  }

  private account(up: Upstream, result: ScanResult): void {
    const now = this.now()
    const many = this.upstreams.length > 1
    if (result.ok) {
      if (up.succeed() && many) {
        this.onEvent({ level: 'info', message: `rspamd server ${up.server} answers again` })
      }
      return
    }
    if (!countsAgainstHealth(result.error)) return
    const change = up.fail(now, this.upstreamCfg)
    if (!change || !many) return
    const u = this.upstreamCfg
    const last = `last: ${result.error.kind}: ${result.error.message}`
    this.onEvent({
      level: 'warn',
      message:
        change === 'dead'
          ? `rspamd server ${up.server} marked dead for ${u.deadTime} s after ${u.maxErrors} failures ` +
            `without a success (${last})`
          : `rspamd server ${up.server} still fails after ${u.deadTime} s dead: marked dead for another ` +
            `${u.deadTime} s (${last})`,
    })
  }

  /**
   * One try on one server; `retryable` when it failed before rspamd answered anything. A cancel
   * settles at once and destroys the socket rather than leaving it to idle out. `whole` is the
   * message read already (small messages), else it is streamed.
   */
  private attempt(
    up: Upstream,
    req: ScanRequest,
    headers: RequestHeaders,
    whole: Buffer | undefined,
    stop: ScanStop,
    attemptMs: number | undefined,
  ): Promise<{ result: ScanResult; retryable: boolean }> {
    const maxReplyBytes = this.maxReplyBytes
    return new Promise((resolve) => {
      const start = performance.now()
      const stream = whole === undefined ? new Coalescer() : undefined
      const sent = () => (stream ? stream.bytes : (whole?.length ?? 0))
      let abort: ((why: Error) => void) | undefined
      let settled = false
      let answered = false
      let status = 0
      let cap = maxReplyBytes
      const parts: Buffer[] = []
      let size = 0
      let overCap = false

      const settle = (result: ScanResult, retryable: boolean) => {
        if (settled) return
        settled = true
        up.inFlight--
        clearTimeout(timer)
        stop.cancel = undefined
        if (stream) {
          // stop the message stream before destroying its destination (haraka/message-stream#22);
          // after this it can be piped again from the start for the next server
          req.source.unpipe()
          if (!stream.destroyed) stream.destroy()
        }
        resolve({ result, retryable })
      }
      const fail = (error: ScanError, retryable = false) =>
        settle(
          {
            ok: false,
            error,
            timeMs: elapsed(start),
            server: up.server,
            bytesSent: sent(),
          },
          retryable && !answered,
        )
      /** ends the attempt now: the socket goes at once, whatever the transport was doing with it */
      const cancel = (why: Error) => {
        if (why instanceof TimeoutReason) fail(scanError('timeout', logText(why.message)), !why.total)
        else if (why instanceof ClientGone) fail(scanError('aborted', logText(why.message)))
        abort?.(why)
      }
      const finish = () => {
        const text = (parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, size)).toString('utf8')
        if (status !== 200)
          return fail(httpStatusError(status, logText(`HTTP ${status}${errorDetail(text)}`)))
        const parsed = parseReplyBody(text)
        if (!parsed.ok) return fail(scanError('parse', logText(parsed.error)))
        settle(
          {
            ok: true,
            reply: parsed.reply,
            json: parsed.json,
            replyBytes: size,
            warnings: parsed.warnings,
            timeMs: elapsed(start),
            server: up.server,
            bytesSent: sent(),
          },
          false,
        )
      }

      const timer =
        attemptMs === undefined
          ? undefined
          : setTimeout(() => cancel(new TimeoutReason(attemptMs, false, up.server)), attemptMs)
      up.inFlight++
      if (stop.reason) return cancel(stop.reason)
      stop.cancel = cancel
      if (stream) {
        // the message could not be read (Haraka's message_stream destroys its destination with the
        // error): the scan fails now, as readWhole() makes it for a small message, and the request
        // goes with it; the next server would read the same message, so no retry
        stream.once('error', (err) => {
          fail(scanError('network', logText(`reading the message: ${describeError(err)}`)))
          abort?.(err)
        })
        req.source.pipe(stream)
      }

      up.transport.send(this.path, headers, whole ?? (stream as Coalescer), {
        started(fn) {
          abort = fn
          // cancelled while the request waited for a connection: drop it now
          if (settled) fn(stop.reason ?? new Error('scan ended'))
        },
        response(statusCode, contentLength) {
          if (settled) return
          answered = true
          status = statusCode
          if (statusCode !== 200) {
            cap = MAX_ERROR_BODY
            return
          }
          const length = Number(contentLength)
          if (contentLength !== undefined && Number.isFinite(length) && length > maxReplyBytes) {
            fail(
              scanError(
                'too-large',
                logText(`reply of ${length} bytes is over the ${maxReplyBytes} byte cap`),
              ),
            )
            abort?.(new Error('reply over the cap'))
          }
        },
        data(chunk) {
          if (settled || overCap) return
          if (size + chunk.length > cap) {
            if (status !== 200) {
              // an error reply: what fitted is enough to report it
              parts.push(chunk.subarray(0, cap - size))
              size = cap
              overCap = true
              finish()
              return abort?.(new Error('error reply over the cap'))
            }
            fail(scanError('too-large', logText(`reply is over the ${maxReplyBytes} byte cap`)))
            return abort?.(new Error('reply over the cap'))
          }
          parts.push(chunk)
          size += chunk.length
        },
        end() {
          if (!settled) finish()
        },
        error(err) {
          if (settled) return
          const kind = classify(err)
          // a connection that broke before rspamd answered: the message never reached a verdict; a
          // request the HTTP client refused to write would be refused for every server alike
          const retryable = (kind === 'connect' || kind === 'network') && !UNSENDABLE.has(errCode(err) ?? '')
          fail(scanError(kind, logText(describeError(err))), retryable)
        },
      })
    })
  }

  /**
   * Waits for scans in flight, then closes the connections. A scan counts from its start: one still
   * reading its message, or about to fail over to a server it has not used yet, must find that
   * server's pool open (a reload that changes the servers closes the old client while scans run).
   */
  async close(): Promise<void> {
    if (this.scansInFlight > 0) await new Promise<void>((resolve) => this.whenIdle.push(resolve))
    await Promise.all(this.upstreams.map((u) => u.transport.close()))
  }

  /** Closes at once, failing scans in flight. */
  async destroy(): Promise<void> {
    await Promise.all(this.upstreams.map((u) => u.transport.destroy()))
  }
}

const BEYOND_ASCII = /[^\t\x20-\x7e]/

/**
 * Header values as they go on the wire. node:http and undici write a header string one byte per
 * character (latin1), and refuse characters above U+00FF: an SMTPUTF8 address such as
 * `用户@例子.广告` would fail the scan, and `jörg@…` would reach rspamd as invalid UTF-8. rspamd reads
 * header bytes as UTF-8, so a non-ASCII value is handed over as its UTF-8 bytes.
 */
export function wireHeaders(headers: RequestHeaders): RequestHeaders {
  let out: RequestHeaders | undefined
  for (const name in headers) {
    const v = headers[name] as string | string[]
    if (typeof v === 'string' ? !BEYOND_ASCII.test(v) : !v.some((x) => BEYOND_ASCII.test(x))) continue
    out ??= { ...headers }
    out[name] = typeof v === 'string' ? utf8Bytes(v) : v.map(utf8Bytes)
  }
  return out ?? headers
}

const utf8Bytes = (v: string) => Buffer.from(v, 'utf8').toString('latin1')

/** Reads a small message whole (CRLF line endings); stops early when the scan stops. */
function readWhole(source: MessageSource, stop: ScanStop): Promise<Buffer | Error> {
  return new Promise((resolve) => {
    const parts: Buffer[] = []
    let size = 0
    const done = (out: Buffer | Error) => {
      if (stop.cancel === onStop) stop.cancel = undefined
      // also drops the source's error listener: a Haraka message_stream outlives the scan
      source.unpipe()
      resolve(out)
    }
    const sink = new Writable({
      write(chunk: Buffer | string, _enc, cb) {
        const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
        parts.push(buf)
        size += buf.length
        cb()
      },
      final(cb) {
        done(Buffer.concat(parts, size))
        cb()
      },
    })
    sink.once('error', (err) => done(err))
    const onStop = () => {
      sink.destroy()
      done(Buffer.concat(parts, size))
    }
    if (stop.reason) return onStop()
    stop.cancel = onStop
    source.pipe(sink)
  })
}

// every message may quote outside text (a reply, an error page, a library's error): it is logged,
// so it leaves here escaped and bounded
const logText = (message: string) => forLog(message, ERROR_TEXT_MAX)

function elapsed(start: number): number {
  return Math.round((performance.now() - start) * 10) / 10
}

function errorDetail(text: string | undefined): string {
  if (!text) return ''
  try {
    const j: unknown = JSON.parse(text)
    if (typeof j === 'object' && j !== null && 'error' in j && typeof j.error === 'string') {
      return `: ${rspamdErrorText(j.error)}`
    }
  } catch {
    // not JSON: an HTML error page from a proxy, say; show its start
  }
  const one = text
    .replace(/<[^>]*>/g, ' ')
    // eslint-disable-next-line no-control-regex
    .replace(/[\s\x00-\x1f\x7f\u2028\u2029]+/g, ' ')
    .trim()
  // forLog() for what the line above leaves: C1 controls (CSI, NEL)
  return one ? `: ${forLog(one, 120)}` : ''
}

/** errno and undici codes of a connection that was never made (a ConnectTimeout is one too) */
const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ENOENT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EACCES',
  'UND_ERR_CONNECT_TIMEOUT',
])

/** codes of a request the HTTP client will not send at all (node:http, undici) */
const UNSENDABLE = new Set([
  'ERR_INVALID_CHAR',
  'ERR_INVALID_HTTP_TOKEN',
  'ERR_HTTP_INVALID_HEADER_VALUE',
  'UND_ERR_INVALID_ARG',
])

function errCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string')
    return err.code
  return undefined
}

function classify(err: unknown): 'connect' | 'network' {
  const code = errCode(err)
  if (err instanceof ConnectTimeout || (code && CONNECT_CODES.has(code))) return 'connect'
  if (code?.startsWith('ERR_TLS') || code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || code?.includes('CERT')) {
    return 'connect'
  }
  // node's wording when the peer hangs up during the TLS handshake: still the connect phase
  if (err instanceof Error && /before secure TLS connection was established/.test(err.message))
    return 'connect'
  return 'network'
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const code = errCode(err)
  const cause = err.cause instanceof Error ? ` (${err.cause.message})` : ''
  return `${code ? `${code}: ` : ''}${err.message}${cause}`
}
