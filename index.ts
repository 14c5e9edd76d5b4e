// The Haraka adapter: register(), the data_post hook, config reload. Wiring only — the only file
// that knows Haraka's connection and transaction objects. Haraka copies these exports onto its plugin object.
//
// Why this file is longer than the ~400 lines of the others (docs/architecture.md): everything that
// touches a Haraka object is here and nowhere else, by design (scripts/check-layers.mjs holds it). Its
// parts, in order: the loose types of the Haraka objects used (~80 lines); lifecycle and reload
// (register, the config and redis.ini callbacks, the greylist store's wiring); the hook; the 1.6.x
// methods a plugin that inherits this one may call (should_check, handle_rspamd; test/exports.test.ts
// lists every export, as Haraka copies each onto the plugin object); reading facts out of the
// connection and transaction (envelope, skip facts, Subject); act(), which turns a scan result into
// next() through src/policy/ and src/report/; the queue hooks of discard and quarantine; rspamd's
// envelope changes made into Haraka's address objects; and the header surgery on Haraka's own header
// structures (removing fields and numbered instances). Every decision it wires is made below, in src/,
// on plain values. Split further, these parts would each need the Haraka types above, and the layering
// would then have a second file that touches Haraka: the next split, when one is made, is a folder of
// such adapters with its own layer in scripts/check-layers.mjs.

import { cpus, hostname } from 'node:os'
import type { Writable } from 'node:stream'
import * as constants from 'haraka-constants'
import DSN from 'haraka-dsn'
import {
  ConfigError,
  oncePerConfig,
  parseConfig,
  parseRedisIni,
  pluginProblems,
  sameTarget,
  type Config,
} from './src/config'
import {
  MAX_REPLY_BYTES,
  RspamdClient,
  ScanCancel,
  type MessageSource,
  type ScanOutcome,
} from './src/rspamd/client'
import { parseReply, parseReplyBody, type ParseResult } from './src/rspamd/reply'
import { describeTarget } from './src/rspamd/transport'
import { buildRequestHeaders, type Envelope, readRequestNote } from './src/rspamd/request'
import { defined, failureFields, skipFields, unscannedClients } from './src/report/logline'
import { failoverTexts, failureReport, logText, outcomeText, scanReport } from './src/report/results'
import { internalError, type ParseError, type ReplyTooLargeError, scanError, storeError } from './src/errors'
import { forLog } from './src/escape'
import { fieldNameOf } from './src/message/fields'
import { Greylist } from './src/policy/greylist'
import { RedisGreylist, type StoreResult } from './src/policy/greylist-redis'
import { type ScanFacts, skipReasons } from './src/policy/skip'
import {
  decide,
  finalAction,
  isKnownAction,
  onFailure,
  onGreylistFailure,
  QUARANTINE_PLUGIN,
  queuePluginProblem,
  type SenderFacts,
  type Verdict,
} from './src/policy/verdict'
import { type HeaderEdits, unscannedEdits } from './src/message/edits'
import { instancesAt, type RemoveAt } from './src/message/milter'
import { DEFAULT_SCANNER, rspamdHostName } from './src/message/styles'
import {
  type EnvelopeNow,
  type EnvelopePlan,
  envelopeChanges,
  showAddress,
  unappliedSwitches,
} from './src/policy/envelope'
import { packageVersion } from './src/version'

// ---- the parts of Haraka's objects we use (typed loosely: they come from outside) ----

type Next = (code?: number, msg?: unknown) => void

interface Results {
  add(plugin: unknown, obj: Record<string, unknown>): unknown
  get(name: string): unknown
}

interface Header {
  get(name: string): string
  get_all?(name: string): readonly string[]
  get_decoded?(name: string): string
}

interface MessageStream {
  pipe(dest: Writable, opts?: Record<string, unknown>): unknown
  unpipe?(): void
  once(ev: 'error', fn: (err: Error) => void): unknown
  removeListener(ev: 'error', fn: (err: Error) => void): unknown
}

interface Transaction {
  uuid?: string
  mail_from?: unknown
  rcpt_to?: unknown[]
  header: Header
  message_stream: MessageStream
  data_bytes?: number
  notes: Record<string, unknown>
  results: Results
  add_header(name: string, value: string): void
  remove_header(name: string): void
  reset_headers?(): void
}

interface Connection {
  transaction?: Transaction | null
  remote: { ip?: string; host?: string | null; is_private?: boolean; is_local?: boolean }
  local?: { host?: string; port?: number | null }
  hello: { host?: string | null }
  tls?: { enabled?: boolean; cipher?: { name?: string; version?: string } }
  notes: Record<string, unknown>
  results: Results
  relaying?: boolean
  client?: {
    destroyed?: boolean
    once?(ev: string, fn: () => void): unknown
    removeListener?(ev: string, fn: () => void): unknown
  }
  loginfo(plugin: unknown, msg: string | Record<string, unknown>): void
  logwarn(plugin: unknown, msg: string): void
  logerror(plugin: unknown, msg: string): void
  logdebug(plugin: unknown, msg: string): void
}

interface RspamdPlugin {
  name: string
  timeout: number
  config: { get(name: string, opts: unknown, cb?: () => void): unknown }
  register_hook(hook: string, method: string, priority?: number): void
  loginfo(msg: string): void
  logerror(msg: string): void
  logwarn(msg: string): void
  logdebug(msg: string): void
  /** state of this plugin instance */
  cfg?: Config
  client?: RspamdClient
  /** greylisting triplets: kept for the life of the process, across config reloads */
  greylist?: Greylist
  /** [greylist] store = redis: the triplets' store, and the one Redis connection of this process */
  greylistRedis?: RedisGreylist
  /** an init_master/init_child hook ran: a process that handles mail, so Redis connects now */
  started?: boolean
  /** queue/quarantine is in config/plugins (read with rspamd.ini, at start-up and on reload) */
  quarantineLoaded?: boolean
  /** shutdown() ran: haraka-config still holds our reload callbacks, which then change nothing */
  stopped?: boolean
}

