// A real Haraka (npm Haraka, a devDependency) in installed mode, with this package installed the way an
// operator does it: `npm pack`, then `npm install` of the tarball into the Haraka directory.

import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { cpSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO, scratchDir } from '../support/harness'

const run = promisify(execFile)

let packed: Promise<string> | undefined

/** `npm pack` of this repo (already built by npm test), once per test run; removed when the run ends. */
export function packPlugin(): Promise<string> {
  packed ??= (async () => {
    const dest = scratchDir('pack')
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dest], {
      cwd: REPO,
    })
    const info = JSON.parse(stdout) as { filename: string }[]
    return join(dest, info[0].filename)
  })()
  return packed
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr ? addr.port : 0
      srv.close(() => resolve(port))
    })
  })
}

// A test-only plugin: accept every recipient (Haraka refuses relaying otherwise).
const ACCEPT_PLUGIN = `'use strict'
exports.hook_rcpt = function (next) { next(OK) }
`

// A test-only queue: each accepted message and what the rspamd plugin recorded, written to queue/.
// Mail from an authenticated (relaying) sender goes to queue_outbound: caught here too, so nothing
// is ever delivered out of the machine.
const QUEUE_PLUGIN = `'use strict'
const fs = require('node:fs')
const path = require('node:path')
exports.hook_queue = function (next, connection) {
  const txn = connection.transaction
  const dir = path.join(process.env.HARAKA_TEST_QUEUE)
  const base = path.join(dir, txn.uuid)
  const ws = fs.createWriteStream(base + '.eml.part')
  ws.on('finish', () => {
    fs.writeFileSync(base + '.json', JSON.stringify({
      uuid: txn.uuid,
      pid: process.pid,
      rspamd: txn.results.get('rspamd') || null,
      notes: txn.notes.rspamd || null,
      mail_from: txn.mail_from ? txn.mail_from.address : null,
      rcpt_to: txn.rcpt_to.map((r) => r.address),
      address_class: txn.rcpt_to.map((r) => r.constructor.name),
    }))
    fs.renameSync(base + '.eml.part', base + '.eml')
    next(OK, 'queued as ' + txn.uuid)
  })
  txn.message_stream.pipe(ws, { line_endings: '\\r\\n' })
}
exports.hook_queue_outbound = exports.hook_queue
`

// A benchmark-only queue: accept, keep nothing.
const DISCARD_PLUGIN = `'use strict'
exports.hook_queue = function (next, connection) {
  next(OK, 'queued as ' + connection.transaction.uuid)
}
`

export interface HarakaOptions {
  /** the operator's rspamd.ini */
  rspamdIni: string
  /** extra lines for config/plugins, before rspamd */
  pluginsBefore?: string[]
  /** Haraka's plugin timeout for rspamd (config/rspamd.timeout) */
  pluginTimeout?: number
  /** connection.ini spool_after: bytes Haraka keeps in memory before spooling a message to disk */
  spoolAfter?: number
  /** false: do not install this package, so Haraka loads the haraka-plugin-rspamd it bundles (1.6.x) */
  installPlugin?: boolean
  /** false: no rspamd in config/plugins (Haraka without scanning, for benchmarks) */
  scan?: boolean
  /** true: the queue accepts without writing the message to disk (for benchmarks) */
  discardQueue?: boolean
  /** more files for the config dir, by name (e.g. an auth plugin's ini) */
  extraConfig?: Record<string, string>
  /** smtp.ini nodes: 0 (default) = one process; n = Haraka's cluster mode with n workers */
  nodes?: number
  /** more plugins for the Haraka directory's plugins/, by name without .js (list them in pluginsBefore) */
  extraPlugins?: Record<string, string>
}

export interface Queued {
  uuid: string
  /** the Haraka process (a cluster worker) that queued it */
  pid: number
  message: Buffer
  rspamd: Record<string, unknown> | null
  notes: Record<string, unknown> | null
  /** the envelope as the queue saw it: each address's \`address\` (user@host), and the class of each recipient */
  mail_from: string | null
  rcpt_to: string[]
  address_class: string[]
}

export class Haraka {
  readonly log: string[] = []
  private exited: Promise<void> | undefined

  private constructor(
    readonly dir: string,
    readonly port: number,
    private proc: ChildProcess | undefined,
  ) {}

