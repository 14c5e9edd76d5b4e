// Markdown tables from one run's figures: every figure next to its ratio to the ceiling and to 1.6.1,
// and the issue's targets as measured, met or missed.

import type { E2eCell, E2eResults } from './e2e'
import type { MicroCell, MicroResults } from './micro'

export interface Machine {
  date: string
  command: string
  cpus: number
  cpuModel: string
  node: string
  quick: boolean
}

const f1 = (n: number) => n.toFixed(1)
const f2 = (n: number) => n.toFixed(2)
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : '–')
const pct = (n: number) => `${n >= 0 ? '+' : ''}${(n * 100).toFixed(0)} %`
const mb = (b: number) => `${(b / 1048576).toFixed(1)} MB`

function table(head: string[], rows: string[][]): string {
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n')
}

const rate = (c: { messages: number; wallMs: number }) => (c.messages * 1000) / c.wallMs
const cpuPer = (c: MicroCell) => c.cpuMs / c.messages

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

interface Row {
  size: string
  concurrency: number
  ceiling: MicroCell
  v2: MicroCell
  v1: MicroCell
}

function microRows(m: MicroResults): Row[] {
  const rows: Row[] = []
  for (const c of m.cells.filter((x) => x.candidate === 'v2')) {
    const find = (name: string) => {
      const hit = m.cells.find(
        (x) => x.candidate === name && x.size === c.size && x.concurrency === c.concurrency,
      )
      if (!hit) throw new Error(`no ${name} cell for ${c.size} × ${c.concurrency}`)
      return hit
    }
    rows.push({ size: c.size, concurrency: c.concurrency, ceiling: find('ceiling'), v2: c, v1: find('v1') })
  }
  return rows
}

function e2eCell(e: E2eResults, variant: string, concurrency: number): E2eCell {
  const hit = e.cells.find((x) => x.variant === variant && x.concurrency === concurrency)
  if (!hit) throw new Error(`no ${variant} cell at concurrency ${concurrency}`)
  return hit
}

