// Runs the built plugin the way Haraka does, through haraka-test-fixtures: a real plugin object
// (package.json → dist/index.js), a real connection and transaction fed a message line by line.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import assert from 'node:assert/strict'
import * as constants from 'haraka-constants'
import * as fixtures from 'haraka-test-fixtures'
import type { FixtureConnection, FixturePlugin } from 'haraka-test-fixtures'

export const REPO = resolve(__dirname, '..', '..')
/** The project's test messages, in the repository (test/fixtures/messages/README.md says what each exercises). */
export const CORPUS = join(REPO, 'test', 'fixtures', 'messages')

/** A test message from CORPUS, as the bytes on the wire (CRLF). */
export function corpus(name: string): Buffer {
  return readFileSync(join(CORPUS, name))
}

let scratchRoot: string | undefined
/**
 * A new empty directory for a test's files, under one directory per process in os.tmpdir() that is
 * removed when the process exits, also when tests fail or never reach their own clean-up.
 */
export function scratchDir(prefix: string): string {
  if (!scratchRoot) {
    const root = mkdtempSync(join(tmpdir(), `rspamd-test-${process.pid}-`))
    scratchRoot = root
    process.once('exit', () => rmSync(root, { recursive: true, force: true }))
  }
  return mkdtempSync(join(scratchRoot, `${prefix}-`))
}

/** A corpus message with X-Test-* headers in front (the recipe of test/rspamd-server/README.md). */
export function withTestHeaders(file: string, headers: Record<string, string>): Buffer {
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`)
  return Buffer.concat([Buffer.from(lines.join('')), corpus(file)])
}

type PathFinder = (this: { hasPackageJson: boolean }, name?: string) => string
const fixturePlugin = fixtures.plugin.prototype as unknown as { _get_plugin_path: PathFinder }
const findPlugin = fixturePlugin._get_plugin_path
// haraka-test-fixtures looks for the plugin from its own real path; when node_modules is a
// symlink to another checkout's (git worktrees sharing one install), that finds the other
// checkout's package and the tests silently run its dist/. Always load this repo's.
fixturePlugin._get_plugin_path = function (name) {
  if ((name ?? 'rspamd') !== 'rspamd') return findPlugin.call(this, name)
  this.hasPackageJson = true
  return join(REPO, 'package.json')
}

/** Haraka's return codes, from haraka-constants as the plugin itself takes them. */
export const DENY = constants.deny
export const DENYSOFT = constants.denysoft
export const OK = constants.ok

/**
 * A plugin object with `ini` as the operator's config/rspamd.ini over the shipped defaults.
 * `packageDir` loads another package the same way (the benchmarks load 1.6.1 from node_modules/rspamd-v1);
 * `files`: more files for the config dir, by name (redis.ini). config/plugins is, unless `files` gives
 * another, that of an operator who followed the docs: queue/quarantine, then this plugin (without it,
 * the shipped `[quarantine] action = queue` logs an error at every start; test/plugin-queue.test.ts
 * tests that case).
 */
export function loadPlugin(
  ini: string,
  opts: { timeout?: number; register?: boolean; packageDir?: string; files?: Record<string, string> } = {},
): FixturePlugin {
  const packageDir = opts.packageDir ?? REPO
  const dir = scratchDir('plugin')
  mkdirSync(join(dir, 'config'))
  writeFileSync(join(dir, 'config', 'rspamd.ini'), ini)
  writeFileSync(join(dir, 'config', 'plugins'), 'queue/quarantine\nrspamd\n')
  for (const [name, text] of Object.entries(opts.files ?? {})) writeFileSync(join(dir, 'config', name), text)
  const saved = process.env.HARAKA
  process.env.HARAKA = dir
  let plugin: FixturePlugin
  try {
    // by absolute path: given 'rspamd', the fixture looks for the package beside the real path of its own
    // node_modules, which is another checkout when node_modules is a symlink (git worktrees sharing one)
    plugin = new fixtures.plugin(packageDir)
  } finally {
    if (saved === undefined) delete process.env.HARAKA
    else process.env.HARAKA = saved
  }
  if (plugin.plugin_path !== join(packageDir, 'package.json')) {
    throw new Error(`haraka-test-fixtures loaded ${String(plugin.plugin_path)}, not ${packageDir}`)
  }
  // the name Haraka gives it from config/plugins: results and the hook registration go by it
  plugin.name = 'rspamd'
  plugin.timeout = opts.timeout ?? 30
  recordReloadCallbacks(plugin)
  if (opts.register !== false) plugin.register()
  return plugin
}

type ConfigGet = (...args: unknown[]) => unknown
/** Per plugin: the callback it gave haraka-config's get() for each config file, by file name. */
const reloadCallbacks = new WeakMap<FixturePlugin, Map<string, () => void>>()

/** Wraps the plugin's config.get() to note the reload callback of each file it reads; the reads are unchanged. */
function recordReloadCallbacks(plugin: FixturePlugin): void {
  const callbacks = new Map<string, () => void>()
  reloadCallbacks.set(plugin, callbacks)
  const config = plugin.config as { get: ConfigGet }
  const get = config.get.bind(config)
  config.get = (...args: unknown[]) => {
    const cb = args.find((a) => typeof a === 'function') as (() => void) | undefined
    if (typeof args[0] === 'string' && cb) callbacks.set(args[0], cb)
    return get(...args)
  }
}

/**
 * Rewrites one of the plugin's config files and reloads it as haraka-config's watcher does once the file
 * has settled: the file is read again (config.get() reads the files, not its cache, while
 * WITHOUT_CONFIG_CACHE is set) and the callback the plugin gave config.get() for it is called.
 * The watcher waits a hard-coded 5 s before that; this does it at once, so reload tests cost no waiting.
 * A throw out of the callback fails the test: from the watcher's timer it would reach Haraka's
 * uncaughtException handler, which exits. The watcher still fires 5 s later and reloads the same text again.
 * plugin.test.ts keeps one reload through the real watcher, which proves the callback is the one it calls.
 */
export function rewriteConfig(plugin: FixturePlugin, text: string, name = 'rspamd.ini'): void {
  const cb = reloadCallbacks.get(plugin)?.get(name)
  if (!cb) throw new Error(`the plugin gave haraka-config no reload callback for ${name}`)
  writeFileSync(join(dirname(iniPathOf(plugin)), name), text)
  const saved = process.env.WITHOUT_CONFIG_CACHE
  process.env.WITHOUT_CONFIG_CACHE = '1'
  try {
    cb()
  } catch (err) {
    throw new Error(`the ${name} reload callback threw (from haraka-config's timer this would stop Haraka)`, {
      cause: err,
    })
  } finally {
    if (saved === undefined) delete process.env.WITHOUT_CONFIG_CACHE
    else process.env.WITHOUT_CONFIG_CACHE = saved
  }
}

