// Hostile sizes: every input that comes from the message or from rspamd, from small to the largest
// the plugin accepts (10⁵–2·10⁵ list entries, values of a megabyte), through the pure header code
// (fast-check, fixed seed) and through the built plugin (haraka-test-fixtures + the fake rspamd) and
// rspamd-lda: no exception, next() once, output within its caps, the refusals counted in one log
// line per kind, and the forged verdict headers the message brought gone. Timings: npm run bench:hostile.

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import fc from 'fast-check'
import type { FixtureConnection, FixturePlugin } from 'haraka-test-fixtures'
import { MAX_LINE, MAX_TOTAL, prepareField } from '../src/message/fold'
import {
  MAX_ADD_CHARS,
  MAX_ADDS,
  MAX_DKIM_SIGNATURES,
  MAX_POSITIONS,
  MAX_REMOVES,
  milterEdits,
} from '../src/message/milter'
import { MAX_HEADER_SYMBOLS } from '../src/message/styles'
import { bySeverity, heaviest, MAX_WARNINGS, parseReply } from '../src/rspamd/reply'
import { FakeRspamd } from './support/fake-rspamd'
import {
  DENYSOFT,
  REPO,
  assertWellFormed,
  captureLogs,
  connectionWith,
  corpus,
  dataPost,
  headerBlock,
  iniFor,
  loadPlugin,
  queuedMessage,
  unregister,
} from './support/harness'
import { replyFor, type RspamdReplyJson } from './support/replies'

const SEED = Number(process.env.FUZZ_SEED ?? 20261202)
/** Forged verdicts a spammer puts in the message: these must be gone whatever happens after the scan. */
const FORGED = 'X-Spam: no\r\nX-Rspamd-Score: -50\r\nX-Spamd-Result: default: False [-50.00 / 15.00]\r\n'

/** `n` items made by `make(i)`. */
function many<T>(n: number, make: (i: number) => T): T[] {
  const out: T[] = []
  for (let i = 0; i < n; i++) out.push(make(i))
  return out
}

function record<T>(n: number, make: (i: number) => [string, T]): Record<string, T> {
  const out: Record<string, T> = {}
  for (let i = 0; i < n; i++) {
    const [k, v] = make(i)
    out[k] = v
  }
  return out
}

/** The fields of a header block, unfolded, as [name, value as written (folds included)]. */
function fields(message: Buffer): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (const line of headerBlock(message).split('\r\n').slice(0, -1)) {
    const last = out[out.length - 1]
    if (/^[ \t]/.test(line) && last) last[1] += `\r\n${line}`
    else {
      const colon = line.indexOf(':')
      out.push([line.slice(0, colon), line.slice(colon + 1).replace(/^ /, '')])
    }
  }
  return out
}

function count(message: Buffer, name: string): number {
  return fields(message).filter(([n]) => n.toLowerCase() === name.toLowerCase()).length
}

