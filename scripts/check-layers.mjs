#!/usr/bin/env node
// The architecture of docs/architecture.md, checked by `npm run lint` rather than by eye:
// 1. layering: a file of src/ imports only from its own folder or from a folder of a lower layer;
// 2. no import cycle among the plugin's own files (type-only imports count: a cycle of types is a knot
//    in the design even when it compiles away);
// 3. index.ts (the plugin's entry) is the only file that imports Haraka's packages (haraka-config,
//    haraka-constants, haraka-dsn, Haraka itself, any path inside them); rspamd-lda reads its ini file
//    with src/config/ini.ts.
// Exits 1 with one line per violation. Reads the import lines of the TypeScript sources, nothing else.
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, normalize, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..')

/** Lowest first. A file may import from its own layer and the ones before it. */
export const LAYERS = [
  ['src/escape.ts', 'src/errors.ts', 'src/version.ts'], // the shared base
  ['src/config/'],
  ['src/rspamd/'],
  ['src/message/'],
  ['src/policy/'],
  ['src/report/'],
  ['src/lda/'],
  ['index.ts'],
]
const HARAKA = /^(haraka-config|haraka-constants|haraka-dsn|haraka-net-utils|haraka-plugin-|Haraka)(\/|$)/

function layerOf(file) {
  const i = LAYERS.findIndex((layer) =>
    layer.some((p) => (p.endsWith('/') ? file.startsWith(p) : file === p)),
  )
  return i
}

function sources(repo) {
  const out = ['index.ts']
  const stack = ['src']
  while (stack.length > 0) {
    const dir = stack.pop()
    for (const entry of readdirSync(join(repo, dir), { withFileTypes: true })) {
      const path = `${dir}/${entry.name}`
      if (entry.isDirectory()) stack.push(path)
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path)
    }
  }
  return out.sort()
}

const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)'([^']+)'/gm

/** The specifiers a file imports, comments left out (also test/unit-suite.test.ts's import walk). */
export function specifiers(repo, file) {
  const text = readFileSync(join(repo, file), 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/(^|[^:'"])\/\/.*$/gm, '$1')
  return [...text.matchAll(SPECIFIER)].map((m) => m[1])
}

/** A relative specifier → the repository file it names, or undefined when it names none. */
function resolveLocal(from, spec, files) {
  const base = normalize(join(dirname(from), spec)).replace(/\\/g, '/')
  return [`${base}.ts`, `${base}/index.ts`].find((f) => files.has(f))
}

/** The violations in the checkout at `repo` (this one by default), one line each. */
export function check(repo = REPO) {
  const list = sources(repo)
  const files = new Set(list)
  const problems = []
  const edges = new Map()
  for (const file of list) {
    const own = layerOf(file)
    if (own < 0)
      problems.push(
        `${file}: in no layer of scripts/check-layers.mjs (add its folder there and to docs/architecture.md)`,
      )
    const targets = []
    for (const spec of specifiers(repo, file)) {
      if (!spec.startsWith('.')) {
        if (HARAKA.test(spec) && file !== 'index.ts') {
          problems.push(`${file}: imports ${spec}; only index.ts touches Haraka`)
        }
        continue
      }
      const target = resolveLocal(file, spec, files)
      if (target === undefined) continue // a type declaration or a JSON file: not a source of ours
      targets.push(target)
      const theirs = layerOf(target)
      if (own >= 0 && theirs > own) {
        problems.push(`${file}: imports ${target}, a higher layer (${LAYERS[theirs].join(' ')})`)
      }
    }
    edges.set(file, targets)
  }
  return problems.concat(cycles(list, edges))
}

/**
 * The import cycles of a graph (file → the files it imports), each as one line. An iterative depth-first
 * search that colours each file once, so a chain of 10⁵ files costs no stack.
 */
export function cycles(list, edges) {
  const problems = []
  const state = new Map() // undefined: unseen, 1: on the current path, 2: done
  for (const start of list) {
    if (state.get(start) !== undefined) continue
    const path = [start]
    const next = [0]
    state.set(start, 1)
    while (path.length > 0) {
      const file = path[path.length - 1]
      const targets = edges.get(file) ?? []
      const i = next[next.length - 1]
      if (i >= targets.length) {
        state.set(file, 2)
        path.pop()
        next.pop()
        continue
      }
      next[next.length - 1] = i + 1
      const target = targets[i]
      const seen = state.get(target)
      if (seen === 1) {
        const cycle = path.slice(path.indexOf(target)).concat(target)
        problems.push(`import cycle: ${cycle.join(' → ')}`)
      } else if (seen === undefined) {
        state.set(target, 1)
        path.push(target)
        next.push(0)
      }
    }
  }
  return problems
}

if (relative(process.argv[1] ?? '', fileURLToPath(import.meta.url)) === '') {
  const problems = check()
  for (const p of problems) console.error(`check-layers: ${p}`)
  if (problems.length > 0) process.exit(1)
  console.log(`check-layers: ${sources(REPO).length} files, layers held, no import cycle`)
}