export function renderReport(machine: Machine, m: MicroResults, e: E2eResults): string {
  const out: string[] = []
  out.push(`# Benchmarks: haraka-plugin-rspamd 2 vs 1.6.1 vs the ceiling`)
  out.push('')
  out.push(
    `\`${machine.command}\` on ${machine.date}${machine.quick ? ' (BENCH_QUICK=1: short turns, rough figures)' : ''}; ` +
      `${machine.cpus} × ${machine.cpuModel}, Node ${machine.node}, shared with other work (figures from one run, candidates interleaved).`,
  )
  out.push('')
  out.push('Candidates:')
  out.push(`- ceiling: ${m.loaded.ceiling}`)
  out.push(`- 2.x: ${m.loaded.v2}`)
  out.push(`- 1.6.1: ${m.loaded.v1}`)
  out.push(`- end to end: ${e.loaded.v2}; ${e.loaded.v1}; ${e.loaded.none}; ${e.loaded.rspamd}`)

  const rows = microRows(m)
  out.push('')
  out.push('## Plugin micro-benchmark (no SMTP, fast fake rspamd on loopback, 38-symbol reply)')
  out.push('')
  out.push(
    "Each plugin's data_post hook on haraka-test-fixtures transactions; the ceiling sends the same bytes " +
      "from a Buffer with a bare undici Pool. msg/s = messages ÷ wall time; CPU = the candidate process's " +
      'user+system CPU per message. "stream" = CPU of only reading Haraka\'s message_stream (a cost every ' +
      'plugin pays, the ceiling does not).',
  )
  out.push('')
  out.push(
    table(
      [
        'size',
        'conc',
        'ceiling msg/s',
        '2.x msg/s',
        '1.6.1 msg/s',
        '2.x ÷ ceiling',
        '2.x ÷ 1.6.1',
        'ceiling CPU ms',
        'stream CPU ms',
        '2.x CPU ms',
        '1.6.1 CPU ms',
        '2.x CPU ÷ ceiling',
        '2.x CPU ÷ 1.6.1',
      ],
      rows.map((r) => [
        r.size,
        String(r.concurrency),
        f1(rate(r.ceiling)),
        f1(rate(r.v2)),
        f1(rate(r.v1)),
        ratio(rate(r.v2), rate(r.ceiling)),
        ratio(rate(r.v2), rate(r.v1)),
        f2(cpuPer(r.ceiling)),
        f2(m.streamCpuMs[r.size] ?? NaN),
        f2(cpuPer(r.v2)),
        f2(cpuPer(r.v1)),
        ratio(cpuPer(r.v2), cpuPer(r.ceiling)),
        ratio(cpuPer(r.v2), cpuPer(r.v1)),
      ]),
    ),
  )
  out.push('')
  out.push(
    table(
      ['', 'ceiling', '2.x', '1.6.1', '2.x ÷ 1.6.1'],
      [
        [
          `peak RSS growth, one 25 MB message (median of ${m.rssRuns})`,
          mb(m.rss.ceiling),
          mb(m.rss.v2),
          mb(m.rss.v1),
          ratio(m.rss.v2, m.rss.v1),
        ],
        [
          `TCP connections for 1 000 messages (5 KB, concurrency ${m.connectionsConcurrency}, keep-alive server)`,
          String(m.connections.ceiling),
          String(m.connections.v2),
          String(m.connections.v1),
          ratio(m.connections.v2, m.connections.v1),
        ],
      ],
    ),
  )

  out.push('')
  out.push('## End to end (real Haraka + real rspamd over SMTP)')
  out.push('')
  out.push(
    `Corpus messages in turn (${e.corpus.join(', ')}), one SMTP session per message, queue discards. ` +
      'Latency = final dot to the reply (rspamd alone: request to reply). ' +
      'rspamd 3.4 closes every connection after its reply (no keep-alive), so each scan is a new connection for every client.',
  )
  out.push('')
  const names: Record<string, string> = {
    rspamd: 'rspamd alone (ceiling)',
    v2: 'Haraka + 2.x',
    v1: 'Haraka + 1.6.1',
    none: 'Haraka, no scanning',
  }
  const e2eRows: string[][] = []
  for (const c of e.cells) {
    const ceiling = e2eCell(e, 'rspamd', c.concurrency)
    const v1 = e2eCell(e, 'v1', c.concurrency)
    const sorted = [...c.latencies].sort((a, b) => a - b)
    const sortedV1 = [...v1.latencies].sort((a, b) => a - b)
    e2eRows.push([
      names[c.variant],
      String(c.concurrency),
      f1(rate(c)),
      ratio(rate(c), rate(ceiling)),
      ratio(rate(c), rate(v1)),
      f1(percentile(sorted, 50)),
      f1(percentile(sorted, 99)),
      ratio(percentile(sorted, 50), percentile(sortedV1, 50)),
    ])
  }
  e2eRows.sort((a, b) => Number(a[1]) - Number(b[1]))
  out.push(
    table(['variant', 'conc', 'msg/s', '÷ ceiling', '÷ 1.6.1', 'p50 ms', 'p99 ms', 'p50 ÷ 1.6.1'], e2eRows),
  )

  out.push('')
  out.push('## Targets')
  out.push('')
  const targets: string[][] = []
  for (const size of ['5 KB', '1 MB']) {
    const limit = size === '5 KB' ? 0.1 : 0.05
    for (const r of rows.filter((x) => x.size === size)) {
      const over = cpuPer(r.v2) / cpuPer(r.ceiling) - 1
      // what is left of the plugin's CPU once Haraka's stream and the ceiling's own work are taken
      // away, in ms (the stream is measured alone at concurrency 1: a rough split, not a ratio)
      const rest = cpuPer(r.v2) - (m.streamCpuMs[size] ?? 0) - cpuPer(r.ceiling)
      targets.push([
        `CPU overhead over the ceiling, ${size} × ${r.concurrency} (≤ ${pct(limit)})`,
        `${pct(over)}: ${f2(cpuPer(r.v2) - cpuPer(r.ceiling))} ms/msg more, of which Haraka's message_stream ` +
          `${f2(m.streamCpuMs[size] ?? NaN)} ms and the rest ${rest > 0 ? `${f2(rest)} ms` : '≈ 0 (within noise)'}`,
        over <= limit ? 'met' : 'missed',
      ])
    }
  }
  const slower = rows.filter((r) => rate(r.v2) < rate(r.v1))
  targets.push([
    'hook alone: at least as fast as 1.6.1 (msg/s), every size × concurrency',
    slower.length === 0
      ? `${rows.length} of ${rows.length}`
      : `slower in ${slower.map((r) => `${r.size} × ${r.concurrency} (${ratio(rate(r.v2), rate(r.v1))})`).join(', ')}`,
    slower.length === 0 ? 'met' : 'missed',
  ])
  targets.push([
    'peak RSS growth for a 25 MB message < 5 MB',
    mb(m.rss.v2),
    m.rss.v2 < 5 * 1048576 ? 'met' : 'missed',
  ])
  for (const c of e.cells.filter((x) => x.variant === 'v2')) {
    const floor = Math.min(rate(e2eCell(e, 'none', c.concurrency)), rate(e2eCell(e, 'rspamd', c.concurrency)))
    const share = rate(c) / floor
    targets.push([
      `end to end × ${c.concurrency}: Haraka + 2.x ≥ 90 % of min(no scanning, rspamd alone)`,
      `${(share * 100).toFixed(0)} %`,
      share >= 0.9 ? 'met' : 'missed',
    ])
  }
  const v2Cells = e.cells.filter((x) => x.variant === 'v2')
  const e2eSlower = v2Cells.filter((c) => rate(c) < rate(e2eCell(e, 'v1', c.concurrency)))
  targets.push([
    'end to end: Haraka + 2.x at least as fast as Haraka + 1.6.1 (msg/s), every concurrency',
    v2Cells
      .map((c) => `× ${c.concurrency}: ${ratio(rate(c), rate(e2eCell(e, 'v1', c.concurrency)))}`)
      .join(', '),
    e2eSlower.length === 0 ? 'met' : 'missed',
  ])
  out.push(table(['target', 'measured', ''], targets))
  out.push('')
  return out.join('\n')
}