describe('hostile sizes: the header code (fast-check)', function () {
  const hugeText = fc
    .tuple(
      fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }),
      fc.constantFrom('', ' ', '\r\n ', '\t', 'ä ', '=?UTF-8?B?QQ==?= '),
      fc.integer({ min: 1, max: 60_000 }),
    )
    .map(([word, sep, n]) => (word + sep).repeat(n))

  it('prepareField() keeps any value up to MBs within 998 octets a line and its cap, marked when cut', () => {
    fc.assert(
      fc.property(hugeText, fc.integer({ min: 64, max: 3 * MAX_TOTAL }), (value, cap) => {
        const f = prepareField('Subject', value, { maxTotal: cap })
        assert.ok(f)
        assert.ok(f.value.length <= cap, `${f.value.length} > ${cap}`)
        for (const line of f.value.split('\n')) assert.ok(Buffer.byteLength(line) + 9 <= MAX_LINE)
        // eslint-disable-next-line no-control-regex
        assert.ok(!/[\x00-\x08\x0a-\x1f\x7f-\uffff]/.test(f.value.replace(/\n/g, '')))
      }),
      { seed: SEED, numRuns: 40 },
    )
  })

  it('prepareField() of a list of 10⁵ items reads only what its cap can show', () => {
    const items = many(100_000, (i) => `SYMBOL_${i}(1.00)[${'o'.repeat(i % 50)}];`)
    const f = prepareField('X-Spamd-Result', items)
    assert.ok(f && f.value.length <= MAX_TOTAL)
    assert.ok(f.value.endsWith('[truncated]'))
  })

  it('a value cut before laying out (4 × its cap, mostly controls) still ends in the marker', () => {
    const f = prepareField('X-Test', `a${'\x01'.repeat(5 * MAX_TOTAL)}b`)
    assert.deepEqual(f, { name: 'X-Test', value: 'a [truncated]' })
  })

  it('milterEdits() stays within every cap, with one refusal line per kind, for lists up to 2·10⁵', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200_000 }),
        fc.integer({ min: 0, max: 200_000 }),
        fc.constantFrom('X-Add-', 'x add ', 'Received', 'From'),
        fc.constantFrom('X-Remove-', 'bad name ', 'Received'),
        (adds, removes, addName, removeName) => {
          const e = milterEdits({
            add: many(adds, (i) => ({ name: `${addName}${i % 1000}`, value: `v${i}`, order: i % 7 })),
            remove: many(removes, (i) => ({ name: `${removeName}${i}`, positions: [1, -1] })),
          })
          assert.ok(e.add.length <= MAX_ADDS)
          assert.ok(e.remove.length + e.removeAt.length <= MAX_REMOVES + MAX_ADDS)
          for (const r of e.removeAt) assert.ok(r.positions.length <= MAX_POSITIONS)
          // kinds: 2 invalid, 2 protected, removes over the limit or unread, 3 add limits, adds unread
          assert.ok(e.dropped.length <= 10, e.dropped.join('\n'))
          for (const d of e.dropped) assert.ok(d.length < 600, d)
        },
      ),
      { seed: SEED, numRuns: 12 },
    )
  })

  it('a name numbered at more than 100 positions has every instance removed instead', () => {
    const e = milterEdits({
      add: [],
      remove: [{ name: 'X-N', positions: many(MAX_POSITIONS + 1, (i) => i + 1) }],
    })
    assert.deepEqual(e.remove, ['X-N'])
    assert.deepEqual(e.removeAt, [])
    assert.equal(e.dropped.length, 1)
  })

  it('heaviest(k) is bySeverity() cut to k, without sorting the whole list', () => {
    const symbol = fc.record({
      name: fc.constantFrom('A', 'B', 'C', 'D', 'E', 'F'),
      score: fc.integer({ min: -8, max: 8 }),
      options: fc.constant([] as string[]),
    })
    fc.assert(
      fc.property(fc.array(symbol, { maxLength: 300 }), fc.integer({ min: 0, max: 40 }), (symbols, k) => {
        const want = bySeverity(symbols).slice(0, k)
        const got = heaviest(symbols, k)
        assert.deepEqual(
          got.map((s) => `${s.name}${s.score}`),
          want.map((s) => `${s.name}${s.score}`),
        )
      }),
      { seed: SEED, numRuns: 200 },
    )
  })

  it('parseReply() lists at most MAX_WARNINGS fields of the wrong type and counts the rest in one', () => {
    const parsed = parseReply({ action: 'no action', 'dkim-signature': many(100_000, () => 0) })
    assert.ok(parsed.ok)
    assert.equal(parsed.warnings.length, MAX_WARNINGS + 1)
    assert.equal(parsed.warnings.at(-1), `ignored ${100_000 - MAX_WARNINGS} more field(s) of the wrong type`)
  })
})

