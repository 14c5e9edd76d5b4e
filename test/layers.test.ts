// scripts/check-layers.mjs, the lint step that holds the folder layering of docs/architecture.md: this
// checkout passes it, and a small tree with each kind of violation fails it, naming the files.
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { REPO } from './support/harness'

type Checker = {
  check(repo?: string): string[]
  cycles(list: string[], edges: Map<string, string[]>): string[]
  LAYERS: string[][]
}
const load = (): Promise<Checker> => import(join(REPO, 'scripts', 'check-layers.mjs')) as Promise<Checker>

describe('check-layers (npm run lint)', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'layers-'))
  })
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true })
  })
  function tree(files: Record<string, string>): void {
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(join(dir, dirname(path)), { recursive: true })
      writeFileSync(join(dir, path), text)
    }
  }

  it('passes this checkout', async () => {
    assert.deepEqual((await load()).check(), [])
  })

  it('passes a tree that imports only downwards', async () => {
    tree({
      'index.ts': "import { a } from './src/policy/a'\nimport * as c from 'haraka-constants'\n",
      'src/policy/a.ts':
        "import { b } from '../config'\nimport type { E } from '../errors'\nexport const a = 1\n",
      'src/config/index.ts': "import { forLog } from '../escape'\nexport const b = 2\n",
      'src/escape.ts': 'export const forLog = 1\n',
      'src/errors.ts': 'export type E = 1\n',
    })
    assert.deepEqual((await load()).check(dir), [])
  })

  it('names an upward import, a cycle, a Haraka import outside index.ts and a file in no layer', async () => {
    tree({
      'index.ts': '',
      'src/rspamd/client.ts': "import type { ScanError } from '../policy/verdict'\n",
      'src/policy/verdict.ts': "import { x } from './skip'\nexport type ScanError = 1\n",
      'src/policy/skip.ts': "import {\n  y,\n} from './verdict'\nimport DSN from 'haraka-dsn'\n",
      'src/lda/index.ts':
        "import iniReader from 'haraka-config/lib/readers/ini'\n// import from '../../index'\n",
      'src/extra/thing.ts': '',
    })
    const problems = (await load()).check(dir)
    assert.deepEqual(problems.sort(), [
      'import cycle: src/policy/skip.ts → src/policy/verdict.ts → src/policy/skip.ts',
      'src/extra/thing.ts: in no layer of scripts/check-layers.mjs (add its folder there and to docs/architecture.md)',
      'src/lda/index.ts: imports haraka-config/lib/readers/ini; only index.ts touches Haraka',
      'src/policy/skip.ts: imports haraka-dsn; only index.ts touches Haraka',
      'src/rspamd/client.ts: imports src/policy/verdict.ts, a higher layer (src/policy/)',
    ])
  })

  // the search over the import graph, without 10⁵ files on disk: check() builds the same Map from the files
  it('finds a cycle 100 000 files long, and none in a chain as long, without running out of stack', async () => {
    const { cycles } = await load()
    const n = 100_000
    const list = Array.from({ length: n }, (_, i) => `src/config/f${i}.ts`)
    const ring = new Map(list.map((f, i) => [f, [list[(i + 1) % n] ?? '']]))
    const found = cycles(list, ring)
    assert.equal(found.length, 1)
    assert.match(found[0] ?? '', /^import cycle: src\/config\/f0\.ts → src\/config\/f1\.ts → /)
    assert.equal((found[0] ?? '').split(' → ').length, n + 1)
    // a chain: searched from its head, all 10⁵ files are on the search path at once; from its tail, none waits
    const chain = new Map(list.map((f, i) => [f, i + 1 < n ? [list[i + 1] ?? ''] : []]))
    assert.deepEqual(cycles(list.slice().reverse(), chain), [])
    assert.deepEqual(cycles(list, chain), [])
  })
})
