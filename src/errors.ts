// Every way a scan, the greylist store or the plugin itself can fail, in one place. Each failure is
// a value with a stable `code` (ERR_…: for code that branches on a failure) and a `kind` (the word
// logs, defer reasons, failover lists and X-Spam-Error have always printed: it does not change).
// Failures travel as values, never thrown; the Error classes at the end are only the reasons a
// request is torn down with. Base layer: imports nothing from the project.

/** The stable code of each kind of failed scan. */
export const SCAN_ERROR_CODES = {
  /** no connection to rspamd (refused, unreachable, name not found, TLS, connect_timeout) */
  connect: 'ERR_RSPAMD_CONNECT',
  /** the connection broke, or the message could not be read */
  network: 'ERR_RSPAMD_NETWORK',
  /** no reply within the timeout (the scan's, or one server's share of it) */
  timeout: 'ERR_RSPAMD_TIMEOUT',
  /** rspamd (or a proxy) answered with a status other than 200 */
  http: 'ERR_RSPAMD_HTTP_STATUS',
  /** a 200 answer that is not a usable reply */
  parse: 'ERR_RSPAMD_PARSE',
  /** a reply over the size cap */
  'too-large': 'ERR_RSPAMD_REPLY_TOO_LARGE',
  /** the SMTP client went away: the scan was aborted */
  aborted: 'ERR_RSPAMD_CLIENT_GONE',
  /** every server was at its in-flight limit, and the scan could not have finished in time: not sent (shed) */
  saturated: 'ERR_RSPAMD_SATURATED',
} as const

/** A bug of ours (the plugin or rspamd-lda), after or around a scan. */
export const INTERNAL_ERROR_CODE = 'ERR_RSPAMD_PLUGIN_INTERNAL'

/** The stable code of each kind of failed greylist store check. */
export const STORE_ERROR_CODES = {
  /** Redis failed, refused, or answered something unexpected */
  error: 'ERR_GREYLIST_REDIS',
  /** Redis did not answer within redis_timeout (or the hook had no time left) */
  timeout: 'ERR_GREYLIST_REDIS_TIMEOUT',
} as const

type Codes = typeof SCAN_ERROR_CODES

/** What every failure carries: `message` is one line, escaped for a log where it was made. */
interface Failure<K extends string, C extends string> {
  readonly kind: K
  readonly code: C
  readonly message: string
}

export type ConnectError = Failure<'connect', Codes['connect']>
export type NetworkError = Failure<'network', Codes['network']>
export type TimeoutError = Failure<'timeout', Codes['timeout']>
/** A non-200 answer; `status` is the number (5xx counts against the server's health, 4xx does not). */
export interface HttpStatusError extends Failure<'http', Codes['http']> {
  readonly status: number
}
export type ParseError = Failure<'parse', Codes['parse']>
export type ReplyTooLargeError = Failure<'too-large', Codes['too-large']>
export type ClientGoneError = Failure<'aborted', Codes['aborted']>
export type SaturatedError = Failure<'saturated', Codes['saturated']>

/** Why a scan failed. */
export type ScanError =
  | ConnectError
  | NetworkError
  | TimeoutError
  | HttpStatusError
  | ParseError
  | ReplyTooLargeError
  | ClientGoneError
  | SaturatedError

export type ScanErrorKind = ScanError['kind']

export type InternalError = Failure<'internal', typeof INTERNAL_ERROR_CODE>

/** Why the greylist store gave no answer: Redis failed or refused (error), or answered too late (timeout). */
export type StoreError =
  | Failure<'error', (typeof STORE_ERROR_CODES)['error']>
  | Failure<'timeout', (typeof STORE_ERROR_CODES)['timeout']>

/** Any failure this module describes. */
export type AnyError = ScanError | InternalError | StoreError

/** A failed scan of any kind but http (which needs its status: httpStatusError). */
export function scanError<K extends Exclude<ScanErrorKind, 'http'>>(
  kind: K,
  message: string,
): Extract<ScanError, { kind: K }> {
  return { kind, code: SCAN_ERROR_CODES[kind], message } as Extract<ScanError, { kind: K }>
}

/** A non-200 answer: `message` is the log text (`HTTP 503: …`), `status` the number decisions use. */
export function httpStatusError(status: number, message: string): HttpStatusError {
  return { kind: 'http', code: SCAN_ERROR_CODES.http, status, message }
}

export function internalError(message: string): InternalError {
  return { kind: 'internal', code: INTERNAL_ERROR_CODE, message }
}

/** A failed store check, with its code as a field, as every failure has it. */
export function storeError<K extends StoreError['kind']>(
  kind: K,
  message: string,
): Extract<StoreError, { kind: K }> {
  return { kind, code: STORE_ERROR_CODES[kind], message } as Extract<StoreError, { kind: K }>
}

/** A 5xx answer: the server is unwell (a 4xx is about the request, and any server would say the same). */
export function isServerError(error: ScanError): boolean {
  return error.kind === 'http' && error.status >= 500 && error.status <= 599
}

// The reasons a request in flight is torn down with (they are handed to the transport's abort,
// which wants an Error). Each becomes the failure of the same code.

/** The scan's time is up: all of it (`total`), or only this server's share of it. */
export class TimeoutReason extends Error {
  readonly code = SCAN_ERROR_CODES.timeout
  constructor(
    ms: number,
    /** the scan's whole budget is spent (true), or only this attempt's share of it */
    readonly total: boolean,
    server: string,
  ) {
    super(total ? `no reply from rspamd within ${ms} ms` : `no reply from ${server} within ${ms} ms`)
    this.name = 'TimeoutReason'
  }
}

/** The SMTP client went away. */
export class ClientGone extends Error {
  readonly code = SCAN_ERROR_CODES.aborted
  constructor() {
    super('scan aborted: the SMTP client went away')
    this.name = 'ClientGone'
  }
}

/**
 * The connect phase (TCP, and TLS for https) took longer than connect_timeout: a connect failure.
 * Its code is the errno a socket would give (`ETIMEDOUT`), which the failure's message quotes.
 */
export class ConnectTimeout extends Error {
  readonly code = 'ETIMEDOUT'
  constructor(server: string, ms: number) {
    super(`no connection to ${server} within ${ms} ms (connect_timeout)`)
    this.name = 'ConnectTimeout'
  }
}
