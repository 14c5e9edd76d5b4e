// Greylisting triplets in Redis ([greylist] store = redis): the same rules as src/policy/greylist.ts, shared by every
// Haraka worker and host that uses the same Redis. Owns the one Redis connection of the process; besides
// src/rspamd/client.ts, the only module that does network I/O.

import { createHash } from 'node:crypto'
import type { createClient } from '@redis/client'
import type { RedisSettings } from '../config'
import { type StoreError, storeError } from '../errors'
import { EXPIRE_MS, type GreylistOutcome, tripletDigest } from './greylist'

/**
 * The redis client package, loaded on first use: an operator without `store = redis` does not pay
 * for it (its module tree is larger than the rest of the plugin together).
 */
function loadRedis(): typeof import('@redis/client') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('@redis/client') as typeof import('@redis/client')
}

/**
 * One message's triplets, checked and recorded in one step: Redis runs a script alone, so two workers that
 * see the same new triplet at the same moment cannot both create it (the second finds the first's key).
 *
 * KEYS: one per triplet. ARGV: now (ms; '' = Redis's own clock, which every host sharing it agrees on),
 * delay (ms), expiry (ms). A pending triplet's value is its first-seen time, a passed one's is `passed`;
 * Redis's key expiry does the forgetting: a pending key lives delay + expiry, a passed one expiry after
 * its last message. Returns the ms until the youngest triplet has waited out the delay; 0 = passes.
 */
const SCRIPT = `
local now = tonumber(ARGV[1])
if now == nil then
  -- Redis < 5 replicates scripts verbatim and refuses a write after TIME unless told otherwise
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local delay = tonumber(ARGV[2])
local expire = tonumber(ARGV[3])
local wait = 0
for _, key in ipairs(KEYS) do
  local seen = redis.call('GET', key)
  if seen == 'passed' then
    redis.call('PEXPIRE', key, expire)
  elseif seen == false or tonumber(seen) == nil then
    redis.call('SET', key, tostring(now), 'PX', delay + expire)
    if delay > wait then wait = delay end
  elseif now - tonumber(seen) >= delay then
    redis.call('SET', key, 'passed', 'PX', expire)
  else
    local left = tonumber(seen) + delay - now
    if left > wait then wait = left end
  end
end
return wait
`
const SCRIPT_SHA = createHash('sha1').update(SCRIPT).digest('hex')

export type StoreResult = { ok: true; outcome: GreylistOutcome } | { ok: false; error: StoreError }

export interface RedisGreylistOptions {
  settings: RedisSettings
  keyPrefix: string
  /** connection ups and downs, once per change (not once per reconnect attempt) */
  onEvent?: (e: { level: 'info' | 'warn'; message: string }) => void
  /** ms since the epoch; by default Redis's own clock */
  now?: () => number
  /** how long a passed triplet is remembered (and a pending one after its delay); 24 h by default */
  expireMs?: number
  /** the caller's name for these settings, to tell whether a reload changed them */
  identity?: string
}

/** Commands allowed in flight at once: past this (a Redis that stopped answering), checks fail at once. */
const MAX_QUEUED = 1000

export class RedisGreylist {
  /** redis://host:port/db or unix:path/db, for the log (never the password) */
  readonly server: string
  readonly identity: string | undefined
  private readonly client: ReturnType<typeof createClient>
  private readonly opts: RedisGreylistOptions
  private state: 'new' | 'open' | 'closed' = 'new'
  private down = false
  /** settles at the first 'ready' or the first 'error' after open(): checks before then wait for it */
  private settled: Promise<void> = Promise.resolve()
  /** a connection attempt is under way (open() or a reconnect): node-redis cannot stop one halfway */
  private connecting = false
  /** Redis commands sent and not yet answered: close() gives them its grace time */
  private readonly inFlight = new Set<Promise<unknown>>()
  private readonly connectMs: number

  constructor(opts: RedisGreylistOptions) {
    this.opts = opts
    this.identity = opts.identity
    const s = opts.settings
    this.connectMs = s.connectTimeout ?? 2000
    this.server = `${s.path === undefined ? `redis${s.tls ? 's' : ''}://${s.host}:${s.port}` : `unix:${s.path}`}/${s.database}`
    const socket =
      s.path === undefined
        ? s.tls
          ? { host: s.host, port: s.port, tls: true as const, servername: s.host }
          : { host: s.host, port: s.port }
        : { path: s.path }
    this.client = loadRedis().createClient({
      socket: {
        ...socket,
        connectTimeout: this.connectMs,
        // back off to a retry every 2 s while Redis is away, for as long as it takes
        reconnectStrategy: (retries: number) => Math.min(100 * 2 ** Math.min(retries, 5), 2000),
      },
      database: s.database,
      username: s.username,
      password: s.password,
      // while disconnected, fail a check at once instead of queueing it until Redis is back
      disableOfflineQueue: true,
      commandsQueueMaxLength: MAX_QUEUED,
    })
    this.client.on('reconnecting', () => (this.connecting = true))
    this.client.on('ready', () => {
      this.connecting = false
      this.down = false
      this.opts.onEvent?.({ level: 'info', message: `greylist store: connected to ${this.server}` })
    })
    // node-redis emits an error for every failed attempt; one line per outage is enough
    this.client.on('error', (err: unknown) => {
      this.connecting = false
      if (this.down) return
      this.down = true
      const why = err instanceof Error ? err.message : String(err)
      this.opts.onEvent?.({ level: 'warn', message: `greylist store: ${this.server}: ${why}; reconnecting` })
    })
  }

