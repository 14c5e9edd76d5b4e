// Draws the charts of a report whose JSON is not at hand (bench/results/*.md are committed, the JSON is
// not): `npx tsx bench/charts-from-md.ts [bench/results/latest.md …]` writes <name>-*.svg beside each, and
// for bench/results/latest.md the README's table. `npm run bench` draws its own from the run's figures;
// this gives the same SVGs and table for the same run.

import { readFileSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { figuresFromMarkdown, writeCharts, writeSummaryTable } from './figures'

const REPO = resolve(__dirname, '..')

const files = process.argv.slice(2)
const LATEST = join(REPO, 'bench', 'results', 'latest.md')
for (const file of files.length > 0 ? files : [LATEST]) {
  const figures = figuresFromMarkdown(readFileSync(file, 'utf8'))
  const written = writeCharts(dirname(file), basename(file, '.md'), figures)
  if (resolve(file) === LATEST) {
    writeSummaryTable(join(REPO, 'README.md'), figures)
    written.push('the table of README.md')
  }
  console.log(`${file}: ${written.join(', ')}`)
}
