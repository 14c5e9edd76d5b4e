// rspamd-lda (bin/rspamd-lda, built) against the real rspamd of scripts/rspamd.sh: each action marked as
// rspamd decides it, what Debian's rspamc --mime writes header by header, discard and quarantine, and a
// 25 MB message reproduced byte for byte. Never skipped: an rspamd that cannot start fails the suite.

import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { CORPUS, corpus, withTestHeaders } from '../support/harness'
import { addedHeaders, headerEnd, isSpam, lda, namesFor, split } from '../support/lda'
import { RealRspamd, RSPAMD_PORT } from '../support/real-rspamd'

/** Debian's rspamc (installed with rspamd) with `args`, the message on stdin; its stdout. */
function rspamcMime(args: string[], input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('rspamc', args, { stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    let err = ''
    child.stdout.on('data', (c: Buffer) => out.push(c))
    child.stderr.on('data', (c: Buffer) => (err += c.toString()))
    child.once('error', reject)
    child.once('close', (code) =>
      code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`rspamc exited ${code}: ${err}`)),
    )
    child.stdin.end(input)
  })
}

describe('rspamd-lda with real rspamd', function () {
  this.timeout(300_000)
  const at = ['--server', `127.0.0.1:${RSPAMD_PORT}`]

  // never skipped: an rspamd that cannot start fails the suite
  let rspamd: RealRspamd | undefined
  before(async () => {
    rspamd = await RealRspamd.start()
  })
  after(() => rspamd?.restore())

  const REAL: Array<[header: string | undefined, file: string, action: string, spam: string | undefined]> = [
    [undefined, 'gtube.eml', 'reject', 'yes'],
    ['no action', 'ham.eml', 'no action', undefined],
    ['greylist', 'ham.eml', 'greylist', undefined],
    ['add header', 'ham.eml', 'add header', 'yes'],
    ['rewrite subject', 'ham.eml', 'rewrite subject', 'yes'],
    ['soft reject', 'ham.eml', 'soft reject', 'yes'],
    ['reject', 'ham.eml', 'reject', 'yes'],
  ]
  for (const [test, file, action, spam] of REAL) {
    it(`marks ${test ? `X-Test-Action: ${test}` : file} as X-Spam-Action: ${action}, ${spam ? 'X-Spam: yes' : 'no X-Spam'}`, async () => {
      const msg = test ? withTestHeaders(file, { 'X-Test-Action': test }) : corpus(file)
      const r = await lda([...at, '--json', '-F', 'alice@example.org', '-r', 'bob@example.net'], msg)
      assert.equal(r.code, 0, r.stderr)
      const h = addedHeaders(r.stdout, msg)
      assert.equal(h.get('X-Spam-Action'), action)
      assert.equal(h.get('X-Spam'), spam)
      const json = JSON.parse(
        Buffer.from((h.get('X-Spam-Result') ?? '').replace(/\s+/g, ''), 'base64').toString(),
      ) as {
        action: string
      }
      assert.equal(json.action, action)
    })
  }

  // the same message, the same rspamd, the same command line: only the program's name and the time differ
  for (const action of ['no action', 'greylist', 'add header', 'rewrite subject', 'soft reject', 'reject']) {
    it(`writes what rspamc --mime writes for ${action}, header by header, body byte for byte`, async () => {
      const msg = withTestHeaders('ham.eml', { 'X-Test-Action': action })
      const args = ['-h', `127.0.0.1:${RSPAMD_PORT}`, '--mime']
      const rspamc = await rspamcMime(args, msg)
      const r = await lda(args, msg)
      assert.equal(r.code, 0, r.stderr)
      const ours = split(r.stdout)
      const theirs = split(rspamc)
      assert.match(
        ours.fields.find((f) => f.name === 'X-Spam-Scanner')?.raw ?? '',
        /^X-Spam-Scanner: rspamd-lda /,
      )
      assert.match(
        theirs.fields.find((f) => f.name === 'X-Spam-Scanner')?.raw ?? '',
        /^X-Spam-Scanner: rspamc /,
      )
      const compared = (m: typeof ours) =>
        m.fields.filter((f) => f.name !== 'X-Spam-Scanner' && f.name !== 'X-Spam-Scan-Time').map((f) => f.raw)
      assert.deepEqual(compared(ours), compared(theirs))
      assert.ok(ours.body.equals(theirs.body), 'body byte for byte')
      assert.ok(ours.body.equals(msg.subarray(headerEnd(msg))), 'the body as it came')
      assert.equal(
        new Set(ours.fields.map((f) => f.name)).has('X-Spam'),
        action !== 'no action' && action !== 'greylist',
      )
    })
  }

  it('discard: delivers nothing (no stdout, --exec never run), exit 0, a line on stderr', async () => {
    const msg = withTestHeaders('ham.eml', { 'X-Test-Action': 'discard' })
    const r = await lda([...at], msg)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.length, 0)
    assert.match(r.stderr, /rspamd's action is discard \(score [\d.]+, server [^)]+\): not delivered, exit 0/)
    const dir = mkdtempSync(join(tmpdir(), 'lda-discard-'))
    try {
      const out = join(dir, 'delivered')
      const e = await lda([...at, '--exec', `cat > ${out}`], msg)
      assert.equal(e.code, 0, e.stderr)
      assert.equal(readdirSync(dir).length, 0, 'the --exec command never ran')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('quarantine: delivered with X-Spam-Action: quarantine, and said on stderr', async () => {
    const msg = withTestHeaders('ham.eml', { 'X-Test-Action': 'quarantine' })
    const r = await lda([...at], msg)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(addedHeaders(r.stdout, msg).get('X-Spam-Action'), 'quarantine')
    assert.match(
      r.stderr,
      /rspamd's action is quarantine .*rspamd-lda has no quarantine; delivered with the headers/,
    )
  })

  it('reproduces a 25 MB message byte for byte, streaming (peak RSS printed)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lda-large-'))
    try {
      const input = join(dir, 'large.eml')
      const output = join(dir, 'out.eml')
      await promisify(execFile)(process.execPath, [join(CORPUS, 'make-large.mjs'), '25', input])
      const r = await lda([...at, '--timeout', '60'], '', { inputFile: input, outputFile: output })
      assert.equal(r.code, 0, r.stderr)
      const original = readFileSync(input)
      const out = readFileSync(output)
      assert.ok(original.length > 25 * 1024 * 1024)
      // byte for byte: the header block, ours after it, the body
      const h = addedHeaders(out, original)
      assert.deepEqual([...h.keys()], namesFor(isSpam(h.get('X-Spam-Action'))), r.stderr)
      assert.deepEqual(r.leftovers, [])
      console.log(
        `      rspamd-lda, ${(original.length / 1048576).toFixed(1)} MB message: peak RSS ${(r.maxRssKb / 1024).toFixed(1)} MiB`,
      )
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
