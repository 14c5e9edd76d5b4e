'use strict'
// `npm run test:unit`: every test outside test/integration/ (none of them needs rspamd, Redis or Haraka),
// four files at a time. mocha hands the files to its workers in the order of `spec`, so the files that
// take longest (they wait on timeouts, spawn rspamd-lda or build 10⁵-entry inputs) go first: started
// last, in alphabetical order, they alone ran 20 s past the rest. The order changes only how long the run takes.
const { readdirSync } = require('node:fs')
const { join } = require('node:path')
const base = require('./.mocharc.cjs')

const SLOW_FIRST = [
  'test/rspamd/client.test.ts',
  'test/lda/lda.test.ts',
  'test/faults.test.ts',
  'test/hostile.test.ts',
  'test/rspamd/limiter.test.ts',
  'test/layers.test.ts',
  'test/package.test.ts',
  'test/plugin.test.ts',
]

function unitFiles() {
  const all = readdirSync('test', { recursive: true })
    .map((f) => join('test', f).split('\\').join('/'))
    .filter((f) => f.endsWith('.test.ts') && !f.startsWith('test/integration/'))
    .sort()
  const missing = SLOW_FIRST.filter((f) => !all.includes(f))
  if (missing.length > 0)
    throw new Error(`.mocharc.unit.cjs: SLOW_FIRST names no test file: ${missing.join(', ')}`)
  return [...SLOW_FIRST, ...all.filter((f) => !SLOW_FIRST.includes(f))]
}

module.exports = {
  ...base,
  ...(base.spec ? { spec: unitFiles() } : {}),
  parallel: true,
  jobs: 4,
}
