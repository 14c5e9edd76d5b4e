// Grouped bar charts as standalone SVG text, hand-built (no dependency): categories × series, a value
// axis with round ticks, a legend, a title, the value on every bar. One or more panels side by side,
// each with its own scale (5 KB and 1 MB msg/s differ tenfold), sharing the title and the legend.

export interface Series {
  name: string
  /** one per category; a missing or non-finite value draws no bar and is labelled "n/a" */
  values: readonly (number | null | undefined)[]
}

export interface Panel {
  /** above the panel ("5 KB"); may be empty */
  title: string
  categories: readonly string[]
  series: readonly Series[]
}

export interface ChartSpec {
  title: string
  /** a second line under the title: what is measured, which way is better */
  subtitle?: string
  /** the value axis' unit, printed beside it */
  unit: string
  /** digits after the point on the bars' labels */
  digits: number
  panels: readonly Panel[]
}

// Okabe–Ito colours: told apart with the common colour-vision deficiencies
const COLOURS = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00']
const FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
const PANEL_WIDTH = 300
/** the widest a bar gets, when there is room (one category, few series) */
const MAX_BAR = 64
const PLOT_HEIGHT = 220
const LEFT = 52
const GAP = 24

/** Text for SVG content and attribute values: the five XML specials escaped, control characters dropped. */
export function escapeXml(text: string): string {
  return (
    text
      // eslint-disable-next-line no-control-regex
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, '')
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;')
      .replace(/'/g, '&apos;')
  )
}

const finite = (v: number | null | undefined): v is number => typeof v === 'number' && Number.isFinite(v)

/** A round axis: the top at or above `max` and a step of 1, 2, 2.5 or 5 × 10^k giving 4–6 ticks. */
export function niceAxis(max: number): { top: number; step: number } {
  if (!(max > 0) || !Number.isFinite(max)) return { top: 1, step: 0.25 }
  const raw = max / 5
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  // toPrecision: 0.05 × 3 is 0.15, not 0.15000000000000002
  const step = Number(
    (([1, 2, 2.5, 5, 10].find((m) => m * magnitude >= raw) ?? 10) * magnitude).toPrecision(12),
  )
  return { top: Number((Math.ceil(max / step - 1e-9) * step).toPrecision(12)), step }
}

/** A tick's label: as many decimals as the step needs (2.5 → 1, 0.25 → 2, 50 → 0). */
function tickText(value: number, step: number): string {
  let decimals = Math.max(0, -Math.floor(Math.log10(step)))
  if (Math.abs(step * 10 ** decimals - Math.round(step * 10 ** decimals)) > 1e-9) decimals++
  return value.toFixed(decimals)
}

const r1 = (n: number) => Math.round(n * 10) / 10

