// rspamd-lda (bin/rspamd-lda, built) as a child process for the tests, and what to read in what it writes:
// shared by test/lda/lda.test.ts (the fake rspamd) and test/integration/lda.test.ts (the real one).

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { REPO } from './harness'

const BIN = join(REPO, 'bin', 'rspamd-lda')
const RSS_PRELOAD = join(REPO, 'test', 'support', 'report-rss.cjs')

/** What rspamd-lda writes for a scanned message, in order (X-Spam only for spam). */
export const LDA_NAMES = [
  'X-Spam-Scanner',
  'X-Spam-Scan-Time',
  'X-Spam',
  'X-Spam-Action',
  'X-Spam-Score',
  'X-Spam-Level',
  'X-Spam-Symbols',
]
export const namesFor = (spam: string | undefined) =>
  LDA_NAMES.filter((n) => spam !== undefined || n !== 'X-Spam')

export interface LdaRun {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: Buffer
  stderr: string
  /** files left in the command's TMPDIR after it ended */
  leftovers: string[]
  /** the command's peak RSS, KiB */
  maxRssKb: number
}

export interface LdaOptions {
  /** stdin from this file instead of `input` */
  inputFile?: string
  /** stdout to this file instead of a buffer */
  outputFile?: string
  /** called with the child once it runs (to signal it) */
  started?: (child: ReturnType<typeof spawn>) => void
}

/** Run bin/rspamd-lda with a private TMPDIR; resolves when it has exited. */
export function lda(args: string[], input: Buffer | string, opts: LdaOptions = {}): Promise<LdaRun> {
  const tmp = mkdtempSync(join(tmpdir(), 'lda-test-'))
  const spoolDir = join(tmp, 'spool')
  const rssFile = join(tmp, 'rss')
  const fds: number[] = []
  const fd = (path: string, flags: string) => {
    const n = openSync(path, flags)
    fds.push(n)
    return n
  }
  mkdirSync(spoolDir)
  const child = spawn(process.execPath, ['-r', RSS_PRELOAD, BIN, ...args], {
    env: { ...process.env, TMPDIR: spoolDir, REPORT_RSS_FILE: rssFile },
    stdio: [
      opts.inputFile ? fd(opts.inputFile, 'r') : 'pipe',
      opts.outputFile ? fd(opts.outputFile, 'w') : 'pipe',
      'pipe',
    ],
  })
  const out: Buffer[] = []
  let err = ''
  child.stdout?.on('data', (c: Buffer) => out.push(c))
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()))
  child.stdin?.on('error', () => undefined)
  child.stdin?.end(input)
  opts.started?.(child)
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, signal) => {
      for (const n of fds) closeSync(n)
      let maxRssKb = 0
      try {
        maxRssKb = Number(readFileSync(rssFile, 'utf8'))
      } catch {
        // killed before its exit handler ran
      }
      const leftovers = readdirSync(spoolDir)
      rmSync(tmp, { recursive: true, force: true })
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: err, leftovers, maxRssKb })
    })
  })
}

/** Where a message's header block ends: the offset of its empty line, or its length. */
export function headerEnd(msg: Buffer): number {
  const crlf = msg.indexOf('\r\n\r\n')
  const lf = msg.indexOf('\n\n')
  if (crlf !== -1 && (lf === -1 || crlf < lf)) return crlf + 2
  return lf === -1 ? msg.length : lf + 1
}

/** `Name: value` fields of a header text, unfolded (the fold's whitespace kept as one space). */
export function fieldsOf(text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const m of text.replace(/\r?\n([ \t])/g, '$1').matchAll(/^([!-9;-~]+): ?(.*?)\r?$/gm)) {
    out.set(m[1] ?? '', m[2] ?? '')
  }
  return out
}

/**
 * The header fields the command added at the end of the original's header block, where rspamc
 * --mime puts them; asserts that all else is the original byte for byte.
 */
export function addedHeaders(output: Buffer, original: Buffer): Map<string, string> {
  const end = headerEnd(original)
  assert.ok(output.length >= original.length, 'output shorter than the input')
  assert.ok(
    output.subarray(0, end).equals(original.subarray(0, end)),
    'the header block is kept, ours after it',
  )
  assert.ok(
    output.subarray(output.length - (original.length - end)).equals(original.subarray(end)),
    'the body is kept',
  )
  return fieldsOf(output.subarray(end, output.length - (original.length - end)).toString('latin1'))
}

export const isSpam = (action: string | undefined) =>
  action !== undefined && action !== 'no action' && action !== 'greylist' ? 'yes' : undefined

/** A message's header fields, each as written (folds included), and the rest from the empty line. */
export function split(msg: Buffer): { fields: Array<{ name: string; raw: string }>; body: Buffer } {
  const end = headerEnd(msg)
  const fields: Array<{ name: string; raw: string }> = []
  for (const line of msg
    .subarray(0, end)
    .toString('latin1')
    .split(/(?<=\n)/)) {
    const last = fields[fields.length - 1]
    if (/^[ \t]/.test(line) && last) last.raw += line
    else fields.push({ name: line.slice(0, line.indexOf(':')), raw: line })
  }
  return { fields, body: msg.subarray(end) }
}
