// npm run bench:overload: what each plugin makes of an rspamd that cannot keep up (issue 26). Real
// Harakas (2.x: this package installed from its tarball; 1.6.1: the copy bundled with Haraka, as in
// bench/e2e.ts), `timeout = 2`, the test queue; an open-loop SMTP load (Poisson arrivals, at most 60
// sessions at once: an arrival that finds 60 waits for one, and is dropped as "not sent" if its phase
// ends first) of 5 KB messages.
//
// 1. The fake rspamd of test/support/overload-rspamd.ts (25 scans/s) in both service models, fifo and
//    ps, at 2× and at 4× its capacity, the 4× phase followed at once by a recovery phase at 0.5×.
// 2. The real rspamd (scripts/rspamd.sh) with every message burning 40 ms of a worker's CPU
//    (X-Test-Burn, test/rspamd-server/rspamd.local.lua), at 2× and 4× its measured capacity.
// 3. The fake (fifo) at 2× through Haraka's cluster mode (nodes=2), and through two Harakas sharing it.
//
// Per phase: the messages whose queued copy carries the verdict (the fake's X-Overload-Scan header,
// the real rspamd's milter header X-Test-Added), goodput = those ÷ (run time × capacity), the scans
// rspamd performed for nobody (the fake counts replies written after the client had gone; for the
// real rspamd, its /stat scans minus the verdicts delivered), every SMTP answer's time (final dot →
// reply) and the p99 of the answers of unscanned messages. Writes bench/results/overload.md and .json.
// BENCH_QUICK=1: short phases (a smoke run, rough figures). OVERLOAD_ONLY=fake,real,cluster: sections.

import { execFileSync } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { Pool } from 'undici'
import type { Haraka } from '../test/integration/haraka'
import { queuedId, sendMail } from '../test/integration/smtp'
import { REPO } from '../test/support/harness'
import {
  OverloadRspamd,
  SCAN_HEADER,
  type OverloadCounts,
  type ServiceModel,
} from '../test/support/overload-rspamd'
import { prng } from '../test/support/prng'
import { benchMessage } from './messages'
import { cpuModel } from './proc'
import {
  type BenchHaraka,
  ensureRspamd,
  RSPAMD_PORT,
  rspamdPid,
  rspamdStat,
  startHaraka,
  stopHaraka,
  stopOnSignal,
  stopRspamd,
} from './real'
import { table } from './report'

const QUICK = process.env.BENCH_QUICK === '1'
const ONLY = new Set((process.env.OVERLOAD_ONLY ?? 'fake,real,cluster').split(',').map((s) => s.trim()))
/** ms of arrivals per overload phase, and of the recovery phase */
const PHASE_MS = QUICK ? 4000 : 15_000
const RECOVERY_MS = QUICK ? 4000 : 15_000
const CAPACITY = 25
const TIMEOUT_S = 2
const MAX_SESSIONS = 60
const BURN_MS = 40
const SIZE = 5 * 1024

type Variant = 'v2' | 'v1'
const NAMES: Record<Variant, string> = { v2: '2.x', v1: '1.6.1' }

/** One message of a phase: when it arrived, and what became of it. */
interface Outcome {
  /** ms after the phase start */
  arrivedMs: number
  sent: boolean
  code: number
  /** final dot → reply, ms */
  answerMs: number
  /** the queued copy carries the verdict */
  scanned: boolean
  /** the results record says shed (2.x with the limiter) */
  shed: boolean
  error?: string
}

