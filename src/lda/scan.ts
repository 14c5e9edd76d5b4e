// The scan of the spooled message and what its outcome makes of the header: scan() asks rspamd
// with the plugin's own client and request headers; scannedEdits() turns the answer into the
// plugin's edits the way `rspamc --mime` writes them, or a failure into the unscanned edits (or
// EX_TEMPFAIL with --tempfail).

import { createReadStream } from 'node:fs'
import { hostname } from 'node:os'
import { editsFor, type HeaderEdits, unscannedEdits } from '../message/edits'
import { ldaFailureStyle, rspamdHostName } from '../message/styles'
import { RspamdClient, type ScanOutcome } from '../rspamd/client'
import { buildRequestHeaders } from '../rspamd/request'
import { askedText } from '../policy/envelope'
import { EX_TEMPFAIL, type LdaIo, say } from './io'
import { type Layout } from './layout'
import { type Options } from './options'

/** Scan the spooled file: one connection, the servers of opts.cfg in turn, within opts.timeoutMs. */
export async function scan(opts: Options, file: string): Promise<ScanOutcome> {
  const client = new RspamdClient(opts.cfg, { connections: 1 })
  let stream: ReturnType<typeof createReadStream> | undefined
  try {
    return await client.scan({
      headers: buildRequestHeaders(opts.envelope, opts.cfg),
      source: {
        pipe(dest) {
          stream = createReadStream(file)
          stream.once('error', (err) => dest.destroy(err))
          stream.pipe(dest)
        },
        unpipe() {
          stream?.unpipe()
          stream?.destroy()
        },
      },
      timeoutMs: opts.timeoutMs,
    })
  } finally {
    await client.destroy()
  }
}

/**
 * rspamd's discard and quarantine, for a command that delivers (rspamd's milter drops a discarded
 * message and holds a quarantined one in the MTA's hold queue; an LDA has neither): `discard` when
 * the message is to go nowhere (exit 0, as the MTA's own discard), with a line on stderr; a
 * quarantined message is delivered with the headers (X-Spam-Action: quarantine, to filter on), and
 * said so unless [quarantine] action = accept chose exactly that. true: do not deliver.
 */
export function discarded(opts: Options, result: ScanOutcome, io: LdaIo): boolean {
  if (!result.ok) return false
  const { action, score } = result.reply
  if (action === 'discard') {
    say(io, `rspamd's action is discard (score ${score}, server ${result.server}): not delivered, exit 0`)
    return true
  }
  if (action === 'quarantine' && opts.cfg.quarantine.action !== 'accept') {
    say(
      io,
      `rspamd's action is quarantine (score ${score}, server ${result.server}): rspamd-lda has no quarantine; ` +
        `delivered with the headers ([quarantine] action = ${opts.cfg.quarantine.action} is the Haraka plugin's)`,
    )
  }
  return false
}

/**
 * The header edits for a scan's result: rspamc's set, rspamd's own headers, the forged ones out;
 * for a failed scan the failure headers, or EX_TEMPFAIL with --tempfail.
 */
export function scannedEdits(
  opts: Options,
  result: ScanOutcome,
  scanner: string,
  layout: Layout,
  io: LdaIo,
): HeaderEdits | typeof EX_TEMPFAIL {
  if (result.ok) {
    for (const w of result.warnings) say(io, `reply from ${result.server}: ${w}`)
    // the envelope is the MTA's: --exec gets the message only, so rspamd's changes cannot be passed on
    const asked = askedText(result.reply.milter)
    if (asked !== '') say(io, `envelope changes not applied (rspamd-lda passes no envelope on): ${asked}`)
    // the plugin's edits, with rspamc --mime's ways: its set (the lda style first) always written,
    // before rspamd's DKIM-Signature and milter headers, and no Subject rewritten (Haraka's only);
    // a scanned message keeps no verdict header of any style but ours with remove_foreign, and
    // without it still none of the names our styles write (X-Spam even for ham)
    return editsFor(result.reply, opts.cfg, {
      spamHeaders: true,
      rewriteSubject: false,
      stylesFirst: true,
      style: {
        scanner,
        rspamdHost: rspamdHostName(opts.cfg.target, hostname()),
        json: result.json,
        replyBytes: result.replyBytes,
        scanTimeMs: result.timeMs,
      },
      eol: layout.eol,
    })
  }
  const why = `${result.error.kind}: ${result.error.message} (server ${result.server})`
  if (opts.tempfail) {
    say(io, `scan failed, not delivering (--tempfail): ${why}`)
    return EX_TEMPFAIL
  }
  say(io, `scan failed, delivering unscanned: ${why}`)
  // an unscanned message keeps no verdict header either ("unscanned" is not "scanned clean")
  return unscannedEdits(opts.cfg, ldaFailureStyle(scanner, result.error, result.timeMs), layout.eol)
}
