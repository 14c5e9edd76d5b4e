// README.md, CHANGELOG.md and docs/*.md: every relative link and anchor resolves (they are read on
// GitHub and on the npm page, where a broken one is a dead end), no path of the machine the docs
// were written on leaks into them, and the README stays an operator's first page.

import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'

const REPO = resolve(__dirname, '..')

function markdownFiles(): string[] {
  const docs = join(REPO, 'docs')
  const pages = readdirSync(docs)
    .filter((f) => f.endsWith('.md'))
    .map((f) => join(docs, f))
  return [join(REPO, 'README.md'), join(REPO, 'CHANGELOG.md'), ...pages]
}

/** The text outside fenced code blocks and code spans, where a `[x](y)` is a link. */
function prose(text: string): string {
  return text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').replace(/(`+)[\s\S]*?\1/g, '')
}

/**
 * The anchors GitHub gives a file's headings: lower case, punctuation other than `-` and `_`
 * dropped, spaces to `-`, and `-1`, `-2`… on repeats.
 */
export function anchors(text: string): Set<string> {
  const out = new Set<string>()
  const seen = new Map<string, number>()
  const body = text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '')
  for (const m of body.matchAll(/^#{1,6}[ \t]+(.+?)[ \t#]*$/gm)) {
    const slug = m[1]
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\p{M}\s_-]/gu, '')
      .replace(/\s/g, '-')
    const n = seen.get(slug) ?? 0
    seen.set(slug, n + 1)
    out.add(n === 0 ? slug : `${slug}-${n}`)
  }
  return out
}

interface Link {
  file: string
  target: string
}

function links(file: string): Link[] {
  const text = prose(readFileSync(file, 'utf8'))
  const out: Link[] = []
  // [text](target) and [text](target "title"); text may hold a code span with brackets
  for (const m of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
    out.push({ file, target: m[1] })
  }
  return out
}

describe('docs', () => {
  const files = markdownFiles()

  it('has the docs pages the README links to', () => {
    for (const page of [
      'README.md',
      'configuration.md',
      'header-styles.md',
      'greylisting.md',
      'lda.md',
      'failure-behaviour.md',
      'upgrading.md',
      'migrating.md',
      'performance.md',
      'testing.md',
    ]) {
      assert.ok(existsSync(join(REPO, 'docs', page)), `docs/${page} exists`)
    }
  })

  it('anchors(): GitHub heading slugs, with code, punctuation and repeats', () => {
    const got = anchors(
      "# A b\n## `[ham] ok`\n### rspamd's own header changes (`[rmilter_headers]`)\n## A b\n```\n# not a heading\n```\n",
    )
    assert.deepEqual([...got], ['a-b', 'ham-ok', 'rspamds-own-header-changes-rmilter_headers', 'a-b-1'])
  })

  it('resolves every relative link and anchor in README.md, CHANGELOG.md and docs/*.md', () => {
    const broken: string[] = []
    let checked = 0
    for (const file of files) {
      for (const { target } of links(file)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue // https:, mailto:
        checked++
        const where = `${relative(REPO, file)}: ${target}`
        if (target.startsWith('/')) {
          broken.push(`${where} (absolute: breaks on the npm and GitHub pages)`)
          continue
        }
        const [path, anchor] = target.split('#', 2) as [string, string | undefined]
        const dest = path === '' ? file : resolve(dirname(file), decodeURIComponent(path))
        if (!dest.startsWith(REPO + '/') && dest !== REPO) {
          broken.push(`${where} (outside the repository)`)
          continue
        }
        if (!existsSync(dest)) {
          broken.push(`${where} (no such file)`)
          continue
        }
        if (anchor === undefined) continue
        if (statSync(dest).isDirectory() || !dest.endsWith('.md')) {
          broken.push(`${where} (anchor into a file that is not markdown)`)
          continue
        }
        if (!anchors(readFileSync(dest, 'utf8')).has(decodeURIComponent(anchor))) {
          broken.push(`${where} (no heading for #${anchor})`)
        }
      }
    }
    assert.ok(checked > 20, `found the links (${checked})`)
    assert.deepEqual(broken, [])
  })

  it('names packages and versions, not paths of the machine the docs or the bench ran on', () => {
    const results = join(REPO, 'bench', 'results')
    const all = [
      ...files,
      join(REPO, 'bench', 'README.md'),
      ...readdirSync(results)
        .filter((f) => f.endsWith('.md'))
        .map((f) => join(results, f)),
    ]
    const leaks: string[] = []
    for (const file of all) {
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (/(^|[^\w.$])\/(work|tmp|root|home)\//.test(line) || /\/node_modules\//.test(line)) {
            leaks.push(`${relative(REPO, file)}:${i + 1}: ${line.trim().slice(0, 120)}`)
          }
        })
    }
    assert.deepEqual(leaks, [])
  })

  it("keeps README.md an operator's first page: at most 25 000 bytes, with the two commands", () => {
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8')
    assert.ok(Buffer.byteLength(readme) <= 25000, `README.md is ${Buffer.byteLength(readme)} bytes`)
    assert.ok(readme.includes('npm ci && npm run demo'))
    assert.ok(readme.includes('npm test'))
    assert.ok(readme.includes('npm install haraka-plugin-rspamd'))
  })
})