export interface Phase {
  section: 'fake' | 'real' | 'cluster'
  setup: string
  model: string
  load: number
  variant: Variant
  /** scans per second the server can finish */
  capacity: number
  offered: number
  sent: number
  notSent: number
  codes: Record<string, number>
  errors: number
  scanned: number
  unscanned: number
  shed: number
  wallMs: number
  goodput: number
  performed: number
  wasted: number
  maxAnswerMs: number
  p99UnscannedMs: number
  /** recovery phases: ms after the phase start of the last unscanned arrival (0: none) */
  lastUnscannedMs?: number
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

/** The queued copy of a message carries `header` (the verdict's mark). */
function queuedWith(h: Haraka, id: string, header: string): { scanned: boolean; shed: boolean } {
  const q = h.queued(id)
  const head = q.message.subarray(0, Math.max(0, q.message.indexOf('\r\n\r\n'))).toString('latin1')
  const scanned = new RegExp(`^${header}:`, 'im').test(head)
  return { scanned, shed: q.rspamd?.shed === true }
}

/**
 * Open loop: arrivals at `rate` per second (Poisson, fixed by `seed`) for `ms`, spread over `targets` in
 * turn, at most MAX_SESSIONS sessions at once; resolves once every session sent has its answer.
 */
async function openLoop(
  targets: Haraka[],
  rate: number,
  ms: number,
  data: Buffer,
  seed: number,
  header: string,
): Promise<{ outcomes: Outcome[]; wallMs: number }> {
  const random = prng(seed)
  const outcomes: Outcome[] = []
  const sessions: Promise<void>[] = []
  let open = 0
  const waiting: (() => void)[] = []
  // a session that ends hands its place to the first arrival waiting, else frees it
  const acquire = async () => {
    if (open < MAX_SESSIONS) open++
    else await new Promise<void>((resolve) => waiting.push(resolve))
  }
  const release = () => {
    const next = waiting.shift()
    if (next) next()
    else open--
  }
  const start = performance.now()
  const end = start + ms
  let n = 0
  const one = async (o: Outcome, h: Haraka) => {
    await acquire()
    if (performance.now() > end) return release() // its phase is over: not sent
    o.sent = true
    try {
      const res = await sendMail({ port: h.port, from: 'alice@example.org', to: ['bob@example.net'], data })
      o.code = res.final.code
      o.answerMs = res.dataMs
      const id = queuedId(res.final)
      if (res.final.code === 250 && id) Object.assign(o, queuedWith(h, id, header))
    } catch (err) {
      o.error = err instanceof Error ? err.message : String(err)
    } finally {
      release()
    }
  }
  for (let at = 0; at < ms; at += (-Math.log(1 - random()) * 1000) / rate) {
    const wait = start + at - performance.now()
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait))
    const o: Outcome = { arrivedMs: at, sent: false, code: 0, answerMs: NaN, scanned: false, shed: false }
    outcomes.push(o)
    sessions.push(one(o, targets[n++ % targets.length]))
  }
  await Promise.all(sessions)
  return { outcomes, wallMs: performance.now() - start }
}

function summarise(
  base: Omit<
    Phase,
    | 'offered'
    | 'sent'
    | 'notSent'
    | 'codes'
    | 'errors'
    | 'scanned'
    | 'unscanned'
    | 'shed'
    | 'wallMs'
    | 'goodput'
    | 'maxAnswerMs'
    | 'p99UnscannedMs'
  >,
  r: { outcomes: Outcome[]; wallMs: number },
): Phase {
  const sent = r.outcomes.filter((o) => o.sent)
  const codes: Record<string, number> = {}
  for (const o of sent) if (!o.error) codes[o.code] = (codes[o.code] ?? 0) + 1
  const scanned = sent.filter((o) => o.scanned).length
  const answered = sent.filter((o) => !o.error)
  const unscanned = answered.filter((o) => !o.scanned)
  return {
    ...base,
    offered: r.outcomes.length,
    sent: sent.length,
    notSent: r.outcomes.length - sent.length,
    codes,
    errors: sent.length - answered.length,
    scanned,
    unscanned: unscanned.length,
    shed: sent.filter((o) => o.shed).length,
    wallMs: r.wallMs,
    goodput: scanned / ((r.wallMs / 1000) * base.capacity),
    maxAnswerMs: Math.max(0, ...answered.map((o) => o.answerMs)),
    p99UnscannedMs: percentile(
      unscanned.map((o) => o.answerMs),
      99,
    ),
  }
}

const diff = (a: OverloadCounts, b: OverloadCounts) => ({
  performed: b.performed - a.performed,
  wasted: b.wasted - a.wasted,
})

const fakeIni = (port: number) =>
  `host = 127.0.0.1\nport = ${port}\ntimeout = ${TIMEOUT_S}\n[check]\nlocal_ip = true\nprivate_ip = true\n`

async function withHarakas<T>(
  specs: { variant: Variant; ini: string; nodes?: number }[],
  fn: (hs: BenchHaraka[]) => Promise<T>,
): Promise<T> {
  const hs: BenchHaraka[] = []
  try {
    // the test queue (not the discarding one): what was queued tells whether the verdict reached it
    for (const s of specs) {
      hs.push(await startHaraka(s.variant, { rspamdIni: s.ini, discardQueue: false, nodes: s.nodes ?? 0 }))
    }
    return await fn(hs)
  } finally {
    await Promise.all(hs.map((h) => stopHaraka(h)))
  }
}