  /** Haraka's process id while it runs (nodes=0: the one process that handles every connection). */
  get pid(): number | undefined {
    return this.proc?.exitCode === null ? this.proc.pid : undefined
  }

  get queueDir(): string {
    return join(this.dir, 'test-queue')
  }

  /** Set up a Haraka directory with the packed plugin installed into its node_modules, and start it. */
  static async start(opts: HarakaOptions): Promise<Haraka> {
    // stop() removes it; under scratchDir so that a start that fails half-way leaves nothing either
    const dir = scratchDir('haraka')
    if (opts.installPlugin === false) {
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'haraka-it', private: true }))
    } else {
      const tgz = await packPlugin()
      writeFileSync(
        join(dir, 'package.json'),
        JSON.stringify({
          name: 'haraka-it',
          private: true,
          dependencies: { 'haraka-plugin-rspamd': `file:${tgz}` },
        }),
      )
      // the operator's step: npm install into the Haraka directory (dependencies come from the
      // registry or npm's cache, so a missing dependency in package.json fails here)
      await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts'], {
        cwd: dir,
        timeout: 180_000,
      })
    }
    const port = await freePort()
    const h = new Haraka(dir, port, undefined)
    h.writeConfig(opts)
    await h.spawn(Math.max(1, opts.nodes ?? 0))
    return h
  }

  writeConfig(opts: HarakaOptions): void {
    const cfg = join(this.dir, 'config')
    // Haraka's own defaults (connection.ini's greeting and the like), as `haraka -i` would copy them
    cpSync(join(REPO, 'node_modules', 'Haraka', 'config'), cfg, { recursive: true })
    // [max] bytes: room for the 25 MB test message; a key before the first [section] is in [main],
    // where Haraka reads spool_after
    const conn = join(cfg, 'connection.ini')
    const connIni = readFileSync(conn, 'utf8').replace(/^bytes=\d+$/m, `bytes=${60 * 1024 * 1024}`)
    const spool = opts.spoolAfter === undefined ? '' : `spool_after=${opts.spoolAfter}\n`
    writeFileSync(conn, `${spool}${connIni}`)
    mkdirSync(join(this.dir, 'plugins'), { recursive: true })
    mkdirSync(this.queueDir, { recursive: true })
    writeFileSync(join(this.dir, 'plugins', 'test_accept.js'), ACCEPT_PLUGIN)
    writeFileSync(
      join(this.dir, 'plugins', 'test_queue.js'),
      opts.discardQueue ? DISCARD_PLUGIN : QUEUE_PLUGIN,
    )
    for (const [name, code] of Object.entries(opts.extraPlugins ?? {})) {
      writeFileSync(join(this.dir, 'plugins', `${name}.js`), code)
    }
    const plugins = [
      ...(opts.pluginsBefore ?? []),
      'test_accept',
      ...(opts.scan === false ? [] : ['rspamd']),
      'test_queue',
    ]
    writeFileSync(join(cfg, 'plugins'), `${plugins.join('\n')}\n`)
    writeFileSync(join(cfg, 'smtp.ini'), `listen=127.0.0.1:${this.port}\nnodes=${opts.nodes ?? 0}\n`)
    writeFileSync(join(cfg, 'me'), 'haraka.test\n')
    writeFileSync(join(cfg, 'log.ini'), '[main]\nlevel=info\ntimestamps=false\nformat=default\n')
    if (opts.pluginTimeout) writeFileSync(join(cfg, 'rspamd.timeout'), `${opts.pluginTimeout}\n`)
    writeFileSync(join(cfg, 'rspamd.ini'), opts.rspamdIni)
    for (const [name, text] of Object.entries(opts.extraConfig ?? {})) writeFileSync(join(cfg, name), text)
  }

  /** Rewrite the operator's rspamd.ini in place (Haraka reloads it without a restart). */
  writeRspamdIni(ini: string): void {
    writeFileSync(join(this.dir, 'config', 'rspamd.ini'), ini)
  }

  /** Start Haraka; resolves once `listeners` processes (each cluster worker) listen. */
  private async spawn(listeners: number): Promise<void> {
    const bin = join(REPO, 'node_modules', 'Haraka', 'bin', 'haraka')
    // HARAKA_NODE_ARGS: node flags for profiling a run (e.g. --cpu-prof --cpu-prof-dir=/tmp/prof)
    const nodeArgs = (process.env.HARAKA_NODE_ARGS ?? '').split(' ').filter(Boolean)
    const proc = spawn(process.execPath, [...nodeArgs, bin, '-c', this.dir], {
      cwd: this.dir,
      env: { ...process.env, HARAKA_TEST_QUEUE: this.queueDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.proc = proc
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()))
    const onData = (b: Buffer) => {
      for (const line of b.toString('utf8').split('\n')) if (line) this.log.push(line)
    }
    proc.stdout?.on('data', onData)
    proc.stderr?.on('data', onData)
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error('Haraka did not start within 30 s')), 30_000)
      const fail = (err: Error) => {
        clearTimeout(timer)
        reject(new Error(`${err.message}\n${this.log.slice(-30).join('\n')}`))
      }
      let listening = 0
      const check = (b: Buffer) => {
        listening += b.toString('utf8').match(/Listening on/gi)?.length ?? 0
        if (listening >= listeners) {
          clearTimeout(timer)
          proc.stdout?.off('data', check)
          resolve()
        }
      }
      proc.stdout?.on('data', check)
      proc.once('exit', (code) => fail(new Error(`Haraka exited with ${code} during start-up`)))
    })
  }

  /** The lines Haraka logged that match `re`. */
  logged(re: RegExp): string[] {
    return this.log.filter((l) => re.test(l))
  }

  /** Resolves when Haraka logs a line matching `re` (or rejects after `ms`). */
  waitForLog(re: RegExp, ms = 20_000, onlyNew = false): Promise<string> {
    const seen = onlyNew ? undefined : this.log.find((l) => re.test(l))
    if (seen) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.proc?.stdout?.off('data', check)
        reject(new Error(`Haraka never logged ${re}`))
      }, ms)
      const check = (b: Buffer) => {
        const line = b
          .toString('utf8')
          .split('\n')
          .find((l) => re.test(l))
        if (line) {
          clearTimeout(timer)
          this.proc?.stdout?.off('data', check)
          resolve(line)
        }
      }
      this.proc?.stdout?.on('data', check)
    })
  }

  /** Resolves once Haraka has logged `count` lines matching `re` in all (or rejects after `ms`). */
  waitForLogCount(re: RegExp, count: number, ms = 20_000): Promise<void> {
    if (this.logged(re).length >= count) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.proc?.stdout?.off('data', check)
        reject(new Error(`Haraka logged ${re} ${this.logged(re).length} times, not ${count}`))
      }, ms)
      // this.log is appended by an earlier 'data' listener, so it is up to date here
      const check = () => {
        if (this.logged(re).length < count) return
        clearTimeout(timer)
        this.proc?.stdout?.off('data', check)
        resolve()
      }
      this.proc?.stdout?.on('data', check)
    })
  }

  queued(uuid: string): Queued {
    const base = join(this.queueDir, uuid)
    const meta = JSON.parse(readFileSync(`${base}.json`, 'utf8')) as Omit<Queued, 'message'>
    return { ...meta, message: readFileSync(`${base}.eml`) }
  }

  queuedIds(): string[] {
    return readdirSync(this.queueDir)
      .filter((f) => f.endsWith('.eml'))
      .map((f) => f.slice(0, -4))
  }

  /** The node binary Haraka runs on (its /proc exe link). */
  executable(): string {
    return readlinkSync(`/proc/${this.proc?.pid}/exe`)
  }

  /** Haraka's resident memory now (VmRSS), in bytes. */
  rss(): number {
    return this.procStatus('VmRSS')
  }

  /** Haraka's peak resident memory so far (VmHWM), in bytes. */
  peakRss(): number {
    return this.procStatus('VmHWM')
  }

  private procStatus(field: 'VmRSS' | 'VmHWM'): number {
    const status = readFileSync(`/proc/${this.proc?.pid}/status`, 'utf8')
    const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]
    if (!kb) throw new Error(`no ${field} in /proc status`)
    return Number(kb) * 1024
  }

  async stop(): Promise<void> {
    const proc = this.proc
    if (proc && proc.exitCode === null) {
      proc.kill('SIGTERM')
      const killer = setTimeout(() => proc.kill('SIGKILL'), 5_000)
      await this.exited
      clearTimeout(killer)
    }
    rmSync(this.dir, { recursive: true, force: true })
  }
}
