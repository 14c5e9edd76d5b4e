// The plugin micro-benchmark: each candidate (bench/candidate.ts, one process each) scans messages of
// each size at each concurrency against the fast fake rspamd, interleaved round by round; then peak
// RSS for one 25 MB message (a fresh process per candidate) and TCP connections per 1 000 messages.

import { type ChildProcess, fork } from 'node:child_process'
import { join } from 'node:path'
import { CANDIDATES, type Candidate, type Job, type JobResult } from './candidate'
import { FastRspamd, type Counters } from './fast-rspamd'
import { SIZES } from './messages'
import { REPO } from '../test/support/harness'

export const CONCURRENCY = [1, 8, 32] as const

export interface MicroCell {
  candidate: Candidate
  size: string
  concurrency: number
  messages: number
  wallMs: number
  cpuMs: number
}

export interface MicroResults {
  loaded: Record<Candidate, string>
  cells: MicroCell[]
  /** CPU ms per message of reading Haraka's message_stream alone (a cost of every plugin), per size */
  streamCpuMs: Record<string, number>
  /** peak RSS growth during one 25 MB scan: the median of `rssRuns` fresh processes */
  rss: Record<Candidate, number>
  rssRuns: number
  /** TCP connections the fake rspamd accepted for 1 000 messages of 5 KB at concurrency 8 */
  connections: Record<Candidate, number>
  connectionsConcurrency: number
}

export interface MicroPlan {
  rounds: number
  /** an unmeasured turn per candidate and size first (JIT, connections, caches) */
  warmup: { minMessages: number; minMs: number }
  rssRuns: number
  /**
   * per size label: minimum messages and minimum ms of one candidate's turn (a turn also sends at
   * least one message per concurrent scan), and rounds when not `rounds`
   */
  turn: Record<string, { minMessages: number; minMs: number; rounds?: number }>
  connectionMessages: number
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
      execArgv: ['--import', 'tsx', '--expose-gc'],
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

/** Checks what the fake rspamd saw against what the candidate says it did: no silent failures. */
function verify(name: string, seen: Counters, messages: number, bytes: number): void {
  if (seen.requests !== messages || seen.badRequests !== 0 || seen.bodyBytes !== messages * bytes) {
    throw new Error(
      `${name}: reported ${messages} scans of ${bytes} bytes, the fake rspamd saw ${seen.requests} ` +
        `requests (${seen.badRequests} not POST /checkv2) and ${seen.bodyBytes} body bytes`,
    )
  }
}

export async function runMicro(plan: MicroPlan, log: (s: string) => void): Promise<MicroResults> {
  const fake = await FastRspamd.start()
  const procs = CANDIDATES.map((c) => new CandidateProcess(c, fake.port))
  try {
    const loaded = {} as Record<Candidate, string>
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
      for (const concurrency of CONCURRENCY) {
        const sums = new Map<Candidate, MicroCell>()
        const { rounds = plan.rounds, ...turn } = plan.turn[size.label]
        for (let round = 0; round < rounds; round++) {
          // A, B, C then B, C, A …: machine noise and turn order hit every candidate alike
          const order = procs.map((_, i) => procs[(i + round) % procs.length])
          for (const p of order) {
            const before = fake.snapshot()
            const r = await p.do({ type: 'run', bytes: size.bytes, concurrency, ...turn })
            if (r.type !== 'run') throw new Error(`${p.name}: unexpected ${r.type}`)
            verify(p.name, delta(fake.snapshot(), before), r.messages, size.bytes)
            const s = sums.get(p.name) ?? {
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
        log(`  ${size.label} × ${concurrency}: ${line}`)
        cells.push(...sums.values())
      }
    }

    const connections = {} as Record<Candidate, number>
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
      verify(p.name, seen, r.messages, bytes)
      connections[p.name] = seen.connections
      log(`  connections for ${r.messages} messages: ${p.name} ${seen.connections}`)
    }

    const runs = new Map<Candidate, number[]>(CANDIDATES.map((c) => [c, []]))
    const big = SIZES[SIZES.length - 1]
    for (let i = 0; i < plan.rssRuns; i++) {
      for (const name of CANDIDATES) {
        // a fresh process: the heap of earlier runs would hide (or add) growth
        const fresh = new CandidateProcess(name, fake.port)
        await fresh.ready
        const r = await fresh.do({ type: 'rss', bytes: big.bytes })
        await fresh.stop()
        if (r.type !== 'rss') throw new Error(`${name}: unexpected ${r.type}`)
        runs.get(name)?.push(r.growthBytes)
      }
    }
    const rss = {} as Record<Candidate, number>
    for (const [name, list] of runs) {
      list.sort((a, b) => a - b)
      rss[name] = list[Math.floor(list.length / 2)]
      const mb = list.map((b) => (b / 1048576).toFixed(1)).join(', ')
      log(`  peak RSS growth, one ${big.label} message: ${name} ${mb} MB`)
    }
    return { loaded, cells, streamCpuMs, rss, rssRuns: plan.rssRuns, connections, connectionsConcurrency }
  } finally {
    await Promise.all(procs.map((p) => p.stop()))
    await fake.close()
  }
}