describe('hostile sizes: through the plugin (haraka-test-fixtures + fake rspamd)', function () {
  this.timeout(60_000)
  let fake: FakeRspamd
  let plugin: FixturePlugin | undefined

  before(async () => {
    fake = await FakeRspamd.start()
  })
  after(async () => {
    await fake.close()
  })
  afterEach(async () => {
    if (plugin) await unregister(plugin)
    plugin = undefined
  })

  interface Outcome {
    code?: number
    calls: number
    queued: Buffer
    logs: string[]
    conn: FixtureConnection
  }

  async function scan(
    reply: object,
    opts: { ini?: string; message?: Buffer | string; before?: (conn: FixtureConnection) => void } = {},
  ): Promise<Outcome> {
    plugin = loadPlugin(iniFor(fake, `add_headers = always\n${opts.ini ?? ''}`))
    fake.setReply(reply)
    const conn = await connectionWith(opts.message ?? `${FORGED}${corpus('ham.eml').toString()}`)
    const logs = captureLogs(conn)
    opts.before?.(conn)
    const res = await dataPost(plugin, conn)
    // a second next() would come after the first: give it the chance
    await new Promise((resolve) => setImmediate(resolve))
    return { code: res.code, calls: res.calls(), queued: await queuedMessage(conn), logs, conn }
  }

  /** What every hostile input must leave: one next(), clean headers within caps, no forged verdict, refusals counted. */
  function assertSafe(
    o: Outcome,
    original: Buffer | string = `${FORGED}${corpus('ham.eml').toString()}`,
  ): void {
    assert.equal(o.calls, 1, 'next() exactly once')
    assert.equal(
      o.logs.filter((l) => /internal error/.test(l)).length,
      0,
      o.logs.filter((l) => /internal error/.test(l)).join('\n'),
    )
    assertWellFormed(o.queued)
    const head = headerBlock(o.queued)
    assert.ok(
      !/^X-Spam: no/im.test(head),
      `the forged X-Spam is gone: ${head
        .split('\r\n')
        .filter((l) => /^X-Spam:/i.test(l))
        .join(' | ')}`,
    )
    assert.ok(!/^X-Rspamd-Score: -50/im.test(head), 'the forged X-Rspamd-Score is gone')
    const before = new Set(fields(Buffer.from(original)).map(([n, v]) => `${n}:${v}`))
    let added = 0
    for (const [name, value] of fields(o.queued)) {
      if (before.has(`${name}:${value}`)) continue
      added++
      // the cap counts a fold as one character; on the wire it is CRLF
      const folds = value.split('\r\n').length - 1
      assert.ok(value.length - folds <= MAX_TOTAL, `${name}: ${value.length} characters`)
    }
    assert.ok(added <= MAX_ADDS + MAX_DKIM_SIGNATURES + 20, `${added} headers added`)
    // one line per kind of refusal, never one per item
    const refused = o.logs.filter((l) => l.includes('header edit refused'))
    assert.ok(refused.length <= 12, refused.slice(0, 20).join('\n'))
    assert.ok(o.logs.length < 60, `${o.logs.length} log lines`)
  }

  it('2·10⁵ milter remove_headers names: at most 100 removed, the rest counted', async () => {
    const message = `X-Remove-0000001: a\r\nX-Remove-0150000: b\r\n${FORGED}${corpus('ham.eml').toString()}`
    const remove = record(200_000, (i) => [`X-Remove-${String(i).padStart(7, '0')}`, 0])
    const o = await scan(replyFor('add header', { milter: { remove_headers: remove } }), { message })
    assertSafe(o, message)
    assert.equal(count(o.queued, 'X-Remove-0000001'), 0, 'within the cap: removed')
    assert.equal(count(o.queued, 'X-Remove-0150000'), 1, 'past the cap: left')
    assert.ok(
      o.logs.some((l) =>
        /header edit refused: remove over the limit of 100 header names: .* and 895 more$/.test(l),
      ),
      o.logs.join('\n'),
    )
    assert.ok(o.logs.some((l) => /remove of 199000 more name\(s\) not read: over 1000/.test(l)))
  })

  it('2·10⁵ milter add_headers values: at most 500 added, counted per limit', async () => {
    const add = record(200_000, (i) => [`X-Add-${i}`, `v${i}`])
    const o = await scan(replyFor('add header', { milter: { add_headers: add } }))
    assertSafe(o)
    assert.equal(count(o.queued, 'X-Add-0'), 1)
    assert.equal(count(o.queued, 'X-Add-499'), 1)
    assert.equal(count(o.queued, 'X-Add-500'), 0)
    assert.ok(o.logs.some((l) => /add of 4500 more value\(s\) over the limit of 500 added headers/.test(l)))
  })

  it('10⁵ invalid and protected names: one refusal line each', async () => {
    const add = record(100_000, (i) => [i % 2 ? `X Bad ${i}` : `from${'\u00a0'.repeat(i % 3)}`, 'v'])
    const remove = record(100_000, (i) => [
      i % 2 ? `Bad Remove ${i}` : (['Received', 'RECEIVED', 'received'][i % 3] ?? ''),
      0,
    ])
    const o = await scan(replyFor('add header', { milter: { add_headers: add, remove_headers: remove } }))
    assertSafe(o)
  })

  it('values of 1 MB in milter adds: each cut to 16 KiB, 256 KiB in all', async () => {
    // 40 values of ~360 KB: as much as a reply under the 16 MiB cap holds
    const big = 'wörd '.repeat(60_000)
    const add = record(20, (i) => [`X-Big-${i}`, [`${i} ${big}`, `${i} second ${big}`]])
    const o = await scan(replyFor('add header', { milter: { add_headers: add } }))
    assertSafe(o)
    let chars = 0
    for (const [name, value] of fields(o.queued)) if (name.startsWith('X-Big-')) chars += value.length
    assert.ok(chars <= 2 * MAX_ADD_CHARS, `${chars} characters of added values`)
    assert.ok(
      o.logs.some((l) => /over the limit of 256 KiB of added values/.test(l)),
      o.logs.join('\n'),
    )
  })

  it('10⁵ DKIM signatures: at most 10 written, the rest counted', async () => {
    const sigs = many(100_000, (i) => `v=1; a=rsa-sha256; d=example.com; s=s${i}; b=abc`)
    const o = await scan(replyFor('add header', { 'dkim-signature': sigs }))
    assertSafe(o)
    assert.equal(count(o.queued, 'DKIM-Signature'), MAX_DKIM_SIGNATURES)
    assert.ok(o.logs.some((l) => /DKIM-Signature: 99990 more signature\(s\) over the limit of 10$/.test(l)))
  })

  it('10⁵ symbols with long names and options, every style: the heaviest 500, each value within 16 KiB', async () => {
    // ~9 MB: under the 16 MiB reply cap (rspamd takes the key as the name when there is none)
    const symbols = record(100_000, (i) => [
      `SYMBOL_${i}_${'N'.repeat(i % 64)}`,
      { score: (i % 11) - 5, options: many(i % 3, (k) => `option-${k}`) },
    ]) as unknown as RspamdReplyJson['symbols']
    const o = await scan(replyFor('add header', { symbols }), {
      ini: '[spam_headers]\nstyles = rspamd, exim, extended, lda\nlda_json = true',
    })
    assertSafe(o)
    assert.ok(
      o.logs.some((l) => l.includes(`symbols: ${100_000 - MAX_HEADER_SYMBOLS} of 100000 left out`)),
      o.logs.join('\n'),
    )
    assert.ok(o.logs.some((l) => /X-Spam-Result: the reply is \d+ bytes, over 262144/.test(l)))
  })

  it('one symbol with 10⁵ options', async () => {
    const options = many(100_000, (i) => `opt${i}`)
    const o = await scan(replyFor('add header', { symbols: { BIG: { name: 'BIG', score: 5, options } } }), {
      ini: '[spam_headers]\nstyles = extended',
    })
    assertSafe(o)
    assert.ok(headerBlock(o.queued).includes('BIG(5.00)[opt0,opt1,'))
  })

  it("rspamd's subject of 1 MB: cut to 16 KiB", async () => {
    const o = await scan(replyFor('rewrite subject', { subject: `[SPAM] ${'wörd '.repeat(200_000)}` }))
    assertSafe(o)
    const subject = fields(o.queued).filter(([n]) => n === 'Subject')
    assert.equal(subject.length, 1)
    assert.ok(subject[0]?.[1].endsWith('[truncated]'))
  })

  it('the long-folded Subject (~1 MB over 900 lines) scored rewrite subject: rewritten within 16 KiB, forged headers gone', async () => {
    const subject = many(900, () => 'free money '.repeat(100)).join('\r\n ')
    const message = `${FORGED}Subject: ${subject}\r\n${corpus('ham.eml')
      .toString()
      .replace(/^Subject:.*\r\n/m, '')}`
    const o = await scan(replyFor('rewrite subject', { score: 9, subject: undefined }), { message })
    assertSafe(o, message)
    const written = fields(o.queued).filter(([n]) => n === 'Subject')
    assert.equal(written.length, 1)
    assert.match(written[0]?.[1] ?? '', /^\[SPAM\] free money free money/)
    assert.ok(written[0]?.[1].endsWith('[truncated]'))
  })

  it('a message with 900 header lines (Haraka keeps at most 1 000) and 2·10⁵ numbered removes', async () => {
    const filler = many(900, (i) => `X-Filler: ${i}\r\n`).join('')
    const message = `${filler}${FORGED}${corpus('ham.eml').toString()}`
    const remove = { 'X-Filler': many(200_000, (i) => (i % 2 ? -(i % 900) - 1 : (i % 900) + 1)) }
    const o = await scan(replyFor('add header', { milter: { remove_headers: remove } }), { message })
    assertSafe(o, message)
    // more positions than the cap: every instance goes, the side rspamd asked for
    assert.equal(count(o.queued, 'X-Filler'), 0)
  })

  it('a reply over the 16 MiB cap: accepted unscanned per [defer], the forged verdict headers gone all the same', async () => {
    fake.setMode(`huge:${17 * 1024 * 1024}`)
    try {
      const o = await scan(replyFor('no action'))
      assert.equal(o.calls, 1)
      assert.equal(o.code, undefined)
      const head = headerBlock(o.queued)
      assert.ok(!/^X-Spam: no/im.test(head) && !/^X-Rspamd-Score/im.test(head), head)
      assert.ok(
        o.logs.some((l) => /^ERROR too-large: .*accepting per \[defer\]\)$/.test(l)),
        o.logs.join('\n'),
      )
    } finally {
      fake.setMode('ok')
    }
  })

  describe('an internal error is no free pass', function () {
    // txn.notes frozen (as another plugin could leave it): act() throws when it records the reply
    const freeze = (conn: FixtureConnection) => {
      if (conn.transaction) Object.freeze(conn.transaction.notes)
    }

    it('removes the forged verdict headers and accepts with [defer] error = false, logging one error line', async () => {
      const o = await scan(replyFor('add header'), { before: freeze })
      assert.equal(o.calls, 1)
      assert.equal(o.code, undefined)
      const head = headerBlock(o.queued)
      assert.ok(!/^X-Spam: no/im.test(head), head)
      assert.ok(!/^X-Rspamd-Score/im.test(head), head)
      assert.ok(!/^X-Spamd-Result/im.test(head), 'remove_foreign: every style is removed')
      const errors = o.logs.filter((l) => l.startsWith('ERROR'))
      assert.equal(errors.length, 1, o.logs.join('\n'))
      assert.match(errors[0] ?? '', /^ERROR internal error: TypeError: .*; accepting per \[defer\] error$/)
    })

    it('defers with 451 with [defer] error = true', async () => {
      const o = await scan(replyFor('add header'), { before: freeze, ini: '[defer]\nerror = true' })
      assert.equal(o.calls, 1)
      assert.equal(o.code, DENYSOFT)
      assert.ok(o.logs.some((l) => /internal error: .*; deferring with 451 per \[defer\] error$/.test(l)))
    })

    it('without remove_foreign, removes the configured styles’ headers', async () => {
      const o = await scan(replyFor('add header'), {
        before: freeze,
        ini: '[spam_headers]\nremove_foreign = false\nstyles = rspamd',
      })
      const head = headerBlock(o.queued)
      assert.ok(!/^X-Rspamd-Score/im.test(head), head)
      assert.match(head, /^X-Spam: no/im, 'another style’s name stays without remove_foreign')
    })
  })
})

