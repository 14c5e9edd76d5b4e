// How many scans each rspamd server is given at once, and the line of scans that wait for room.
// When rspamd is slower than the mail arriving, sending it more only makes every scan late: each
// server gets an adaptive in-flight limit (AIMD, as TCP's congestion window and Netflix's
// concurrency-limits do it) that grows while scans come back well inside the timeout and shrinks
// when they come back late or not at all; scans beyond it wait in one FIFO line per client, each
// only as long as it could still be scanned in time (RspamdClient decides, from the figures here).

/** The ceiling of the adaptive limit when `[upstream] max_in_flight` is 0 or absent. */
export const DEFAULT_CEILING = 256
/** Where an adaptive limit starts: room for a burst, and it doubles from there while scans are quick. */
export const INITIAL_LIMIT = 20
/** A scan slower than this share of the timeout is a sign of a backlog in rspamd: the limit shrinks. */
export const TARGET_FRACTION = 0.25
/** The multiplicative decrease: 0.5 makes a deep sawtooth, 0.9 reacts too slowly to a spike. */
const BACKOFF = 0.7

/** What `[upstream] max_in_flight` and `adaptive` make of a server's limit. */
export interface LimitSettings {
  /** `max_in_flight`: 0 = none (adaptive: DEFAULT_CEILING) */
  maxInFlight: number
  /** false: a fixed limit of max_in_flight (0 = unlimited, as 1.6.x) */
  adaptive: boolean
}

/**
 * One server's in-flight limit. Additive increase, multiplicative decrease: while the server's
 * scans come back within the target (TARGET_FRACTION of the timeout) and the limit is in use, it
 * grows (by one per scan until the first sign of a backlog — a slow start —, then by one per
 * `limit` scans); a scan over the target, a timeout or a 5xx shrinks it by BACKOFF, once per round:
 * scans that started before the last decrease do not shrink it again (they were sent under the
 * old limit). Never below 1, never above the ceiling. Each worker adapts on its own: as TCP flows do,
 * AIMD limits sharing one server converge to fair shares without talking to each other.
 */
export class ConcurrencyLimit {
  /** the limit as a fraction (grows by 1/limit); slots() is its whole part */
  limit: number
  readonly ceiling: number
  readonly adaptive: boolean
  /** no sign of a backlog yet: grow by one per scan */
  private slowStart = true
  /** when the limit last shrank (performance.now()) */
  private lastDecreaseAt = -Infinity
  /** scans now holding a slot (reserved when picked, released when the try ends) */
  held = 0

  constructor(settings: LimitSettings) {
    this.adaptive = settings.adaptive
    this.ceiling =
      settings.maxInFlight > 0 ? settings.maxInFlight : settings.adaptive ? DEFAULT_CEILING : Infinity
    this.limit = this.adaptive ? Math.min(INITIAL_LIMIT, this.ceiling) : this.ceiling
  }

  /** How many scans may be in flight now: at least 1. */
  slots(): number {
    return Math.max(1, Math.floor(this.limit))
  }

  hasRoom(): boolean {
    return this.held < this.slots()
  }

  /** held ÷ slots: how full the server is (selection by load); unlimited: the scans held, as 1.6.x compared */
  load(): number {
    const slots = this.slots()
    return slots === Infinity ? this.held : this.held / slots
  }

  /**
   * A scan came back in time with an answer of rspamd's (any answer but a 5xx) after `latencyMs`:
   * grows the limit when it was in use, shrinks it when the scan was over `targetMs`.
   * `startedAt` is when the scan was sent (performance.now()). True when slots() changed.
   */
  answered(latencyMs: number, targetMs: number, startedAt: number): boolean {
    if (!this.adaptive) return false
    if (latencyMs > targetMs) return this.backlog(startedAt)
    // a limit that is not in use says nothing about the server: it would grow without end when idle
    if (this.held + 1 < this.slots() / 2) return false
    const before = this.slots()
    this.limit = Math.min(this.ceiling, this.limit + (this.slowStart ? 1 : 1 / this.limit))
    return this.slots() !== before
  }

