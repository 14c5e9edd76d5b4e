// One try of a scan on one server, as a small object the transport reports to (it is the request's
// Exchange): the request starts, the status line arrives, the reply comes in chunks under a cap, and
// it ends or breaks; the scan's timer, this server's share of it, or a departed SMTP client can
// cancel it at any point. It settles once, with the scan's result and whether the next server may
// be tried (only when rspamd has not answered anything). RspamdClient (client.ts) runs one per server.

import type { Readable, Transform } from 'node:stream'
import { nodeHasZstd } from '../config'
import { CONTROLS, controlClass, forLog } from '../escape'
import {
  ClientGone,
  ConnectTimeout,
  httpStatusError,
  type ScanError,
  scanError,
  TimeoutReason,
} from '../errors'
import { Coalescer, type MessageSource, type ScanStop } from './body'
import { parseReplyBody, type Reply, rspamdErrorText } from './reply'
import type { RequestHeaders } from './request'
import type { Exchange, ReplyHead } from './transport'
import type { Upstream } from './upstream'
import { zstdCompressor, zstdDecompressor } from './zstd'

/** Runs of blanks and controls in an error page's text, each one space. */
const PAGE_BLANKS = controlClass([CONTROLS.space, CONTROLS.all, CONTROLS.jsLineBreaks], 'g', true)

/** How much of an error reply we read to report rspamd's {"error": …}. */
const MAX_ERROR_BODY = 64 * 1024
/** A scan error's message is cut here (its parts are cut smaller where they are made). */
const ERROR_TEXT_MAX = 1000

/** What a scan comes to: rspamd's verdict, or why there is none. */
export type ScanResult =
  | {
      ok: true
      reply: Reply
      json: Record<string, unknown>
      /** the reply's size as received (compressed, when rspamd compressed it) */
      replyBytes: number
      /** the message as rspamd rewrote it: the body block after the JSON (`Message-Offset`), if any */
      body?: Buffer
      warnings: string[]
      timeMs: number
      server: string
      bytesSent: number
    }
  | { ok: false; error: ScanError; timeMs: number; server: string; bytesSent: number }

/** What one try sends, and under which limits. */
export interface AttemptPlan {
  /** rspamd's scan path (/checkv2) */
  path: string
  headers: RequestHeaders
  source: MessageSource
  /**
   * the message read already (a small one), sent as one Buffer (compressed already with `zstd`);
   * undefined: streamed from `source`
   */
  whole: Buffer | undefined
  /** the message's size when it goes whole (before compression): what `bytesSent` reports */
  wholeBytes?: number
  /** the streamed message goes zstd-compressed (`[request] zstd`; the headers say so already) */
  zstd: boolean
  /** this try's share of the scan's time (another server is left to try); undefined: the scan's own timer */
  attemptMs: number | undefined
  maxReplyBytes: number
}

/** How a try ended: the result, and whether the next server may be tried (rspamd had not answered). */
export interface AttemptOutcome {
  result: ScanResult
  retryable: boolean
}

/**
 * One try on one server. A cancel settles at once and destroys the socket rather than leaving it to
 * idle out. Every call after the attempt settled is ignored.
 */
export class ScanAttempt implements Exchange {
  private readonly start = performance.now()
  /** the message on its way through a Coalescer; undefined when it goes as one Buffer */
  private readonly stream: Coalescer | undefined
  private timer: NodeJS.Timeout | undefined
  /** ends the request and destroys its socket; set once the transport has started it */
  private abort: ((why: Error) => void) | undefined
  private resolve: (outcome: AttemptOutcome) => void = () => undefined
  private settled = false
  /** rspamd sent a status line: from here on the scan is not tried elsewhere */
  private answered = false
  private status = 0
  /** how much of the reply is read: the reply cap, or MAX_ERROR_BODY of an error reply */
  private cap: number
  private readonly parts: Buffer[] = []
  private size = 0
  private overCap = false
  /** the reply's bytes as they came (compressed or not), under the reply cap */
  private received = 0
  /** the streamed message's compressor (`[request] zstd`) */
  private compressor: Transform | undefined
  /** the reply's decompressor, when rspamd said `Compression: zstd`; its output is capped as the reply is */
  private decompressor: Transform | undefined
  /** the reply's `Message-Offset` header, checked when the whole reply is in */
  private messageOffset: string | string[] | undefined

