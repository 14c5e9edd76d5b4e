// The figures the charts and the README's table show, from a run's results (what bench/run.ts has in
// memory and writes as JSON) or from a report's markdown (bench/results/*.md, for runs whose JSON is
// not kept), rounded as the report prints them, so that both give the same charts; and the charts.

import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { renderChart } from './chart'
import type { E2eCell, E2eResults } from './e2e'
import type { MicroResults } from './micro'
import type { Machine } from './report'

/** One end-to-end cell: each plugin's msg/s and Haraka CPU ms per message, and 2.x ÷ 1.6.1 of each. */
export interface E2eFigure {
  size: string
  concurrency: number
  rate: { v2: number; v1: number }
  cpu: { v2: number; v1: number }
  rateRatio: number
  cpuRatio: number
}

export interface Figures {
  /** which run: `npm run bench, 2026-12-01, Node v20.20.2` */
  source: string
  e2e: E2eFigure[]
  /** peak RSS growth for one 25 MB message, MB (MiB, as the report prints it) */
  rss?: { v2: number; v1: number }
}

// as the report rounds them (bench/report.ts: f1, f2, ratio), so a chart drawn from the JSON and one
// drawn from the markdown of the same run are the same
const round = (n: number, digits: number) => (Number.isFinite(n) ? Number(n.toFixed(digits)) : NaN)
const rate = (c: { messages: number; wallMs: number }) => (c.messages * 1000) / c.wallMs
const cpu = (c: E2eCell) => (c.harakaCpuMs === null ? NaN : c.harakaCpuMs / c.messages)
const ratio = (a: number, b: number) => (b > 0 && Number.isFinite(a) ? round(a / b, 2) : NaN)

function source(date: string, node: string, quick: boolean): string {
  return `npm run bench, ${date.slice(0, 10)}, Node ${node}${quick ? ' (BENCH_QUICK=1: rough figures)' : ''}`
}

/** The figures of a run, from its results. */
export function figuresFromRun(machine: Machine, micro: MicroResults, e2e: E2eResults): Figures {
  const e2eFigures: E2eFigure[] = []
  for (const v2 of e2e.cells.filter((c) => c.variant === 'v2')) {
    const v1 = e2e.cells.find(
      (c) => c.variant === 'v1' && c.size === v2.size && c.concurrency === v2.concurrency,
    )
    if (!v1) continue
    e2eFigures.push({
      size: v2.size,
      concurrency: v2.concurrency,
      rate: { v2: round(rate(v2), 1), v1: round(rate(v1), 1) },
      cpu: { v2: round(cpu(v2), 2), v1: round(cpu(v1), 2) },
      rateRatio: ratio(rate(v2), rate(v1)),
      cpuRatio: ratio(cpu(v2), cpu(v1)),
    })
  }
  const mb = (b: number | undefined) => (b === undefined ? NaN : round(b / 1048576, 1))
  const rss = micro.rss.v2 !== undefined || micro.rss.v1 !== undefined
  return {
    source: source(machine.date, machine.node, machine.quick),
    e2e: e2eFigures,
    ...(rss ? { rss: { v2: mb(micro.rss.v2), v1: mb(micro.rss.v1) } } : {}),
  }
}

/** A markdown table row's cells, trimmed, without the outer pipes. */
const cellsOf = (line: string) =>
  line
    .trim()
    .replace(/^\||\|$/g, '')
    .split('|')
    .map((c) => c.trim())

/**
 * The first markdown table of `lines` whose head row passes `isHead`: the index of its head row and of
 * the first line after its last row; undefined when there is none.
 */
function findTable(
  lines: string[],
  isHead: (head: string[]) => boolean,
): { at: number; end: number } | undefined {
  for (let at = 0; at + 1 < lines.length; at++) {
    const line = lines[at] ?? ''
    if (!line.trimStart().startsWith('|') || !/^\s*\|[\s:|-]+\|\s*$/.test(lines[at + 1] ?? '')) continue
    if (!isHead(cellsOf(line))) continue
    let end = at + 2
    while (end < lines.length && (lines[end] ?? '').trimStart().startsWith('|')) end++
    return { at, end }
  }
  return undefined
}

