'use strict'
// Tests are TypeScript, run through tsx; the Haraka-style load test uses the built dist/.
module.exports = {
  import: ['tsx'],
  // git worktrees share node_modules through a symlink: without this, haraka-test-fixtures resolves
  // to the symlink's target and loads the other checkout's package.json and dist
  'node-option': ['preserve-symlinks', 'import=tsx'],
  spec: ['test/**/*.test.ts'],
  reporter: './test/support/summary-reporter.cjs',
  timeout: 20000,
  exit: true,
}
