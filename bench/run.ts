// npm run bench: the micro-benchmark and the end-to-end benchmark in one run, then the tables on stdout
// and in bench/results/latest.md (figures as JSON beside it). Starts rspamd if it is not running and
// stops what it started. BENCH_QUICK=1: short turns (a smoke run, rough figures).

import { execFile } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO } from '../test/support/harness'
import { runE2e } from './e2e'
import { runMicro, type MicroPlan } from './micro'
import { renderReport } from './report'

const run = promisify(execFile)
const SCRIPT = join(REPO, 'scripts', 'rspamd.sh')
const RSPAMD_PORT = Number(process.env.RSPAMD_PORT ?? 11343)
const QUICK = process.env.BENCH_QUICK === '1'

// Sized for < 10 minutes on 2 busy cores (~7 measured): each candidate's turn lasts ~minMs (or
// minMessages, whichever is later), 2 rounds per cell, 3 candidates, 12 cells.
const MICRO: MicroPlan = QUICK
  ? {
      rounds: 1,
      rssRuns: 1,
      warmup: { minMessages: 8, minMs: 100 },
      turn: {
        '5 KB': { minMessages: 50, minMs: 200 },
        '100 KB': { minMessages: 20, minMs: 200 },
        '1 MB': { minMessages: 8, minMs: 200 },
        '25 MB': { minMessages: 1, minMs: 0 },
      },
      connectionMessages: 1000,
    }
  : {
      rounds: 2,
      rssRuns: 3,
      warmup: { minMessages: 16, minMs: 400 },
      turn: {
        '5 KB': { minMessages: 200, minMs: 1500 },
        '100 KB': { minMessages: 100, minMs: 1500 },
        '1 MB': { minMessages: 20, minMs: 1500 },
        // 1.6.1 needs ~1.5 s per 25 MB message here, and × 32 sends 32 of them per turn: one round
        '25 MB': { minMessages: 2, minMs: 2500, rounds: 1 },
      },
      connectionMessages: 1000,
    }
const E2E = QUICK ? { rounds: 1, minMessages: 40, minMs: 500 } : { rounds: 2, minMessages: 100, minMs: 3000 }

function cpuModel(): string {
  const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))
  return m?.[1].trim() ?? cpus()[0]?.model ?? 'unknown CPU'
}

async function rspamd(cmd: 'start' | 'stop' | 'status'): Promise<boolean> {
  const env = { ...process.env, RSPAMD_PORT: String(RSPAMD_PORT) }
  return run('bash', [SCRIPT, cmd], { env, timeout: 600_000 }).then(
    () => true,
    (err: unknown) => {
      if (cmd === 'status') return false
      throw err
    },
  )
}

/** rspamd was not running and this run started it: stop it at the end (and only then) */
let weStarted = false

async function main(): Promise<void> {
  const started = performance.now()
  const log = (s: string) => console.log(s)
  try {
    log(`micro-benchmark${QUICK ? ' (quick)' : ''} …`)
    const micro = await runMicro(MICRO, log)
    if (!(await rspamd('status'))) {
      log('starting rspamd (scripts/rspamd.sh) …')
      await rspamd('start')
      weStarted = true
    }
    log('end to end (real Haraka + real rspamd) …')
    const e2e = await runE2e(RSPAMD_PORT, E2E, log)
    const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z')
    const machine = {
      date,
      command: `${QUICK ? 'BENCH_QUICK=1 ' : ''}npm run bench`,
      cpus: cpus().length,
      cpuModel: cpuModel(),
      node: process.version,
      quick: QUICK,
    }
    const report = renderReport(machine, micro, e2e)
    const dir = join(REPO, 'bench', 'results')
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'latest.md'), report)
    writeFileSync(
      join(dir, `${date.replace(/:/g, '')}.json`),
      JSON.stringify({ machine, micro, e2e }, null, 1),
    )
    console.log(`\n${report}`)
    log(`(${((performance.now() - started) / 1000).toFixed(0)} s; written to bench/results/latest.md)`)
  } finally {
    if (weStarted) await rspamd('stop')
  }
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n${sig}: stopping`)
    // child processes and Haraka get the signal from the terminal too; rspamd is stopped here
    const stop = weStarted ? rspamd('stop') : Promise.resolve(true)
    void stop.finally(() => process.exit(130))
  })
}

main().catch((err: unknown) => {
  console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
  process.exitCode = 1
})