/** The rows of the first markdown table whose header has every one of `columns`, as objects by header. */
export function markdownTable(md: string, columns: readonly string[]): Record<string, string>[] {
  const lines = md.split('\n')
  const found = findTable(lines, (head) => columns.every((c) => head.includes(c)))
  if (!found) return []
  const head = cellsOf(lines[found.at] ?? '')
  return lines.slice(found.at + 2, found.end).map((line) => {
    const row = cellsOf(line)
    return Object.fromEntries(head.map((h, k) => [h, row[k] ?? '']))
  })
}

/** The report's number in a cell ("159.9", "0.98×", "3.7 MB"); NaN for "–" or anything else. */
const num = (cell: string | undefined) => {
  const m = /^-?\d+(\.\d+)?/.exec(cell ?? '')
  return m ? Number(m[0]) : NaN
}

const E2E_COLUMNS = [
  'size',
  'conc',
  '2.x msg/s',
  '1.6.1 msg/s',
  '2.x ÷ 1.6.1 msg/s',
  '2.x Haraka CPU ms/msg',
  '1.6.1 Haraka CPU ms/msg',
  '2.x ÷ 1.6.1 CPU',
] as const

/** The figures of a run, from its report (bench/results/latest.md and its copies). */
export function figuresFromMarkdown(md: string): Figures {
  const e2e = markdownTable(md, E2E_COLUMNS).map((r) => ({
    size: r.size ?? '',
    concurrency: num(r.conc),
    rate: { v2: num(r['2.x msg/s']), v1: num(r['1.6.1 msg/s']) },
    cpu: { v2: num(r['2.x Haraka CPU ms/msg']), v1: num(r['1.6.1 Haraka CPU ms/msg']) },
    rateRatio: num(r['2.x ÷ 1.6.1 msg/s']),
    cpuRatio: num(r['2.x ÷ 1.6.1 CPU']),
  }))
  if (e2e.length === 0) throw new Error('no end-to-end table (size, conc, 2.x msg/s, …) in the report')
  const rssRow = markdownTable(md, ['ceiling', '2.x', '1.6.1']).find((r) =>
    Object.values(r)[0]?.startsWith('peak RSS growth, one 25 MB message'),
  )
  // `npm run bench` on 2026-12-01T18:07:20Z (BENCH_QUICK=1: …); 2 × …, Node v20.20.2, …
  const run = /`[^`]*npm run bench` on (\d{4}-\d\d-\d\dT[\d:]+Z).*?Node (v[\d.]+)/.exec(md)
  return {
    source: source(run?.[1] ?? '?', run?.[2] ?? '?', /`BENCH_QUICK=1 npm run bench`/.test(md)),
    e2e,
    ...(rssRow ? { rss: { v2: num(rssRow['2.x']), v1: num(rssRow['1.6.1']) } } : {}),
  }
}

/** The sizes in the order of the run, each with its cells by concurrency. */
function bySize(f: Figures): Map<string, E2eFigure[]> {
  const sizes = new Map<string, E2eFigure[]>()
  for (const e of f.e2e) sizes.set(e.size, [...(sizes.get(e.size) ?? []), e])
  return sizes
}

/** The charts of a run: file name suffix → SVG text. */
export function chartsFor(f: Figures): Record<string, string> {
  const panels = (pick: (e: E2eFigure) => { v2: number; v1: number }) =>
    [...bySize(f)].map(([size, cells]) => ({
      title: size,
      categories: cells.map((c) => `× ${c.concurrency}`),
      series: [
        { name: 'Haraka + 2.x', values: cells.map((c) => pick(c).v2) },
        { name: 'Haraka + 1.6.1', values: cells.map((c) => pick(c).v1) },
      ],
    }))
  const charts: Record<string, string> = {
    'e2e-msgs': renderChart({
      title: 'End to end: messages per second, higher is better',
      subtitle: `Real Haraka and rspamd 3.4 over SMTP, per message size and concurrent sessions (× n); ${f.source}`,
      unit: 'msg/s',
      digits: 1,
      panels: panels((e) => e.rate),
    }),
    'e2e-cpu': renderChart({
      title: "End to end: Haraka's CPU per message, lower is better",
      subtitle: `utime + stime of the Haraka process, ms per message, per size and concurrent sessions (× n); ${f.source}`,
      unit: 'CPU ms per message',
      digits: 2,
      panels: panels((e) => e.cpu),
    }),
  }
  if (f.rss) {
    const rss = f.rss
    charts.rss = renderChart({
      title: 'Peak RSS growth while scanning one 25 MB message, lower is better',
      subtitle: `The hook alone, a fresh process per plugin (median of its runs); ${f.source}`,
      unit: 'MB',
      digits: 1,
      panels: [
        {
          title: '',
          categories: ['one 25 MB message'],
          series: [
            { name: '2.x', values: [rss.v2] },
            { name: '1.6.1', values: [rss.v1] },
          ],
        },
      ],
    })
  }
  return charts
}

/** Writes `<base>-<chart>.svg` into `dir` for each chart; returns the file names. */
export function writeCharts(dir: string, base: string, f: Figures): string[] {
  const names: string[] = []
  for (const [suffix, svg] of Object.entries(chartsFor(f))) {
    const name = `${base}-${suffix}.svg`
    writeFileSync(join(dir, name), svg)
    names.push(name)
  }
  return names
}

const times = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)}×` : '–')