/** The fake in both models: 2×, then 4× followed at once by the recovery at 0.5×. */
async function fakeSection(log: (s: string) => void, out: Phase[]): Promise<void> {
  const fake = await OverloadRspamd.start('fifo', CAPACITY)
  const data = benchMessage(SIZE)
  try {
    await withHarakas(
      (['v2', 'v1'] as const).map((variant) => ({ variant, ini: fakeIni(fake.port) })),
      async (hs) => {
        for (const model of ['fifo', 'ps'] as ServiceModel[]) {
          fake.configure(model, CAPACITY)
          for (const b of hs) {
            const v = b.variant as Variant
            const setup = `fake rspamd, ${model === 'fifo' ? 'one at a time (FIFO)' : 'processor sharing'}`
            const base = { section: 'fake' as const, setup, model, variant: v, capacity: CAPACITY }
            let c0 = fake.snapshot()
            const r2 = await openLoop([b.haraka], 2 * CAPACITY, PHASE_MS, data, 2, SCAN_HEADER)
            await fake.drained(60_000)
            let c1 = fake.snapshot()
            out.push(summarise({ ...base, load: 2, ...diff(c0, c1) }, r2))
            log(line(out[out.length - 1]))
            c0 = fake.snapshot()
            const r4 = await openLoop([b.haraka], 4 * CAPACITY, PHASE_MS, data, 4, SCAN_HEADER)
            c1 = fake.snapshot()
            out.push(summarise({ ...base, load: 4, ...diff(c0, c1) }, r4))
            log(line(out[out.length - 1]))
            // recovery: at once, at half the capacity
            const rr = await openLoop([b.haraka], 0.5 * CAPACITY, RECOVERY_MS, data, 5, SCAN_HEADER)
            await fake.drained(60_000)
            const c2 = fake.snapshot()
            const rec = summarise({ ...base, load: 0.5, ...diff(c1, c2) }, rr)
            const unscanned = rr.outcomes.filter((o) => o.sent && !o.scanned)
            rec.lastUnscannedMs = Math.max(0, ...unscanned.map((o) => o.arrivedMs))
            out.push(rec)
            log(line(rec))
          }
        }
      },
    )
  } finally {
    await fake.close()
  }
}

/** The fake (fifo) at 2×: Haraka's cluster mode with two workers, then two Harakas sharing the fake. */
async function clusterSection(log: (s: string) => void, out: Phase[]): Promise<void> {
  const fake = await OverloadRspamd.start('fifo', CAPACITY)
  const data = benchMessage(SIZE)
  try {
    for (const v of ['v2', 'v1'] as const) {
      const runs: { setup: string; specs: { variant: Variant; ini: string; nodes?: number }[] }[] = [
        { setup: 'fake (FIFO), Haraka nodes=2', specs: [{ variant: v, ini: fakeIni(fake.port), nodes: 2 }] },
        {
          setup: 'fake (FIFO), two Harakas sharing it',
          specs: [
            { variant: v, ini: fakeIni(fake.port) },
            { variant: v, ini: fakeIni(fake.port) },
          ],
        },
      ]
      for (const run of runs) {
        await withHarakas(run.specs, async (hs) => {
          const c0 = fake.snapshot()
          const r = await openLoop(
            hs.map((b) => b.haraka),
            2 * CAPACITY,
            PHASE_MS,
            data,
            2,
            SCAN_HEADER,
          )
          await fake.drained(60_000)
          const base = { section: 'cluster' as const, setup: run.setup, model: 'fifo', variant: v }
          out.push(summarise({ ...base, capacity: CAPACITY, load: 2, ...diff(c0, fake.snapshot()) }, r))
          log(line(out[out.length - 1]))
        })
      }
    }
  } finally {
    await fake.close()
  }
}

/** Normal workers of the rspamd of scripts/rspamd.sh (children of its main process titled normal). */
function normalWorkers(): number {
  const main = rspamdPid()
  if (main === undefined) return NaN
  let n = 0
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid !== main) continue
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes('normal')) n++
    } catch {
      // gone meanwhile
    }
  }
  return n
}

/** Scans per second rspamd finishes of `data` with 4 in flight, from a bare client, for `ms`. */
async function measureCapacity(data: Buffer, ms: number): Promise<number> {
  const pool = new Pool(`http://127.0.0.1:${RSPAMD_PORT}`, { connections: null })
  try {
    let done = 0
    const start = performance.now()
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (performance.now() - start < ms) {
          const res = await pool.request({ method: 'POST', path: '/checkv2', body: data })
          await res.body.dump()
          done++
        }
      }),
    )
    return (done * 1000) / (performance.now() - start)
  } finally {
    await pool.close()
  }
}

