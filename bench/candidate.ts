// One benchmark candidate in its own process (its own heap, CPU time and peak RSS), driven over IPC by
// bench/micro.ts: this plugin's dist, haraka-plugin-rspamd 1.6.1, or a bare client (the ceilings): an
// undici Pool, or node:http's request() with a keep-alive Agent.
//
//   fork('bench/candidate.ts', [candidate, port]) ; send Job ; receive JobResult

import { readFileSync, writeFileSync } from 'node:fs'
import * as http from 'node:http'
import { Writable } from 'node:stream'
import { join } from 'node:path'
import { Pool } from 'undici'
import type { FixtureConnection, FixturePlugin } from 'haraka-test-fixtures'
import { connectionWith, dataPost, loadPlugin, REPO } from '../test/support/harness'
import { benchMessage } from './messages'

/**
 * ceiling: a bare undici Pool; http: a bare node:http client; v2: this package (transport = auto);
 * v2-undici: this package with transport = undici; v1: 1.6.1
 */
export const CANDIDATES = ['ceiling', 'http', 'v2', 'v2-undici', 'v1'] as const
export type Candidate = (typeof CANDIDATES)[number]

export type Job =
  /** scan messages of `bytes` with `concurrency` scans in flight until both minimums are met */
  | { type: 'run'; bytes: number; concurrency: number; minMessages: number; minMs: number }
  /** peak RSS growth during one scan of a message of `bytes` (run it first in a fresh process) */
  | { type: 'rss'; bytes: number }
  /** CPU of only reading Haraka's message_stream (CRLF) into nowhere, `messages` times: no plugin, no network */
  | { type: 'drain'; bytes: number; messages: number }
  | { type: 'exit' }

export type JobResult =
  | { type: 'ready'; loaded: string }
  | { type: 'run'; messages: number; wallMs: number; cpuMs: number }
  | { type: 'rss'; growthBytes: number; baseBytes: number }
  | { type: 'drain'; cpuMs: number }
  | { type: 'error'; message: string }

/** Sends one message and resolves when the candidate has its verdict; throws when it has none. */
type Scanner = () => Promise<void>

// the sender facts every candidate sends: rspamd's request headers for one recipient
const SENDER = {
  ip: '203.0.113.45',
  host: 'unknown',
  helo: 'User',
  mailFrom: 'winner123456@gmail.com',
  rcpts: ['victim@example.net'],
}

// headers each plugin adds for the captured reply (`add header`, milter add_headers): removed after
// each scan so that a transaction scanned again looks the same (1.6.1 adds milter headers without
// removing earlier ones)
const ADDED = [
  'X-Rspamd-Score',
  'X-Rspamd-Bar',
  'X-Rspamd-Report',
  'X-Test-Added',
  'X-Test-Multi',
  'X-Test-Ordered',
]

function ini(port: number, extra = ''): string {
  // timeout: both plugins read it the same way; no [check] skip applies to the sender above
  return `host = 127.0.0.1\nport = ${port}\ntimeout = 60\n${extra}`
}

function kb(re: RegExp): number {
  const m = re.exec(readFileSync('/proc/self/status', 'utf8'))
  if (!m) throw new Error(`no ${re.source} in /proc/self/status`)
  return Number(m[1]) * 1024
}

class PluginCandidate {
  private readonly plugin: FixturePlugin
  private conns: { bytes: number; list: FixtureConnection[] } = { bytes: 0, list: [] }
  readonly loaded: string

  constructor(which: 'v2' | 'v2-undici' | 'v1', port: number) {
    // loadPlugin checks that the package loaded is the one asked for
    const packageDir = which === 'v1' ? join(REPO, 'node_modules', 'rspamd-v1') : REPO
    const extra = which === 'v2-undici' ? 'transport = undici\n' : ''
    this.plugin = loadPlugin(ini(port, extra), { timeout: 90, packageDir })
    const pkg = JSON.parse(readFileSync(String(this.plugin.plugin_path), 'utf8')) as {
      name: string
      version: string
    }
    // a package and its version, not where it lies on this machine (the reports are published)
    const from = which === 'v1' ? 'the devDependency rspamd-v1' : "this package's dist/"
    this.loaded = `${pkg.name} ${pkg.version} (${from}${extra ? `, ${extra.trim()}` : ''})`
  }