  /** Start connecting (and reconnecting whenever the connection drops). Idempotent; does not wait. */
  open(): void {
    if (this.state !== 'new') return
    this.state = 'open'
    this.connecting = true
    this.settled = this.attemptEnds()
    // connect() settles once connected; failures meanwhile come as 'error' events
    this.client.connect().catch((err: unknown) => {
      this.opts.onEvent?.({ level: 'warn', message: `greylist store: ${this.server}: ${String(err)}` })
    })
  }

  /** Settles when the connection attempt under way ends: connected ('ready') or failed ('error'). */
  private attemptEnds(): Promise<void> {
    return new Promise((resolve) => {
      this.client.once('ready', resolve)
      this.client.once('error', () => resolve())
    })
  }

  /**
   * Record an attempt of one message (as Greylist.check) and say whether it passes, within `timeoutMs`.
   * Never throws: a Redis error or a late answer is a StoreError (a late answer may still be recorded).
   */
  async check(
    ip: string,
    sender: string,
    rcpts: readonly string[],
    delayMs: number,
    timeoutMs: number,
  ): Promise<StoreResult> {
    this.open()
    const keys = (rcpts.length > 0 ? rcpts : ['']).map(
      (rcpt) => `${this.opts.keyPrefix}${tripletDigest(ip, sender, rcpt)}`,
    )
    const args = [
      this.opts.now ? String(this.opts.now()) : '',
      String(Math.round(delayMs)),
      String(this.opts.expireMs ?? EXPIRE_MS),
    ]
    // a check during start-up waits for the first connection (within the bound); one while Redis is
    // known to be away fails at once (disableOfflineQueue)
    const sent = this.settled.then(() => this.run(keys, args))
    this.inFlight.add(sent)
    const forget = () => this.inFlight.delete(sent)
    sent.then(forget, forget)
    const answer = sent.then(
      (reply): StoreResult => {
        if (typeof reply !== 'number' || !Number.isFinite(reply) || reply < 0) {
          return { ok: false, error: storeError('error', `unexpected reply ${JSON.stringify(reply)}`) }
        }
        return { ok: true, outcome: reply > 0 ? { passed: false, retryInMs: reply } : { passed: true } }
      },
      (err: unknown): StoreResult => ({
        ok: false,
        error: storeError('error', err instanceof Error ? err.message : String(err)),
      }),
    )
    // `answer` never rejects and is never false
    const inTime = await within(timeoutMs, answer)
    return inTime === false
      ? { ok: false, error: storeError('timeout', `no answer within ${timeoutMs} ms`) }
      : inTime
  }

  /** EVALSHA, and EVAL when Redis does not have the script yet (a restart, a flush, a new server). */
  private async run(keys: string[], args: string[]): Promise<unknown> {
    const opts = { keys, arguments: args }
    try {
      return await this.client.evalSha(SCRIPT_SHA, opts)
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err
      return this.client.eval(SCRIPT, opts)
    }
  }

  /**
   * Close the connection: the commands in flight are answered first, for up to `graceMs` (a Redis that
   * stopped answering must not hold up Haraka's shutdown); later checks fail. Never rejects, and leaves
   * no connection behind: one still being made is let finish (within its connect timeout) and then
   * closed, as node-redis cannot stop it halfway; commands still unanswered after the grace time go
   * with the socket.
   */
  async close(graceMs = 1000): Promise<void> {
    const was = this.state
    this.state = 'closed'
    if (was !== 'open') return
    this.down = true // no "reconnecting" line for a close of our own
    try {
      if (this.connecting) await within(this.connectMs + 100, this.attemptEnds())
      if (this.inFlight.size > 0) await within(graceMs, Promise.allSettled([...this.inFlight]))
      if (this.client.isReady && this.inFlight.size === 0) {
        // nothing left to answer: a graceful close, unless even that is not done within the grace time
        if (
          await within(
            graceMs,
            this.client.close().then(() => true),
          )
        )
          return
      }
      // commands still unanswered (or a close that hangs): the socket goes now
      this.client.destroy()
    } catch {
      // closed already (an error on the way): nothing is left to close
    }
  }
}

/** `p`'s value, or false when it has not settled within `ms` (a rejection is false too). */
async function within<T>(ms: number, p: Promise<T>): Promise<T | false> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      p.catch(() => false as const),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
    ])
  } finally {
    clearTimeout(timer)
  }
}