/** Waits until rspamd's scan counter has not moved for a second (its backlog is done), at most `ms`. */
async function rspamdQuiet(ms: number): Promise<void> {
  const deadline = performance.now() + ms
  let last = (await rspamdStat()).scanned
  while (performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const now = (await rspamdStat()).scanned
    if (now === last) return
    last = now
  }
}

async function realSection(log: (s: string) => void, out: Phase[], notes: string[]): Promise<void> {
  await ensureRspamd(log)
  const data = Buffer.concat([Buffer.from(`X-Test-Burn: ${BURN_MS}\r\n`), benchMessage(SIZE)])
  const capacity = await measureCapacity(data, QUICK ? 2000 : 4000)
  const workers = normalWorkers()
  notes.push(
    `real rspamd: ${Number.isNaN(workers) ? 'an unknown number of' : workers} normal worker(s), ` +
      `X-Test-Burn: ${BURN_MS} on every message, measured capacity ${capacity.toFixed(1)} scans/s ` +
      '(a bare client, 4 in flight, before the phases)',
  )
  log(`  ${notes[notes.length - 1]}`)
  // an rspamd started before the burn rule was added (an older offline config) scans at full speed:
  // its "overload" would measure nothing
  const most = (1000 / BURN_MS) * (Number.isNaN(workers) ? 2 : workers) * 2
  if (capacity > most) {
    throw new Error(
      `rspamd scans ${capacity.toFixed(0)}/s with X-Test-Burn: ${BURN_MS} (at most ~${most.toFixed(0)} if the rule ` +
        'ran): it runs an older offline config; stop it (scripts/rspamd.sh stop) and run the bench again',
    )
  }
  const ini = `host = 127.0.0.1\nport = ${RSPAMD_PORT}\ntimeout = ${TIMEOUT_S}\n[check]\nlocal_ip = true\nprivate_ip = true\n`
  await withHarakas(
    (['v2', 'v1'] as const).map((variant) => ({ variant, ini })),
    async (hs) => {
      for (const b of hs) {
        const v = b.variant as Variant
        for (const load of [2, 4]) {
          await rspamdQuiet(30_000)
          const s0 = await rspamdStat()
          const r = await openLoop([b.haraka], load * capacity, PHASE_MS, data, load, 'X-Test-Added')
          await rspamdQuiet(30_000)
          const s1 = await rspamdStat()
          const base = {
            section: 'real' as const,
            setup: `real rspamd, ${BURN_MS} ms of CPU a scan`,
            model: 'rspamd',
            variant: v,
            capacity,
            load,
          }
          const phase = summarise({ ...base, performed: s1.scanned - s0.scanned, wasted: 0 }, r)
          phase.wasted = Math.max(0, phase.performed - phase.scanned)
          out.push(phase)
          log(line(phase))
        }
      }
    },
  )
}

const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '–')
const s1 = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(1) : '–')
const ms0 = (ms: number) => (Number.isFinite(ms) ? ms.toFixed(0) : '–')
const wastedShare = (p: Phase) => (p.performed > 0 ? p.wasted / p.performed : NaN)
const pct = (n: number) => (Number.isFinite(n) ? `${(n * 100).toFixed(0)} %` : '–')

function line(p: Phase): string {
  return (
    `  ${p.setup}, ${p.load}×, ${NAMES[p.variant]}: ${p.scanned}/${p.sent} scanned, goodput ${f2(p.goodput)}, ` +
    `wasted ${p.wasted}/${p.performed}, max answer ${s1(p.maxAnswerMs)} s, p99 unscanned ${ms0(p.p99UnscannedMs)} ms`
  )
}

function codes(p: Phase): string {
  const list = Object.entries(p.codes).map(([c, n]) => `${n}×${c}`)
  if (p.errors > 0) list.push(`${p.errors} errors`)
  return list.join(', ')
}