/** The part of Haraka's server object that init_master hands to plugins. */
interface HarakaServer {
  cluster?: unknown
  cfg?: { main?: { nodes?: unknown } }
}

// ---- lifecycle ----

export function register(this: RspamdPlugin): void {
  const cfg = loadConfig(this)
  this.client = clientFor(this, cfg)
  this.cfg = cfg
  this.greylist ??= new Greylist()
  syncGreylistStore(this)
  // explicit hook names (not hook_data_post) so that a plugin inheriting this one does not
  // register them twice — as 1.6.x did (haraka/Haraka#3604)
  if (this.name === 'rspamd') {
    this.register_hook('data_post', 'rspamd_data_post')
    this.register_hook('init_master', 'rspamd_init_master')
    this.register_hook('init_child', 'rspamd_init_child')
    // rspamd's discard and quarantine, acted on where Haraka queues: first (-100), so that no
    // delivery plugin sees a message to discard; last (100), so that a message to quarantine that
    // queue/quarantine did not take is deferred rather than handed to Haraka's default delivery
    for (const hook of ['queue', 'queue_outbound']) {
      this.register_hook(hook, 'rspamd_queue', -100)
      this.register_hook(hook, 'rspamd_queue_guard', 100)
    }
  }
  // says which copy Haraka loaded: its own bundled 1.6.x or the operator's 2.x
  this.loginfo(`haraka-plugin-rspamd ${packageVersion()} from ${__dirname}, rspamd at ${this.client.server}`)
  const unscanned = unscannedClients(this.cfg)
  if (unscanned) this.loginfo(`${unscanned}; set a key to true to scan them`)
}

/** Read and validate rspamd.ini; throws a ConfigError naming the key (Haraka then refuses to start). */
function loadConfig(plugin: RspamdPlugin): Config {
  // no declared booleans: haraka-config would read every unknown word as false; parseConfig reads the text
  const ini = plugin.config.get('rspamd.ini', () => reload(plugin))
  const cfg = parseConfig(ini)
  // what rspamd-lda accepts of the same file but the plugin cannot do (body_block)
  const refused = pluginProblems(cfg.request)
  if (refused) throw refused
  checkTimeout(plugin, cfg)
  checkQueuePlugins(plugin, cfg)
  if (cfg.ignored.length > 0) {
    plugin.logwarn(
      logText(
        `rspamd.ini: not used: ${cfg.ignored.join(', ')} — unknown, in the wrong section, or overridden ` +
          `(servers overrides host, port and unix_socket); see config/rspamd.ini of haraka-plugin-rspamd`,
      ),
    )
  }
  return cfg
}

/**
 * haraka-config calls this when rspamd.ini changes, from a timer: anything thrown here would reach Haraka's
 * uncaughtException handler, which exits. So nothing is: a bad file (or a client that cannot be built for it)
 * is logged and the running config and client stay, together; cfg changes only with the client it needs.
 */
function reload(plugin: RspamdPlugin): void {
  try {
    if (stoppedReload(plugin, 'rspamd.ini')) return
    let next: Config
    let client: RspamdClient
    try {
      next = loadConfig(plugin)
      const prev = plugin.cfg
      // servers kept by the new config keep their health (dead stays dead, failures still count)
      client =
        prev && plugin.client && sameTarget(prev, next)
          ? plugin.client
          : clientFor(plugin, next, plugin.client)
    } catch (err) {
      // every error of the file, one line each
      const whys = err instanceof ConfigError ? err.problems.map((e) => e.message) : [describeError(err)]
      for (const why of whys) {
        plugin.logerror(logText(`rspamd.ini reload refused, keeping the previous config: ${why}`))
      }
      return
    }
    const old = plugin.client
    plugin.cfg = next
    plugin.client = client
    // scans in flight finish on the old pool, then it closes
    if (old !== client) {
      old
        ?.close()
        .catch((err: unknown) => plugin.logerror(logText(`closing the old rspamd pool: ${String(err)}`)))
    }
    try {
      syncGreylistStore(plugin)
    } catch (err) {
      // the rest of rspamd.ini applies; greylisting keeps the store it had
      plugin.logerror(logText(`greylist store unchanged: ${describeError(err)}`))
    }
    plugin.loginfo(logText(`rspamd.ini reloaded: ${client.server}`))
  } catch (err) {
    // a bug of ours (a log call that throws, say): still never out to haraka-config's timer
    plugin.logerror(logText(`rspamd.ini reload: internal error: ${describeError(err)}`))
  }
}

/**
 * After shutdown() (Haraka's graceful stop, which may still wait for connections to end) a changed file
 * would build a new rspamd pool or Redis store for a plugin that no longer takes mail: it is left alone.
 */
function stoppedReload(plugin: RspamdPlugin, file: string): boolean {
  if (plugin.stopped) plugin.logdebug(logText(`${file} changed after shutdown: not reloaded`))
  return plugin.stopped === true
}

/** A ConfigError's message (secrets redacted already); anything else with its name, no value of the file. */
function describeError(err: unknown): string {
  if (err instanceof ConfigError) return err.message
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err)
}

/**
 * newClient() for a validated config. parseConfig builds what the client will (undici's URL included),
 * so this does not throw; if it ever did, the error still names the file rather than a bare "Invalid URL".
 */
function clientFor(plugin: RspamdPlugin, cfg: Config, previous?: RspamdClient): RspamdClient {
  try {
    return newClient(plugin, cfg, previous)
  } catch (err) {
    throw new ConfigError(
      'servers',
      cfg.targets.map(describeTarget).join(', '),
      `cannot set up a client for it: ${err instanceof Error ? err.message : String(err)}`,
    )
  }
}

/**
 * Haraka's plugin list (config/plugins, the file Haraka loads its plugins from) against what
 * [quarantine] needs; an error line when the chosen way cannot work (the message is then deferred).
 */
