// End to end: real Haraka (test/integration/haraka.ts) + real rspamd (bench/real.ts) over SMTP, per
// message size × concurrency: Haraka + this plugin, Haraka + its bundled 1.6.1, Haraka without scanning,
// and rspamd alone driven by a bare undici client (the ceiling). Besides msg/s and latency, the CPU each
// Haraka process (and rspamd) used per message, from /proc: the figure a busy shared machine hurts least.

import { Pool } from 'undici'
import { corpus } from '../test/support/harness'
import { prng } from '../test/support/prng'
import { benchMessage, SIZES } from './messages'
import { cpuMs, CLK_TCK, treeCpuMs } from './proc'
import {
  type BenchHaraka,
  expectVerdicts,
  proveScanning,
  RSPAMD_PORT,
  rspamdPid,
  rspamdStat,
  sendExpecting,
  startHaraka,
  stopHaraka,
} from './real'

export const E2E_VARIANTS = ['rspamd', 'v2', 'v1', 'none'] as const
export type E2eVariant = (typeof E2E_VARIANTS)[number]
export const E2E_SIZES = ['5 KB', '100 KB', '1 MB'] as const
export const E2E_CONCURRENCY = [1, 8, 32] as const

export interface E2eCell {
  variant: E2eVariant
  size: string
  concurrency: number
  messages: number
  wallMs: number
  /** ms from the start of the message data (SMTP: after DATA's 354) to the verdict, per message */
  latencies: number[]
  /** CPU ms (user + system) the Haraka process used during the turns; null for rspamd alone */
  harakaCpuMs: number | null
  /** CPU ms rspamd (main process and workers) used during the turns; null when its pid is unknown */
  rspamdCpuMs: number | null
  /** each Haraka of this variant on its own, in start order (empty for rspamd alone) */
  harakas: HarakaShare[]
}

/** What one of a variant's Harakas did in a cell's turns. */
export interface HarakaShare {
  messages: number
  wallMs: number
  cpuMs: number
}

/**
 * Open loop: SMTP sessions start at a set pace (Poisson arrivals, the same sequence for each Haraka)
 * whatever the replies, as mail arrives at an MTA; latency compared at the same offered load.
 */
export interface E2eOpenCell {
  variant: 'v2' | 'v1'
  size: string
  /** the offered load as a share of the slower scanning Haraka's best closed-loop msg/s */
  load: number
  /** messages per second offered */
  rate: number
  messages: number
  /** ms from the start of the message data to the reply, as in the closed loop */
  latencies: number[]
  harakaCpuMs: number
}

export interface E2eResults {
  loaded: Record<E2eVariant, string>
  cells: E2eCell[]
  open: E2eOpenCell[]
  /** clock ticks per second of /proc/<pid>/stat: the resolution of the CPU figures */
  clkTck: number
}

export interface E2ePlan {
  rounds: number
  /** per size label: one variant's turn lasts at least minMessages and minMs; rounds when not `rounds` */
  turn: Record<string, { minMessages: number; minMs: number; rounds?: number }>
  /** unmeasured messages per variant and size first (JIT, caches), at concurrency 4 */
  warmupMessages: number
  /**
   * Harakas per scanning plugin (default 2), started 2.x, 1.6.1, 1.6.1, 2.x, …: two processes of the same
   * Haraka and plugin differ by a few per cent on Node 20 and up to ~10 % on Node 24, more than the plugins
   * do at 5 KB, so each plugin's figures pool its Harakas
   */
  harakas?: number
  /** only these sizes and concurrencies (default: E2E_SIZES, E2E_CONCURRENCY) */
  sizes?: readonly string[]
  concurrency?: readonly number[]
  /** open-loop turns after each size's closed-loop cells: offered loads (shares of capacity), ms per turn */
  open?: { loads: readonly number[]; minMs: number; rounds: number }
}

/** Sends one message and resolves to its latency in ms; throws unless the verdict is the expected one. */
type Sender = (data: Buffer) => Promise<number>

function harakaSender(b: BenchHaraka): Sender {
  // `add header`: every Haraka accepts; that rspamd scanned it is checked against rspamd's counters
  return (data) => sendExpecting(b.haraka, data, 250, `Haraka (${b.variant})`)
}

const BARE_HEADERS = {
  IP: '127.0.0.1',
  Helo: 'client.example.org',
  From: 'alice@example.org',
  Rcpt: 'bob@example.net',
}

function rspamdSender(pool: Pool, action: string): Sender {
  return async (data) => {
    const start = performance.now()
    const res = await pool.request({ method: 'POST', path: '/checkv2', headers: BARE_HEADERS, body: data })
    const json = JSON.parse(await res.body.text()) as { action?: unknown }
    const ms = performance.now() - start
    if (res.statusCode !== 200 || json.action !== action) {
      throw new Error(`rspamd alone: HTTP ${res.statusCode}, action ${String(json.action)}, not ${action}`)
    }
    return ms
  }
}

interface Turn {
  messages: number
  wallMs: number
  latencies: number[]
}

