// src/escape.ts CONTROLS: the one place the control characters are spelled. Each class matches exactly
// the code points its name says, over all of the BMP, and forLog() escapes exactly its own set.
import assert from 'node:assert/strict'
import { CONTROLS, controlClass, forLog } from '../src/escape'

const C0 = (c: number) => c <= 0x1f
const DEL = (c: number) => c === 0x7f
const JS_BREAK = (c: number) => c === 0x2028 || c === 0x2029

/** The code points of 0..0xFFFF (lone surrogates included) for which `re` matches and `want` differ. */
function mismatches(re: RegExp, want: (c: number) => boolean): number[] {
  const out: number[] = []
  for (let c = 0; c <= 0xffff; c++) if (re.test(String.fromCharCode(c)) !== want(c)) out.push(c)
  return out
}

describe('escape: CONTROLS and controlClass()', () => {
  const cases: Array<[string, string[], (c: number) => boolean]> = [
    ['all: C0 and DEL', [CONTROLS.all], (c) => C0(c) || DEL(c)],
    ['butTab: C0 but TAB, and DEL', [CONTROLS.butTab], (c) => (C0(c) && c !== 0x09) || DEL(c)],
    [
      'butTabAndLineEnds: C0 but TAB, LF, CR, and DEL',
      [CONTROLS.butTabAndLineEnds],
      (c) => (C0(c) && c !== 0x09 && c !== 0x0a && c !== 0x0d) || DEL(c),
    ],
    ['jsLineBreaks: U+2028, U+2029', [CONTROLS.jsLineBreaks], JS_BREAK],
    [
      'all + jsLineBreaks (a [spambar] value)',
      [CONTROLS.all, CONTROLS.jsLineBreaks],
      (c) => C0(c) || DEL(c) || JS_BREAK(c),
    ],
  ]
  for (const [name, classes, want] of cases) {
    it(`${name}: exactly those code points`, () => {
      assert.deepEqual(mismatches(controlClass(classes), want), [])
    })
  }

  it('a run class replaces a whole run at once', () => {
    assert.equal('a\r\n\t\u0000b'.replace(controlClass([CONTROLS.all], 'g', true), ' '), 'a b')
    assert.equal('a\r\n\u0000b'.replace(controlClass([CONTROLS.all], 'g'), ' '), 'a   b')
  })

  it('forLog() escapes C0, DEL, C1 and U+2028/9, and nothing else', () => {
    const escaped: number[] = []
    for (let c = 0; c <= 0xffff; c++) {
      if (c >= 0xd800 && c <= 0xdfff) continue
      if (forLog(String.fromCharCode(c)) !== String.fromCharCode(c)) escaped.push(c)
    }
    const want: number[] = []
    for (let c = 0; c <= 0xffff; c++) if (C0(c) || (c >= 0x7f && c <= 0x9f) || JS_BREAK(c)) want.push(c)
    assert.deepEqual(escaped, want)
  })
})
