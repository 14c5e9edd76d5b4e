// The plugin micro-benchmark: each candidate (bench/candidate.ts, one process each) scans messages of
// each size at each concurrency against the fast fake rspamd, interleaved round by round, first over
// keep-alive, then with a fake that closes every connection as rspamd 3.4 does; then peak RSS for one
// 25 MB message (a fresh process per candidate) and TCP connections per 1 000 messages.

import { type ChildProcess, fork } from 'node:child_process'
import { join } from 'node:path'
import { type Candidate, type Job, type JobResult } from './candidate'
import { FastRspamd, type Counters, type ServerMode } from './fast-rspamd'
import { SIZES } from './messages'
import { REPO } from '../test/support/harness'

export const CONCURRENCY = [1, 8, 32] as const

export interface MicroCell {
  /** the fake rspamd's connection handling */
  mode: ServerMode
  candidate: Candidate
  size: string
  concurrency: number
  messages: number
  wallMs: number
  cpuMs: number
}

export interface MicroResults {
  loaded: Partial<Record<Candidate, string>>
  cells: MicroCell[]
  /** CPU ms per message of reading Haraka's message_stream alone (a cost of every plugin), per size */
  streamCpuMs: Record<string, number>
  /** peak RSS growth during one 25 MB scan: the median of `rssRuns` fresh processes */
  rss: Partial<Record<Candidate, number>>
  rssRuns: number
  /** TCP connections the fake rspamd accepted for 1 000 messages of 5 KB at concurrency 8 */
  connections: Partial<Record<Candidate, number>>
  connectionsConcurrency: number
}

/**
 * per size label: minimum messages and minimum ms of one candidate's turn, rounds when not the plan's,
 * and the concurrencies when not all of CONCURRENCY
 */
type Turns = Record<string, { minMessages: number; minMs: number; rounds?: number; concurrency?: number[] }>

export interface MicroPlan {
  /** the candidates of the keep-alive part (and of the RSS and connection figures) */
  candidates: readonly Candidate[]
  rounds: number
  /** an unmeasured turn per candidate and size first (JIT, connections, caches) */
  warmup: { minMessages: number; minMs: number }
  rssRuns: number
  /**
   * per size label: minimum messages and minimum ms of one candidate's turn (a turn also sends at
   * least one message per concurrent scan), and rounds when not `rounds`
   */
  turn: Turns
  connectionMessages: number
  /** the fake that closes every connection (rspamd 3.4's way): every candidate, these sizes and concurrencies */
  close: {
    candidates: readonly Candidate[]
    sizes: string[]
    concurrency: number[]
    rounds: number
    turn: Turns
  }
}

class CandidateProcess {
  private readonly proc: ChildProcess
  private waiting: ((r: JobResult) => void) | undefined
  private readonly exited: Promise<void>
  readonly ready: Promise<string>

  constructor(
    readonly name: Candidate,
    port: number,
  ) {
    this.proc = fork(join(__dirname, 'candidate.ts'), [name, String(port)], {
      cwd: REPO,
      // BENCH_NODE_ARGS: node flags for each candidate process (e.g. --cpu-prof --cpu-prof-dir=…)
      execArgv: [
        '--import',
        'tsx',
        '--expose-gc',
        ...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean),
      ],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    })
    const forward = (b: Buffer) => {
      for (const line of b.toString('utf8').split('\n')) {
        // haraka-email-message announces its iconv fallback on load: not news
        if (line && !line.includes('iconv')) console.error(`  [${name}] ${line}`)
      }
    }
    this.proc.stdout?.on('data', forward)
    this.proc.stderr?.on('data', forward)
    this.exited = new Promise((resolve) => this.proc.once('exit', () => resolve()))
    this.proc.on('message', (r: JobResult) => {
      const w = this.waiting
      this.waiting = undefined
      w?.(r)
    })
    this.ready = this.next().then((r) => {
      if (r.type !== 'ready') throw new Error(`${name}: expected ready, got ${JSON.stringify(r)}`)
      return r.loaded
    })
  }

  private next(): Promise<JobResult> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`candidate ${this.name} exited with ${code}`))
      this.proc.once('exit', onExit)
      this.waiting = (r) => {
        this.proc.off('exit', onExit)
        resolve(r)
      }
    })
  }

  async do(job: Job): Promise<JobResult> {
    const reply = this.next()
    this.proc.send(job)
    const r = await reply
    if (r.type === 'error') throw new Error(`candidate ${this.name}: ${r.message}`)
    return r
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.connected) this.proc.send({ type: 'exit' } satisfies Job)
    await this.exited
  }
}

