// scripts/check-layers.mjs, the lint step that holds the folder layering of docs/architecture.md: this
// checkout passes it, and a small tree with each kind of violation fails it, naming the files.
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { REPO } from './support/harness'

type Checker = { check(repo?: string): string[]; LAYERS: string[][] }
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

  it('finds a cycle 100 000 files long without running out of stack', async () => {
    const files: Record<string, string> = { 'index.ts': '' }
    const n = 100_000
    for (let i = 0; i < n; i++) files[`src/config/f${i}.ts`] = `import { x } from './f${(i + 1) % n}'\n`
    tree(files)
    const problems = (await load()).check(dir)
    assert.equal(problems.length, 1)
    assert.match(problems[0] ?? '', /^import cycle: src\/config\/f\d+\.ts → /)
  }).timeout(120_000)
})