  constructor(
    private readonly up: Upstream,
    private readonly plan: AttemptPlan,
    private readonly stop: ScanStop,
  ) {
    this.stream = plan.whole === undefined ? new Coalescer() : undefined
    this.cap = plan.maxReplyBytes
  }

  /** Sends the request; resolves once, never rejects. */
  run(): Promise<AttemptOutcome> {
    return new Promise((resolve) => {
      this.resolve = resolve
      const { attemptMs } = this.plan
      if (attemptMs !== undefined) {
        this.timer = setTimeout(
          () => this.cancel(new TimeoutReason(attemptMs, false, this.up.server)),
          attemptMs,
        )
      }
      if (this.stop.reason) return this.cancel(this.stop.reason)
      this.stop.cancel = this.cancel
      const stream = this.stream
      if (stream) {
        // the message could not be read (Haraka's message_stream destroys its destination with the
        // error): the scan fails now, as readWhole() makes it for a small message, and the request
        // goes with it; the next server would read the same message, so no retry
        stream.once('error', (err) => {
          this.fail(scanError('network', logText(`reading the message: ${describeError(err)}`)))
          this.abort?.(err)
        })
        this.plan.source.pipe(stream)
      }
      let body: Buffer | Readable | undefined = this.plan.whole
      if (stream && this.plan.zstd) {
        // the coalesced 64 KiB writes go through the compressor: the message is never held whole
        const z = zstdCompressor()
        this.compressor = z
        z.once('error', (err) => {
          this.fail(scanError('network', logText(`compressing the message (zstd): ${describeError(err)}`)))
          this.abort?.(err)
        })
        stream.pipe(z)
        body = z
      }
      this.up.transport.send(this.plan.path, this.plan.headers, body ?? (stream as Coalescer), this)
    })
  }

  /** Ends the attempt now (the scan's time, this server's share of it, or the SMTP client went away). */
  private readonly cancel = (why: TimeoutReason | ClientGone): void => {
    if (why instanceof TimeoutReason) this.fail(scanError('timeout', logText(why.message)), !why.total)
    else this.fail(scanError('aborted', logText(why.message)))
    // the socket goes at once, whatever the transport was doing with it
    this.abort?.(why)
  }

  // The Exchange: what the transport reports about the request.

  started(abort: (why: Error) => void): void {
    this.abort = abort
    // cancelled while the request waited for a connection: drop it now
    if (this.settled) abort(this.stop.reason ?? new Error('scan ended'))
  }

  response(status: number, head: ReplyHead): void {
    if (this.settled) return
    this.answered = true
    this.status = status
    if (status !== 200) {
      this.cap = MAX_ERROR_BODY
      return
    }
    const max = this.plan.maxReplyBytes
    const contentLength = head.contentLength
    const length = Number(contentLength)
    if (typeof contentLength === 'string' && Number.isFinite(length) && length > max) {
      this.fail(scanError('too-large', logText(`reply of ${length} bytes is over the ${max} byte cap`)))
      return this.abort?.(new Error('reply over the cap'))
    }
    this.messageOffset = head.messageOffset
    if (head.compression !== undefined) this.decompressFrom(head)
  }

