// The benchmark's charts (bench/chart.ts) and the figures they are drawn from (bench/figures.ts), and
// that what is committed is drawn from the committed report: the SVGs beside bench/results/latest.md,
// the README's performance table, docs/performance.md's images.

import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { escapeXml, niceAxis, renderChart, type ChartSpec } from '../bench/chart'
import * as prettier from 'prettier'
import {
  chartsFor,
  figuresFromMarkdown,
  markdownTable,
  summaryTable,
  withSummaryTable,
} from '../bench/figures'

const REPO = resolve(__dirname, '..')
const RESULTS = join(REPO, 'bench', 'results')

/** Every tag closed in order, every attribute quoted, no text outside the root: a well-formed document. */
function assertWellFormed(svg: string): void {
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" /)
  assert.match(svg, /<\/svg>\n$/)
  const stack: string[] = []
  const tag = /<(\/?)([a-zA-Z][\w-]*)((?:\s+[\w:-]+="[^"<>]*")*)\s*(\/?)>/g
  let at = 0
  for (let m = tag.exec(svg); m; m = tag.exec(svg)) {
    // between tags: text with no markup character left unescaped
    assert.doesNotMatch(svg.slice(at, m.index), /[<>]|&(?!(amp|lt|gt|quot|apos);)/, 'escaped text')
    at = m.index + m[0].length
    const [, close, name = '', , selfClosing] = m
    if (close) assert.equal(stack.pop(), name, `</${name}> closes the open tag`)
    else if (!selfClosing) stack.push(name)
  }
  assert.equal(svg.slice(at).trim(), '', 'nothing after </svg>')
  assert.deepEqual(stack, [], 'every tag closed')
}

/** The bars of a chart: value (data-value), top and height, in drawing order. */
function bars(svg: string): { value: number; y: number; height: number; x: number; width: number }[] {
  const found = []
  const re =
    /<rect class="bar" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" [^>]*data-value="([^"]+)"/g
  for (let m = re.exec(svg); m; m = re.exec(svg)) {
    found.push({
      x: Number(m[1]),
      y: Number(m[2]),
      width: Number(m[3]),
      height: Number(m[4]),
      value: Number(m[5]),
    })
  }
  return found
}

const spec = (over: Partial<ChartSpec> = {}): ChartSpec => ({
  title: 'msg/s',
  subtitle: 'higher is better',
  unit: 'msg/s',
  digits: 1,
  panels: [
    {
      title: '5 KB',
      categories: ['× 1', '× 8', '× 32'],
      series: [
        { name: '2.x', values: [159.9, 291.3, 378.8] },
        { name: '1.6.1', values: [163.7, 290.3, 357] },
      ],
    },
    {
      title: '1 MB',
      categories: ['× 1', '× 8', '× 32'],
      series: [
        { name: '2.x', values: [31, 43.6, 48.2] },
        { name: '1.6.1', values: [23.6, 31.3, 34] },
      ],
    },
  ],
  ...over,
})

describe('bench/chart.ts: grouped bar charts as SVG', function () {
  it('is a well-formed SVG document with the title, the legend, the categories and a label per bar', () => {
    const svg = renderChart(spec())
    assertWellFormed(svg)
    assert.match(svg, /<title>msg\/s<\/title>/)
    for (const text of [
      'higher is better',
      '5 KB',
      '1 MB',
      '× 32',
      '>2.x<',
      '>1.6.1<',
      '>378.8<',
      '>357.0<',
    ]) {
      assert.ok(svg.includes(text), text)
    }
    assert.equal(bars(svg).length, 12)
  })

  it('draws bars in proportion to their values, on one baseline, each panel on its own scale', () => {
    const all = bars(renderChart(spec()))
    for (const panel of [all.slice(0, 6), all.slice(6)]) {
      const base = (panel[0]?.y ?? 0) + (panel[0]?.height ?? 0)
      const perUnit = (panel[0]?.height ?? 0) / (panel[0]?.value ?? 1)
      for (const b of panel) {
        assert.ok(Math.abs(b.y + b.height - base) <= 0.11, `bar of ${b.value} stands on the baseline`)
        assert.ok(Math.abs(b.height - b.value * perUnit) <= 0.2, `bar of ${b.value} is in proportion`)
      }
    }
    // 48.2 msg/s at 1 MB is drawn about as tall as 378.8 at 5 KB: each panel has its own axis
    const tallest = (p: typeof all) => Math.max(...p.map((b) => b.height))
    assert.ok(tallest(all.slice(6)) > 0.8 * tallest(all.slice(0, 6)))
  })

  it('escapes the title, subtitle, unit, panel titles, categories and series names', () => {
    const evil = `<script>alert("x")</script> & 'q'\u0000\u001b`
    const svg = renderChart({
      title: evil,
      subtitle: evil,
      unit: evil,
      digits: 1,
      panels: [{ title: evil, categories: [evil], series: [{ name: evil, values: [1] }] }],
    })
    assertWellFormed(svg)
    assert.ok(!svg.includes('<script'), 'no markup from a label')
    assert.ok(svg.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &apos;q&apos;'))
    // eslint-disable-next-line no-control-regex
    assert.doesNotMatch(svg, /[\u0000-\u0008\u000b\u000c\u000e-\u001f]/, 'no control characters')
    assert.equal(escapeXml('a&b<c>"d\''), 'a&amp;b&lt;c&gt;&quot;d&apos;')
  })

  it('draws no NaN or Infinity: zero, missing and non-finite values, no categories, no panels', () => {
    const cases: ChartSpec[] = [
      spec({ panels: [] }),
      spec({ panels: [{ title: '', categories: [], series: [] }] }),
      spec({ panels: [{ title: 'zeros', categories: ['a', 'b'], series: [{ name: 's', values: [0, 0] }] }] }),
      spec({
        panels: [
          {
            title: 'holes',
            categories: ['a', 'b', 'c', 'd', 'e'],
            series: [{ name: 's', values: [NaN, null, undefined, Infinity, 2] }],
          },
        ],
      }),
      spec({ panels: [{ title: 'short', categories: ['a', 'b'], series: [{ name: 's', values: [] }] }] }),
      spec({ panels: [{ title: 'negative', categories: ['a'], series: [{ name: 's', values: [-3] }] }] }),
    ]
    for (const c of cases) {
      const svg = renderChart(c)
      assertWellFormed(svg)
      assert.doesNotMatch(svg, /NaN|Infinity|undefined/, c.panels[0]?.title ?? 'no panels')
      for (const b of bars(svg)) assert.ok(b.height >= 0 && b.y >= 0 && b.width > 0)
    }
    const holes = renderChart(cases[3] as ChartSpec)
    assert.equal(bars(holes).length, 1, 'only the finite value is drawn')
    assert.equal(holes.match(/>n\/a</g)?.length, 4, 'the others say n/a')
    const zeros = bars(renderChart(cases[2] as ChartSpec))
    assert.deepEqual(
      zeros.map((b) => b.height),
      [0, 0],
    )
  })

  it('puts the axis top at a round value at or above the largest, in 4 to 6 round steps', () => {
    const table: [number, number, number][] = [
      [378.8, 400, 100],
      [5.57, 6, 2],
      [26.84, 30, 10],
      [1, 1, 0.2],
      [8.2, 10, 2],
      [0.13, 0.15, 0.05],
      [0.11, 0.125, 0.025],
    ]
    for (const [max, top, step] of table) {
      const axis = niceAxis(max)
      assert.ok(
        Math.abs(axis.top - top) < 1e-9 && Math.abs(axis.step - step) < 1e-9,
        `${max}: ${JSON.stringify(axis)}`,
      )
    }
    for (let max = 0.001; max < 1e7; max *= 1.37) {
      const { top, step } = niceAxis(max)
      const ticks = Math.round(top / step)
      assert.ok(top >= max - 1e-9 && ticks >= 3 && ticks <= 6, `${max}: top ${top}, step ${step}`)
    }
    for (const bad of [0, -1, NaN, Infinity]) assert.deepEqual(niceAxis(bad), { top: 1, step: 0.25 })
  })
})

describe('bench/figures.ts: the figures of a report', function () {
  const report = [
    '`BENCH_QUICK=1 npm run bench` on 2026-11-30T10:00:00Z (BENCH_QUICK=1: short turns, rough figures); 2 × CPU, Node v22.1.0, shared.',
    '',
    '|  | ceiling | 2.x | 2.x over undici | 1.6.1 | 2.x ÷ 1.6.1 |',
    '|---|---|---|---|---|---|',
    '| peak RSS growth, one 25 MB message (median of 1) | 0.0 MB | 3.5 MB | 4.0 MB | 8.0 MB | 0.44× |',
    '',
    '| size   | conc | 2.x msg/s | 1.6.1 msg/s | 2.x ÷ 1.6.1 msg/s | 2.x Haraka CPU ms/msg | 1.6.1 Haraka CPU ms/msg | 2.x ÷ 1.6.1 CPU |',
    '| ------ | ---- | --------- | ----------- | ----------------- | --------------------- | ----------------------- | --------------- |',
    '| 5 KB   | 1    | 100.0     | 50.0        | 2.00×             | 1.50                  | 3.00                    | 0.50×           |',
    '| 5 KB   | 8    | 200.0     | 200.0       | 1.00×             | –                     | 2.00                    | –               |',
    '| 1 MB   | 1    | 10.0      | 20.0        | 0.50×             | 20.00                 | 10.00                   | 2.00×           |',
  ].join('\n')

  it('reads the end-to-end table (formatted by prettier or not), the RSS row and which run it was', () => {
    const f = figuresFromMarkdown(report)
    assert.equal(f.source, 'npm run bench, 2026-11-30, Node v22.1.0 (BENCH_QUICK=1: rough figures)')
    assert.deepEqual(f.rss, { v2: 3.5, v1: 8 })
    assert.equal(f.e2e.length, 3)
    assert.deepEqual(f.e2e[0], {
      size: '5 KB',
      concurrency: 1,
      rate: { v2: 100, v1: 50 },
      cpu: { v2: 1.5, v1: 3 },
      rateRatio: 2,
      cpuRatio: 0.5,
    })
    assert.ok(Number.isNaN(f.e2e[1]?.cpu.v2) && Number.isNaN(f.e2e[1]?.cpuRatio), '– is no figure')
    assert.deepEqual(summaryTable(f).rows, [
      ['5 KB', '2.00× / 1.00×', '0.50× / –'],
      ['1 MB', '0.50×', '2.00×'],
    ])
  })

  it('refuses a report without the end-to-end table, naming it', () => {
    assert.throws(() => figuresFromMarkdown('# nothing here\n'), /no end-to-end table/)
  })
})

describe('the committed charts and tables are drawn from bench/results/latest.md', function () {
  const latest = figuresFromMarkdown(readFileSync(join(RESULTS, 'latest.md'), 'utf8'))

  it('bench/results/latest-*.svg (regenerate: npx tsx bench/charts-from-md.ts)', () => {
    for (const [suffix, svg] of Object.entries(chartsFor(latest))) {
      const file = join(RESULTS, `latest-${suffix}.svg`)
      assert.ok(existsSync(file), `${file} is committed`)
      assert.equal(readFileSync(file, 'utf8'), svg, `${file} is drawn from latest.md`)
    }
  })

  it("the README's performance table", () => {
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8')
    const want = summaryTable(latest)
    const rows = markdownTable(readme, want.head)
    assert.deepEqual(
      rows.map((r) => want.head.map((h) => r[h])),
      want.rows,
    )
  })

  it("a bench run rewrites the README's table as prettier lays it out, and nothing else", async () => {
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8')
    assert.equal(withSummaryTable(readme, latest), readme, 'the same figures: the same bytes')
    // cells of other widths: a ratio of two integer digits, and a cell with no figure
    const other = {
      ...latest,
      e2e: latest.e2e.map((e, i) => ({
        ...e,
        rateRatio: e.rateRatio * 11,
        cpuRatio: i === 0 ? NaN : e.cpuRatio,
      })),
    }
    const rewritten = withSummaryTable(readme, other)
    const want = summaryTable(other)
    assert.deepEqual(
      markdownTable(rewritten, want.head).map((r) => want.head.map((h) => r[h])),
      want.rows,
    )
    const options = { ...(await prettier.resolveConfig(join(REPO, 'README.md'))), parser: 'markdown' }
    assert.equal(await prettier.format(rewritten, options), rewritten, 'prettier --check accepts it')
    const changed = (a: string, b: string) => a.split('\n').filter((l, i) => l !== b.split('\n')[i])
    assert.equal(rewritten.split('\n').length, readme.split('\n').length)
    assert.ok(
      changed(rewritten, readme).every((l) => l.trimStart().startsWith('|')),
      'only table lines change',
    )
    assert.throws(
      () => withSummaryTable('# no table here\n', latest),
      /no table with the head "message \| msg\/s/,
    )
  })

  it('docs/performance.md shows each chart with a relative link that resolves', () => {
    const doc = readFileSync(join(REPO, 'docs', 'performance.md'), 'utf8')
    for (const suffix of Object.keys(chartsFor(latest))) {
      const link = `../bench/results/latest-${suffix}.svg`
      assert.ok(doc.includes(`](${link})`), `docs/performance.md shows ${link}`)
      assert.ok(existsSync(resolve(REPO, 'docs', link)))
    }
  })
})
