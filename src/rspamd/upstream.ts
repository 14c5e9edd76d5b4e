// One rspamd server as the client sees it: its transport, the scans it has in flight, and its health
// (rmilter's upstream rules: max_errors failures without a success mark it dead for dead_time, then
// one message probes it). Which failures count is decided here, from the failure's kind and, for an
// HTTP answer, its status number.

import type { Config, Target, UpstreamConfig } from '../config'
import { isServerError, type ScanError, type ScanErrorKind } from '../errors'
import { ConcurrencyLimit } from './limiter'
import { describeTarget, makeTransport, type Transport, type TransportOptions } from './transport'

/**
 * Kinds of failure that count against a server's health (a client that went away does not, nor a
 * scan shed unsent because every server was full: a saturated server is not a dead one).
 */
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
export class Upstream {
  readonly server: string
  readonly transport: Transport
  /** failures since the last success */
  failures = 0
  /** when the last of them happened (ms) */
  lastFailureAt = 0
  /** dead until then (ms); stays set after it passes until a success: the server is on probation */
  deadUntil = 0
  diedAt = 0
  /** how many scans it is given at once ([upstream] max_in_flight, adaptive): full is not dead */
  readonly limit: ConcurrencyLimit

  constructor(
    readonly target: Target,
    cfg: Config,
    opts: TransportOptions,
  ) {
    this.server = describeTarget(target)
    this.transport = makeTransport(target, cfg, opts)
    this.limit = new ConcurrencyLimit(cfg.upstream)
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
    this.limit.inherit(from.limit)
  }
}
