// The real servers of bench/e2e.ts and bench/soak.ts: rspamd (scripts/rspamd.sh, the offline config of
// test/rspamd-server), started when it is not running and stopped only by whoever started it; real Harakas
// with this package, with Haraka's bundled 1.6.1 or without scanning, each checked for the plugin it
// loaded; and rspamd's own counters (its controller's /stat), which prove each scan happened.

import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { Haraka, type HarakaOptions } from '../test/integration/haraka'
import { sendMail } from '../test/integration/smtp'
import { REPO } from '../test/support/harness'

const run = promisify(execFile)
const SCRIPT = join(REPO, 'scripts', 'rspamd.sh')
export const RSPAMD_PORT = Number(process.env.RSPAMD_PORT ?? 11343)
export const RSPAMD_CONTROLLER_PORT = Number(process.env.RSPAMD_CONTROLLER_PORT ?? 11344)
const STATE_DIR = process.env.RSPAMD_STATE_DIR ?? join(REPO, '.tmp', 'rspamd')

async function rspamdScript(cmd: 'start' | 'stop' | 'status'): Promise<boolean> {
  const env = {
    ...process.env,
    RSPAMD_PORT: String(RSPAMD_PORT),
    RSPAMD_CONTROLLER_PORT: String(RSPAMD_CONTROLLER_PORT),
  }
  return run('bash', [SCRIPT, cmd], { env, timeout: 600_000 }).then(
    () => true,
    (err: unknown) => {
      if (cmd === 'status') return false
      throw err
    },
  )
}

/** rspamd was not running and this process started it: stop it at the end (and only then) */
let weStarted = false

export async function ensureRspamd(log: (s: string) => void): Promise<void> {
  if (await rspamdScript('status')) return
  log('starting rspamd (scripts/rspamd.sh) …')
  await rspamdScript('start')
  weStarted = true
}

/** Stops rspamd if this process started it. */
export async function stopRspamd(): Promise<void> {
  if (!weStarted) return
  weStarted = false
  await rspamdScript('stop')
}

/** rspamd's main process (its workers are its children), when scripts/rspamd.sh started it here. */
export function rspamdPid(): number | undefined {
  const file = join(STATE_DIR, 'rspamd.pid')
  if (!existsSync(file)) return undefined
  const pid = Number(readFileSync(file, 'utf8').trim())
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('rspamd') ? pid : undefined
  } catch {
    return undefined
  }
}

export interface RspamdStat {
  scanned: number
  actions: Record<string, number>
}

/** rspamd's counters since it started: messages scanned and verdicts by action. */
export async function rspamdStat(): Promise<RspamdStat> {
  const res = await fetch(`http://127.0.0.1:${RSPAMD_CONTROLLER_PORT}/stat`)
  if (!res.ok) throw new Error(`rspamd controller /stat: HTTP ${res.status}`)
  const json = (await res.json()) as { scanned?: unknown; actions?: unknown; version?: unknown }
  if (typeof json.scanned !== 'number' || typeof json.actions !== 'object' || json.actions === null) {
    throw new Error('rspamd controller /stat: no scanned or actions')
  }
  return { scanned: json.scanned, actions: json.actions as Record<string, number> }
}

/**
 * Waits until rspamd has counted `want` more `add header` verdicts than in `before` (it counts after
 * its reply is on the way), and fails when it counts another number: a scan that did not happen, or
 * one that ended with another verdict, is a broken run, not a fast one.
 */
