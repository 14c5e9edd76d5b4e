'use strict'
// `npm run test:unit`: every test outside test/integration/ (none of them needs rspamd, Redis or Haraka),
// four files at a time. mocha hands the files to its workers in the order of `spec`, so the files that
// take longest (they wait on timeouts, spawn rspamd-lda or build 10⁵-entry inputs) go first: started
// last, in alphabetical order, they alone ran 20 s past the rest. The order changes only how long the run takes.
const { unitFiles } = require('./test/support/unit-files.cjs')
const base = require('./.mocharc.cjs')

module.exports = {
  ...base,
  ...(base.spec ? { spec: unitFiles() } : {}),
  parallel: true,
  jobs: 4,
}
