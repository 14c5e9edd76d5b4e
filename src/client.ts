// The only module that does network I/O: an undici keep-alive pool to rspamd, a streaming POST,
// one total timeout, and a capped read of the reply. Failures come back as values, never thrown.

import { Transform, type Readable, type TransformCallback, type Writable } from 'node:stream'
import { Pool, errors as undiciErrors } from 'undici'
import type { Config, Target } from './config'
import type { RequestHeaders } from './request'
import { parseReplyBody, type Reply } from './reply'
import type { ScanError, ScanErrorKind } from './verdict'

/** rspamd replies are a few KiB; anything near this is broken or hostile. */
export const MAX_REPLY_BYTES = 16 * 1024 * 1024
/** How much of an error reply we read to report rspamd's {"error": …}. */
const MAX_ERROR_BODY = 64 * 1024
/**
 * Haraka's message_stream emits one small chunk per line and undici writes each chunk it is
 * given; gathering them into 64 KiB writes cut the CPU cost of a 1 MB message ~12× (SPEC §1).
 */
export const COALESCE_BYTES = 64 * 1024

/** Where the message comes from: something that can write it into a stream, and stop. */
export interface MessageSource {
  /** start writing the whole message (CRLF line endings) into dest, then end it */
  pipe(dest: Writable): void
  /** stop writing (timeout, error, abort); must be safe to call at any time */
  unpipe(): void
}

export interface ScanRequest {
  headers: RequestHeaders
  /** the message, streamed */
  source: MessageSource
  /** total time for connect + send + reply, in ms */
  timeoutMs: number
  /** aborts the scan (the SMTP client went away) */
  signal?: AbortSignal
}

export type ScanResult =
  | {
      ok: true
      reply: Reply
      json: Record<string, unknown>
      warnings: string[]
      timeMs: number
      server: string
      bytesSent: number
    }
  | { ok: false; error: ScanError; timeMs: number; server: string; bytesSent: number }

/** Gathers small chunks into writes of about `size` bytes; holds at most one batch, never the message. */
export class Coalescer extends Transform {
  private parts: Buffer[] = []
  private held = 0
  bytes = 0

  constructor(private readonly size = COALESCE_BYTES) {
    super()
  }

  override _transform(chunk: Buffer | string, _enc: BufferEncoding, cb: TransformCallback): void {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    this.bytes += buf.length
    this.parts.push(buf)
    this.held += buf.length
    if (this.held >= this.size) this.release()
    cb()
  }

  override _flush(cb: TransformCallback): void {
    this.release()
    cb()
  }

  private release(): void {
    if (this.held === 0) return
    const out = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.held)
    this.parts = []
    this.held = 0
    this.push(out)
  }
}

function origin(target: Target): string {
  if (target.kind === 'unix') return 'http://localhost'
  const host = target.host.includes(':') ? `[${target.host}]` : target.host
  return `${target.scheme}://${host}:${target.port}`
}

export function describeTarget(target: Target): string {
  return target.kind === 'unix' ? `unix:${target.socketPath}` : origin(target)
}

class TimeoutReason extends Error {
  constructor(ms: number) {
    super(`no reply from rspamd within ${ms} ms`)
    this.name = 'TimeoutReason'
  }
}

/** One rspamd server: an undici Pool kept for the life of the plugin (keep-alive). */
export class RspamdClient {
  readonly server: string
  private readonly pool: Pool
  private readonly path: string
  private readonly maxReplyBytes: number

  constructor(cfg: Config, opts: { maxReplyBytes?: number; connections?: number } = {}) {
    const t = cfg.target
    this.server = describeTarget(t)
    this.path = cfg.path
    this.maxReplyBytes = opts.maxReplyBytes ?? MAX_REPLY_BYTES
    const tls = cfg.tls
    this.pool = new Pool(origin(t), {
      connections: opts.connections ?? null,
      // rspamd closes idle keep-alive connections after a while; undici drops ours first
      keepAliveTimeout: 4_000,
      keepAliveMaxTimeout: 30_000,
      // our own total timeout governs; these only stop undici's 300 s defaults from mattering
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: {
        ...(t.kind === 'unix' ? { socketPath: t.socketPath } : {}),
        timeout: 10_000,
        ...(t.kind === 'tcp' && t.scheme === 'https'
          ? {
              rejectUnauthorized: tls.rejectUnauthorized,
              servername: tls.servername,
              ca: tls.ca,
              cert: tls.cert,
              key: tls.key,
            }
          : {}),
      },
    })
  }