function render(phases: Phase[], notes: string[], machine: string): string {
  const out: string[] = []
  out.push('# Overload: haraka-plugin-rspamd 2 vs 1.6.1 when rspamd cannot keep up')
  out.push('')
  out.push(machine)
  out.push('')
  out.push(
    `Real Harakas, \`timeout = ${TIMEOUT_S}\`, 5 KB messages, open-loop arrivals (Poisson) at a multiple ` +
      `of the server's capacity, at most ${MAX_SESSIONS} SMTP sessions at once (an arrival that finds them ` +
      `all busy waits, and is "not sent" if its phase ends first); overload phases of ${PHASE_MS / 1000} s, ` +
      `the recovery phase ${RECOVERY_MS / 1000} s at 0.5× right after the 4× phase. ` +
      'goodput = messages whose queued copy carries the verdict ÷ (run time × capacity); wasted = scans ' +
      'the server performed whose reply nobody read; answers in s from the final dot; "p99 unscanned" = ' +
      'the answers of messages that went through without a verdict (shed, or timed out).',
  )
  for (const n of notes) out.push(`\n- ${n}`)
  out.push('')
  out.push(
    'Targets (issue 26): goodput ≥ 0.8, wasted ≤ 10 %, every answer ≤ timeout + 1 s = 3 s, ' +
      'p99 of the unscanned answers < 100 ms.',
  )
  out.push('')
  const rows = phases.filter((p) => p.load !== 0.5)
  out.push(
    table(
      [
        'setup',
        'load',
        'plugin',
        'offered / sent',
        'answers',
        'scanned',
        'shed',
        'goodput',
        'wasted',
        'max answer s',
        'p99 unscanned ms',
        'targets',
      ],
      rows.map((p) => {
        const met = [
          p.goodput >= 0.8 ? null : 'goodput',
          wastedShare(p) <= 0.1 ? null : 'wasted',
          p.maxAnswerMs <= (TIMEOUT_S + 1) * 1000 ? null : 'max answer',
          !(p.p99UnscannedMs >= 100) ? null : 'p99 unscanned',
        ].filter(Boolean)
        return [
          p.setup,
          `${p.load}× (${(p.load * p.capacity).toFixed(0)}/s)`,
          NAMES[p.variant],
          `${p.offered} / ${p.sent}`,
          codes(p),
          `${p.scanned}`,
          `${p.shed}`,
          f2(p.goodput),
          `${p.wasted} of ${p.performed} (${pct(wastedShare(p))})`,
          s1(p.maxAnswerMs),
          ms0(p.p99UnscannedMs),
          met.length === 0 ? 'met' : `missed: ${met.join(', ')}`,
        ]
      }),
    ),
  )
  const rec = phases.filter((p) => p.load === 0.5)
  if (rec.length > 0) {
    out.push('')
    out.push(
      `Recovery: ${RECOVERY_MS / 1000} s at 0.5× right after the 4× phase (its backlog still in rspamd). ` +
        '"all scanned after" = arrival time of the last message of the phase that went through unscanned.',
    )
    out.push('')
    out.push(
      table(
        ['setup', 'plugin', 'sent', 'scanned', 'unscanned', 'all scanned after s', 'wasted'],
        rec.map((p) => [
          p.setup,
          NAMES[p.variant],
          String(p.sent),
          String(p.scanned),
          String(p.unscanned),
          s1(p.lastUnscannedMs ?? NaN),
          `${p.wasted} of ${p.performed}`,
        ]),
      ),
    )
  }
  return out.join('\n') + '\n'
}

/** The commit 2.x was built from (the reports say which code they measured), `+` when the tree differs. */
function commit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      cwd: REPO,
      encoding: 'utf8',
    })
    return dirty.trim() === '' ? head : `${head}+`
  } catch {
    return 'unknown'
  }
}

async function main(): Promise<void> {
  const started = performance.now()
  const log = (s: string) => console.log(s)
  const phases: Phase[] = []
  const notes: string[] = []
  try {
    if (ONLY.has('fake')) {
      log(`fake rspamd, ${CAPACITY} scans/s${QUICK ? ' (quick)' : ''} …`)
      await fakeSection(log, phases)
    }
    if (ONLY.has('cluster')) {
      log('cluster mode and two Harakas …')
      await clusterSection(log, phases)
    }
    if (ONLY.has('real')) {
      log('real rspamd …')
      await realSection(log, phases, notes)
    }
    const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z')
    const machine =
      `\`${QUICK ? 'BENCH_QUICK=1 ' : ''}npm run bench:overload\` on ${date}, 2.x at commit ${commit()}` +
      `${QUICK ? ' (short phases, rough figures)' : ''}; ${cpus().length} × ${cpuModel()}, Node ${process.version}, ` +
      'shared with other work; the fake rspamd runs in the bench process beside the SMTP clients.'
    const report = render(phases, notes, machine)
    const dir = join(REPO, 'bench', 'results')
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'overload.md'), report)
    writeFileSync(join(dir, 'overload.json'), JSON.stringify({ date, quick: QUICK, notes, phases }, null, 1))
    console.log(`\n${report}`)
    log(`(${((performance.now() - started) / 1000).toFixed(0)} s; written to bench/results/overload.md)`)
  } finally {
    await stopRspamd()
  }
}

stopOnSignal()

main().catch((err: unknown) => {
  console.error(`bench:overload failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
  process.exitCode = 1
})