type LogLevel = 'loginfo' | 'logwarn' | 'logerror' | 'logdebug'

/** Resolves with the next line the plugin logs at `level` that matches `re` (the plugin still logs it). */
export function nextLog(p: FixturePlugin, level: LogLevel, re: RegExp): Promise<string> {
  const original = p[level] as (msg: string) => void
  return new Promise((done) => {
    p[level] = (msg: string) => {
      original.call(p, msg)
      if (re.test(String(msg))) {
        p[level] = original
        done(String(msg))
      }
    }
  })
}

/** Runs `act` and returns what the plugin logged meanwhile at `levels`, in order (the plugin still logs it). */
export function logsDuring(
  p: FixturePlugin,
  act: () => void,
  levels: readonly LogLevel[] = ['loginfo', 'logwarn', 'logerror', 'logdebug'],
): { level: LogLevel; line: string }[] {
  const logged: { level: LogLevel; line: string }[] = []
  const originals = levels.map((level) => [level, p[level] as (msg: string) => void] as const)
  for (const [level, original] of originals) {
    p[level] = (msg: string) => {
      logged.push({ level, line: String(msg) })
      original.call(p, msg)
    }
  }
  try {
    act()
  } finally {
    for (const [level, original] of originals) p[level] = original
  }
  return logged
}

/** The ini path of a plugin made by loadPlugin (for reload tests). */
export function iniPathOf(plugin: FixturePlugin): string {
  const cfg = plugin.config as { overrides_path?: string }
  if (!cfg.overrides_path) throw new Error('plugin has no overrides path')
  return join(cfg.overrides_path, 'rspamd.ini')
}