/** The README's table, per size: 2.x ÷ 1.6.1 in msg/s and in Haraka CPU per message, at × 1 / × 8 / × 32. */
export function summaryTable(f: Figures): { head: string[]; rows: string[][] } {
  const concs = [...new Set(f.e2e.map((e) => e.concurrency))].map((c) => `× ${c}`).join(' / ')
  return {
    head: ['message', `msg/s, 2.x ÷ 1.6.1 (${concs})`, `Haraka CPU per message, 2.x ÷ 1.6.1 (${concs})`],
    rows: [...bySize(f)].map(([size, cells]) => [
      size,
      cells.map((c) => times(c.rateRatio)).join(' / '),
      cells.map((c) => times(c.cpuRatio)).join(' / '),
    ]),
  }
}

/**
 * `markdown` with the table whose head is summaryTable()'s replaced by the table of `f`, laid out as
 * prettier lays out a markdown table (cells padded to the widest of their column, the indentation of
 * the old table kept), so that `npm run lint` accepts the README a bench run rewrote. Throws when the
 * README has no such table: a bench run must not leave the README's figures behind unnoticed.
 */
export function withSummaryTable(markdown: string, f: Figures): string {
  const { head, rows } = summaryTable(f)
  const lines = markdown.split('\n')
  // by its first two columns: the concurrencies named in the others may differ from run to run
  const found = findTable(lines, (h) => h[0] === head[0] && (h[1]?.startsWith('msg/s') ?? false))
  if (!found) throw new Error(`no table with the head "${head.join(' | ')}" to replace`)
  const indent = /^\s*/.exec(lines[found.at] ?? '')?.[0] ?? ''
  const widths = head.map((h, i) =>
    rows.reduce((w, r) => Math.max(w, (r[i] ?? '').length), Math.max(h.length, 3)),
  )
  const line = (cells: string[]) =>
    `${indent}| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`
  const table = [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)]
  return [...lines.slice(0, found.at), ...table, ...lines.slice(found.end)].join('\n')
}

/** Rewrites the performance table of the README at `readme` from `f` (withSummaryTable). */
export function writeSummaryTable(readme: string, f: Figures): void {
  writeFileSync(readme, withSummaryTable(readFileSync(readme, 'utf8'), f))
}