  /** `n` connections whose transactions hold a message of `bytes` (built once, scanned again and again). */
  private async connections(bytes: number, n: number): Promise<FixtureConnection[]> {
    if (this.conns.bytes !== bytes) this.conns = { bytes, list: [] }
    const message = benchMessage(bytes)
    while (this.conns.list.length < n) this.conns.list.push(await connectionWith(message, SENDER))
    return this.conns.list.slice(0, n)
  }

  async scanners(bytes: number, n: number): Promise<Scanner[]> {
    return (await this.connections(bytes, n)).map((conn) => () => this.scan(conn))
  }

  /** What every plugin pays before a byte reaches rspamd: Haraka's message_stream, read and dropped. */
  async drain(bytes: number, messages: number): Promise<number> {
    const [conn] = await this.connections(bytes, 1)
    const ms = conn.transaction?.message_stream
    if (!ms) throw new Error('no transaction')
    const once = () =>
      new Promise<void>((resolve) => {
        const sink = new Writable({
          write: (_chunk, _enc, cb) => cb(),
          writev: (_chunks, cb) => cb(),
        })
        sink.once('finish', () => resolve())
        ms.pipe(sink, { line_endings: '\r\n' })
      })
    for (let i = 0; i < Math.min(20, messages); i++) await once()
    const cpu = process.cpuUsage()
    for (let i = 0; i < messages; i++) await once()
    const used = process.cpuUsage(cpu)
    return (used.user + used.system) / 1000
  }

  private async scan(conn: FixtureConnection): Promise<void> {
    const txn = conn.transaction
    if (!txn) throw new Error('no transaction')
    const res = await dataPost(this.plugin, conn)
    // the captured reply is `add header`: anything else (an error accepts too) is a broken run
    const result = txn.results.get(this.plugin) ?? {}
    const errors = Array.isArray(result.err) ? result.err : []
    if (res.code !== undefined || errors.length > 0 || txn.header.get('X-Rspamd-Score') === '') {
      throw new Error(`scan failed: code ${res.code}, err ${JSON.stringify(errors)}`)
    }
    for (const name of ADDED) txn.remove_header(name)
  }
}

// rspamd's request headers for SENDER, as a bare client sends them
const BARE_HEADERS = {
  IP: SENDER.ip,
  Hostname: SENDER.host,
  Helo: SENDER.helo,
  From: SENDER.mailFrom,
  Rcpt: SENDER.rcpts[0],
  'Deliver-To': SENDER.rcpts[0],
  'Queue-Id': 'bench',
}

function checkReply(status: number | undefined, body: string): void {
  const json = JSON.parse(body) as { action?: unknown }
  if (status !== 200 || json.action !== 'add header') {
    throw new Error(`scan failed: HTTP ${status}, action ${String(json.action)}`)
  }
}

function version(pkg: string): string {
  const path = join(REPO, 'node_modules', pkg, 'package.json')
  return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version
}

class CeilingCandidate {
  private readonly pool: Pool
  private message: { bytes: number; data: Buffer } = { bytes: 0, data: Buffer.alloc(0) }
  readonly loaded: string

  constructor(port: number) {
    this.pool = new Pool(`http://127.0.0.1:${port}`, { connections: null })
    this.loaded = `undici ${version('undici')} Pool, message from a Buffer`
  }

  async scanners(bytes: number, n: number): Promise<Scanner[]> {
    if (this.message.bytes !== bytes) this.message = { bytes, data: benchMessage(bytes) }
    const data = this.message.data
    const scan = async () => {
      const res = await this.pool.request({
        method: 'POST',
        path: '/checkv2',
        headers: BARE_HEADERS,
        body: data,
      })
      checkReply(res.statusCode, await res.body.text())
    }
    return Array.from({ length: n }, () => scan)
  }
}

/** The other bare client: node:http's request() through a keep-alive Agent, the message from a Buffer. */
class HttpCandidate {
  private readonly agent = new http.Agent({ keepAlive: true })
  private message: { bytes: number; data: Buffer } = { bytes: 0, data: Buffer.alloc(0) }
  readonly loaded = `node:http ${process.version} request() with a keep-alive Agent, message from a Buffer`

  constructor(private readonly port: number) {}

