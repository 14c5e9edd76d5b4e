// npm run bench: the micro-benchmark and the end-to-end benchmark in one run, then the tables on stdout
// and in bench/results/latest.md (figures as JSON beside it, and the charts as latest-*.svg). Starts
// rspamd if it is not running and stops what it started. BENCH_QUICK=1: short turns (a smoke run, rough figures).

import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { REPO } from '../test/support/harness'
import { runE2e, type E2ePlan } from './e2e'
import { runMicro, type MicroPlan } from './micro'
import { cpuModel } from './proc'
import { ensureRspamd, stopOnSignal, stopRspamd } from './real'
import { figuresFromRun, writeCharts, writeSummaryTable } from './figures'
import { renderReport } from './report'

const QUICK = process.env.BENCH_QUICK === '1'

// The micro-benchmark's candidates (bench/candidate.ts), the same in a quick and a full run: over
// keep-alive, and with the fake that closes every connection (there also the bare node:http client)
const KEEP_ALIVE_CANDIDATES = ['ceiling', 'v2', 'v2-undici', 'v1'] as const
const CLOSE_CANDIDATES = ['ceiling', 'http', 'v2', 'v2-undici', 'v1'] as const

// Sized for < 12 minutes on 2 busy cores: each candidate's turn lasts ~minMs (or minMessages, whichever
// is later). Micro: 2 rounds per cell, 4 candidates × 12 cells over keep-alive, 5 candidates × 4 cells
// with the closing fake; end to end: rspamd alone, two Harakas per plugin and one without scanning,
// 9 cells, 2 rounds, then the open-loop latency at two loads per size (3 s for each scanning Haraka).
const MICRO: MicroPlan = QUICK
  ? {
      candidates: KEEP_ALIVE_CANDIDATES,
      rounds: 1,
      rssRuns: 1,
      warmup: { minMessages: 8, minMs: 100 },
      turn: {
        '5 KB': { minMessages: 50, minMs: 200 },
        '100 KB': { minMessages: 20, minMs: 200 },
        '1 MB': { minMessages: 8, minMs: 200 },
        // × 8 and × 32 send 8 and 32 messages of 25 MB per candidate: most of a smoke run's time
        '25 MB': { minMessages: 1, minMs: 0, concurrency: [1] },
      },
      connectionMessages: 1000,
      close: {
        candidates: CLOSE_CANDIDATES,
        sizes: ['5 KB', '100 KB'],
        concurrency: [1, 8],
        rounds: 1,
        turn: { '5 KB': { minMessages: 50, minMs: 200 }, '100 KB': { minMessages: 20, minMs: 200 } },
      },
    }
  : {
      candidates: KEEP_ALIVE_CANDIDATES,
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
      close: {
        candidates: CLOSE_CANDIDATES,
        sizes: ['5 KB', '100 KB'],
        concurrency: [1, 8],
        rounds: 2,
        turn: { '5 KB': { minMessages: 200, minMs: 1500 }, '100 KB': { minMessages: 100, minMs: 1500 } },
      },
    }
const E2E: E2ePlan = QUICK
  ? {
      rounds: 1,
      warmupMessages: 8,
      turn: {
        '5 KB': { minMessages: 20, minMs: 300 },
        '100 KB': { minMessages: 10, minMs: 300 },
        '1 MB': { minMessages: 4, minMs: 300 },
      },
      open: { loads: [0.5], minMs: 300, rounds: 1 },
    }
  : {
      rounds: 2,
      warmupMessages: 40,
      turn: {
        '5 KB': { minMessages: 100, minMs: 2500 },
        '100 KB': { minMessages: 60, minMs: 2500 },
        // ~30 msg/s here: a turn at × 32 sends at least 32 messages anyway
        '1 MB': { minMessages: 16, minMs: 2000 },
      },
      // latency at the same offered load: half and four fifths of the slower scanning Haraka's msg/s
      open: { loads: [0.5, 0.8], minMs: 3000, rounds: 1 },
    }

async function main(): Promise<void> {
  const started = performance.now()
  const log = (s: string) => console.log(s)
  try {
    log(`micro-benchmark${QUICK ? ' (quick)' : ''} …`)
    const micro = await runMicro(MICRO, log)
    await ensureRspamd(log)
    log('end to end (real Haraka + real rspamd) …')
    const e2e = await runE2e(E2E, log)
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
    const figures = figuresFromRun(machine, micro, e2e)
    const charts = writeCharts(dir, 'latest', figures)
    writeSummaryTable(join(REPO, 'README.md'), figures)
    console.log(`\n${report}`)
    log(
      `(${((performance.now() - started) / 1000).toFixed(0)} s; written to bench/results/latest.md, ` +
        `charts ${charts.join(', ')}, and the table of README.md)`,
    )
  } finally {
    await stopRspamd()
  }
}

stopOnSignal()

main().catch((err: unknown) => {
  console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
  process.exitCode = 1
})