async function load(
  send: Sender,
  concurrency: number,
  data: Buffer,
  minMessages: number,
  minMs: number,
): Promise<Turn> {
  const latencies: number[] = []
  let started = 0
  const start = performance.now()
  const more = () => started < minMessages || performance.now() - start < minMs
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (more()) {
        started++
        latencies.push(await send(data))
      }
    }),
  )
  return { messages: started, wallMs: performance.now() - start, latencies }
}

/** One process the load goes to: a Haraka (with its pid) or rspamd alone. */
interface Slot {
  variant: E2eVariant
  send: Sender
  pid: number | undefined
}

/** The scanning Harakas' start order: 2.x, 1.6.1, 1.6.1, 2.x, 2.x, 1.6.1, … (`n` of each). */
export function startOrder(n: number): ('v2' | 'v1')[] {
  return Array.from({ length: 2 * n }, (_, i) => (i % 4 === 0 || i % 4 === 3 ? 'v2' : 'v1'))
}

/**
 * Latency at the same offered load for both scanning plugins. In the closed loop at × 32 the faster
 * Haraka leaves more of its 32 clients waiting on rspamd at any moment, so its data phase can get
 * longer while its sessions get shorter; at a fixed pace that effect is gone.
 */
async function openTurns(
  o: NonNullable<E2ePlan['open']>,
  size: string,
  data: Buffer,
  cells: E2eCell[],
  slots: readonly Slot[],
  log: (s: string) => void,
): Promise<E2eOpenCell[]> {
  const best = (v: E2eVariant) =>
    Math.max(
      ...cells.filter((c) => c.variant === v && c.size === size).map((c) => (c.messages * 1000) / c.wallMs),
    )
  const capacity = Math.min(best('v2'), best('v1'))
  const scanning = slots.filter((s) => s.variant === 'v2' || s.variant === 'v1')
  const out: E2eOpenCell[] = []
  for (const load of o.loads) {
    const rate = capacity * load
    const sums = { v2: [] as Turn[], v1: [] as Turn[] }
    const cpu = { v2: 0, v1: 0 }
    for (let round = 0; round < o.rounds; round++) {
      // in start order, then backwards: each plugin's k-th Haraka gets the same arrival times
      const order = round % 2 === 0 ? scanning : [...scanning].reverse()
      for (const slot of order) {
        const v = slot.variant as 'v2' | 'v1'
        const k = scanning.filter((x) => x.variant === v).indexOf(slot)
        const pid = slot.pid as number
        const stat = await rspamdStat()
        const cpu0 = cpuMs(pid)
        const seed = 1000 * round + 100_000 * k + Math.round(load * 100)
        const r = await openLoad(slot.send, rate, data, o.minMs, seed)
        cpu[v] += cpuMs(pid) - cpu0
        await expectVerdicts(stat, r.messages, `${v}, ${size} at ${rate.toFixed(0)} msg/s`)
        sums[v].push(r)
      }
    }
    const cellOf = (v: 'v2' | 'v1'): E2eOpenCell => ({
      variant: v,
      size,
      load,
      rate,
      messages: sums[v].reduce((n, t) => n + t.messages, 0),
      latencies: sums[v].flatMap((t) => t.latencies),
      harakaCpuMs: cpu[v],
    })
    const both = [cellOf('v2'), cellOf('v1')]
    const p50 = (c: E2eOpenCell) => [...c.latencies].sort((a, b) => a - b)[Math.floor(c.latencies.length / 2)]
    log(
      `  ${size} offered ${rate.toFixed(1)} msg/s (${Math.round(load * 100)} %): ` +
        both.map((c) => `${c.variant} p50 ${p50(c).toFixed(1)} ms`).join(', '),
    )
    out.push(...both)
  }
  return out
}

/**
 * Starts one message every exponentially distributed interval (mean 1/rate s) for `ms`, each its own
 * SMTP session, and waits for all of them. `seed` fixes the arrival times.
 */
async function openLoad(send: Sender, rate: number, data: Buffer, ms: number, seed: number): Promise<Turn> {
  const random = prng(seed)
  const latencies: number[] = []
  const inFlight: Promise<void>[] = []
  const start = performance.now()
  for (let at = 0; at < ms; at += (-Math.log(1 - random()) * 1000) / rate) {
    const wait = start + at - performance.now()
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait))
    inFlight.push(send(data).then((ms) => void latencies.push(ms)))
  }
  await Promise.all(inFlight)
  return { messages: inFlight.length, wallMs: performance.now() - start, latencies }
}