  async scanners(bytes: number, n: number): Promise<Scanner[]> {
    if (this.message.bytes !== bytes) this.message = { bytes, data: benchMessage(bytes) }
    const data = this.message.data
    const options: http.RequestOptions = {
      host: '127.0.0.1',
      port: this.port,
      method: 'POST',
      path: '/checkv2',
      agent: this.agent,
      headers: { ...BARE_HEADERS, 'Content-Length': data.length },
    }
    const scan = () =>
      new Promise<void>((resolve, reject) => {
        const req = http.request(options, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('error', reject)
          res.on('end', () => {
            try {
              checkReply(res.statusCode, Buffer.concat(chunks).toString('utf8'))
              resolve()
            } catch (err) {
              reject(err instanceof Error ? err : new Error(String(err)))
            }
          })
        })
        req.on('error', reject)
        req.end(data)
      })
    return Array.from({ length: n }, () => scan)
  }
}

type AnyCandidate = PluginCandidate | CeilingCandidate | HttpCandidate

async function run(c: AnyCandidate, job: Extract<Job, { type: 'run' }>): Promise<JobResult> {
  const scanners = await c.scanners(job.bytes, job.concurrency)
  const start = performance.now()
  const cpu = process.cpuUsage()
  let started = 0
  const more = () => started < job.minMessages || performance.now() - start < job.minMs
  await Promise.all(
    scanners.map(async (scan) => {
      while (more()) {
        started++
        await scan()
      }
    }),
  )
  const used = process.cpuUsage(cpu)
  return {
    type: 'run',
    messages: started,
    wallMs: performance.now() - start,
    cpuMs: (used.user + used.system) / 1000,
  }
}

async function rss(c: AnyCandidate, bytes: number): Promise<JobResult> {
  const gc = globalThis.gc
  if (!gc) throw new Error('run with --expose-gc')
  // load every code path first, so the measured scan pays only for the message
  const [warm] = await c.scanners(5 * 1024, 1)
  await warm()
  const [scan] = await c.scanners(bytes, 1)
  gc()
  gc()
  const base = kb(/^VmRSS:\s+(\d+) kB/m)
  // Linux: reset the peak (VmHWM) to the current RSS (proc(5), clear_refs)
  writeFileSync('/proc/self/clear_refs', '5')
  await scan()
  return { type: 'rss', growthBytes: kb(/^VmHWM:\s+(\d+) kB/m) - base, baseBytes: base }
}

async function drain(c: AnyCandidate, bytes: number, messages: number): Promise<JobResult> {
  if (!(c instanceof PluginCandidate)) throw new Error('drain needs a plugin candidate (Haraka objects)')
  return { type: 'drain', cpuMs: await c.drain(bytes, messages) }
}

async function main(): Promise<void> {
  const [which, portArg] = process.argv.slice(2)
  const port = Number(portArg)
  if (!(CANDIDATES as readonly string[]).includes(which) || !Number.isInteger(port)) {
    throw new Error(`usage: candidate.ts ${CANDIDATES.join('|')} PORT`)
  }
  const send = process.send?.bind(process)
  if (!send) throw new Error('candidate.ts runs as a child process with an IPC channel')
  const c =
    which === 'ceiling'
      ? new CeilingCandidate(port)
      : which === 'http'
        ? new HttpCandidate(port)
        : new PluginCandidate(which as 'v2' | 'v2-undici' | 'v1', port)
  // the driver is gone (killed, or stopped by a signal): nothing more to do
  process.once('disconnect', () => process.exit(0))
  send({ type: 'ready', loaded: c.loaded } satisfies JobResult)
  process.on('message', (job: Job) => {
    // keep-alive sockets would keep the process up: exit explicitly
    if (job.type === 'exit') return process.exit(0)
    const work: Promise<JobResult> =
      job.type === 'run'
        ? run(c, job)
        : job.type === 'rss'
          ? rss(c, job.bytes)
          : drain(c, job.bytes, job.messages)
    work.then(
      (r) => send(r),
      (err: unknown) => send({ type: 'error', message: err instanceof Error ? err.message : String(err) }),
    )
  })
}

// micro.ts imports the types and CANDIDATES: run only as the forked entry point
if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(`candidate: ${err instanceof Error ? err.message : String(err)}`)
    process.exit(1)
  })
}
