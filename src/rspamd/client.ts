// A scan over the network: picks an rspamd server (least busy among the healthy, round robin),
// runs one try on it (attempt.ts) and, on a failure before rspamd answered, moves to the next
// server within the same total timeout. Server health lives in upstream.ts, the message as a body in
// body.ts, the bytes go through a Transport (transport.ts). Failures come back as values
// (../errors.ts), never thrown.

import type { Config, TransportKind, UpstreamConfig } from '../config'
import { ClientGone, type ScanError, scanError, TimeoutReason } from '../errors'
import { forLog } from '../escape'
import { elapsed, type ScanResult, ScanAttempt } from './attempt'
import { type MessageSource, readWhole, SMALL_MESSAGE_BYTES, type ScanStop } from './body'
import type { RequestHeaders } from './request'
import { countsAgainstHealth, Upstream } from './upstream'
import { ZSTD_REQUEST_HEADERS, zstdCompressed } from './zstd'

// what the plugin, rspamd-lda and the tests use comes from here, wherever it is written
export { type ScanResult } from './attempt'
export { Coalescer, COALESCE_BYTES, type MessageSource, SMALL_MESSAGE_BYTES } from './body'

/** rspamd replies are a few KiB; anything near this is broken or hostile. */
export const MAX_REPLY_BYTES = 16 * 1024 * 1024

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

/** A scan's result with the servers it failed on before the last one (failover). */
export type ScanOutcome = ScanResult & { attempts: Attempt[] }

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
  /** `[request] zstd`: every message goes compressed */
  private readonly zstd: boolean
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
    this.upstreams = targets.map(
      (t) => new Upstream(t, cfg, { connections: opts.connections, kind: opts.transport }),
    )
    for (const u of this.upstreams) {
      const before = opts.previous?.upstreams.find((p) => p.server === u.server)
      if (before) u.inherit(before)
    }
    this.server = this.upstreams.map((u) => u.server).join(', ')
    this.path = cfg.path
    this.maxReplyBytes = opts.maxReplyBytes ?? MAX_REPLY_BYTES
    this.zstd = cfg.request.zstd
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

    // compressed as rspamc compresses: rspamd reads `Compression` (and `Content-Encoding`), and
    // answers a compressed request compressed
    const headers = this.zstd
      ? { ...wireHeaders(req.headers), ...ZSTD_REQUEST_HEADERS }
      : wireHeaders(req.headers)
    const tried = new Set<Upstream>()
    const attempts: Attempt[] = []
    // a small message is read whole once and sent as a Buffer (with Content-Length) to each server
    // tried; a larger one is streamed, piped again from the start for each server
    const small = req.sizeHint !== undefined && req.sizeHint <= SMALL_MESSAGE_BYTES
    let whole: Buffer | undefined
    let wholeBytes: number | undefined
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
          if (this.zstd) {
            const packed = await zstdCompressed(read)
            if (packed instanceof Error) {
              const error = scanError('network', `compressing the message (zstd): ${forLog(packed.message)}`)
              return { ok: false, error, timeMs: elapsed(start), server: up.server, bytesSent: 0, attempts }
            }
            whole = packed
          } else whole = read
          wholeBytes = read.length
        }
        // one try on this server (attempt.ts): `retryable` when it failed before rspamd answered anything
        const plan = {
          path: this.path,
          headers,
          source: req.source,
          whole,
          wholeBytes,
          zstd: this.zstd,
          attemptMs,
          maxReplyBytes: this.maxReplyBytes,
        }
        const { result, retryable } = await new ScanAttempt(up, plan, stop).run()
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