function checkQueuePlugins(plugin: RspamdPlugin, cfg: Config): void {
  const list = plugin.config.get('plugins', 'list')
  const names = Array.isArray(list) ? list.filter((p): p is string => typeof p === 'string') : []
  plugin.quarantineLoaded = names.some((p) => p.trim().replace(/^haraka-plugin-/, '') === QUARANTINE_PLUGIN)
  const problem = queuePluginProblem(cfg, names)
  if (problem !== undefined) plugin.logerror(logText(`rspamd.ini: ${problem}`))
}

function checkTimeout(plugin: RspamdPlugin, cfg: Config): void {
  const hookTimeout = plugin.timeout
  if (cfg.timeout !== undefined && hookTimeout > 0 && cfg.timeout >= hookTimeout) {
    plugin.logwarn(
      `rspamd.ini timeout=${cfg.timeout} is not below Haraka's plugin timeout (${hookTimeout} s): ` +
        `using ${hookTimeout - 0.5} s so that this plugin, not Haraka, decides what a slow rspamd means`,
    )
  }
}

/** The total scan time in ms: `timeout`, else Haraka's plugin timeout − 1 s, and always inside the latter. */
function scanTimeoutMs(cfg: Config, hookTimeout: number): number {
  const limit = hookTimeout > 0 ? hookTimeout - 0.5 : Infinity
  const wanted = cfg.timeout ?? (hookTimeout > 1 ? hookTimeout - 1 : 29)
  return Math.round(Math.max(0.1, Math.min(wanted, limit)) * 1000)
}

export async function shutdown(this: RspamdPlugin): Promise<void> {
  const client = this.client
  const redis = this.greylistRedis
  this.client = undefined
  this.greylistRedis = undefined
  this.started = false
  this.stopped = true
  // Haraka calls shutdown() without waiting on it: a rejection here would be an unhandled one
  const done = await Promise.allSettled([client?.destroy(), redis?.close()])
  for (const r of done) if (r.status === 'rejected') this.logerror(logText(`shutdown: ${String(r.reason)}`))
}

/**
 * Haraka's single process (nodes = 0), or the master of a cluster, which handles no mail itself: only
 * the former connects to Redis. The master says once that memory greylisting is per worker.
 */
export function rspamd_init_master(this: RspamdPlugin, next: Next, server?: HarakaServer): void {
  const g = this.cfg?.greylist
  const nodes = server?.cfg?.main?.nodes
  const workers = nodes === 'cpus' ? cpus().length : Number(nodes)
  if (server?.cluster && g?.enabled && g.store === 'memory' && workers > 1) {
    this.logwarn(
      logText(
        `[greylist] store = memory with ${workers} cluster workers (smtp.ini nodes = ${String(nodes)}): each ` +
          'worker keeps its own triplets, so a retry that reaches another worker is greylisted afresh; ' +
          'set [greylist] store = redis to share them',
      ),
    )
  }
  if (!server?.cluster) startStores(this)
  next()
}

/** A cluster worker: it handles mail, so it opens its own Redis connection. */
export function rspamd_init_child(this: RspamdPlugin, next: Next): void {
  startStores(this)
  next()
}

function startStores(plugin: RspamdPlugin): void {
  plugin.started = true
  plugin.greylistRedis?.open()
}

/**
 * [greylist] enabled with store = redis: a RedisGreylist for redis.ini's server, rspamd.ini's [redis] over it
 * (replaced when either file changes where it points); otherwise none. Throws a ConfigError for a bad redis.ini value.
 */
function syncGreylistStore(plugin: RspamdPlugin): void {
  const g = plugin.cfg?.greylist
  const old = plugin.greylistRedis
  if (!g?.enabled || g.store !== 'redis') {
    plugin.greylistRedis = undefined
    old
      ?.close()
      .catch((err: unknown) => plugin.logerror(logText(`closing the greylist store: ${String(err)}`)))
    return
  }
  // haraka-plugin-redis's file, read as it reads it (no declared booleans: the same cached copy), with
  // rspamd.ini's [redis] over its [server] as karma's [redis] is
  const settings = parseRedisIni(
    plugin.config.get('redis.ini', () => redisIniChanged(plugin)),
    plugin.cfg?.redis,
  )
  const same = JSON.stringify({ settings, prefix: g.keyPrefix })
  if (old?.identity === same) return
  const store = new RedisGreylist({
    settings,
    keyPrefix: g.keyPrefix,
    identity: same,
    onEvent: eventLogger(plugin),
  })
  if (plugin.started) store.open()
  plugin.greylistRedis = store
  plugin.loginfo(logText(`greylisting in Redis at ${store.server}, keys ${g.keyPrefix}*`))
  old
    ?.close()
    .catch((err: unknown) => plugin.logerror(logText(`closing the old greylist store: ${String(err)}`)))
}

/** haraka-config's callback for redis.ini, from a timer as reload() is: nothing may be thrown out of it. */
function redisIniChanged(plugin: RspamdPlugin): void {
  try {
    if (stoppedReload(plugin, 'redis.ini')) return
    syncGreylistStore(plugin)
  } catch (err) {
    plugin.logerror(
      logText(`redis.ini reload refused, keeping the previous Redis connection: ${describeError(err)}`),
    )
  }
}

// ---- the queue hooks: rspamd's discard and quarantine ----

/** The transaction note that says what act() decided for the queue: rspamd's discard or quarantine. */
const QUEUE_NOTE = 'rspamd_queue'

/**
 * The first queue hook (priority -100): a message rspamd said to discard is answered 250 and goes
 * nowhere, whether queue/discard is loaded or not; one to quarantine goes on to queue/quarantine,
 * or is deferred at once when that plugin is not loaded.
 */