export async function runE2e(plan: E2ePlan, log: (s: string) => void): Promise<E2eResults> {
  const harakas: BenchHaraka[] = []
  const pool = new Pool(`http://127.0.0.1:${RSPAMD_PORT}`, { connections: null })
  try {
    // one after the other, in a set order (a Haraka started first ran slower in some runs)
    for (const v of [...startOrder(plan.harakas ?? 2), 'none'] as const) harakas.push(await startHaraka(v))
    const ping = await pool.request({ method: 'GET', path: '/ping' })
    await ping.body.dump()
    const server = ping.headers.server
    const rspamdVersion = typeof server === 'string' ? server.replace(/^rspamd\//, '') : 'unknown'
    const first = (v: 'v2' | 'v1' | 'none') => harakas.find((b) => b.variant === v) as BenchHaraka
    const count = (v: 'v2' | 'v1') => harakas.filter((b) => b.variant === v).length
    const loaded: Record<E2eVariant, string> = {
      rspamd: `rspamd ${rspamdVersion} alone, undici Pool, message from a Buffer`,
      v2: `${count('v2')} × ${first('v2').loaded}`,
      v1: `${count('v1')} × ${first('v1').loaded}`,
      none: first('none').loaded,
    }
    // proof that scanning happens where it should: GTUBE is refused only by the scanning Harakas
    const gtube = corpus('gtube.eml')
    for (const b of harakas) await proveScanning(b, gtube)
    await rspamdSender(pool, 'reject')(gtube)
    log(
      `  GTUBE: 550 from each Haraka + 2.x and Haraka + 1.6.1, 250 from Haraka without scanning, reject from rspamd`,
    )

    const slots: Slot[] = [
      { variant: 'rspamd', send: rspamdSender(pool, 'add header'), pid: undefined },
      ...harakas.map((b) => ({ variant: b.variant, send: harakaSender(b), pid: b.haraka.pid })),
    ]
    const rspamdMain = rspamdPid()
    if (rspamdMain === undefined) log("  (rspamd's pid is unknown: no rspamd CPU figures)")

    const cells: E2eCell[] = []
    const open: E2eOpenCell[] = []
    const sizes: readonly string[] = plan.sizes ?? E2E_SIZES
    for (const size of SIZES.filter((s) => sizes.includes(s.label))) {
      const data = benchMessage(size.bytes)
      for (const slot of slots) await load(slot.send, 4, data, plan.warmupMessages, 0)
      const { rounds = plan.rounds, ...turn } = plan.turn[size.label]
      for (const concurrency of plan.concurrency ?? E2E_CONCURRENCY) {
        const sums = new Map<E2eVariant, E2eCell>()
        const shares = new Map<Slot, HarakaShare>()
        for (let round = 0; round < rounds; round++) {
          // A B C D …, then B C D … A: machine noise and turn order hit every process alike
          const order = slots.map((_, i) => slots[(i + round) % slots.length] as Slot)
          for (const slot of order) {
            const { variant: v, pid } = slot
            const stat = await rspamdStat()
            const cpu0 = pid === undefined ? 0 : cpuMs(pid)
            const rspamd0 = rspamdMain === undefined ? NaN : treeCpuMs(rspamdMain)
            const r = await load(slot.send, concurrency, data, turn.minMessages, turn.minMs)
            const harakaCpu = pid === undefined ? null : cpuMs(pid) - cpu0
            const rspamdCpu = rspamdMain === undefined ? null : treeCpuMs(rspamdMain) - rspamd0
            await expectVerdicts(stat, v === 'none' ? 0 : r.messages, `${v}, ${size.label} × ${concurrency}`)
            const s = sums.get(v) ?? {
              variant: v,
              size: size.label,
              concurrency,
              messages: 0,
              wallMs: 0,
              latencies: [],
              harakaCpuMs: harakaCpu === null ? null : 0,
              rspamdCpuMs: rspamdCpu === null ? null : 0,
              harakas: [],
            }
            s.messages += r.messages
            s.wallMs += r.wallMs
            s.latencies.push(...r.latencies)
            if (s.harakaCpuMs !== null && harakaCpu !== null) s.harakaCpuMs += harakaCpu
            if (s.rspamdCpuMs !== null && rspamdCpu !== null) s.rspamdCpuMs += rspamdCpu
            sums.set(v, s)
            if (harakaCpu !== null) {
              const share = shares.get(slot) ?? { messages: 0, wallMs: 0, cpuMs: 0 }
              share.messages += r.messages
              share.wallMs += r.wallMs
              share.cpuMs += harakaCpu
              shares.set(slot, share)
            }
          }
        }
        for (const [slot, share] of shares) sums.get(slot.variant)?.harakas.push(share)
        log(
          `  ${size.label} × ${concurrency}: ` +
            [...sums.values()]
              .map((s) => {
                const each =
                  s.harakas.length > 1
                    ? `; ${s.harakas.map((h) => (h.cpuMs / h.messages).toFixed(2)).join(', ')}`
                    : ''
                const cpu =
                  s.harakaCpuMs === null ? '' : ` (${(s.harakaCpuMs / s.messages).toFixed(2)} ms CPU${each})`
                return `${s.variant} ${((s.messages * 1000) / s.wallMs).toFixed(1)}/s${cpu}`
              })
              .join(', '),
        )
        cells.push(...sums.values())
      }
      if (plan.open) open.push(...(await openTurns(plan.open, size.label, data, cells, slots, log)))
    }
    return { loaded, cells, open, clkTck: CLK_TCK }
  } finally {
    await Promise.all(harakas.map((b) => stopHaraka(b)))
    await pool.close()
  }
}
