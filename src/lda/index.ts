// The rspamd-lda command (bin/rspamd-lda runs main()): a message on stdin → rspamd → the same
// message with the X-Spam-* headers `rspamc --mime` writes (and rspamd's DKIM-Signature and milter
// headers) on stdout or into a delivery agent (--exec). This file is the run's sequence and its
// exit codes: the options (options.ts), stdin spooled to a private file, the scan and its edits
// (scan.ts), the message's layout (layout.ts), the delivery (deliver.ts), the signals and the
// spool's removal. Never loses the message.

import { type ChildProcess } from 'node:child_process'
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { ConfigError } from '../config'
import { internalError } from '../errors'
import { type HeaderEdits, unscannedEdits } from '../message/edits'
import { ldaFailureStyle } from '../message/styles'
import { packageVersion } from '../version'
import { delivered, execDeliver, writeStdout } from './deliver'
import {
  COMMAND,
  errorText,
  EX_CONFIG,
  EX_IOERR,
  EX_OK,
  EX_SOFTWARE,
  EX_TEMPFAIL,
  EX_USAGE,
  type LdaIo,
  say,
} from './io'
import { type Layout, MAX_HEADER_BLOCK, readLayout } from './layout'
import { parseOptions, USAGE, UsageError } from './options'
import { discarded, scan, scannedEdits } from './scan'

// what this file exported before the folder was split by concept, exported from here still
export { COMMAND, EX_CONFIG, EX_IOERR, EX_OK, EX_SOFTWARE, EX_TEMPFAIL, EX_USAGE, type LdaIo } from './io'
export { MAX_HEADER_BLOCK, withoutFields } from './layout'

/** Copy stdin to a private temp file: the scan and the delivery each read it, and a failed scan still has the exact original. */
async function spool(stdin: NodeJS.ReadableStream, file: string): Promise<number> {
  const out = createWriteStream(file, { flags: 'wx', mode: 0o600 })
  await pipeline(stdin, out)
  return out.bytesWritten
}

/**
 * rspamd's rewritten message (flag body_block), spooled as stdin was, to be delivered in place of it
 * as `rspamc --mime` does; an mbox From_ line of the original goes first when rspamd's has none.
 */
function spoolRewritten(file: string, body: Buffer, fromLine: Buffer): void {
  const keepFrom = fromLine.length > 0 && body.subarray(0, 5).toString('latin1') !== 'From '
  writeFileSync(file, keepFrom ? Buffer.concat([fromLine, body]) : body, { flag: 'wx', mode: 0o600 })
}

/** Run the command; resolves to the exit code. */
export async function run(argv: string[], io: LdaIo): Promise<number> {
  let opts: ReturnType<typeof parseOptions>
  try {
    opts = parseOptions(argv, io.env)
  } catch (err) {
    if (err instanceof UsageError) {
      say(io, err.message)
      io.stderr.write(`\n${USAGE}`)
      return EX_USAGE
    }
    if (err instanceof ConfigError) {
      for (const e of err.problems) say(io, e.message)
      return err.key === '--styles' ? EX_USAGE : EX_CONFIG
    }
    throw err
  }
  if (opts === 'help') {
    io.stdout.write(USAGE)
    return EX_OK
  }
  if (opts === 'version') {
    io.stdout.write(`${COMMAND} (haraka-plugin-rspamd) ${packageVersion()}\n`)
    return EX_OK
  }
  // said once, together: what of the file this command does not read
  const unused = [...opts.cfg.ignored]
  if (opts.haraka.length > 0) unused.push(`${opts.haraka.map((s) => `[${s}]`).join(', ')} (Haraka's only)`)
  if (unused.length > 0) say(io, `warning: --config: not used: ${unused.join(', ')}`)

  const dir = mkdtempSync(join(tmpdir(), `${COMMAND}-`))
  const cleanup = () => rmSync(dir, { recursive: true, force: true })
  // a signal ends us before `finally` runs: remove the spool then, and ask the MTA to retry
  let delivering: ChildProcess | undefined
  const onSignal = (sig: NodeJS.Signals) => {
    // the delivery agent may be half-way: it decides, and its exit status says what happened;
    // leaving it running while we report a failure could deliver the message twice
    if (delivering && delivering.exitCode === null && delivering.signalCode === null) {
      delivering.kill(sig)
      return
    }
    cleanup()
    say(io, `${sig}: message not delivered`)
    process.exit(EX_TEMPFAIL)
  }
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']
  for (const s of signals) process.once(s, onSignal)
  process.once('exit', cleanup)
  try {
    const file = join(dir, 'message')
    try {
      await spool(io.stdin, file)
    } catch (err) {
      say(io, `reading the message from stdin: ${(err as Error).message}`)
      return EX_IOERR
    }

    const scanner = `${COMMAND} ${packageVersion()}`
    const started = performance.now()
    let layout: Layout
    let edits: HeaderEdits
    // the message delivered: the one read from stdin, or rspamd's rewrite of it (body_block)
    let source = file
    try {
      const result = await scan(opts, file)
      // a server that failed before the one that answered (or failed last): the MTA's log shows it
      for (const a of result.attempts) {
        say(io, `failed over from ${a.server}: ${a.error.kind}: ${a.error.message} (${a.timeMs} ms)`)
      }
      if (discarded(opts, result, io)) return EX_OK
      if (result.ok && result.body) {
        source = join(dir, 'rewritten')
        spoolRewritten(source, result.body, readLayout(file).fromLine)
        say(io, `rspamd rewrote the message (${result.body.length} bytes): delivering its version`)
      }
      layout = readLayout(source)
      const ready = scannedEdits(opts, result, scanner, layout, io)
      if (ready === EX_TEMPFAIL) return EX_TEMPFAIL
      edits = ready
    } catch (err) {
      // a bug of ours is no free pass either: the [--tempfail] policy of a failed scan, and the
      // message never goes out with verdict headers it brought itself
      // where it happened, for the bug report: the stack's first frame (an MTA logs all of stderr)
      const at = err instanceof Error ? (err.stack?.split('\n')[1]?.trim() ?? '') : ''
      const why = `internal error: ${errorText(err)}${at === '' ? '' : ` (${errorText(at)})`}`
      if (opts.tempfail) {
        say(io, `${why}; not delivering (--tempfail)`)
        return EX_TEMPFAIL
      }
      say(io, `${why}; delivering unscanned`)
      source = file
      layout = readLayout(file)
      const error = internalError(errorText(err))
      edits = unscannedEdits(
        opts.cfg,
        ldaFailureStyle(scanner, error, performance.now() - started),
        layout.eol,
      )
    }
    for (const d of edits.dropped) say(io, `header left out: ${d}`)

    if (layout.oversized) {
      say(
        io,
        `header block over ${MAX_HEADER_BLOCK} bytes: ours go on top, and headers of the names we add are not removed from it`,
      )
    }
    const message = delivered(source, layout, edits)
    if (opts.exec !== undefined) return await execDeliver(opts.exec, message, io, (c) => (delivering = c))
    return await writeStdout(message, io)
  } finally {
    for (const s of signals) process.removeListener(s, onSignal)
    process.removeListener('exit', cleanup)
    cleanup()
  }
}

/** The bin entry point. */
export function main(): void {
  run(process.argv.slice(2), {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
  })
    .then((code) => {
      process.exitCode = code
    })
    .catch((err: unknown) => {
      // the stack on one escaped line: its message may quote outside text
      say(
        { stderr: process.stderr },
        `internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
      )
      process.exitCode = EX_SOFTWARE
    })
}