  /** rspamd compressed its reply: a zstd stream, unless it is something we cannot read. */
  private decompressFrom(head: ReplyHead): void {
    const method = head.compression
    const problem =
      typeof method !== 'string' || method.trim().toLowerCase() !== 'zstd'
        ? `reply compressed with ${JSON.stringify(method)}, which is not zstd`
        : head.dictionary !== undefined
          ? `reply compressed with zstd dictionary ${JSON.stringify(head.dictionary)} ` +
            "(rspamd's zstd_output_dictionary), which cannot be read here"
          : !nodeHasZstd()
            ? `reply compressed with zstd, which node:zlib of Node ${process.version} cannot decompress ` +
              '(Node 22.15 or later can; is zstd in [request] flags?)'
            : undefined
    if (problem !== undefined) {
      this.fail(scanError('parse', logText(problem)))
      return this.abort?.(new Error('unreadable reply'))
    }
    const z = zstdDecompressor()
    this.decompressor = z
    z.on('data', (out: Buffer) => this.take(out, true))
    z.once('end', () => {
      if (!this.settled) this.finish()
    })
    z.once('error', (err) => {
      this.fail(scanError('parse', logText(`reply is not valid zstd: ${describeError(err)}`)))
      this.abort?.(err)
    })
  }

  data(chunk: Buffer): void {
    if (this.settled || this.overCap) return
    const z = this.decompressor
    if (!z) return this.take(chunk, false)
    // the compressed bytes are capped too; what they inflate to is capped in take()
    if (this.received + chunk.length > this.plan.maxReplyBytes) {
      this.fail(scanError('too-large', logText(`reply is over the ${this.plan.maxReplyBytes} byte cap`)))
      return this.abort?.(new Error('reply over the cap'))
    }
    this.received += chunk.length
    z.write(chunk)
  }

  /** One piece of the reply as it reads (decompressed, when it was compressed), under the cap. */
  private take(chunk: Buffer, inflated: boolean): void {
    if (this.settled || this.overCap) return
    if (!inflated) this.received += chunk.length
    if (this.size + chunk.length > this.cap) {
      if (this.status !== 200) {
        // an error reply: what fitted is enough to report it
        this.parts.push(chunk.subarray(0, this.cap - this.size))
        this.size = this.cap
        this.overCap = true
        this.finish()
        return this.abort?.(new Error('error reply over the cap'))
      }
      const what = inflated ? 'decompressed reply' : 'reply'
      this.fail(scanError('too-large', logText(`${what} is over the ${this.plan.maxReplyBytes} byte cap`)))
      return this.abort?.(new Error('reply over the cap'))
    }
    this.parts.push(chunk)
    this.size += chunk.length
  }

  end(): void {
    if (this.settled) return
    // a compressed reply is whole once the decompressor has given all of it ('end' above)
    if (this.decompressor) this.decompressor.end()
    else this.finish()
  }

  error(err: unknown): void {
    if (this.settled) return
    const kind = classify(err)
    // a connection that broke before rspamd answered: the message never reached a verdict; a
    // request the HTTP client refused to write would be refused for every server alike
    const retryable = (kind === 'connect' || kind === 'network') && !UNSENDABLE.has(errCode(err) ?? '')
    this.fail(scanError(kind, logText(describeError(err))), retryable)
  }

  // How it ends.

  /** The whole reply is in: a verdict, or the failure an error status or a bad body makes. */
  private finish(): void {
    const { parts, size, status } = this
    const all = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, size)
    if (status !== 200)
      return this.fail(httpStatusError(status, logText(`HTTP ${status}${errorDetail(all.toString('utf8'))}`)))
    const split = splitBodyBlock(all, this.messageOffset)
    if (typeof split === 'string') return this.fail(scanError('parse', logText(split)))
    const parsed = parseReplyBody(split.json.toString('utf8'))
    if (!parsed.ok) return this.fail(scanError('parse', logText(parsed.error)))
    this.settle(
      {
        ok: true,
        reply: parsed.reply,
        json: parsed.json,
        replyBytes: this.received,
        ...(split.body ? { body: split.body } : {}),
        warnings: parsed.warnings,
        timeMs: elapsed(this.start),
        server: this.up.server,
        bytesSent: this.sent(),
      },
      false,
    )
  }

  private fail(error: ScanError, retryable = false): void {
    this.settle(
      { ok: false, error, timeMs: elapsed(this.start), server: this.up.server, bytesSent: this.sent() },
      retryable && !this.answered,
    )
  }

  private settle(result: ScanResult, retryable: boolean): void {
    if (this.settled) return
    this.settled = true
    clearTimeout(this.timer)
    this.stop.cancel = undefined
    const stream = this.stream
    if (stream) {
      // stop the message stream before destroying its destination (haraka/message-stream#22);
      // after this it can be piped again from the start for the next server
      this.plan.source.unpipe()
      if (!stream.destroyed) stream.destroy()
    }
    if (this.compressor && !this.compressor.destroyed) this.compressor.destroy()
    // a bomb stops inflating here: nothing more is written to it, and what it holds is dropped
    if (this.decompressor && !this.decompressor.destroyed) this.decompressor.destroy()
    this.resolve({ result, retryable })
  }

  /** the message's bytes handed to the transport so far (before compression) */
  private sent(): number {
    return this.stream ? this.stream.bytes : (this.plan.wholeBytes ?? this.plan.whole?.length ?? 0)
  }
}