export function rspamd_queue(this: RspamdPlugin, next: Next, connection: Connection): void {
  const txn = connection.transaction
  const wanted = txn?.notes[QUEUE_NOTE]
  if (wanted === 'discard') {
    connection.loginfo(this, "discarding the message: rspamd's action is discard (answered 250, not queued)")
    return next(constants.ok)
  }
  if (wanted === 'quarantine' && this.quarantineLoaded !== true) {
    connection.logerror(
      this,
      `rspamd's action is quarantine and ${QUARANTINE_PLUGIN} is not in config/plugins: deferring with 450`,
    )
    return next(constants.denysoft, dsn(450, '4.7.1', 'Message held for review, try again later'))
  }
  next()
}

/** The last queue hook (priority 100): a message to quarantine that queue/quarantine did not take. */
export function rspamd_queue_guard(this: RspamdPlugin, next: Next, connection: Connection): void {
  const txn = connection.transaction
  if (txn?.notes[QUEUE_NOTE] !== 'quarantine') return next()
  connection.logerror(
    this,
    `rspamd's action is quarantine and ${QUARANTINE_PLUGIN} did not store the message (see its error above): deferring with 450`,
  )
  next(constants.denysoft, dsn(450, '4.7.1', 'Message held for review, try again later'))
}

/** Set a transaction note by path (`queue.wants`), with haraka-notes' set() when the notes have it. */
function setNote(notes: Record<string, unknown>, path: string, value: unknown): void {
  const set = (notes as { set?: unknown }).set
  if (typeof set === 'function') {
    ;(set as (p: string, v: unknown) => void).call(notes, path, value)
    return
  }
  const [head, key] = path.split('.')
  const inner = notes[head]
  if (typeof inner === 'object' && inner !== null) (inner as Record<string, unknown>)[key] = value
  else notes[head] = { [key]: value }
}

// ---- the hook ----

export function rspamd_data_post(this: RspamdPlugin, next: Next, connection: Connection): void {
  const txn = connection.transaction
  const cfg = this.cfg
  const client = this.client
  if (!txn || !cfg || !client) return next()

  if (skipped(this, connection, txn, cfg)) return next()

  // next() exactly once, whatever happens first: reply, timeout, error, client gone
  let called = false
  const gone = new ScanCancel()
  const onGone = () => gone.abort()
  // the client may have left before this hook ran: its 'close' has been emitted already
  if (connection.client?.destroyed === true) gone.abort()
  else connection.client?.once?.('close', onGone)
  const once: Next = (code, msg) => {
    if (called) return
    called = true
    connection.client?.removeListener?.('close', onGone)
    next(code, msg)
  }

  const timeoutMs = scanTimeoutMs(cfg, this.timeout)
  // what the greylist store may take after the scan: Haraka's plugin timeout must never fire first
  const hookDeadline = this.timeout > 0 ? Date.now() + this.timeout * 1000 - 250 : Infinity
  const request = {
    headers: buildRequestHeaders(
      envelope(connection, txn),
      cfg,
      process.env,
      requestNote(this, connection, txn, cfg),
    ),
    source: messageSource(txn.message_stream),
    timeoutMs,
    cancel: gone,
    sizeHint: txn.data_bytes,
  }
  settle(this, connection, txn, cfg, client.scan(request), hookDeadline, once)
}

/**
 * [check] says not to scan this message: its skip line and results record, as the hook writes them.
 * Every message gets its line, a skipped one too: with the [check] key that would scan it.
 */
function skipped(plugin: RspamdPlugin, connection: Connection, txn: Transaction, cfg: Config): boolean {
  const skip = skipReasons(scanFacts(connection, txn), cfg)
  if (skip.length === 0) return false
  connection.loginfo(plugin, defined(skipFields(skip, txn.data_bytes, cfg)))
  txn.results.add(plugin, { skip })
  return true
}

/** A scan's outcome (ours, or one handed to handle_rspamd) → act() → next(), once, whatever throws. */
function settle(
  plugin: RspamdPlugin,
  connection: Connection,
  txn: Transaction,
  cfg: Config,
  outcome: Promise<ScanOutcome>,
  hookDeadline: number,
  once: Next,
): void {
  outcome
    .then(async (result) => {
      // the client went away or the transaction was reset meanwhile: touch nothing
      if (connection.transaction !== txn) return once()
      const answer = await act(plugin, connection, txn, cfg, result, hookDeadline)
      once(...(answer ?? []))
    })
    .catch((err: unknown) => {
      // scan() does not reject and act() should not throw: this is a bug of ours, and it must not
      // be a free pass (a message made to trip it would go out with its forged verdict headers)
      if (connection.transaction !== txn) {
        connection.logerror(plugin, `internal error: ${errorText(err)}`)
        return once()
      }
      once(...onInternalError(plugin, connection, txn, cfg, err))
    })
}

// ---- the 1.6.x inheritance API (haraka/Haraka#3604): what a plugin that inherits this one may call ----

/**
 * 1.6.x's should_check(): false when [check] says not to scan this message (then, as the hook does,
 * the skip line is logged and `skip` recorded in the results), or when there is nothing to scan with.
 */
export function should_check(this: RspamdPlugin, connection: Connection): boolean {
  const txn = connection.transaction
  if (!txn) return false
  const cfg = this.cfg
  if (!cfg) {
    connection.logerror(this, 'should_check: no rspamd.ini loaded (register() has not run): not scanning')
    return false
  }
  return !skipped(this, connection, txn, cfg)
}

/**
 * 1.6.x's handle_rspamd(), for a plugin that asked rspamd itself: acts on rspamd's reply to this
 * transaction's message exactly as the hook acts on its own (checked as untrusted, [thresholds],
 * greylisting, the verdict, headers, results, the log line) and calls next() once with the answer.
 * `reply` is rspamd's reply: its JSON text (string or Buffer), the parsed object, or 1.6.x's
 * parse_response() value (`{data, log}`). A reply that is none of these is a failed scan, decided
 * by [defer] error. `start` (Date.now() when the request began) gives the log line its time. 1.6.x
 * returned next()'s arguments instead: the verdict may wait on the greylist store, so it cannot.
 */
