// The delivery of the scanned (or unscanned) message: the spooled file with its edits applied
// (delivered()), written to stdout (writeStdout()) or piped into the --exec command
// (execDeliver()), and the exit code that says whether it went out.

import { type ChildProcess, spawn } from 'node:child_process'
import { createReadStream } from 'node:fs'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { type HeaderEdits } from '../message/edits'
import { EX_IOERR, EX_OK, EX_TEMPFAIL, type LdaIo, say } from './io'
import { type Layout, withoutFields } from './layout'

/**
 * The delivered message: the mbox From_ line, the header block without the removed fields, our
 * headers at its end (where rspamc --mime puts them), then the rest as it was. A header block
 * too long to read keeps everything and gets ours on top.
 */
export function delivered(file: string, layout: Layout, edits: HeaderEdits): Readable {
  const text = edits.add.map((f) => `${f.name}: ${f.value}${layout.eol}`).join('')
  const head = withoutFields(layout.head, new Set(edits.remove.map((n) => n.toLowerCase())), edits.removeAt)
  // a message that is all header block may end without a line end: ours start on a line of their own
  const eol = head.length > 0 && head[head.length - 1] !== 0x0a && text !== '' ? layout.eol : ''
  const prefix = Buffer.concat([layout.fromLine, head, Buffer.from(eol + text, 'latin1')])
  async function* parts() {
    yield prefix
    yield* createReadStream(file, { start: layout.restAt })
  }
  return Readable.from(parts(), { objectMode: false })
}

/** Pipe the message into `sh -c cmd`; its exit code, or 75 when a signal killed it (delivery not confirmed: the MTA should retry). */
export function execDeliver(
  cmd: string,
  message: Readable,
  io: LdaIo,
  started: (child: ChildProcess) => void,
): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', cmd], { stdio: ['pipe', 'inherit', 'inherit'], env: io.env })
    started(child)
    let done = false
    const finish = (code: number) => {
      if (done) return
      done = true
      // the command is gone: stop reading the spool, which run() removes next (a read still
      // under way would fail with ENOENT and print a second, false reason)
      message.unpipe(child.stdin)
      message.destroy()
      resolve(code)
    }
    child.once('error', (err) => {
      say(io, `cannot run /bin/sh for --exec: ${err.message}`)
      finish(EX_TEMPFAIL)
    })
    child.once('close', (code, signal) => {
      if (signal) {
        say(io, `--exec command killed by ${signal}; exiting 75 so the message is retried`)
        finish(EX_TEMPFAIL)
      } else finish(code ?? EX_TEMPFAIL)
    })
    // a command that exits without reading all of stdin (EPIPE) is judged by its exit code alone
    child.stdin.on('error', () => undefined)
    message.on('error', (err) => {
      if (done) return
      say(io, `reading the spooled message: ${err.message}`)
      child.stdin.destroy()
    })
    message.pipe(child.stdin)
  })
}

/** Write the message to stdout, left open (it is the caller's); 0, or 74 when writing failed. */
export async function writeStdout(message: Readable, io: LdaIo): Promise<number> {
  try {
    await pipeline(message, io.stdout, { end: false })
  } catch (err) {
    say(io, `writing the message to stdout: ${(err as Error).message}`)
    return EX_IOERR
  }
  return EX_OK
}