export async function unregister(plugin: FixturePlugin): Promise<void> {
  const shutdown = plugin.shutdown
  if (typeof shutdown === 'function') await (shutdown as () => Promise<void>).call(plugin)
}

/** An envelope address as Haraka hands it to plugins: haraka-test-fixtures' own (an @haraka/email-address Address). */
export function address(a: string): { address: string; isNull(): boolean } {
  return fixtures.hooks.toAddress(a === '' ? '<>' : a)
}

export interface Sender {
  ip?: string
  host?: string | null
  helo?: string
  mailFrom?: string
  rcpts?: string[]
  authUser?: string
  relaying?: boolean
  isPrivate?: boolean
  isLocal?: boolean
  /** the local port the client connected to (Haraka's connection.local.port) */
  localPort?: number
  tls?: { name: string; version: string }
}

/**
 * A fresh spool directory per connection: the fixture transaction's uuid is a constant, so a big
 * message spooled to /tmp/<uuid>.eml collides with any other test (or test run) doing the same.
 */
function spoolDir(): string {
  return scratchDir('spool')
}

/**
 * A connection whose transaction has received `message` as an SMTP client sends it (dot-stuffed lines).
 * Not fixtures' makeConnection(): it cannot hand the connection smtp.ini's values (a spool dir per
 * connection, the header limits the transaction reads) nor set is_private, is_local, the local port or TLS.
 */
export async function connectionWith(message: Buffer | string, s: Sender = {}): Promise<FixtureConnection> {
  // Haraka's smtp.ini defaults that the fixture transaction reads (this repo has no smtp.ini)
  const conn = fixtures.connection.createConnection(
    {},
    {},
    { main: { spool_dir: spoolDir() }, headers: { max_lines: 1000, max_received: 100 } },
  )
  conn.remote.ip = s.ip ?? '192.0.2.10'
  conn.remote.host = s.host === undefined ? 'mail.example.com' : s.host
  conn.remote.is_private = s.isPrivate ?? false
  conn.remote.is_local = s.isLocal ?? false
  conn.hello.host = s.helo ?? 'mail.example.com'
  if (s.localPort !== undefined) conn.local.port = s.localPort
  if (s.authUser) conn.notes.auth_user = s.authUser
  if (s.relaying) conn.relaying = true
  if (s.tls) {
    conn.tls.enabled = true
    conn.tls.cipher = s.tls
  }
  conn.init_transaction()
  const txn = conn.transaction
  if (!txn) throw new Error('no transaction')
  txn.mail_from = address(s.mailFrom ?? 'sender@example.com')
  txn.rcpt_to = (s.rcpts ?? ['rcpt@example.net']).map(address)

  const buf = typeof message === 'string' ? Buffer.from(message) : message
  let start = 0
  while (start < buf.length) {
    const lf = buf.indexOf(0x0a, start)
    const end = lf === -1 ? buf.length : lf + 1
    let line = buf.subarray(start, end)
    // SMTP dot-stuffing, as the client does on the wire (RFC 5321 §4.5.2)
    if (line[0] === 0x2e) line = Buffer.concat([Buffer.from('.'), line])
    txn.add_data(line)
    txn.data_bytes += end - start
    start = end
  }
  await new Promise<void>((done) => txn.end_data(done))
  return conn
}

export interface HookResult {
  code?: number
  msg?: unknown
  /** how often next() was called so far (checked again by the caller later) */
  calls: () => number
}

/**
 * Call the data_post hook; resolves at the first next(). Not fixtures' callDataPost(): it ignores every
 * next() after the first, and the tests check that the plugin never calls next() twice.
 */
export function dataPost(plugin: FixturePlugin, conn: FixtureConnection): Promise<HookResult> {
  const hook = plugin.rspamd_data_post
  if (typeof hook !== 'function') throw new Error('plugin has no rspamd_data_post')
  return new Promise((resolveHook) => {
    let calls = 0
    const next = (code?: number, msg?: unknown) => {
      calls++
      if (calls === 1) resolveHook({ code, msg, calls: () => calls })
    }
    hook.call(plugin, next, conn)
  })
}

