'use strict'
// Tests are TypeScript, run through tsx; the Haraka-style load test uses the built dist/.
module.exports = {
  import: ['tsx'],
  spec: ['test/**/*.test.ts'],
  reporter: './test/support/summary-reporter.cjs',
  timeout: 20000,
  exit: true,
}
