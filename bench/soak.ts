// npm run bench:soak: many 5 KB messages at concurrency 8 through real Haraka + this plugin and real
// Haraka + its bundled 1.6.1, with the real rspamd, in alternating blocks; after each block Haraka's
// resident memory (VmRSS) and the block's msg/s and CPU per message. The question: does 2.x's memory
// stay flat over a long run, and is it no worse than 1.6.1's? Writes bench/results/soak.md.
//
//   SOAK_MESSAGES=100000 (per Haraka; default) SOAK_BLOCK=10000 (default) npm run bench:soak

import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { corpus, REPO } from '../test/support/harness'
import { benchMessage } from './messages'
import { cpuModel, cpuMs, rssBytes } from './proc'
import {
  type BenchHaraka,
  ensureRspamd,
  expectVerdicts,
  proveScanning,
  rspamdStat,
  sendExpecting,
  startHaraka,
  stopHarakas,
  stopOnSignal,
  stopRspamd,
} from './real'
import { table } from './report'

const MESSAGES = Number(process.env.SOAK_MESSAGES ?? 100_000)
const BLOCK = Math.min(Number(process.env.SOAK_BLOCK ?? 10_000), MESSAGES)
const CONCURRENCY = 8
const BYTES = 5 * 1024
const WARMUP = Math.min(500, BLOCK)
/** RSS "flat": the last block's RSS at most this much above the first block's */
const CREEP = 0.1
/** 2.x's growth from first to last block may exceed 1.6.1's by this share of 2.x's first-block RSS */
const SLACK = 0.05

interface Block {
  /** messages this Haraka has taken so far, after the warm-up */
  total: number
  rss: number
  rate: number
  cpuPerMsg: number
}

const harakas: BenchHaraka[] = []

async function send(b: BenchHaraka, data: Buffer, messages: number): Promise<void> {
  let started = 0
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (started < messages) {
        started++
        await sendExpecting(b.haraka, data, 250, `Haraka (${b.variant})`)
      }
    }),
  )
}

const mib = (b: number) => (b / 1048576).toFixed(1)
const growth = (d: number, base: number) =>
  `${d >= 0 ? '+' : '−'}${mib(Math.abs(d))} MB (${d >= 0 ? '+' : '−'}${Math.abs((d / base) * 100).toFixed(1)} %)`

async function main(): Promise<void> {
  if (!Number.isInteger(MESSAGES) || MESSAGES < 1 || !Number.isInteger(BLOCK) || BLOCK < 1) {
    throw new Error('SOAK_MESSAGES and SOAK_BLOCK are positive whole numbers')
  }
  const started = performance.now()
  const log = (s: string) => console.log(s)
  await ensureRspamd(log)
  harakas.push(...(await Promise.all((['v2', 'v1'] as const).map((v) => startHaraka(v)))))
  const gtube = corpus('gtube.eml')
  for (const b of harakas) await proveScanning(b, gtube)
  log(
    `GTUBE: 550 from both Harakas. ${MESSAGES} messages of 5 KB each, blocks of ${BLOCK}, concurrency ${CONCURRENCY}`,
  )
  const data = benchMessage(BYTES)
  const warm: Record<string, number> = {}
  for (const b of harakas) {
    await send(b, data, WARMUP)
    warm[b.variant] = rssBytes(pid(b))
  }
  const blocks: Record<string, Block[]> = { v2: [], v1: [] }
  const nBlocks = Math.ceil(MESSAGES / BLOCK)
  for (let i = 0; i < nBlocks; i++) {
    const n = Math.min(BLOCK, MESSAGES - i * BLOCK)
    // 2.x first, then 1.6.1 first: the machine's moods hit both alike
    const order = i % 2 === 0 ? harakas : [...harakas].reverse()
    const line: string[] = []
    for (const b of order) {
      const stat = await rspamdStat()
      const cpu0 = cpuMs(pid(b))
      const t0 = performance.now()
      await send(b, data, n)
      const wall = performance.now() - t0
      const cpu = cpuMs(pid(b)) - cpu0
      await expectVerdicts(stat, n, `${b.variant}, block ${i + 1}`)
      const list = blocks[b.variant]
      const block = {
        total: (list.at(-1)?.total ?? 0) + n,
        rss: rssBytes(pid(b)),
        rate: (n * 1000) / wall,
        cpuPerMsg: cpu / n,
      }
      list.push(block)
      line.push(
        `${b.variant} RSS ${mib(block.rss)} MB, ${block.rate.toFixed(0)}/s, ${block.cpuPerMsg.toFixed(2)} ms CPU`,
      )
    }
    log(`  block ${i + 1}/${nBlocks} (${(i * BLOCK + n).toLocaleString('en')}): ${line.join('; ')}`)
  }
  const report = render(blocks, warm, harakas, (performance.now() - started) / 1000)
  const dir = join(REPO, 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'soak.md'), report)
  console.log(`\n${report}`)
  log('(written to bench/results/soak.md)')
}

function pid(b: BenchHaraka): number {
  const p = b.haraka.pid
  if (p === undefined) throw new Error(`Haraka (${b.variant}) is not running`)
  return p
}

