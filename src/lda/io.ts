// What rspamd-lda shares with the MTA that runs it, used by every file of src/lda/: its name, its
// exit codes (sysexits.h), the streams it runs with (LdaIo), and the one-line stderr messages the
// MTA copies into its log or a bounce (say(), errorText()).

import { type Writable } from 'node:stream'
import { forLog, LOG_LINE_MAX } from '../escape'

/** sysexits.h: what MTAs (Postfix local, fetchmail, procmail) understand. */
export const EX_OK = 0
export const EX_USAGE = 64
export const EX_SOFTWARE = 70
export const EX_IOERR = 74
export const EX_TEMPFAIL = 75
export const EX_CONFIG = 78

export const COMMAND = 'rspamd-lda'

export interface LdaIo {
  stdin: NodeJS.ReadableStream
  stdout: Writable
  stderr: Writable
  env: NodeJS.ProcessEnv
}

/**
 * One line on stderr, which the MTA copies into its log or a bounce: everything in it (a reply's
 * text, a server name, a header name, an error quoting any of them) is escaped by forLog().
 */
export function say(io: Pick<LdaIo, 'stderr'>, text: string): void {
  io.stderr.write(`${COMMAND}: ${forLog(text, LOG_LINE_MAX)}\n`)
}

/** An error's message for one line of stderr: controls out, cut. */
export function errorText(err: unknown): string {
  return forLog(err instanceof Error ? `${err.name}: ${err.message}` : String(err))
}
