// A scan over the network: picks an rspamd server (least loaded among the healthy with room under
// their in-flight limit, round robin), runs one try on it (attempt.ts) and, on a failure before
// rspamd answered, moves to the next server within the same total timeout. When every server is at
// its limit the scan waits in line only as long as it could still be scanned in time, and is shed
// (not sent) when it could not. Server health lives in upstream.ts, the limits and the line in
// limiter.ts, the message as a body in body.ts, the bytes go through a Transport (transport.ts).
// Failures come back as values (../errors.ts), never thrown.
//
// Longer than the ~400 lines of the others: RspamdClient is where server choice, admission and
// failover meet, and the admission methods (wait, drain, shed, calm, learn) read the same private
// state as pick() and scanOnce() — the servers, the wait line, the recent scan times. The next split,
// when one is made, moves admission into an object of limiter.ts that pick() is handed, not a
// second class reaching into this one.

import type { Config, TransportKind, UpstreamConfig } from '../config'
import { ClientGone, isServerError, type ScanError, scanError, TimeoutReason } from '../errors'
import { forLog } from '../escape'
import { elapsed, type ScanResult, ScanAttempt } from './attempt'
import { type MessageSource, readWhole, SMALL_MESSAGE_BYTES, type ScanStop } from './body'
import { LatencyWindow, RateWindow, TARGET_FRACTION, WaitLine } from './limiter'
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

export type ClientEvent = { level: 'warn' | 'info' | 'debug'; message: string }

/**
 * The least time a try is started with, when the recent scans say nothing (rspamd-lda's one scan,
 * a plugin's first): a failover with less left would only add a scan rspamd does for nobody.
 */
export const MIN_ATTEMPT_MS = 100
/** The line's wait, as its place ÷ its speed, times this: a shed after waiting would answer late. */
const LINE_MARGIN = 2
/** Saturation ends when nothing was shed for this long and nobody waits (one warning each way, not a flutter). */
export const CALM_MS = 5000
/** The limits' debug line comes at most this often (ms). */
const DEBUG_EVERY_MS = 1000

const NONE_TRIED: ReadonlySet<Upstream> = new Set()

/** How a saturation goes, between its two warnings. */
interface Saturation {
  shed: number
  sent: number
  lastShedAt: number
}

export interface ClientOptions {
  /** reply size cap (tests lower it) */
  maxReplyBytes?: number
  /** connections per server; null = unlimited */
  connections?: number | null
  /** overrides the config's `transport` */
  transport?: TransportKind
  /** the clock for upstream health, in ms (tests move it) */
  now?: () => number
  /** servers marked dead and back again, saturation starting and ending, the limits (debug), for the plugin's log */
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
  /** the scans waiting for room (every server at its in-flight limit), first come first served */
  private readonly line = new WaitLine<Upstream>()
  /** how long recent tries that rspamd answered took (sent to answered), for the deadline rule */
  private readonly latency = new LatencyWindow()
  /** when recent tries settled: how fast the line moves */
  private readonly ended = new RateWindow()
  private saturation: Saturation | undefined
  /** while saturated: looks every CALM_MS for the calm that ends it, also when no more mail comes (unref'd) */
  private calmTimer: NodeJS.Timeout | undefined
  private lastDebugAt = -Infinity

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

  /**
   * The servers, each with whether it is now skipped as dead and its transport (for tests and status);
   * `inFlight` is the scans holding a slot of its limit (the one count of them, as the log's limits say).
   */
  health(): {
    server: string
    dead: boolean
    failures: number
    inFlight: number
    limit: number
    transport: string
  }[] {
    const now = this.now()
    return this.upstreams.map((u) => ({
      server: u.server,
      dead: u.isDead(now),
      failures: u.failures,
      inFlight: u.limit.held,
      limit: u.limit.slots(),
      transport: u.transport.name,
    }))
  }

  /** How many scans wait for room now. */
  get waiting(): number {
    return this.line.length
  }

