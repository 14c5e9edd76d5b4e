'use strict'
// The files of `npm run test:unit` (.mocharc.unit.cjs), in the order mocha's workers get them: every
// *.test.ts outside test/integration/, the slowest first. test/unit-suite.test.ts checks that none of
// them needs rspamd, Redis or Haraka.
const { readdirSync } = require('node:fs')
const { join, resolve } = require('node:path')

const REPO = resolve(__dirname, '..', '..')

const SLOW_FIRST = [
  'test/rspamd/client.test.ts',
  'test/lda/lda.test.ts',
  'test/faults.test.ts',
  'test/hostile.test.ts',
  'test/rspamd/limiter.test.ts',
  'test/package.test.ts',
  'test/plugin.test.ts',
]

function unitFiles() {
  const all = readdirSync(join(REPO, 'test'), { recursive: true })
    .map((f) => join('test', f).split('\\').join('/'))
    .filter((f) => f.endsWith('.test.ts') && !f.startsWith('test/integration/'))
    .sort()
  const missing = SLOW_FIRST.filter((f) => !all.includes(f))
  if (missing.length > 0)
    throw new Error(`test/support/unit-files.cjs: SLOW_FIRST names no test file: ${missing.join(', ')}`)
  return [...SLOW_FIRST, ...all.filter((f) => !SLOW_FIRST.includes(f))]
}

module.exports = { unitFiles, SLOW_FIRST }