export async function expectVerdicts(before: RspamdStat, want: number, what: string): Promise<void> {
  const deadline = performance.now() + 5000
  for (;;) {
    const now = await rspamdStat()
    const scanned = now.scanned - before.scanned
    const added = (now.actions['add header'] ?? 0) - (before.actions['add header'] ?? 0)
    if (scanned === want && added === want) return
    if (scanned > want || performance.now() > deadline) {
      throw new Error(
        `${what}: ${want} messages should have been scanned to "add header"; rspamd counted ` +
          `${scanned} scans, ${added} "add header"`,
      )
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function version(pkgJson: string): string {
  return (JSON.parse(readFileSync(pkgJson, 'utf8')) as { version: string }).version
}

export const HARAKA_VERSION = version(join(REPO, 'node_modules', 'Haraka', 'package.json'))

/** The haraka-plugin-rspamd Haraka finds when the Haraka directory has none: the path search of its plugins.js. */
function bundledVersion(): string {
  const prefix = join(REPO, 'node_modules', 'Haraka')
  for (const p of [
    join(prefix, 'node_modules', 'haraka-plugin-rspamd', 'package.json'),
    join(dirname(prefix), 'haraka-plugin-rspamd', 'package.json'),
  ]) {
    if (existsSync(p)) return version(p)
  }
  throw new Error('Haraka bundles no haraka-plugin-rspamd')
}

/** v2: this package installed into the Haraka directory; v1: Haraka's bundled 1.6.x; none: no rspamd plugin */
export type HarakaVariant = 'v2' | 'v1' | 'none'

export interface BenchHaraka {
  variant: HarakaVariant
  haraka: Haraka
  /** what it runs, by package name and version (no paths: the reports are published) */
  loaded: string
}

/** every Haraka started here and not yet stopped: stopHarakas() stops them on a signal */
const running = new Set<Haraka>()

/** Stops a Haraka started by startHaraka() (and removes its directory). */
export async function stopHaraka(b: BenchHaraka): Promise<void> {
  running.delete(b.haraka)
  await b.haraka.stop()
}

/** Stops every Haraka started here that is still running (Ctrl-C, or a run in the background killed). */
export async function stopHarakas(): Promise<void> {
  const all = [...running]
  running.clear()
  await Promise.all(all.map((h) => h.stop()))
}

/**
 * On Ctrl-C or SIGTERM: `stop` (by default every Haraka started here, then rspamd), then exit 130.
 * The candidate processes of bench/micro.ts get the signal from a terminal and exit with their IPC
 * channel; the Harakas and rspamd are stopped here, also for a run in the background.
 */
export function stopOnSignal(
  stop: () => Promise<void> = () => stopHarakas().then(() => stopRspamd()),
  says = 'stopping',
): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      console.error(`\n${sig}: ${says}`)
      void stop().finally(() => process.exit(130))
    })
  }
}

/**
 * Starts a Haraka of `variant` and checks that it loaded the plugin it should. `over`: other Haraka
 * options (bench/overload.ts: its own rspamd.ini, the test queue, cluster mode).
 */
export async function startHaraka(
  variant: HarakaVariant,
  over: Partial<HarakaOptions> = {},
): Promise<BenchHaraka> {
  // host as shipped (localhost, the default of 1.6.1 and 2.x alike), as an operator has it; the load
  // comes from 127.0.0.1, which [check] skips by default
  const ini = `port = ${RSPAMD_PORT}\ntimeout = 20\n[check]\nlocal_ip = true\nprivate_ip = true\n`
  const common = { rspamdIni: ini, discardQueue: true, pluginTimeout: 30, ...over }
  const haraka = await Haraka.start(
    variant === 'v2'
      ? common
      : variant === 'v1'
        ? { ...common, installPlugin: false }
        : { ...common, installPlugin: false, scan: false },
  )
  running.add(haraka)
  try {
    let loaded: string
    if (variant === 'v2') {
      const line = await haraka.waitForLog(/haraka-plugin-rspamd \S+ from /)
      // the copy npm installed into this Haraka directory, not the repo's own dist
      if (
        !/haraka-plugin-rspamd 2\.\d+\.\d+ from /.test(line) ||
        !line.includes(join(haraka.dir, 'node_modules'))
      ) {
        throw new Error(`Haraka + this plugin loaded something else: ${line}`)
      }
      const v = /haraka-plugin-rspamd (\S+) from /.exec(line)?.[1] ?? '?'
      loaded = `Haraka ${HARAKA_VERSION} + haraka-plugin-rspamd ${v} (this package, npm pack'ed and installed into the Haraka directory)`
    } else if (variant === 'v1') {
      if (haraka.logged(/haraka-plugin-rspamd 2\./).length > 0) throw new Error('Haraka + 1.6.1 loaded 2.x')
      loaded = `Haraka ${HARAKA_VERSION} + haraka-plugin-rspamd ${bundledVersion()} (bundled with Haraka)`
    } else {
      loaded = `Haraka ${HARAKA_VERSION}, no rspamd plugin`
    }
    return { variant, haraka, loaded }
  } catch (err) {
    running.delete(haraka)
    await haraka.stop()
    throw err
  }
}

/** Sends one message over SMTP; fails unless Haraka answers `expected`. Resolves to ms from the start of the message data (after 354) to the reply. */
export async function sendExpecting(
  h: Haraka,
  data: Buffer,
  expected: number,
  what: string,
): Promise<number> {
  const res = await sendMail({ port: h.port, from: 'alice@example.org', to: ['bob@example.net'], data })
  if (res.final.code !== expected) {
    throw new Error(`${what}: expected ${expected}, got ${res.final.code} ${res.final.text}`)
  }
  return res.dataMs
}

/** GTUBE is refused only when rspamd was asked: 550 where scanning is on, 250 where it is off. */
export async function proveScanning(b: BenchHaraka, gtube: Buffer): Promise<void> {
  await sendExpecting(
    b.haraka,
    gtube,
    b.variant === 'none' ? 250 : 550,
    `GTUBE through Haraka (${b.variant})`,
  )
}