function drawPanel(panel: Panel, x0: number, y0: number, panelWidth: number, spec: ChartSpec): string[] {
  const out: string[] = []
  const plotLeft = x0 + LEFT
  const plotWidth = panelWidth - LEFT - 8
  const base = y0 + PLOT_HEIGHT
  let max = 0
  for (const s of panel.series) for (const v of s.values) if (finite(v) && v > max) max = v
  const { top, step } = niceAxis(max)
  const y = (v: number) => r1(base - (Math.max(0, v) / top) * PLOT_HEIGHT)

  if (panel.title) {
    out.push(
      `<text x="${r1(plotLeft + plotWidth / 2)}" y="${y0 - 12}" text-anchor="middle" font-size="13" font-weight="600">${escapeXml(panel.title)}</text>`,
    )
  }
  // ticks and grid lines: integer steps, so no float drift adds a tick past the top
  const ticks = Math.round(top / step)
  for (let i = 0; i <= ticks; i++) {
    const v = i * step
    out.push(
      `<line x1="${plotLeft}" x2="${plotLeft + plotWidth}" y1="${y(v)}" y2="${y(v)}" stroke="${i === 0 ? '#444' : '#ddd'}" stroke-width="1"/>`,
      `<text x="${plotLeft - 6}" y="${r1(y(v) + 4)}" text-anchor="end" font-size="11" fill="#444">${tickText(v, step)}</text>`,
    )
  }
  out.push(
    `<line x1="${plotLeft}" x2="${plotLeft}" y1="${y0}" y2="${base}" stroke="#444" stroke-width="1"/>`,
    `<text transform="translate(${x0 + 12} ${r1(y0 + PLOT_HEIGHT / 2)}) rotate(-90)" text-anchor="middle" font-size="11" fill="#444">${escapeXml(spec.unit)}</text>`,
  )

  const groups = Math.max(1, panel.categories.length)
  const groupWidth = plotWidth / groups
  const bars = Math.max(1, panel.series.length)
  const barWidth = Math.min(MAX_BAR, (groupWidth * 0.84) / bars)
  panel.categories.forEach((category, c) => {
    const gx = plotLeft + (c + 0.5) * groupWidth - (barWidth * bars) / 2
    out.push(
      `<text x="${r1(plotLeft + (c + 0.5) * groupWidth)}" y="${base + 16}" text-anchor="middle" font-size="12">${escapeXml(category)}</text>`,
    )
    panel.series.forEach((s, i) => {
      const v = s.values[c]
      const cx = r1(gx + (i + 0.5) * barWidth)
      if (!finite(v)) {
        out.push(
          `<text x="${cx}" y="${base - 4}" text-anchor="middle" font-size="9.5" fill="#666">n/a</text>`,
        )
        return
      }
      const label = v.toFixed(spec.digits)
      out.push(
        `<rect class="bar" x="${r1(gx + i * barWidth)}" y="${y(v)}" width="${r1(barWidth - 2)}" height="${r1(base - y(v))}" fill="${COLOURS[i % COLOURS.length]}" data-value="${v}"><title>${escapeXml(`${s.name}, ${category}: ${label} ${spec.unit}`)}</title></rect>`,
        `<text x="${cx}" y="${r1(y(v) - 4)}" text-anchor="middle" font-size="9.5">${label}</text>`,
      )
    })
  })
  return out
}

/** The chart as a complete SVG document. */
export function renderChart(spec: ChartSpec): string {
  const panels: readonly Panel[] =
    spec.panels.length > 0 ? spec.panels : [{ title: '', categories: [], series: [] }]
  // wide enough for the title and the subtitle (estimated: SVG has no text metrics), the panels
  // sharing whatever is left over
  const textWidth = Math.max(spec.title.length * 9.5, (spec.subtitle ?? '').length * 6.4) + 32
  const width = Math.ceil(Math.max(panels.length * PANEL_WIDTH + (panels.length - 1) * GAP + 32, textWidth))
  const panelWidth = (width - 32 - (panels.length - 1) * GAP) / panels.length
  const names = panels[0]?.series.map((s) => s.name) ?? []
  const legendY = spec.subtitle ? 58 : 40
  const plotTop = legendY + 54
  const height = plotTop + PLOT_HEIGHT + 40
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(spec.title)}" font-family="${escapeXml(FONT)}">`,
    `<title>${escapeXml(spec.title)}</title>`,
    // a background of its own: a transparent chart is unreadable on a dark page
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="16" y="24" font-size="16" font-weight="700">${escapeXml(spec.title)}</text>`,
  ]
  if (spec.subtitle) {
    out.push(`<text x="16" y="42" font-size="12" fill="#444">${escapeXml(spec.subtitle)}</text>`)
  }
  // the legend, one swatch per series, in a row under the title
  let lx = 16
  names.forEach((name, i) => {
    out.push(
      `<rect x="${lx}" y="${legendY}" width="12" height="12" fill="${COLOURS[i % COLOURS.length]}"/>`,
      `<text x="${lx + 17}" y="${legendY + 10}" font-size="12">${escapeXml(name)}</text>`,
    )
    lx += 17 + 7 * name.length + 24
  })
  panels.forEach((p, i) => out.push(...drawPanel(p, 16 + i * (panelWidth + GAP), plotTop, panelWidth, spec)))
  out.push('</svg>', '')
  return out.join('\n')
}