  /**
   * The server for the next try, among those not tried yet, with a slot of its in-flight limit
   * reserved for the caller (release() gives it back): a live one with room — not failed within
   * `error_time`, then the least loaded (scans held ÷ its limit: rspamd's time per message varies
   * with its size far more than round robin assumes, and a saturated server spills over to one with
   * room), then round robin — else, when no server left is live, the dead one that died first. A
   * server that failed since its last success (or is on probation after dead_time) takes one scan at
   * a time: a server that never answers holds up one message, not every message that arrives
   * meanwhile. Undefined when the servers left are full (a full server is not a dead one: the scan
   * waits for it rather than trying a dead one).
   */
  private pick(tried: ReadonlySet<Upstream>): Upstream | undefined {
    const now = this.now()
    const windowMs = this.upstreamCfg.errorTime * 1000
    const n = this.upstreams.length
    let best: Upstream | undefined
    let bestLate = 0
    let bestLoad = 0
    let full = false
    for (let i = 0; i < n; i++) {
      const u = this.upstreams[(this.cursor + i) % n]
      if (!u || tried.has(u) || u.isDead(now) || (u.suspect && u.limit.held > 0)) continue
      if (!u.limit.hasRoom()) {
        full = true
        continue
      }
      const late = u.failedLately(now, windowMs) ? 1 : 0
      const load = u.limit.load()
      if (!best || late < bestLate || (late === bestLate && load < bestLoad)) {
        best = u
        bestLate = late
        bestLoad = load
      }
    }
    if (!best && !full) {
      // every server left is dead or busy being probed: rather than give up, the likeliest one
      for (const u of this.upstreams) {
        if (tried.has(u)) continue
        if (!best || u.diedAt < best.diedAt) best = u
      }
      if (best && !best.limit.hasRoom()) return undefined
    }
    if (!best) return undefined
    this.cursor = (this.upstreams.indexOf(best) + 1) % n
    best.limit.held++
    return best
  }

  /** Gives back a slot pick() reserved, and hands the room to the first scans in line. */
  private release(up: Upstream): void {
    up.limit.held--
    this.drain()
  }

  /** The first scans in line get the servers with room; one whose time ran short meanwhile is shed. */
  private drain(): void {
    while (this.line.length > 0) {
      const up = this.pick(NONE_TRIED)
      if (!up) return
      const w = this.line.shift()
      if (!w) return
      // declined: it could no longer finish in time, and was answered (shed)
      if (!w.wake(up)) up.limit.held--
    }
  }

  /** What a try needs at the least to come back in time: the recent scans' p90, or MIN_ATTEMPT_MS. */
  private tryMs(): number {
    return Math.max(MIN_ATTEMPT_MS, this.latency.p90() ?? 0)
  }

  /**
   * Every server is at its limit: the scan waits in line for a slot, but only while it could still
   * be scanned in time — the line's wait (its place ÷ how fast recent tries ended) plus the recent
   * scan time (p90) must fit in what is left of its timeout. One that cannot is shed at once; one
   * whose time runs short in the line, or whose SMTP client leaves, leaves the line (O(1)) and is
   * answered then. The slow path only: a scan that finds room never gets here.
   */
  private wait(req: ScanRequest, asked: number): Promise<Upstream | ScanOutcome> | ScanOutcome {
    if (req.cancel?.aborted) return this.gone(asked)
    const now = performance.now()
    const left = req.timeoutMs - (now - asked)
    const scanMs = this.tryMs()
    const perMs = this.ended.perMs(now)
    // with a margin: a limit that shrinks stalls the line for a while, and a scan shed later, after
    // waiting, is an answer that comes late
    const lineMs = perMs === undefined ? 0 : (LINE_MARGIN * (this.line.length + 1)) / perMs
    if (lineMs + scanMs > left) {
      return this.shed(
        asked,
        `${this.line.length} scans waiting would take about ${Math.round(lineMs)} ms, ` +
          `and a scan ${Math.round(scanMs)} ms (p90, at least ${MIN_ATTEMPT_MS}), of the ${Math.max(0, Math.round(left))} ms left`,
      )
    }
    return new Promise((resolve) => {
      const leave = (outcome: Upstream | ScanOutcome) => {
        clearTimeout(timer)
        req.cancel?.listen(undefined)
        resolve(outcome)
      }
      const w = this.line.push((up) => {
        if (up === undefined) {
          leave(this.shed(asked, 'the client was closed while it waited'))
          return false
        }
        const still = req.timeoutMs - (performance.now() - asked)
        const needs = this.tryMs()
        if (still < needs) {
          leave(
            this.shed(
              asked,
              `${Math.round(still)} ms left after waiting, a scan takes ${Math.round(needs)} ms (p90)`,
            ),
          )
          return false
        }
        leave(up)
        return true
      })
      // the latest start that could still finish in time, as the recent scans go
      const timer = setTimeout(
        () => {
          if (this.line.remove(w)) leave(this.shed(asked, `no room within the ${req.timeoutMs} ms timeout`))
        },
        Math.max(0, left - scanMs),
      )
      req.cancel?.listen(() => {
        if (this.line.remove(w)) leave(this.gone(asked))
      })
    })
  }