export function handle_rspamd(
  this: RspamdPlugin,
  next: Next,
  connection: Connection,
  reply: unknown,
  start?: number,
): void {
  if (typeof next !== 'function') {
    // 1.6.x's order (connection, r, start): say so rather than fail somewhere inside
    throw new TypeError(
      "handle_rspamd(next, connection, reply[, start]): the first argument must be the hook's next " +
        "(1.6.x took (connection, r, start) and returned next()'s arguments; see docs/upgrading.md)",
    )
  }
  let called = false
  const once: Next = (code, msg) => {
    if (called) return
    called = true
    next(code, msg)
  }
  const txn = connection.transaction
  if (!txn) return once()
  const cfg = this.cfg
  if (!cfg) {
    connection.logerror(this, 'handle_rspamd: no rspamd.ini loaded (register() has not run): continuing')
    return once()
  }
  const timeMs = typeof start === 'number' && Number.isFinite(start) ? Math.max(0, Date.now() - start) : 0
  const server = `via ${this.name}`
  const parsed = parseHandedReply(reply)
  const outcome: ScanOutcome = parsed.ok
    ? {
        ok: true,
        reply: parsed.reply,
        json: parsed.json,
        replyBytes: parsed.bytes,
        warnings: parsed.warnings,
        timeMs,
        server,
        bytesSent: txn.data_bytes ?? 0,
        attempts: [],
      }
    : { ok: false, error: parsed.error, timeMs, server, bytesSent: 0, attempts: [] }
  const hookDeadline = this.timeout > 0 ? Date.now() + this.timeout * 1000 - 250 : Infinity
  settle(this, connection, txn, cfg, Promise.resolve(outcome), hookDeadline, once)
}

/** A reply handed to handle_rspamd, checked as the client checks one from the wire (same size cap). */
function parseHandedReply(
  reply: unknown,
):
  | (Extract<ParseResult, { ok: true }> & { bytes: number })
  | { ok: false; error: ParseError | ReplyTooLargeError } {
  let parsed: ParseResult
  let bytes = 0
  if (typeof reply === 'string' || Buffer.isBuffer(reply)) {
    bytes = typeof reply === 'string' ? Buffer.byteLength(reply) : reply.length
    if (bytes > MAX_REPLY_BYTES) {
      return {
        ok: false,
        error: scanError('too-large', `handle_rspamd: reply of ${bytes} bytes is over ${MAX_REPLY_BYTES}`),
      }
    }
    parsed = parseReplyBody(reply)
  } else {
    // 1.6.x's parse_response() value: rspamd's reply is its `data`
    const wrapped =
      typeof reply === 'object' && reply !== null && 'data' in reply && 'log' in reply
        ? (reply as { data: unknown }).data
        : reply
    parsed = parseReply(wrapped)
  }
  if (!parsed.ok) return { ok: false, error: scanError('parse', `handle_rspamd: ${parsed.error}`) }
  return { ...parsed, bytes }
}

/**
 * Whatever failed after the scan: the verdict headers the message could have forged go (those of
 * the configured styles, every style's with remove_foreign), one error line says what happened,
 * the stack goes to the debug log, and [defer] error decides: accept, or 451.
 */
function onInternalError(
  plugin: RspamdPlugin,
  connection: Connection,
  txn: Transaction,
  cfg: Config,
  err: unknown,
): [number?, unknown?] {
  const verdict = onFailure(internalError('internal error'), cfg)
  let line = `internal error: ${errorText(err)}; ${outcomeText(verdict)} per [defer] error`
  const failed = removeForged(plugin, connection, txn, cfg)
  if (failed !== undefined) line += `; the verdict headers could not be removed: ${failed}`
  try {
    connection.logdebug(plugin, logText(`internal error: ${err instanceof Error ? (err.stack ?? '') : ''}`))
    // results.add logs an err at error level, with the error's text; the info line as for any message
    txn.results.add(plugin, { err: line })
    const code = verdict.kind === 'defer' ? verdict.code : undefined
    connection.loginfo(
      plugin,
      defined(failureFields({ error: 'internal', verdict: verdict.kind, code, size: txn.data_bytes })),
    )
  } catch {
    connection.logerror(plugin, line)
  }
  return toNext(verdict)
}

/**
 * A message that goes on without our verdict (a failed scan, an internal error) keeps no verdict
 * header it brought: those of the configured styles, every style's with remove_foreign. Never
 * throws: what went wrong is returned for the caller's log line.
 */
function removeForged(
  plugin: RspamdPlugin,
  connection: Connection,
  txn: Transaction,
  cfg: Config,
): string | undefined {
  try {
    applyEdits(plugin, connection, txn, unscannedEdits(cfg))
    return undefined
  } catch (err: unknown) {
    return errorText(err)
  }
}

/** An error's message for one log line: escaped (no forged lines), cut. */
function errorText(err: unknown): string {
  return forLog(err instanceof Error ? `${err.name}: ${err.message}` : String(err))
}

/** Haraka's message_stream as a source the client can pipe (CRLF line endings, dot-stuffing undone). */
function messageSource(ms: MessageStream): MessageSource {
  let onError: ((err: Error) => void) | undefined
  return {
    pipe(dest: Writable) {
      onError = (err: Error) => dest.destroy(err)
      ms.once('error', onError)
      ms.pipe(dest, { line_endings: '\r\n' })
    },
    unpipe() {
      // unpipe before the destination is destroyed (haraka/message-stream#22)
      ms.unpipe?.()
      if (onError) ms.removeListener('error', onError)
    },
  }
}

/** The facts src/policy/skip.ts decides skipping on. */
function scanFacts(connection: Connection, txn: Transaction): ScanFacts {
  const remote = connection.remote
  return {
    authenticated: Boolean(connection.notes.auth_user),
    relaying: Boolean(connection.relaying),
    isLocal: Boolean(remote.is_local),
    isPrivate: Boolean(remote.is_private),
    remoteIp: remote.ip,
    localPort: connection.local?.port ?? undefined,
    size: txn.data_bytes,
  }
}