/** The SMTP reply text of a DSN-style message, or the plain string. */
export function replyText(msg: unknown): string | undefined {
  if (typeof msg === 'string') return msg
  if (typeof msg === 'object' && msg !== null && 'reply' in msg) return String(msg.reply)
  return undefined
}

export function replyCode(msg: unknown): number | undefined {
  if (typeof msg === 'object' && msg !== null && 'code' in msg && typeof msg.code === 'number')
    return msg.code
  return undefined
}

/** The message as it would be queued: headers as the transaction now has them + body, CRLF. */
export function queuedMessage(conn: FixtureConnection): Promise<Buffer> {
  const txn = conn.transaction
  if (!txn) throw new Error('no transaction')
  return new Promise((done) => txn.message_stream.get_data((data: Buffer) => done(data)))
}

/** Header lines of a queued message, continuation lines joined. */
export function headerBlock(message: Buffer): string {
  const text = message.toString('utf8')
  const end = text.indexOf('\r\n\r\n')
  return end === -1 ? text : text.slice(0, end + 2)
}

/** Every header line of a message is `Name: value` or a continuation, none over 998 octets. */
export function assertWellFormed(message: Buffer): void {
  const head = headerBlock(message)
  for (const line of head.split('\r\n').slice(0, -1)) {
    assert.ok(Buffer.byteLength(line) <= 998, `line over 998 octets: ${line.slice(0, 60)}`)
    assert.match(line, /^([!-9;-~]+:|[ \t])/, `not a header line: ${JSON.stringify(line.slice(0, 60))}`)
  }
  assert.ok(!/\r(?!\n)|(?<!\r)\n/.test(head), 'bare CR or LF in the header block')
}

/** Every log line written on this connection from now on, as `LEVEL message`, instead of printing it. */
export function captureLogs(conn: FixtureConnection): string[] {
  const lines: string[] = []
  const c = conn as unknown as Record<string, unknown>
  for (const level of ['logerror', 'logwarn', 'loginfo'] as const) {
    c[level] = (...args: unknown[]) => {
      const text = args.filter((a): a is string => typeof a === 'string').join(' ')
      lines.push(`${level.slice(3).toUpperCase()} ${text}`)
    }
  }
  return lines
}

const LOGFMT_ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\r': '\\r', '\n': '\\n' }

/**
 * Fields as Haraka's logger writes a plain object (its default and logfmt formats): `key=value`,
 * the value quoted (with `"` and `\` escaped) when empty or holding a space, `=`, `"`, `\`, CR or LF.
 */
export function logfmt(fields: Record<string, unknown>): string {
  const out: string[] = []
  for (const key in fields) {
    const v = fields[key] == null ? '' : String(fields[key])
    out.push(
      /(^$|[ ="\\\r\n])/.test(v)
        ? `${key}="${v.replace(/["\\\r\n]/g, (c) => LOGFMT_ESCAPES[c] ?? c)}"`
        : `${key}=${v}`,
    )
  }
  return out.join(' ')
}

/** What the plugin logs at info level on this connection from now on (fields written as Haraka writes them). */
export function infoLines(conn: FixtureConnection): string[] {
  return infoRecords(conn).lines
}

/** The info lines, and the field objects among them as the plugin passed them. */
export function infoRecords(conn: FixtureConnection): { lines: string[]; fields: Record<string, unknown>[] } {
  const c = conn as unknown as { loginfo: (plugin: unknown, msg: unknown) => void }
  const lines: string[] = []
  const fields: Record<string, unknown>[] = []
  const original = c.loginfo.bind(conn)
  c.loginfo = (plugin, msg) => {
    if (typeof msg === 'object' && msg !== null) {
      fields.push(msg as Record<string, unknown>)
      lines.push(logfmt(msg as Record<string, unknown>))
    } else lines.push(String(msg))
    original(plugin, msg)
  }
  return { lines, fields }
}

/** An rspamd.ini pointing at a (fake) rspamd on 127.0.0.1, plus `extra` lines. */
export function iniFor(server: { port: number }, extra = ''): string {
  return `host = 127.0.0.1\nport = ${server.port}\n${extra}\n`
}
