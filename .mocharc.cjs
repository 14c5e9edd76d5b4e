'use strict'
// Tests are TypeScript, run through tsx; the Haraka-style load test uses the built dist/.
// mocha adds the files named on its command line to `spec` instead of replacing it, so the whole
// suite is the spec only when no test file is named: `npx mocha test/policy/verdict.test.ts` runs one file.
const named = process.argv.slice(2).some((a) => /\.test\.ts$/.test(a) || /\*/.test(a))
module.exports = {
  import: ['tsx'],
  ...(named ? {} : { spec: ['test/**/*.test.ts'] }),
  reporter: './test/support/summary-reporter.cjs',
  timeout: 20000,
}