function addressOf(a: unknown): string | undefined {
  if (typeof a !== 'object' || a === null) return undefined
  const rec = a as { address?: unknown; isNull?: unknown }
  if (typeof rec.isNull === 'function' && rec.isNull.call(a) === true) return ''
  // @haraka/email-address has an `address` getter; address-rfc2821 had an address() method
  const v: unknown = typeof rec.address === 'function' ? (rec.address as () => unknown).call(a) : rec.address
  return typeof v === 'string' ? v : undefined
}

const NO_RDNS = new Set(['nxdomain', 'dnserror', 'unknown'])

function envelope(connection: Connection, txn: Transaction): Envelope {
  const fcrdns = connection.results.get('fcrdns') as { fcrdns?: unknown } | undefined
  const fcrdnsName = Array.isArray(fcrdns?.fcrdns) ? fcrdns.fcrdns[0] : undefined
  let hostname = typeof fcrdnsName === 'string' ? fcrdnsName : (connection.remote.host ?? undefined)
  // no reverse name: Haraka's markers for a failed lookup (NXDOMAIN, DNSERROR) and its "Unknown".
  // rspamd must get no Hostname then, as its own milter sends none for Postfix's "unknown"
  // (milter.c): only without one does it look the name up itself and score RDNS_NONE and
  // HFILTER_HOSTNAME_UNKNOWN; a Hostname of any text counts as a name
  if (hostname !== undefined && NO_RDNS.has(hostname.toLowerCase())) hostname = undefined
  const user = connection.notes.auth_user
  const tls = connection.tls
  return {
    ip: connection.remote.ip,
    hostname,
    helo: connection.hello.host ?? undefined,
    mailFrom: addressOf(txn.mail_from),
    rcpts: (txn.rcpt_to ?? []).map(addressOf).filter((r): r is string => r !== undefined && r !== ''),
    queueId: txn.uuid,
    user: typeof user === 'string' ? user : undefined,
    tlsCipher: tls?.enabled ? tls.cipher?.name : undefined,
    tlsVersion: tls?.enabled ? tls.cipher?.version : undefined,
    mtaName: connection.local?.host,
    // as [check] authenticated and relay see them
    outbound: Boolean(connection.notes.auth_user) || Boolean(connection.relaying),
  }
}

/**
 * What other plugins ask of rspamd for this message (docs/plugin-authors.md): the transaction note
 * `rspamd_request`, checked as `[request_headers]` and `[request] settings` are; each entry dropped
 * is one warning, escaped, naming it.
 */
function requestNote(plugin: RspamdPlugin, connection: Connection, txn: Transaction, cfg: Config) {
  const { note, problems } = readRequestNote(txn.notes.rspamd_request, cfg)
  for (const p of problems) connection.logwarn(plugin, logText(`request note: ${p}`))
  return note
}

function decodedSubject(header: Header): string | undefined {
  const raw = header.get_decoded ? header.get_decoded('Subject') : header.get('Subject')
  if (typeof raw !== 'string' || raw === '') return undefined
  return raw.replace(/\r?\n[ \t]*/g, ' ').trim()
}

/** rspamd's host as the headers name it: worked out once per config (os.hostname() is a system call) */
const rspamdHost = oncePerConfig((cfg: Config) => rspamdHostName(cfg.target, hostname()))

/** Where the client's and the Redis store's events (server down, back again) go: the plugin's log, escaped. */
function eventLogger(
  plugin: RspamdPlugin,
): (e: { level: 'info' | 'warn' | 'debug'; message: string }) => void {
  return (e) => {
    if (e.level === 'warn') plugin.logwarn(logText(e.message))
    else if (e.level === 'info') plugin.loginfo(logText(e.message))
    else plugin.logdebug(logText(e.message))
  }
}

/** A client whose servers' ups and downs (marked dead, back again) go to the plugin's log. */
function newClient(plugin: RspamdPlugin, cfg: Config, previous?: RspamdClient): RspamdClient {
  return new RspamdClient(cfg, {
    previous,
    onEvent: eventLogger(plugin),
  })
}

/**
 * A scan result → results, notes, header edits, and the arguments for next(); undefined when the
 * transaction ended while the greylist store was asked (then nothing is touched).
 */