  /** Stream one message to rspamd and read its verdict. Never throws, never rejects. */
  async scan(req: ScanRequest): Promise<ScanResult> {
    const start = performance.now()
    const elapsed = () => Math.round((performance.now() - start) * 10) / 10
    const ctl = new AbortController()
    const timer = setTimeout(() => ctl.abort(new TimeoutReason(req.timeoutMs)), req.timeoutMs)
    const onOuterAbort = () => ctl.abort(req.signal?.reason ?? new Error('scan aborted'))
    if (req.signal?.aborted) onOuterAbort()
    else req.signal?.addEventListener('abort', onOuterAbort, { once: true })

    const body = new Coalescer()
    req.source.pipe(body)

    const fail = (kind: ScanErrorKind, message: string): ScanResult => ({
      ok: false,
      error: { kind, message },
      timeMs: elapsed(),
      server: this.server,
      bytesSent: body.bytes,
    })

    try {
      const res = await this.pool.request({
        method: 'POST',
        path: this.path,
        headers: req.headers,
        body,
        signal: ctl.signal,
      })
      const length = Number(res.headers['content-length'])
      if (res.statusCode !== 200) {
        const text = await readCapped(res.body, MAX_ERROR_BODY, true)
        return fail('http', `HTTP ${res.statusCode}${errorDetail(text)}`)
      }
      if (Number.isFinite(length) && length > this.maxReplyBytes) {
        res.body.destroy()
        return fail('too-large', `reply of ${length} bytes is over the ${this.maxReplyBytes} byte cap`)
      }
      const text = await readCapped(res.body, this.maxReplyBytes, false)
      if (text === undefined) {
        return fail('too-large', `reply is over the ${this.maxReplyBytes} byte cap`)
      }
      const parsed = parseReplyBody(text)
      if (!parsed.ok) return fail('parse', parsed.error)
      return {
        ok: true,
        reply: parsed.reply,
        json: parsed.json,
        warnings: parsed.warnings,
        timeMs: elapsed(),
        server: this.server,
        bytesSent: body.bytes,
      }
    } catch (err) {
      const reason: unknown = ctl.signal.aborted ? ctl.signal.reason : undefined
      if (reason instanceof TimeoutReason) return fail('timeout', reason.message)
      if (ctl.signal.aborted) return fail('aborted', 'scan aborted: the SMTP client went away')
      return fail(classify(err), describeError(err))
    } finally {
      clearTimeout(timer)
      req.signal?.removeEventListener('abort', onOuterAbort)
      req.source.unpipe()
      if (!body.destroyed) body.destroy()
    }
  }

  /** Waits for scans in flight, then closes the connections. */
  async close(): Promise<void> {
    await this.pool.close()
  }

  /** Closes at once, failing scans in flight. */
  async destroy(): Promise<void> {
    await this.pool.destroy()
  }
}

/**
 * Read a reply body up to `cap` bytes. Over the cap: the rest is not read, the socket is
 * dropped, and the result is undefined (or, when `truncate`, what fitted).
 */
async function readCapped(body: Readable, cap: number, truncate: boolean): Promise<string | undefined> {
  const parts: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    const buf = chunk as Buffer
    if (size + buf.length > cap) {
      if (truncate) parts.push(buf.subarray(0, cap - size))
      body.destroy()
      return truncate ? Buffer.concat(parts).toString('utf8') : undefined
    }
    parts.push(buf)
    size += buf.length
  }
  return Buffer.concat(parts, size).toString('utf8')
}

function errorDetail(text: string | undefined): string {
  if (!text) return ''
  try {
    const j: unknown = JSON.parse(text)
    if (typeof j === 'object' && j !== null && 'error' in j && typeof j.error === 'string') {
      return `: ${j.error.slice(0, 300)}`
    }
  } catch {
    // not JSON: an HTML error page from a proxy, say; show its start
  }
  const one = text
    .replace(/<[^>]*>/g, ' ')
    // eslint-disable-next-line no-control-regex
    .replace(/[\s\x00-\x1f]+/g, ' ')
    .trim()
  return one ? `: ${one.slice(0, 120)}` : ''
}

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

function errCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string')
    return err.code
  return undefined
}

function classify(err: unknown): ScanErrorKind {
  const code = errCode(err)
  if (err instanceof undiciErrors.ConnectTimeoutError || (code && CONNECT_CODES.has(code))) return 'connect'
  if (code?.startsWith('ERR_TLS') || code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || code?.includes('CERT')) {
    return 'connect'
  }
  return 'network'
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const code = errCode(err)
  const cause = err.cause instanceof Error ? ` (${err.cause.message})` : ''
  return `${code ? `${code}: ` : ''}${err.message}${cause}`
}
