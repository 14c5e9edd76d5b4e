// src/config/index.ts `ignored`: keys and sections of rspamd.ini that no setting reads (typos, keys in the
// wrong section, keys another setting overrides), which the plugin and rspamd-lda warn about.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseConfig, parseIni } from '../../src/config'
import { REPO } from '../support/harness'

const CASES: Array<[label: string, ini: Record<string, unknown>, ignored: string[]]> = [
  ['an empty file', {}, []],
  ['a typo in a main key', { main: { timout: 5 } }, ['timout']],
  ['a typo in a section key', { greylist: { enabled: true, dealy: 3 } }, ['greylist.dealy']],
  ['a main key under a section', { check: { max_size: '1M', whitelist: '10.0.0.0/8' } }, ['check.max_size']],
  ['an unknown section', { foo: { bar: 1 } }, ['[foo]']],
  ['host and port when servers is set', { main: { servers: 'a:1', host: 'b', port: 3 } }, ['host', 'port']],
  ['no [request_headers] name: each one is a header to send', { request_headers: { 'X-Anything': 'b' } }, []],
  [
    'always_add_headers beside add_headers (checked, not reported)',
    { main: { add_headers: 'always', always_add_headers: false }, check: { relay: false } },
    [],
  ],
]

describe('config: ignored keys', function () {
  for (const [label, ini, ignored] of CASES) {
    it(`lists ${ignored.length ? ignored.join(', ') : 'nothing'} for ${label}`, () => {
      assert.deepEqual(parseConfig(ini).ignored, ignored)
    })
  }

  // an operator uncomments a key where it is documented: it must land in the section that reads it
  it('reads every key that the shipped config/rspamd.ini documents (all uncommented at once)', () => {
    const shipped = join(REPO, 'config', 'rspamd.ini')
    const text = readFileSync(shipped, 'utf8')
      .replace(/^; ([a-z_]+ = .*)$/gm, '$1')
      // prose lines that happen to read like a key: "; true = answer 451 …"
      .replace(/^(true|false) = /gm, '; $1 = ')
      // the [tls] example paths, made readable
      .replace(/\/path\/to\/[\w.-]+\.pem/g, shipped)
      // [tls] is read for https:// servers only
      .replace(/^scheme = http$/m, 'scheme = https')
    const uncommented = (text.match(/^[a-z_]+ = /gm) ?? []).length
    assert.ok(uncommented > 50, `only ${uncommented} keys found to uncomment`)
    // as the plugin reads it: no declared booleans
    const cfg = parseConfig(parseIni(text).sections)
    // with `servers` uncommented too, the single-server keys are overridden, as documented
    assert.deepEqual(cfg.ignored.sort(), ['host', 'port', 'unix_socket'])
  })
})