async function act(
  plugin: RspamdPlugin,
  connection: Connection,
  txn: Transaction,
  cfg: Config,
  result: ScanOutcome,
  hookDeadline: number,
): Promise<[number?, unknown?] | undefined> {
  const size = txn.data_bytes
  const failover = failoverTexts(result.attempts)
  for (const f of failover) connection.logwarn(plugin, `failed over from ${f}`)
  if (failover.length > 0) txn.results.add(plugin, { failover })
  if (!result.ok) {
    const verdict = onFailure(result.error, cfg)
    // unscanned is not "scanned clean": a reply made too large to read must not let the forged
    // verdict headers through either
    const unremoved = verdict.kind === 'accept' ? removeForged(plugin, connection, txn, cfg) : undefined
    const report = failureReport({
      error: result.error,
      verdict,
      server: result.server,
      timeMs: result.timeMs,
      size: size ?? result.bytesSent,
      attempts: result.attempts,
      unremoved,
    })
    // results.add logs an err at error level, with the error's text; a scan shed for saturation is
    // no error of a message's (the client warns once when saturation starts, once when it ends)
    if (result.error.kind === 'saturated') txn.results.add(plugin, { shed: true, msg: report.err })
    else txn.results.add(plugin, { err: report.err })
    connection.loginfo(plugin, defined(report.line))
    return toNext(verdict)
  }

  const reply = result.reply
  for (const w of result.warnings) connection.logwarn(plugin, logText(`reply from ${result.server}: ${w}`))
  if (!isKnownAction(reply.action)) {
    connection.logwarn(
      plugin,
      logText(`unknown action ${JSON.stringify(reply.action)} from ${result.server}: accepting`),
    )
  }
  const action = finalAction(reply, cfg)
  if (action !== reply.action) {
    connection.loginfo(plugin, `score ${reply.score} is over a local [thresholds] value: ${action}`)
  }
  const facts: SenderFacts = {
    authenticated: Boolean(connection.notes.auth_user),
    subject: decodedSubject(txn.header),
    style: {
      scanner: `${DEFAULT_SCANNER} ${packageVersion()}`,
      rspamdHost: rspamdHost(cfg),
      queueId: txn.uuid,
      json: result.json,
      replyBytes: result.replyBytes,
      scanTimeMs: result.timeMs,
    },
  }
  let greylistFailure: Verdict | undefined
  let greylistState: string | undefined
  if (action === 'greylist' && cfg.greylist.enabled) {
    const grey = await checkGreylist(plugin, connection, txn, cfg, hookDeadline)
    if (connection.transaction !== txn) return undefined
    if (grey.ok) {
      facts.greylist = grey.outcome.passed ? 'passed' : 'deferred'
      greylistState = facts.greylist
    } else {
      // Redis away or slow: the message is not held up, [defer] error says what happens to it
      greylistFailure = onGreylistFailure(cfg)
      greylistState = 'error'
      connection.logwarn(
        plugin,
        logText(
          `greylist store ${plugin.greylistRedis?.server ?? ''}: ${grey.error.kind}: ${forLog(grey.error.message)}; ` +
            `${outcomeText(greylistFailure)} per [defer] error`,
        ),
      )
    }
  }
  const verdict = greylistFailure ?? decide(reply, cfg, facts)

  txn.notes.rspamd = result.json
  const report = scanReport({
    reply,
    action,
    verdict,
    greylist: greylistState,
    server: result.server,
    timeMs: result.timeMs,
    size: size ?? result.bytesSent,
    attempts: result.attempts,
  })
  txn.results.add(plugin, report.record)
  // the one info line of the message, as fields (Haraka's logfmt and json formats keep them apart)
  connection.loginfo(plugin, defined(report.line))
  for (const w of unappliedSwitches(reply.milter, action)) connection.logwarn(plugin, logText(w))
  if (verdict.kind === 'accept' || verdict.kind === 'ok' || verdict.kind === 'quarantine') {
    applyEdits(plugin, connection, txn, verdict.edits)
  }
  if (verdict.kind === 'accept' || verdict.kind === 'ok') {
    applyEnvelope(plugin, connection, txn, envelopeChanges(reply.milter, envelopeNow(txn), cfg))
  }
  if (verdict.kind === 'discard') {
    // Haraka's convention, which queue/discard honours too; our own queue hook acts on our note
    txn.notes[QUEUE_NOTE] = 'discard'
    txn.notes.discard = true
    setNote(txn.notes, 'queue.wants', 'discard')
  } else if (verdict.kind === 'quarantine') {
    txn.notes[QUEUE_NOTE] = 'quarantine'
    setNote(txn.notes, 'queue.wants', 'quarantine')
    // what queue/quarantine answers once the file is written: 250, and no delivery after it
    // (without it, it passes the message on to the next queue plugin); an operator's own stays
    if (txn.notes.quarantine_action === undefined) txn.notes.quarantine_action = constants.ok
  }
  return toNext(verdict)
}

/** The envelope as policy/envelope reads it: `local@domain` of each address, '' for the null sender. */
function envelopeNow(txn: Transaction): EnvelopeNow {
  return {
    from: addressOf(txn.mail_from) ?? '',
    rcpts: (txn.rcpt_to ?? []).map((r) => addressOf(r) ?? ''),
  }
}

/**
 * rspamd's envelope changes, as policy/envelope planned them, onto the transaction: new addresses are
 * made with the class of Haraka's own (the constructor of txn.mail_from or a recipient, so other
 * plugins see the same type and its methods); one it refuses to parse is logged and left out.
 */
function applyEnvelope(
  plugin: RspamdPlugin,
  connection: Connection,
  txn: Transaction,
  plan: EnvelopePlan,
): void {
  for (const r of plan.refused) connection.logwarn(plugin, logText(`envelope change refused: ${r}`))
  if (plan.from === undefined && plan.rcpts === undefined) return
  const current = txn.rcpt_to ?? []
  const sample = txn.mail_from ?? current[0]
  const Ctor = typeof sample === 'object' && sample !== null ? sample.constructor : undefined
  if (typeof Ctor !== 'function' || Ctor === Object) {
    connection.logwarn(
      plugin,
      "envelope change refused: this Haraka's transaction has no address objects to copy",
    )
    return
  }
  const make = (field: string, address: string): unknown => {
    try {
      return new (Ctor as new (s: string) => unknown)(`<${address}>`)
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err)
      connection.logwarn(
        plugin,
        logText(`envelope change refused: ${field} ${showAddress(address)}: ${forLog(why)}`),
      )
      return undefined
    }
  }
  if (plan.from !== undefined) {
    const from = make('milter.change_from', plan.from)
    if (from !== undefined) txn.mail_from = from
  }
  if (plan.rcpts !== undefined) {
    const rcpts: unknown[] = []
    for (const e of plan.rcpts) {
      const r = 'keep' in e ? current[e.keep] : make('milter.add_rcpt', e.add)
      if (r !== undefined) rcpts.push(r)
    }
    if (rcpts.length > 0) txn.rcpt_to = rcpts
    else connection.logwarn(plugin, 'envelope change refused: milter.del_rcpt would leave no recipient')
  }
  for (const a of plan.applied) connection.loginfo(plugin, logText(`envelope changed: ${a}`))
}

