// The package as Haraka loads it: package.json → dist/index.js (CommonJS), exports copied onto a plugin object.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { promisify } from 'node:util'
import { loadPlugin, REPO, unregister } from './support/harness'

const run = promisify(execFile)

interface Pkg {
  name: string
  version: string
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
    assert.deepEqual([...pkg.files].sort(), ['CHANGELOG.md', 'README.md', 'bin', 'config', 'dist', 'docs'])
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
      'thresholds',
      'ham',
    ]) {
      assert.match(ini, new RegExp(`^\\[${section}\\]$`, 'm'), `[${section}]`)
    }
  })
})