function delta(after: Counters, before: Counters): Counters {
  return {
    connections: after.connections - before.connections,
    requests: after.requests - before.requests,
    bodyBytes: after.bodyBytes - before.bodyBytes,
    badRequests: after.badRequests - before.badRequests,
  }
}

/**
 * Checks what the fake rspamd saw against what the candidate says it did: no silent failures. A fake
 * that closes every connection must have seen one connection per message.
 */
function verify(name: string, seen: Counters, messages: number, bytes: number, mode: ServerMode): void {
  if (
    seen.requests !== messages ||
    seen.badRequests !== 0 ||
    seen.bodyBytes !== messages * bytes ||
    (mode === 'close' && seen.connections !== messages)
  ) {
    throw new Error(
      `${name}: reported ${messages} scans of ${bytes} bytes, the fake rspamd (${mode}) saw ${seen.requests} ` +
        `requests (${seen.badRequests} not POST /checkv2), ${seen.bodyBytes} body bytes and ` +
        `${seen.connections} connections`,
    )
  }
}

/** Every candidate's turns at one size and concurrency, in rotating order, summed per candidate. */
async function measure(
  procs: CandidateProcess[],
  fake: FastRspamd,
  size: { label: string; bytes: number },
  concurrency: number,
  rounds: number,
  turn: { minMessages: number; minMs: number },
  log: (s: string) => void,
): Promise<MicroCell[]> {
  const sums = new Map<Candidate, MicroCell>()
  for (let round = 0; round < rounds; round++) {
    // A, B, C then B, C, A …: machine noise and turn order hit every candidate alike
    const order = procs.map((_, i) => procs[(i + round) % procs.length])
    for (const p of order) {
      const before = fake.snapshot()
      const r = await p.do({ type: 'run', bytes: size.bytes, concurrency, ...turn })
      if (r.type !== 'run') throw new Error(`${p.name}: unexpected ${r.type}`)
      verify(p.name, delta(fake.snapshot(), before), r.messages, size.bytes, fake.mode)
      const s = sums.get(p.name) ?? {
        mode: fake.mode,
        candidate: p.name,
        size: size.label,
        concurrency,
        messages: 0,
        wallMs: 0,
        cpuMs: 0,
      }
      s.messages += r.messages
      s.wallMs += r.wallMs
      s.cpuMs += r.cpuMs
      sums.set(p.name, s)
    }
  }
  const line = [...sums.values()]
    .map((s) => `${s.candidate} ${((s.messages * 1000) / s.wallMs).toFixed(1)}/s`)
    .join(', ')
  log(`  ${fake.mode === 'close' ? 'close: ' : ''}${size.label} × ${concurrency}: ${line}`)
  return [...sums.values()]
}

/** The close-mode part: a fake rspamd that closes every connection after its reply, fresh candidate processes. */
export async function measureClose(
  plan: MicroPlan,
  log: (s: string) => void,
): Promise<{ cells: MicroCell[]; loaded: Partial<Record<Candidate, string>> }> {
  const fake = await FastRspamd.start('close')
  const procs = plan.close.candidates.map((c) => new CandidateProcess(c, fake.port))
  try {
    const loaded: Partial<Record<Candidate, string>> = {}
    for (const p of procs) loaded[p.name] = await p.ready
    const cells: MicroCell[] = []
    for (const size of SIZES.filter((s) => plan.close.sizes.includes(s.label))) {
      for (const p of procs) {
        await p.do({ type: 'run', bytes: size.bytes, concurrency: 1, ...plan.warmup })
      }
      const { rounds = plan.close.rounds, ...turn } = plan.close.turn[size.label]
      for (const concurrency of plan.close.concurrency) {
        cells.push(...(await measure(procs, fake, size, concurrency, rounds, turn, log)))
      }
    }
    return { cells, loaded }
  } finally {
    await Promise.all(procs.map((p) => p.stop()))
    await fake.close()
  }
}