/**
 * The reply split where `Message-Offset` says rspamd's rewritten message starts (flag body_block):
 * the JSON before, the message after. No header: all of it is the JSON. A text: why it cannot be split.
 */
export function splitBodyBlock(
  all: Buffer,
  offsetHeader: string | string[] | undefined,
): { json: Buffer; body?: Buffer } | string {
  if (offsetHeader === undefined) return { json: all }
  if (typeof offsetHeader !== 'string') return 'reply has more than one Message-Offset header'
  const text = offsetHeader.trim()
  if (!/^[0-9]{1,15}$/.test(text)) {
    return `reply's Message-Offset ${JSON.stringify(forLog(offsetHeader, 40))} is not a byte offset`
  }
  const offset = Number(text)
  if (offset === 0) return 'reply is a body block with no JSON before it (Message-Offset 0)'
  if (offset >= all.length) {
    return `reply's Message-Offset ${offset} is not inside the ${all.length} byte reply (no body block after it)`
  }
  return { json: all.subarray(0, offset), body: all.subarray(offset) }
}

// every message may quote outside text (a reply, an error page, a library's error): it is logged,
// so it leaves here escaped and bounded
const logText = (message: string) => forLog(message, ERROR_TEXT_MAX)

export function elapsed(start: number): number {
  return Math.round((performance.now() - start) * 10) / 10
}

function errorDetail(text: string | undefined): string {
  if (!text) return ''
  try {
    const j: unknown = JSON.parse(text)
    if (typeof j === 'object' && j !== null && 'error' in j && typeof j.error === 'string') {
      return `: ${rspamdErrorText(j.error)}`
    }
  } catch {
    // not JSON: an HTML error page from a proxy, say; show its start
  }
  const one = text
    .replace(/<[^>]*>/g, ' ')
    .replace(PAGE_BLANKS, ' ')
    .trim()
  // forLog() for what the line above leaves: C1 controls (CSI, NEL)
  return one ? `: ${forLog(one, 120)}` : ''
}

/** errno and undici codes of a connection that was never made (a ConnectTimeout is one too) */
const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ENOENT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EACCES',
  'UND_ERR_CONNECT_TIMEOUT',
])

/** codes of a request the HTTP client will not send at all (node:http, undici) */
const UNSENDABLE = new Set([
  'ERR_INVALID_CHAR',
  'ERR_INVALID_HTTP_TOKEN',
  'ERR_HTTP_INVALID_HEADER_VALUE',
  'UND_ERR_INVALID_ARG',
])

function errCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string')
    return err.code
  return undefined
}

function classify(err: unknown): 'connect' | 'network' {
  const code = errCode(err)
  if (err instanceof ConnectTimeout || (code && CONNECT_CODES.has(code))) return 'connect'
  if (code?.startsWith('ERR_TLS') || code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || code?.includes('CERT')) {
    return 'connect'
  }
  // node's wording when the peer hangs up during the TLS handshake: still the connect phase
  if (err instanceof Error && /before secure TLS connection was established/.test(err.message))
    return 'connect'
  return 'network'
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const code = errCode(err)
  const cause = err.cause instanceof Error ? ` (${err.cause.message})` : ''
  return `${code ? `${code}: ` : ''}${err.message}${cause}`
}
