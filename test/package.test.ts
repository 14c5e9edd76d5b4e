// The package as Haraka loads it: package.json → dist/index.js (CommonJS), exports copied onto a plugin object.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { builtinModules } from 'node:module'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, posix, relative, resolve } from 'node:path'
import { promisify } from 'node:util'
import { loadPlugin, REPO, unregister } from './support/harness'

const run = promisify(execFile)

/** Every .js file under dir (a loop over a stack, not recursion). */
function jsFiles(dir: string): string[] {
  const out: string[] = []
  const stack = [dir]
  for (let d = stack.pop(); d !== undefined; d = stack.pop()) {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) stack.push(join(d, e.name))
      else if (e.name.endsWith('.js')) out.push(join(d, e.name))
    }
  }
  return out
}

/** Every module name the built code loads with require() or import(), and the file that loads it. */
function loadedModules(): Array<{ spec: string; file: string }> {
  const out: Array<{ spec: string; file: string }> = []
  const re = /\b(?:require|import)\(\s*(['"])([^'"]+)\1\s*\)/g
  for (const file of [...jsFiles(join(REPO, 'dist')), join(REPO, 'bin', 'rspamd-lda')]) {
    for (const m of readFileSync(file, 'utf8').matchAll(re)) {
      out.push({ spec: m[2] as string, file: relative(REPO, file) })
    }
  }
  return out
}

/** `@scope/name/x` → `@scope/name`, `name/x` → `name`; undefined for a relative path or a Node builtin. */
function packageOf(spec: string): string | undefined {
  if (spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('node:')) return undefined
  if (builtinModules.includes(spec.split('/')[0] as string)) return undefined
  const parts = spec.split('/')
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]
}

/**
 * Deep imports into another package's files, which any release of it may move. The one left is
 * replaced by issue 27's ini reader change (haraka-config's public API): drop it from here then.
 */
const KNOWN_DEEP_IMPORTS = new Set(['haraka-config/lib/readers/ini'])

interface Pkg {
  name: string
  version: string
  license: string
  author: string
  repository: { type: string; url: string }
  bugs: { url: string }
  homepage: string
  main: string
  types: string
  files: string[]
  bin: Record<string, string>
  engines: { node: string }
  dependencies: Record<string, string>
}

describe('package', function () {
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as Pkg

  it('is haraka-plugin-rspamd 2.x with main and types in dist/', () => {
    assert.equal(pkg.name, 'haraka-plugin-rspamd')
    assert.match(pkg.version, /^2\./)
    assert.equal(pkg.main, 'dist/index.js')
    assert.equal(pkg.types, 'dist/index.d.ts')
    assert.ok(existsSync(join(REPO, pkg.main)), 'dist/index.js is built (npm test builds first)')
    assert.deepEqual([...pkg.files].sort(), [
      'CHANGELOG.md',
      'LICENSE',
      'README.md',
      // what the packed docs link to: the benchmark results and charts, the folders' READMEs
      'bench/README.md',
      'bench/results/*.md',
      'bench/results/*.svg',
      'bin',
      'config',
      'dist',
      'docs',
      'src/*/README.md',
      'test/rspamd-server/README.md',
    ])
    assert.equal(pkg.engines.node, '>=20.18.1')
  })

  it('ships the rspamd-lda command: bin entry, executable, in the npm pack file list', async () => {
    assert.deepEqual(pkg.bin, { 'rspamd-lda': 'bin/rspamd-lda' })
    const bin = join(REPO, 'bin', 'rspamd-lda')
    assert.match(readFileSync(bin, 'utf8'), /^#!\/usr\/bin\/env node\n/)
    assert.ok((statSync(bin).mode & 0o111) !== 0, 'bin/rspamd-lda is executable')
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO })
    const packed = JSON.parse(stdout) as Array<{ files: Array<{ path: string; mode: number }> }>
    const files = packed[0]?.files ?? []
    const entry = files.find((f) => f.path === 'bin/rspamd-lda')
    assert.ok(entry, 'bin/rspamd-lda is packed')
    assert.ok((entry.mode & 0o111) !== 0, 'packed executable')
    assert.ok(
      files.some((f) => f.path === 'dist/src/lda/index.js'),
      'dist/src/lda/index.js is packed',
    )
    for (const doc of ['CHANGELOG.md', 'docs/README.md', 'docs/configuration.md']) {
      assert.ok(
        files.some((f) => f.path === doc),
        `${doc} is packed (README.md links to it)`,
      )
    }
  })

  it('every relative link and image of a packed markdown file points at a packed file (npm has no repository beside it)', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO })
    const packed = JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>
    const paths = new Set((packed[0]?.files ?? []).map((f) => f.path))
    const broken: string[] = []
    for (const doc of [...paths].filter((p) => p.endsWith('.md'))) {
      const text = readFileSync(join(REPO, doc), 'utf8').replace(/```[\s\S]*?```/g, '')
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = (m[1] ?? '').split('#')[0] ?? ''
        if (target === '' || /^[a-z]+:/i.test(target)) continue
        const resolved = posix.normalize(posix.join(posix.dirname(doc), target))
        const isDir = [...paths].some((p) => p.startsWith(`${resolved.replace(/\/$/, '')}/`))
        if (!paths.has(resolved) && !isDir) broken.push(`${doc} → ${target}`)
      }
    }
    assert.deepEqual(broken, [])
  })

  it('ships source maps that carry their sources (inlineSources): no map points at a file left out of the package', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO })
    const packed = JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>
    const paths = new Set((packed[0]?.files ?? []).map((f) => f.path))
    const maps = [...paths].filter((p) => p.endsWith('.map'))
    assert.ok(maps.includes('dist/index.js.map'), 'dist/index.js.map is packed')
    for (const map of maps) {
      assert.ok(paths.has(map.slice(0, -'.map'.length)), `${map}: the file it maps is packed`)
      const json = JSON.parse(readFileSync(join(REPO, map), 'utf8')) as {
        sources: string[]
        sourcesContent?: Array<string | null>
      }
      assert.ok(json.sources.length > 0, `${map} names its sources`)
      json.sources.forEach((source, i) => {
        const inPackage = relative(REPO, resolve(REPO, dirname(map), source))
        const content = json.sourcesContent?.[i]
        if (paths.has(inPackage)) return
        assert.equal(typeof content, 'string', `${map}: ${source} is neither packed nor inlined`)
        // the inlined text is the current source, not a stale build
        assert.equal(content, readFileSync(join(REPO, inPackage), 'utf8'), `${map}: ${source} is current`)
      })
    }
  })

  it("has the family's metadata: an MIT LICENSE, author, repository (npm publish --provenance needs its url), bugs, homepage", async () => {
    assert.equal(pkg.license, 'MIT')
    const license = readFileSync(join(REPO, 'LICENSE'), 'utf8')
    assert.match(license, /^MIT License\n\nCopyright \(c\) \d{4} \S/)
    assert.match(license, /THE SOFTWARE IS PROVIDED "AS IS"/)
    assert.match(pkg.author, /^Haraka Team <[^@\s>]+@[^\s>]+>$/)
    assert.deepEqual(pkg.repository, {
      type: 'git',
      url: 'git+https://github.com/haraka/haraka-plugin-rspamd.git',
    })
    assert.deepEqual(pkg.bugs, { url: 'https://github.com/haraka/haraka-plugin-rspamd/issues' })
    assert.equal(pkg.homepage, 'https://github.com/haraka/haraka-plugin-rspamd#readme')
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO })
    const packed = JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>
    assert.ok(
      (packed[0]?.files ?? []).some((f) => f.path === 'LICENSE'),
      'LICENSE is packed',
    )
  })

  it('loads every runtime dependency from the built code, and only those (no unused one, none undeclared)', () => {
    const loaded = new Set<string>()
    for (const { spec, file } of loadedModules()) {
      const name = packageOf(spec)
      if (name === undefined) continue
      assert.ok(name in pkg.dependencies, `${file} loads ${spec}, which is not in dependencies`)
      loaded.add(name)
    }
    for (const name of Object.keys(pkg.dependencies)) {
      assert.ok(loaded.has(name), `${name} is in dependencies but nothing in dist/ or bin/ loads it`)
    }
  })

  it("loads other packages by their name only: no deep import into a package's private files", () => {
    const deep = loadedModules().filter(({ spec }) => {
      const name = packageOf(spec)
      return name !== undefined && spec !== name && !KNOWN_DEEP_IMPORTS.has(spec)
    })
    assert.deepEqual(
      deep.map(({ spec, file }) => `${file}: ${spec}`),
      [],
    )
    // the scan finds what the code loads: the exception above is still there, and the lazy undici
    const specs = new Set(loadedModules().map((m) => m.spec))
    assert.ok(specs.has('undici'), 'the scan sees a lazy require()')
  })

  it('depends on undici 7, not 8 (which needs Node 22)', () => {
    assert.match(pkg.dependencies.undici, /^\^?7\./)
  })

  it('loads the way Haraka does: require the directory, copy the exports onto a plugin, register, hook', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(REPO) as Record<string, unknown>
    for (const name of [
      'register',
      'rspamd_data_post',
      'rspamd_init_master',
      'rspamd_init_child',
      'shutdown',
    ]) {
      assert.equal(typeof mod[name], 'function', `${name} is exported`)
    }
    const hooks: [string, string][] = []
    const logs: string[] = []
    const plugin: Record<string, unknown> = {
      name: 'rspamd',
      timeout: 30,
      config: { get: () => ({ main: { host: '127.0.0.1', port: 11333 } }) },
      register_hook: (hook: string, method: string) => hooks.push([hook, method]),
      loginfo: (m: string) => logs.push(m),
      logwarn: (m: string) => logs.push(m),
      logerror: (m: string) => logs.push(m),
    }
    for (const [k, v] of Object.entries(mod)) plugin[k] = v
    ;(plugin.register as () => void).call(plugin)
    assert.deepEqual(hooks, [
      ['data_post', 'rspamd_data_post'],
      // start-up: where a [greylist] store = redis connects (each cluster worker, or the single process)
      ['init_master', 'rspamd_init_master'],
      ['init_child', 'rspamd_init_child'],
      // discard and quarantine: first and last where Haraka queues, inbound and outbound
      ['queue', 'rspamd_queue'],
      ['queue', 'rspamd_queue_guard'],
      ['queue_outbound', 'rspamd_queue'],
      ['queue_outbound', 'rspamd_queue_guard'],
    ])
    // a plugin that inherits this one under another name does not get the hook twice
    const child: Record<string, unknown> = { ...plugin, name: 'rspamd_child' }
    hooks.length = 0
    ;(child.register as () => void).call(child)
    assert.deepEqual(hooks, [])
    // the hook with no transaction just continues
    let code: unknown = 'not called'
    ;(plugin.rspamd_data_post as (n: (c?: number) => void, c: unknown) => void).call(
      plugin,
      (c?: number) => (code = c),
      { transaction: null },
    )
    assert.equal(code, undefined)
    return Promise.all([plugin, child].map((p) => (p.shutdown as () => Promise<void>).call(p)))
  })

  it("is what the haraka-test-fixtures harness loads: this checkout's dist/, even with node_modules a symlink", async () => {
    const plugin = loadPlugin('host = 127.0.0.1\n')
    try {
      assert.equal(plugin.plugin_path, join(REPO, 'package.json'))
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const mod = require(REPO) as Record<string, unknown>
      assert.equal(plugin.rspamd_data_post, mod.rspamd_data_post, "the hook is this checkout's")
      assert.equal(plugin.name, 'rspamd')
    } finally {
      await unregister(plugin)
    }
  })

  it('ships config/rspamd.ini with every section, those of 1.6.x and the new ones', () => {
    const ini = readFileSync(join(REPO, 'config', 'rspamd.ini'), 'utf8')
    for (const section of [
      'tls',
      'auth',
      'request',
      'request_headers',
      'dkim',
      'header',
      'spambar',
      'check',
      'reject',
      'soft_reject',
      'rewrite_subject',
      'rmilter_headers',
      'smtp_message',
      'defer',
      'greylist',
      'redis',
      'thresholds',
      'ham',
    ]) {
      assert.match(ini, new RegExp(`^\\[${section}\\]$`, 'm'), `[${section}]`)
    }
  })
})