export async function runMicro(plan: MicroPlan, log: (s: string) => void): Promise<MicroResults> {
  const fake = await FastRspamd.start()
  const procs = plan.candidates.map((c) => new CandidateProcess(c, fake.port))
  try {
    const loaded: Partial<Record<Candidate, string>> = {}
    for (const p of procs) loaded[p.name] = await p.ready
    const cells: MicroCell[] = []
    const streamCpuMs: Record<string, number> = {}
    const v2 = procs.find((p) => p.name === 'v2')
    if (!v2) throw new Error('no v2 candidate')
    for (const size of SIZES) {
      for (const p of procs) {
        await p.do({ type: 'run', bytes: size.bytes, concurrency: 1, ...plan.warmup })
      }
      // enough messages for a steady figure: it is subtracted from the plugin's CPU in the report
      const n = Math.max(
        plan.turn[size.label].minMessages,
        Math.min(2000, Math.ceil((50 * 1024 * 1024) / size.bytes)),
        4,
      )
      const d = await v2.do({ type: 'drain', bytes: size.bytes, messages: n })
      if (d.type !== 'drain') throw new Error(`v2: unexpected ${d.type}`)
      streamCpuMs[size.label] = d.cpuMs / n
      log(
        `  ${size.label}: Haraka's message_stream alone ${streamCpuMs[size.label].toFixed(2)} ms CPU/message`,
      )
      const { rounds = plan.rounds, concurrency: only, ...turn } = plan.turn[size.label]
      for (const concurrency of only ?? CONCURRENCY) {
        cells.push(...(await measure(procs, fake, size, concurrency, rounds, turn, log)))
      }
    }

    const connections: Partial<Record<Candidate, number>> = {}
    const connectionsConcurrency = 8
    for (const p of procs) {
      // idle keep-alive sockets of earlier runs count as reuse: start from none
      await p.stop()
      const fresh = new CandidateProcess(p.name, fake.port)
      await fresh.ready
      const before = fake.snapshot()
      const bytes = SIZES[0].bytes
      const r = await fresh.do({
        type: 'run',
        bytes,
        concurrency: connectionsConcurrency,
        minMessages: plan.connectionMessages,
        minMs: 0,
      })
      await fresh.stop()
      if (r.type !== 'run') throw new Error(`${p.name}: unexpected ${r.type}`)
      const seen = delta(fake.snapshot(), before)
      verify(p.name, seen, r.messages, bytes, fake.mode)
      connections[p.name] = seen.connections
      log(`  connections for ${r.messages} messages: ${p.name} ${seen.connections}`)
    }

    const runs = new Map<Candidate, number[]>(plan.candidates.map((c) => [c, []]))
    const big = SIZES[SIZES.length - 1]
    for (let i = 0; i < plan.rssRuns; i++) {
      for (const name of plan.candidates) {
        // a fresh process: the heap of earlier runs would hide (or add) growth
        const fresh = new CandidateProcess(name, fake.port)
        await fresh.ready
        const r = await fresh.do({ type: 'rss', bytes: big.bytes })
        await fresh.stop()
        if (r.type !== 'rss') throw new Error(`${name}: unexpected ${r.type}`)
        runs.get(name)?.push(r.growthBytes)
      }
    }
    const rss: Partial<Record<Candidate, number>> = {}
    for (const [name, list] of runs) {
      list.sort((a, b) => a - b)
      rss[name] = list[Math.floor(list.length / 2)]
      const mb = list.map((b) => (b / 1048576).toFixed(1)).join(', ')
      log(`  peak RSS growth, one ${big.label} message: ${name} ${mb} MB`)
    }

    log('  the fake rspamd closes every connection (as rspamd 3.4 does) …')
    const close = await measureClose(plan, log)
    cells.push(...close.cells)
    for (const [c, text] of Object.entries(close.loaded)) loaded[c as Candidate] ??= text
    return { loaded, cells, streamCpuMs, rss, rssRuns: plan.rssRuns, connections, connectionsConcurrency }
  } finally {
    await Promise.all(procs.map((p) => p.stop()))
    await fake.close()
  }
}