function render(
  blocks: Record<string, Block[]>,
  warm: Record<string, number>,
  loaded: BenchHaraka[],
  seconds: number,
): string {
  const v2 = blocks.v2
  const v1 = blocks.v1
  const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z')
  const out: string[] = []
  out.push('# Soak: Haraka + haraka-plugin-rspamd 2 vs Haraka + 1.6.1, resident memory over a long run')
  out.push('')
  out.push(
    `\`SOAK_MESSAGES=${MESSAGES} SOAK_BLOCK=${BLOCK} npm run bench:soak\` on ${date} (${seconds.toFixed(0)} s); ` +
      `${cpus().length} × ${cpuModel()}, Node ${process.version}, shared with other work.`,
  )
  out.push('')
  out.push(`- ${loaded.map((b) => b.loaded).join('\n- ')}`)
  out.push('')
  out.push(
    `${MESSAGES.toLocaleString('en')} messages of 5 KB through each Haraka (the captured spam message with ` +
      '`X-Test-Action: add header`: the real rspamd answers `add header`, Haraka 250, the queue discards), ' +
      `${CONCURRENCY} SMTP sessions at a time, one message per session, in blocks of ${BLOCK.toLocaleString('en')} ` +
      'alternating between the two Harakas (2.x first in odd blocks, 1.6.1 first in even ones). GTUBE got 550 ' +
      "from both first, and after every block rspamd's own counters showed one `add header` scan per message. " +
      `After ${WARMUP} unmeasured messages each (RSS then: 2.x ${mib(warm.v2)} MB, 1.6.1 ${mib(warm.v1)} MB), ` +
      "each row: Haraka's VmRSS (`/proc/<pid>/status`) right after the block, the block's msg/s and Haraka's " +
      'CPU (utime+stime) per message.',
  )
  out.push('')
  out.push(
    table(
      [
        'messages',
        '2.x RSS MB',
        '2.x msg/s',
        '2.x CPU ms/msg',
        '1.6.1 RSS MB',
        '1.6.1 msg/s',
        '1.6.1 CPU ms/msg',
      ],
      v2.map((b, i) => [
        b.total.toLocaleString('en'),
        mib(b.rss),
        b.rate.toFixed(0),
        b.cpuPerMsg.toFixed(2),
        mib(v1[i].rss),
        v1[i].rate.toFixed(0),
        v1[i].cpuPerMsg.toFixed(2),
      ]),
    ),
  )
  out.push('')
  const first2 = v2[0].rss
  const last2 = v2[v2.length - 1].rss
  const first1 = v1[0].rss
  const last1 = v1[v1.length - 1].rss
  const growth2 = last2 - first2
  const growth1 = last1 - first1
  const flat = last2 <= first2 * (1 + CREEP)
  const levelOk = last2 <= last1 * (1 + CREEP)
  const growthOk = growth2 <= Math.max(growth1, 0) + SLACK * first2
  const peak2 = Math.max(...v2.map((b) => b.rss))
  const peak1 = Math.max(...v1.map((b) => b.rss))
  out.push('## Verdict')
  out.push('')
  out.push(
    `How it is judged: **flat** = 2.x's RSS after the last block ≤ its RSS after the first block + ${CREEP * 100} % ` +
      `(the first block follows the warm-up); **no worse than 1.6.1** = 2.x's last-block RSS ≤ 1.6.1's + ${CREEP * 100} %, ` +
      `and 2.x's growth from the first to the last block ≤ 1.6.1's growth (or 0) + ${SLACK * 100} % of 2.x's first-block RSS.` +
      (v2.length < 3 ? ' (Fewer than 3 blocks: too short a run to say much.)' : ''),
  )
  out.push('')
  out.push(
    table(
      ['', 'first block', 'last block', 'growth', 'peak', 'verdict'],
      [
        [
          '2.x RSS',
          `${mib(first2)} MB`,
          `${mib(last2)} MB`,
          growth(growth2, first2),
          `${mib(peak2)} MB`,
          flat ? 'flat' : 'creeps',
        ],
        [
          '1.6.1 RSS',
          `${mib(first1)} MB`,
          `${mib(last1)} MB`,
          growth(growth1, first1),
          `${mib(peak1)} MB`,
          last1 <= first1 * (1 + CREEP) ? 'flat' : 'creeps',
        ],
      ],
    ),
  )
  out.push('')
  const mean = (list: Block[], f: (b: Block) => number) => list.reduce((s, b) => s + f(b), 0) / list.length
  const yes = (b: boolean) => `**${b ? 'yes' : 'no'}**`
  out.push(
    `- 2.x RSS flat over ${MESSAGES.toLocaleString('en')} messages: ${yes(flat)}. No worse than 1.6.1: ${yes(levelOk && growthOk)} ` +
      `(growth no more than 1.6.1's: ${yes(growthOk)}; last-block RSS within 10 % of 1.6.1's: ${yes(levelOk)}).`,
  )
  out.push(
    `- Mean over the blocks: 2.x ${mean(v2, (b) => b.rate).toFixed(0)} msg/s and ${mean(v2, (b) => b.cpuPerMsg).toFixed(2)} ms CPU/msg; ` +
      `1.6.1 ${mean(v1, (b) => b.rate).toFixed(0)} msg/s and ${mean(v1, (b) => b.cpuPerMsg).toFixed(2)} ms CPU/msg.`,
  )
  out.push('')
  return out.join('\n')
}

let stopping = false

async function stopAll(): Promise<void> {
  if (stopping) return
  stopping = true
  await stopHarakas()
  await stopRspamd()
}

stopOnSignal(stopAll, 'stopping Haraka and what this run started')

main()
  .catch((err: unknown) => {
    console.error(`soak failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
    process.exitCode = 1
  })
  .finally(() => stopAll())