  private gone(asked: number): ScanOutcome {
    const error = scanError('aborted', new ClientGone().message)
    return { ok: false, error, timeMs: elapsed(asked), server: this.server, bytesSent: 0, attempts: [] }
  }

  /** A scan not sent: every server full, and no time to wait for one. Saturation's first warning. */
  private shed(asked: number, why: string): ScanOutcome {
    const now = this.now()
    if (!this.saturation) {
      this.saturation = { shed: 0, sent: 0, lastShedAt: now }
      this.calmTimer = setInterval(() => this.calm(), CALM_MS)
      this.calmTimer.unref()
      this.onEvent({
        level: 'warn',
        message:
          `rspamd saturated: scans that could not finish within the timeout are not sent, [defer] timeout ` +
          `decides for them (${this.limitsText()}; ${this.line.length} waiting)`,
      })
    }
    this.saturation.shed++
    this.saturation.lastShedAt = now
    const error = scanError('saturated', `rspamd saturated: ${why} (${this.limitsText()})`)
    return { ok: false, error, timeMs: elapsed(asked), server: this.server, bytesSent: 0, attempts: [] }
  }

  /** Saturation ends when nobody waits and nothing was shed for CALM_MS: its second warning. */
  private calm(): void {
    const s = this.saturation
    if (!s || this.line.length > 0) return
    if (this.now() - s.lastShedAt < CALM_MS) return
    this.saturation = undefined
    clearInterval(this.calmTimer)
    this.calmTimer = undefined
    this.onEvent({
      level: 'warn',
      message:
        `rspamd keeps up again: ${s.shed} scans shed and ${s.sent} sent while saturated ` +
        `(${this.limitsText()})`,
    })
  }

  /** The servers' limits as the log says them: `limit 12, 3 in flight` per server. */
  private limitsText(): string {
    const one = this.upstreams.length === 1
    return this.upstreams
      .map((u) => `${one ? '' : `${u.server}: `}limit ${u.limit.slots()}, ${u.limit.held} in flight`)
      .join('; ')
  }