describe('hostile sizes: rspamd-lda', function () {
  this.timeout(60_000)
  let fake: FakeRspamd
  before(async () => {
    fake = await FakeRspamd.start()
  })
  after(async () => {
    await fake.close()
  })

  function lda(
    args: string[],
    input: string,
  ): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
    const child = spawn(process.execPath, [join(REPO, 'bin', 'rspamd-lda'), ...args], { stdio: 'pipe' })
    const out: Buffer[] = []
    let err = ''
    child.stdout.on('data', (c: Buffer) => out.push(c))
    child.stderr.on('data', (c: Buffer) => (err += c.toString()))
    child.stdin.end(input)
    return new Promise((resolve) =>
      child.once('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err })),
    )
  }

  it('a reply over the 16 MiB cap: delivered unscanned with X-Spam-Error, the forged verdict gone (or 75 with --tempfail)', async () => {
    fake.setMode(`huge:${17 * 1024 * 1024}`)
    try {
      const input = `${FORGED}${corpus('ham.eml').toString()}`
      const r = await lda(['--server', `127.0.0.1:${fake.port}`, '--styles', 'rspamd,extended'], input)
      assert.equal(r.code, 0, r.stderr)
      const head = headerBlock(r.stdout)
      assert.match(head, /^X-Spam-Error: too-large: /m)
      assert.ok(
        !/^X-Spam: no/im.test(head) && !/^X-Rspamd-Score/im.test(head) && !/^X-Spamd-Result/im.test(head),
        head,
      )
      const t = await lda(['--server', `127.0.0.1:${fake.port}`, '--tempfail'], input)
      assert.equal(t.code, 75, t.stderr)
      assert.equal(t.stdout.length, 0)
    } finally {
      fake.setMode('ok')
    }
  })

  const ROWS: Array<[string, () => object]> = [
    [
      '2·10⁵ remove_headers names',
      () => replyFor('add header', { milter: { remove_headers: record(200_000, (i) => [`X-R-${i}`, 1]) } }),
    ],
    [
      '2·10⁵ add_headers values',
      () => replyFor('add header', { milter: { add_headers: record(200_000, (i) => [`X-A-${i}`, 'v']) } }),
    ],
    [
      '10⁵ DKIM signatures',
      () => replyFor('add header', { 'dkim-signature': many(100_000, (i) => `v=1; s=${i}`) }),
    ],
  ]
  for (const [i, [label, reply]] of ROWS.entries()) {
    // --tempfail asks for 75 only when the scan fails: here it must not change the outcome
    for (const tempfail of [i === 1]) {
      it(`${label}${tempfail ? ' (--tempfail)' : ''}: delivered, within caps, forged verdict gone, not exit 70`, async () => {
        fake.setReply(reply())
        const input = `${FORGED}${corpus('ham.eml').toString()}`
        const args = [
          '--server',
          `127.0.0.1:${fake.port}`,
          '--styles',
          'rspamd',
          ...(tempfail ? ['--tempfail'] : []),
        ]
        const r = await lda(args, input)
        assert.equal(r.code, 0, r.stderr)
        const head = headerBlock(r.stdout)
        assert.ok(!/^X-Spam: no/im.test(head) && !/^X-Rspamd-Score: -50/im.test(head), head.slice(0, 2000))
        assert.ok(count(r.stdout, 'DKIM-Signature') <= MAX_DKIM_SIGNATURES)
        assert.ok(fields(r.stdout).length < MAX_ADDS + 60)
        assert.ok(r.stderr.split('\n').length < 40, r.stderr.slice(0, 3000))
      })
    }
  }
})
