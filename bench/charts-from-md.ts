// Draws the charts of a report whose JSON is not at hand (bench/results/*.md are committed, the JSON is
// not): `npx tsx bench/charts-from-md.ts [bench/results/latest.md …]` writes <name>-*.svg beside each.
// `npm run bench` draws its own from the run's figures; this gives the same SVGs for the same run.

import { readFileSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { figuresFromMarkdown, writeCharts } from './figures'

const REPO = resolve(__dirname, '..')

const files = process.argv.slice(2)
for (const file of files.length > 0 ? files : [join(REPO, 'bench', 'results', 'latest.md')]) {
  const written = writeCharts(
    dirname(file),
    basename(file, '.md'),
    figuresFromMarkdown(readFileSync(file, 'utf8')),
  )
  console.log(`${file}: ${written.join(', ')}`)
}