  /**
   * What a settled try teaches the limits: an answer in time grows the server's limit, a late one, a
   * timeout or a 5xx shrinks it (a client that left, a refused connection say nothing of its load).
   */
  private learn(up: Upstream, result: ScanResult, sentAt: number, timeoutMs: number): void {
    const now = performance.now()
    const ms = now - sentAt
    this.ended.add(now)
    let changed = false
    if (result.ok || (result.error.kind === 'http' && !isServerError(result.error))) {
      this.latency.add(ms)
      changed = up.limit.answered(ms, timeoutMs * TARGET_FRACTION, sentAt)
    } else if (result.error.kind === 'timeout' || isServerError(result.error)) {
      // not a scan time (a silent server's try says nothing of how long a scan takes elsewhere),
      // but a sign of a backlog
      changed = up.limit.backlog(sentAt)
    }
    if (changed && this.now() - this.lastDebugAt >= DEBUG_EVERY_MS) {
      this.lastDebugAt = this.now()
      const p90 = this.latency.p90() ?? 0
      this.onEvent({
        level: 'debug',
        message: `rspamd in-flight limits: ${this.limitsText()}; ${this.line.length} waiting; p90 ${Math.round(p90)} ms`,
      })
    }
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
      // the scan's time counts from here: a wait in line is part of it
      const asked = performance.now()
      // the fast path: room on a server and nobody ahead (no promise, no timer of the line's)
      let up = this.line.length === 0 ? this.pick(NONE_TRIED) : undefined
      if (up) this.calm()
      else {
        const got = await this.wait(req, asked)
        if (!(got instanceof Upstream)) return got
        up = got
      }
      if (this.saturation) this.saturation.sent++
      return await this.scanOnce(req, asked, up)
    } finally {
      if (--this.scansInFlight === 0) for (const f of this.whenIdle.splice(0)) f()
    }
  }

  /** The scan on `first` (its slot reserved), then on the next servers while it may fail over. */
  private async scanOnce(req: ScanRequest, start: number, first: Upstream): Promise<ScanOutcome> {
    // Plain callbacks, not AbortControllers: the timer or the SMTP client leaving stops the scan,
    // which cancels the attempt in flight (a cost paid per message, so kept to a closure or two).
    const stop: ScanStop = { reason: undefined, cancel: undefined }
    const halt = (why: TimeoutReason | ClientGone) => {
      if (stop.reason) return
      stop.reason = why
      stop.cancel?.(why)
    }
    const timer = setTimeout(
      () => halt(new TimeoutReason(req.timeoutMs, true, this.server)),
      Math.max(1, req.timeoutMs - (performance.now() - start)),
    )
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
    let up = first
    try {
      for (;;) {
        tried.add(up)
        const remaining = req.timeoutMs - (performance.now() - start)
        const another = this.upstreams.length > tried.size
        // leave half of what is left for the next server, in case this one never answers; the
        // last server has the rest of the total timeout
        const attemptMs = another ? Math.max(1, Math.floor(remaining / 2)) : undefined
        let result: ScanResult
        let retryable: boolean
        // the slot pick() reserved on `up` is given back however the try ends
        try {
          if (small && whole === undefined) {
            const read = await readWhole(req.source, stop)
            if (read instanceof Error) {
              const error = scanError('network', `reading the message: ${forLog(read.message)}`)
              return { ok: false, error, timeMs: elapsed(start), server: up.server, bytesSent: 0, attempts }
            }
            if (this.zstd) {
              const packed = await zstdCompressed(read)
              if (packed instanceof Error) {
                const error = scanError(
                  'network',
                  `compressing the message (zstd): ${forLog(packed.message)}`,
                )
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
          const sentAt = performance.now()
          ;({ result, retryable } = await new ScanAttempt(up, plan, stop).run())
          this.account(up, result)
          this.learn(up, result, sentAt, req.timeoutMs)
        } finally {
          this.release(up)
        }
        const timeMs = elapsed(start)
        if (result.ok || !retryable || !another || stop.reason) {
          return { ...result, timeMs, attempts }
        }
        // the deadline rule: no try that cannot come back in time, and only on a server with room
        const left = req.timeoutMs - (performance.now() - start)
        const next = left >= this.tryMs() ? this.pick(tried) : undefined
        if (!next) return { ...result, timeMs, attempts }
        attempts.push({ server: up.server, error: result.error, timeMs: result.timeMs })
        up = next
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
    clearInterval(this.calmTimer)
    await Promise.all(this.upstreams.map((u) => u.transport.close()))
  }

  /** Closes at once, failing scans in flight; the scans in line are shed. */
  async destroy(): Promise<void> {
    for (let w = this.line.shift(); w; w = this.line.shift()) w.wake(undefined)
    clearInterval(this.calmTimer)
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
