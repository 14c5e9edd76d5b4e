// src/config/ini.ts, rspamd-lda's ini reader: it must read a file as haraka-config (through its public get(),
// the way Haraka reads rspamd.ini for the plugin) does, so the plugin and rspamd-lda act on the same values:
// the shipped config/rspamd.ini, every key of it uncommented, and the corners of the ini syntax.

import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import harakaConfig from 'haraka-config'
import fc from 'fast-check'
import { parseIni } from '../../src/config'
import { REPO } from '../support/harness'

/** Sections as plain objects (both readers make null-prototype ones; haraka-config's get() clones them). */
function plain(ini: unknown): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {}
  for (const [name, section] of Object.entries(ini as Record<string, Record<string, unknown>>)) {
    out[name] = { ...section }
  }
  return out
}

let dir = ''
let n = 0

/** `text` as haraka-config's public get() reads it from a file (no declared booleans, as the plugin asks). */
function harakaReads(text: string): Record<string, Record<string, unknown>> {
  // a new name each time: get() caches by path
  const file = join(dir, `rspamd-${n++}.ini`)
  writeFileSync(file, text)
  // haraka-config prints each line it cannot read, on stdout
  const log = console.log
  console.log = () => undefined
  try {
    return plain(harakaConfig.get(file, 'ini'))
  } finally {
    console.log = log
    harakaConfig.stop_watching(file)
  }
}

const SHIPPED = readFileSync(join(REPO, 'config', 'rspamd.ini'), 'utf8')

const TRICKY: Array<[label: string, text: string]> = [
  ['an empty file', ''],
  ['keys before any section go to main', 'host = 127.0.0.1\nport = 11333\n'],
  [
    'integers, negative numbers and decimals become numbers',
    'a = 12\nb = -3\nc = 2.5\nd = 1.\ne = 0x10\nf = 1e3\n',
  ],
  ['booleans stay words (no declared booleans)', '[reject]\nspam = true\nauthed = no\nx = ON\ny = 1\n'],
  ['comments with ; and #, indented, and blank lines', '; one\n  # two\n\n\t\n[check]\n;local_ip = true\n'],
  ['a [section] repeated: its keys merge', '[a]\nx = 1\n[b]\ny = 2\n[a]\nz = 3\nx = 4\n'],
  ['section names are trimmed', '[ spaced ]\nk = v\n'],
  ['key[] = makes a list, in order', '[main]\nservers[] = a\nservers[] = 2\nservers[] = 3.5\n'],
  ['key[] after a plain key of that name replaces it with a list', 'x = one\nx[] = two\nx[] = three\n'],
  ['a plain key after key[] replaces the list', 'x[] = one\nx = two\n'],
  ['a bare key has no value', 'bare\n[s]\nother\n'],
  ['an empty value is an empty string', 'a =\nb = \n'],
  ['quotes are kept as written', 'a = "quoted"\nb = \'single\'\nc = "half\n'],
  ['spaces around = and at the ends go; inner ones stay', '   a   =   b c   \n'],
  ['= inside the value', 'url = redis://u:p=w@h/0?x=1\n'],
  ['key characters: @ : . + - /', 'a@b:c.d+e-f/g = 1\n'],
  ['lines that are not key = value are skipped', 'good = 1\nbad key = 2\n= 3\n[unclosed\nafter = 4\n'],
  ['a continuation line joins the next', 'a = one \\\ntwo\nb = 1\n'],
  ['a continuation before a section carries over it', 'a = x\\\n[s]\nb = y\n'],
  ['CRLF, CR and LF line ends', 'a = 1\r\nb = 2\rc = 3\n[s]\r\nd = 4\r\n'],
  [
    'unsafe section and key names are skipped',
    '[__proto__]\nx = 1\n[ok]\nconstructor = 2\nprototype[] = 3\ny = 4\n',
  ],
  ['an [] inside a name', 'a[]b[] = 1\n[]= 2\n'],
  ['unicode values', 'subject = *** SPAM *** ✉ ünïcødé\n'],
]

describe('config: the ini reader of rspamd-lda (src/config/ini.ts)', function () {
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ini-test-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('reads the shipped config/rspamd.ini as haraka-config does', () => {
    assert.deepEqual(plain(parseIni(SHIPPED).sections), harakaReads(SHIPPED))
  })

  it('reads the shipped config/rspamd.ini with every key uncommented as haraka-config does', () => {
    const text = SHIPPED.replace(/^;\s?([a-z_]+(\[\])? ?=)/gm, '$1')
    assert.notEqual(text, SHIPPED)
    assert.deepEqual(plain(parseIni(text).sections), harakaReads(text))
  })

  for (const [label, text] of TRICKY) {
    it(`reads as haraka-config does: ${label}`, () => {
      assert.deepEqual(plain(parseIni(text).sections), harakaReads(text))
    })
  }

  it('reads any text of ini-ish lines as haraka-config does', () => {
    const piece = fc.constantFrom(
      '[a]',
      '[ b ]',
      '[__proto__]',
      'k',
      'k[]',
      'prototype',
      ' = ',
      '=',
      '1',
      '-2',
      '3.5',
      'true',
      '"q"',
      ';',
      '#',
      '\\',
      ' ',
      'x y',
      '\t',
    )
    const line = fc.array(piece, { maxLength: 5 }).map((p) => p.join(''))
    fc.assert(
      fc.property(fc.array(line, { maxLength: 8 }), (lines) => {
        const text = lines.join('\n')
        assert.deepEqual(plain(parseIni(text).sections), harakaReads(text))
      }),
      { numRuns: 150, seed: 27 },
    )
  })

  it('names each skipped line by its number and why, never by its text', () => {
    const { problems } = parseIni('good = 1\nbad key = s3cret\n[__proto__]\n[ok]\nconstructor = 2\n\\\n= 3\n')
    assert.deepEqual(problems, [
      { line: 2, reason: 'not key = value' },
      { line: 3, reason: 'unsafe section name' },
      { line: 5, reason: 'unsafe key' },
      { line: 7, reason: 'not key = value' },
    ])
    assert.ok(!JSON.stringify(problems).includes('s3cret'))
  })
})
