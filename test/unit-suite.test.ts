// `npm run test:unit` needs no rspamd, Redis or Haraka (docs/testing.md): none of its files
// (test/support/unit-files.cjs) loads, itself or through the files it imports, a helper that starts one
// (test/support/real-rspamd.ts, test/support/redis.ts, anything under test/integration/) or Haraka's
// own package, nor starts a server's program or start script by name. The proof that counts is a run on a
// machine without them; this keeps a test that needs one from slipping in beside the unit tests.

import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { REPO } from './support/harness'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { unitFiles } = require('./support/unit-files.cjs') as { unitFiles(): string[] }

/** What only a test of a real server loads or runs. */
const SERVER_HELPERS = ['test/support/real-rspamd.ts', 'test/support/redis.ts']
/** A child process started by name: spawn('rspamd', …), execFile("redis-server", …), exec('scripts/rspamd.sh …'). */
const RUNS = /\b(?:spawn|spawnSync|execFile|execFileSync|exec|execSync)\s*\(\s*['"`]([^'"`]+)['"`]/g
const SERVER_PROGRAM =
  /^(?:\S*\/)?(?:rspamd|rspamc|rspamadm|redis-server|redis-cli|haraka|rspamd\.sh|redis\.sh)(?:\s|$)/

/** The server programs `code` starts by name, and whether it loads Haraka's own package. */
function serverUses(code: string): string[] {
  const out = [...code.matchAll(RUNS)].map((m) => m[1] ?? '').filter((p) => SERVER_PROGRAM.test(p))
  if (/\bfrom\s*'Haraka(?:\/[^']*)?'|require\(\s*'Haraka(?:\/[^']*)?'\s*\)/.test(code)) out.push('Haraka')
  return out
}

type Specifiers = (repo: string, file: string) => string[]
/** scripts/check-layers.mjs's import reader (an ES module: loaded in before()) */
let specifiers: Specifiers

/** The repository files a TypeScript file imports by a relative path (comments left out). */
function localImports(file: string): string[] {
  const out: string[] = []
  for (const spec of specifiers(REPO, file)) {
    if (!spec.startsWith('.')) continue
    const base = join(dirname(file), spec)
    const found = [base, `${base}.ts`, join(base, 'index.ts')].find(
      (f) => /\.(ts|cjs|js|mjs)$/.test(f) && existsSync(join(REPO, f)),
    )
    if (found) out.push(relative(REPO, join(REPO, found)).split('\\').join('/'))
  }
  return out
}

/** Every file `start` loads, itself included, each with the chain of imports that reaches it. */
function reach(start: string): Map<string, string[]> {
  const seen = new Map<string, string[]>([[start, [start]]])
  const todo = [start]
  for (let file = todo.pop(); file !== undefined; file = todo.pop()) {
    if (!file.endsWith('.ts')) continue
    for (const next of localImports(file)) {
      if (seen.has(next)) continue
      seen.set(next, [...(seen.get(file) ?? []), next])
      todo.push(next)
    }
  }
  return seen
}

describe('test:unit needs no rspamd, Redis or Haraka', function () {
  const files = unitFiles()
  before(async () => {
    const layers = (await import(join(REPO, 'scripts', 'check-layers.mjs'))) as { specifiers: Specifiers }
    specifiers = layers.specifiers
  })

  it('runs every test file outside test/integration/ and none inside', () => {
    assert.ok(files.length > 40, `${files.length} files`)
    assert.ok(files.every((f) => !f.startsWith('test/integration/')))
    assert.ok(files.includes('test/unit-suite.test.ts'))
    assert.equal(new Set(files).size, files.length, 'each file once')
  })

  it('loads no helper that starts a server, and starts no server program', () => {
    const problems: string[] = []
    for (const file of files) {
      for (const [loaded, chain] of reach(file)) {
        if (SERVER_HELPERS.includes(loaded) || loaded.startsWith('test/integration/')) {
          problems.push(`${chain.join(' → ')}: starts a server`)
        } else if (loaded.startsWith('test/') && loaded !== 'test/unit-suite.test.ts') {
          const code = readFileSync(join(REPO, loaded), 'utf8').replace(/^\s*\/\/.*$/gm, '')
          for (const use of serverUses(code)) problems.push(`${chain.join(' → ')}: runs ${use}`)
        }
      }
    }
    assert.deepEqual([...new Set(problems)], [])
  })

  it('catches a unit file that imports a server helper, also through another file', () => {
    const chain = reach('test/integration/real.test.ts')
    assert.ok(
      [...chain.keys()].some((f) => SERVER_HELPERS.includes(f)),
      'the real-rspamd integration test reaches a server helper',
    )
    // a support file of the unit tests that reached real-rspamd.ts would be found through its importer
    const viaHarness = reach('test/support/real-rspamd.ts')
    assert.deepEqual(viaHarness.get('test/support/harness.ts'), [
      'test/support/real-rspamd.ts',
      'test/support/harness.ts',
    ])
    assert.deepEqual(serverUses("spawn('redis-server', args)"), ['redis-server'])
    assert.deepEqual(serverUses("execFile('/usr/bin/rspamd', ['-f'])"), ['/usr/bin/rspamd'])
    assert.deepEqual(serverUses("await exec('scripts/rspamd.sh start')"), ['scripts/rspamd.sh start'])
    assert.deepEqual(serverUses("import { Server } from 'Haraka/server'"), ['Haraka'])
    assert.deepEqual(serverUses("spawn(process.execPath, [BIN]); const name = 'rspamd'"), [])
  })
})