/** The message's triplets through the configured store; Redis gets what is left of the hook's time, at most redis_timeout. */
async function checkGreylist(
  plugin: RspamdPlugin,
  connection: Connection,
  txn: Transaction,
  cfg: Config,
  hookDeadline: number,
): Promise<StoreResult> {
  const env = envelope(connection, txn)
  const args = [env.ip ?? '', env.mailFrom ?? '', env.rcpts, cfg.greylist.delay * 1000] as const
  const redis = plugin.greylistRedis
  if (cfg.greylist.store === 'memory' || !redis) {
    plugin.greylist ??= new Greylist()
    return { ok: true, outcome: plugin.greylist.check(...args) }
  }
  const boundMs = Math.min(cfg.greylist.redisTimeout * 1000, hookDeadline - Date.now())
  if (boundMs <= 0) {
    return { ok: false, error: storeError('timeout', "no time left within Haraka's plugin timeout") }
  }
  return redis.check(...args, Math.round(boundMs))
}

function applyEdits(
  plugin: RspamdPlugin,
  connection: Connection,
  txn: Transaction,
  edits: HeaderEdits,
): void {
  for (const d of edits.dropped) connection.logwarn(plugin, logText(`header edit refused: ${d}`))
  // first, while the header block is still the one rspamd counted its positions in
  const whole: string[] = []
  for (const r of edits.removeAt) {
    if (removeNumbered(txn, r)) continue
    connection.logwarn(
      plugin,
      logText(`cannot remove single ${r.name} headers from this Haraka's transaction: removing every one`),
    )
    whole.push(r.name)
  }
  removeFields(txn, whole.length === 0 ? edits.remove : edits.remove.concat(whole))
  for (const f of edits.add) txn.add_header(f.name, f.value)
}

/**
 * Removes every field of the given names, as RFC 5322 names them (fieldNameOf): also those written
 * `Name : value`, which Haraka keeps as header lines without parsing a value from them, so its
 * remove_header() (a match on `name:`) leaves them in the message: a forged `X-Spam : no` would
 * stay. One pass over the header lines for all names; the parsed values of each name go as
 * Haraka's own Header.remove() drops them. A header object not shaped so (another Haraka) gets
 * remove_header() per name.
 */
function removeFields(txn: Transaction, names: readonly string[]): void {
  if (names.length === 0) return
  const h = txn.header as unknown as HeaderInternals
  const list = h.header_list
  if (!Array.isArray(list)) {
    for (const name of names) txn.remove_header(name)
    return
  }
  const wanted = new Set(names.map((n) => n.toLowerCase()))
  // in place: Haraka's message_stream writes the queued message from this very array
  let write = 0
  for (let read = 0; read < list.length; read++) {
    const line: unknown = list[read]
    const field = typeof line === 'string' ? fieldNameOf(line) : undefined
    if (field && wanted.has(field.lower)) continue
    list[write++] = line
  }
  const removed = write < list.length
  list.length = write
  for (const lower of wanted) {
    if (h.headers && lower in h.headers) delete h.headers[lower]
    if (h.headers_decoded && lower in h.headers_decoded) delete h.headers_decoded[lower]
  }
  // what Haraka's remove_header() does after a removal once the header block is complete
  if (removed) txn.reset_headers?.()
}

/** Haraka's header object as its own remove() works on it (haraka-email-message's Header). */
interface HeaderInternals {
  header_list?: unknown
  headers?: Record<string, unknown>
  headers_decoded?: Record<string, unknown>
}

/**
 * Removes the instances of a header that rspamd numbered. Haraka removes a header by name only
 * (every instance), so this does what its Header.remove() does, for some instances: off the raw
 * lines (`header_list`, which the queued message is written from) and the parsed values (`headers`,
 * `headers_decoded`), all three in message order. False when the header object is not shaped so
 * (another Haraka): the caller then removes every instance, the safe side for a header rspamd
 * wanted gone.
 */
function removeNumbered(txn: Transaction, r: RemoveAt): boolean {
  const h = txn.header as unknown as HeaderInternals
  const list = h.header_list
  if (!Array.isArray(list)) return false
  const lower = r.name.toLowerCase()
  const lines: number[] = []
  for (let i = 0; i < list.length; i++) {
    const line: unknown = list[i]
    // rspamd counts fields written `Name:` only (it skips `Name :` as a broken line), and those are
    // the ones Haraka parsed values for: the instances here and in `headers` stay in step
    const field = typeof line === 'string' ? fieldNameOf(line) : undefined
    if (field && !field.obsolete && field.lower === lower) lines.push(i)
  }
  if (lines.length === 0) return true
  const values = h.headers?.[lower]
  const decoded = h.headers_decoded?.[lower]
  const inStep = (v: unknown): v is unknown[] => Array.isArray(v) && v.length === lines.length
  if (!inStep(values) || (decoded !== undefined && !inStep(decoded))) return false
  const gone = instancesAt(r.positions, lines.length)
  for (let k = gone.length - 1; k >= 0; k--) {
    const at = gone[k] as number
    list.splice(lines[at] as number, 1)
    values.splice(at, 1)
    if (Array.isArray(decoded)) decoded.splice(at, 1)
  }
  if (values.length === 0) {
    delete h.headers?.[lower]
    delete h.headers_decoded?.[lower]
  }
  return true
}

function toNext(verdict: Verdict): [number?, unknown?] {
  switch (verdict.kind) {
    // haraka-dsn's DSN, not a look-alike: Haraka replies with its code and reply, and its own
    // per-message log line ([core] message … msg=) prints its toString(), the reply text
    case 'deny':
      return [constants.deny, dsn(verdict.code, verdict.status, verdict.message)]
    case 'defer':
      return [constants.denysoft, dsn(verdict.code, verdict.status, verdict.message)]
    case 'accept':
    case 'discard':
    case 'quarantine':
      // the other data_post plugins run; the queue hooks act on the note act() wrote
      return []
    case 'ok':
      return [constants.ok]
  }
}

/** `code` and `status` (5.7.1, 4.7.1) with the reply text, as Haraka's respond() takes it. */
function dsn(code: number, status: string, message: string) {
  const [, subject, detail] = status.split('.').map(Number)
  return DSN.create(code, message, subject, detail)
}