  /** A sign of a backlog (a timeout, a 5xx, a late answer) for a scan sent at `startedAt`. True when slots() changed. */
  backlog(startedAt: number): boolean {
    if (!this.adaptive || startedAt < this.lastDecreaseAt) return false
    const before = this.slots()
    this.slowStart = false
    this.lastDecreaseAt = performance.now()
    this.limit = Math.max(1, this.limit * BACKOFF)
    return this.slots() !== before
  }

  /** Takes over what another client learnt of the same server (a reload), within this one's ceiling. */
  inherit(from: ConcurrencyLimit): void {
    if (!this.adaptive || !from.adaptive) return
    this.limit = Math.min(this.ceiling, from.limit)
    this.slowStart = from.slowStart
    this.lastDecreaseAt = from.lastDecreaseAt
  }
}

const WINDOW = 128

/**
 * The recent scan times (ms) in a fixed ring: O(1) per scan; p90() sorts a copy of at most WINDOW
 * numbers, and only when a scan has to wait (the slow path), once per new sample at most.
 */
export class LatencyWindow {
  private readonly samples = new Float64Array(WINDOW)
  private count = 0
  private next = 0
  private cached: number | undefined

  add(ms: number): void {
    this.samples[this.next] = ms
    this.next = (this.next + 1) % WINDOW
    if (this.count < WINDOW) this.count++
    this.cached = undefined
  }

  /** The 90th percentile of the recent scan times; undefined before the first one. */
  p90(): number | undefined {
    if (this.count === 0) return undefined
    if (this.cached === undefined) {
      const sorted = this.samples.slice(0, this.count).sort()
      this.cached = sorted[Math.min(this.count - 1, Math.floor(this.count * 0.9))] ?? 0
    }
    return this.cached
  }
}

/** When the recent scans ended, in a fixed ring: how many end per ms (the line's speed). */
export class RateWindow {
  private readonly times = new Float64Array(WINDOW)
  private count = 0
  private next = 0

  add(at: number): void {
    this.times[this.next] = at
    this.next = (this.next + 1) % WINDOW
    if (this.count < WINDOW) this.count++
  }

  /** Scans ended per ms over the recent ones, counted up to `now`; undefined with fewer than two. */
  perMs(now: number): number | undefined {
    if (this.count < 2) return undefined
    const oldest = this.times[this.count < WINDOW ? 0 : this.next] ?? now
    const span = now - oldest
    return span > 0 ? (this.count - 1) / span : undefined
  }
}

/** One scan waiting for room. */
export interface Waiter<T> {
  /**
   * called once when it leaves the line first: with a server (false: it declined, its time ran
   * short, and the server's slot is free again), or with undefined when the line is closed
   */
  readonly wake: (got: T | undefined) => boolean
  prev: Waiter<T> | undefined
  next: Waiter<T> | undefined
  /** still in the line */
  queued: boolean
}

/**
 * The scans waiting for room, first come first served: a doubly linked list, so that taking the
 * first, adding one and removing one from the middle (its SMTP client left, its time ran out) are
 * each O(1), at 10⁵ waiters too.
 */
export class WaitLine<T> {
  private head: Waiter<T> | undefined
  private tail: Waiter<T> | undefined
  length = 0

  push(wake: (got: T | undefined) => boolean): Waiter<T> {
    const w: Waiter<T> = { wake, prev: this.tail, next: undefined, queued: true }
    if (this.tail) this.tail.next = w
    else this.head = w
    this.tail = w
    this.length++
    return w
  }

  /** Takes the first waiter out of the line (without waking it). */
  shift(): Waiter<T> | undefined {
    const w = this.head
    if (w) this.remove(w)
    return w
  }

  /** Takes a waiter out wherever it is (without waking it); false when it was out already. */
  remove(w: Waiter<T>): boolean {
    if (!w.queued) return false
    w.queued = false
    if (w.prev) w.prev.next = w.next
    else this.head = w.next
    if (w.next) w.next.prev = w.prev
    else this.tail = w.prev
    w.prev = undefined
    w.next = undefined
    this.length--
    return true
  }
}
