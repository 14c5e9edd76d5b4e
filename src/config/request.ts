// The sections that say how rspamd is asked (read by src/rspamd/): `path`, `[upstream]` (when a failing
// server is skipped), `[tls] servername`, `[auth]`, `[request]` (Flags, settings) and `[request_headers]`,
// with the checks that keep each value something node:http and undici can send in an HTTP header.

import { isIP } from 'node:net'
import * as zlib from 'node:zlib'
import { ConfigError } from './errors'
import type { Reader, Section } from './reader'
import { hostProblem } from './servers'
import type { AuthConfig, RequestConfig, UpstreamConfig } from './types'

/** The `[request]` booleans that each become one rspamd `Flags` entry. */
const FLAG_KEYS = [
  'body_block',
  'ext_urls',
  'groups',
  'milter',
  'no_log',
  'profile',
  'skip',
  'skip_process',
  'zstd',
] as const

// CR, LF and NUL would split or end an HTTP header line.
const UNSAFE_VALUE = /[\r\n\0]/
/**
 * An HTTP header name (RFC 9110 token): what node:http and undici take. A header of ours to rspamd
 * with `(`, `@` or `/` in its name would throw at every request, so every scan would fail.
 */
const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
/** What node:http and undici refuse in a header value: controls but tab, and anything past U+00FF. */
const NOT_HTTP_VALUE = /[^\t\x20-\x7e\x80-\xff]/
/** Past U+007E: written as \uXXXX when an object of settings is made JSON, so the header is ASCII. */
const NON_ASCII = /[\u007f-\uffff]/g

/**
 * A value checked for a request header: the text to send (undefined: the entry sends nothing, as an
 * empty `[request_headers]` key), or why it cannot be sent. The config throws the problem as a
 * ConfigError naming its key; the per-message request note (src/rspamd/request.ts) logs it and
 * drops the entry. One check for both, so a value is good or bad the same way in either place.
 */
export type Checked = { ok: true; value: string | undefined } | { ok: false; problem: string }

const bad = (problem: string): Checked => ({ ok: false, problem })

/** Why this text cannot be an HTTP header value as it is, or undefined. */
export function headerValueProblem(value: string): string | undefined {
  if (UNSAFE_VALUE.test(value)) return 'CR, LF or NUL in a header value'
  if (NOT_HTTP_VALUE.test(value)) return 'a control character or one past U+00FF, which HTTP cannot send'
  return undefined
}

/** Why this cannot be an HTTP header name, or undefined. */
export function headerNameProblem(name: string): string | undefined {
  return HTTP_TOKEN.test(name) ? undefined : 'not a valid HTTP header name'
}

/** A header name of ours to rspamd (`[request_headers]`, rspamd-lda's --header): an HTTP token. */
export function headerName(key: string, name: string): string {
  const problem = headerNameProblem(name)
  if (problem !== undefined) throw new ConfigError(key, name, problem)
  return name
}

/** A header value of ours to rspamd: one line that node:http and undici can send. */
export function headerValue(key: string, value: string): string {
  const problem = headerValueProblem(value)
  if (problem !== undefined) throw new ConfigError(key, value, problem)
  return value
}

/** A text-like value as text; undefined for one that is not (an object, a function). */
function asText(value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (typeof value === 'boolean') return String(value)
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : undefined
  return undefined
}

/**
 * One extra request header, `[request_headers] NAME = value` or `headers.NAME` of the request note:
 * an HTTP token for the name; text, a number or a boolean for the value, one line that HTTP can
 * send; nothing (undefined, null, '', false) sends no header.
 */
export function requestHeaderEntry(name: string, value: unknown): Checked {
  const nameProblem = headerNameProblem(name)
  if (nameProblem !== undefined) return bad(nameProblem)
  if (value === undefined || value === null || value === '' || value === false)
    return { ok: true, value: undefined }
  const text = asText(value)
  if (text === undefined) return bad('expected text')
  const problem = headerValueProblem(text)
  return problem === undefined ? { ok: true, value: text } : bad(problem)
}

/**
 * rspamd's `Settings`, `[request] settings` or `settings` of the request note: text as it is (JSON
 * or rspamd's own UCL, `{symbols_disabled = [X]}`: rspamd parses it, it only has to be one line
 * HTTP can send), or an object, written here as JSON with everything past ASCII as \uXXXX.
 */
export function settingsEntry(value: unknown): Checked {
  if (value === undefined || value === null || value === '') return { ok: true, value: undefined }
  let text: string
  if (typeof value === 'string') text = value
  else if (typeof value === 'object' && !Array.isArray(value)) {
    let json: string | undefined
    try {
      json = JSON.stringify(value) as string | undefined
    } catch (err) {
      return bad(`cannot be written as JSON: ${err instanceof Error ? err.message : String(err)}`)
    }
    if (json === undefined) return bad('cannot be written as JSON')
    text = json.replace(NON_ASCII, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
  } else return bad('expected an object of settings or its JSON text')
  const problem = headerValueProblem(text)
  return problem === undefined ? { ok: true, value: text } : bad(problem)
}

/** rspamd's `Settings-ID`: `[request] settings_id`, `settings_id_outbound`, `settings_id` of the request note. */
export function settingsIdEntry(value: unknown): Checked {
  if (value === undefined || value === null || value === '') return { ok: true, value: undefined }
  if (typeof value !== 'string') return bad('expected the name of rspamd settings, as text')
  const problem = headerValueProblem(value)
  return problem === undefined ? { ok: true, value } : bad(problem)
}

/** The checked value of a config key, or a ConfigError naming it. */
function configured(key: string, raw: unknown, checked: Checked): string | undefined {
  if (!checked.ok) throw new ConfigError(key, raw, checked.problem)
  return checked.value
}

/** `[tls] servername`: the name sent in TLS SNI and checked against the certificate: a host name. */
export function parseServername(tls: Reader): string | undefined {
  const name = tls.str('servername')
  if (name !== undefined && (isIP(name) !== 0 || hostProblem(name) !== undefined)) {
    throw new ConfigError(tls.name('servername'), tls.raw('servername'), 'expected a host name')
  }
  return name
}

export function parseUpstream(up: Reader): UpstreamConfig {
  const maxErrors = up.raw('max_errors')
  let max = 10
  if (maxErrors !== undefined && maxErrors !== null && maxErrors !== '') {
    max = Number(typeof maxErrors === 'string' ? maxErrors.trim() : maxErrors)
    if (!Number.isInteger(max) || max < 1) {
      throw new ConfigError(
        'upstream.max_errors',
        maxErrors,
        'expected a whole number of failures, 1 or more',
      )
    }
  }
  return {
    errorTime: up.seconds('error_time') ?? 10,
    deadTime: up.seconds('dead_time') ?? 300,
    maxErrors: max,
    maxInFlight: parseMaxInFlight(up),
    adaptive: up.bool('adaptive', true),
  }
}

/** The most scans one server is given at once: a whole number of 0 or more (0: no fixed number). */
const MAX_IN_FLIGHT_CAP = 100_000

function parseMaxInFlight(up: Reader): number {
  const raw = up.raw('max_in_flight')
  if (raw === undefined || raw === null || raw === '') return 0
  const n = Number(typeof raw === 'string' ? raw.trim() : raw)
  if (!Number.isInteger(n) || n < 0 || n > MAX_IN_FLIGHT_CAP) {
    throw new ConfigError(
      'upstream.max_in_flight',
      raw,
      `expected a whole number of scans from 0 (adaptive, no ceiling of yours) to ${MAX_IN_FLIGHT_CAP}`,
    )
  }
  return n
}

export function parsePath(main: Reader): string {
  const path = main.str('path') ?? '/checkv2'
  // printable ASCII: node:http and undici both throw at a request on anything else
  if (!/^\/[!-~]*$/.test(path) || /[?#]/.test(path)) {
    throw new ConfigError('path', path, 'expected an absolute URL path such as /checkv2')
  }
  return path
}

export function parseAuth(auth: Reader, env: NodeJS.ProcessEnv): AuthConfig {
  const header = auth.str('header')
  if (header !== undefined && !HTTP_TOKEN.test(header)) {
    throw new ConfigError('auth.header', header, 'not a valid header name')
  }
  const out: AuthConfig = {
    basicUser: auth.str('basic_user'),
    basicPass: auth.str('basic_pass'),
    header,
    value: auth.str('value'),
    valueEnv: auth.str('value_env'),
  }
  if (out.basicUser?.includes(':')) {
    throw new ConfigError('auth.basic_user', out.basicUser, 'a basic-auth user may not contain a colon')
  }
  if (out.value !== undefined) headerValue('auth.value', out.value)
  if (out.valueEnv !== undefined) {
    // a secret written to a file or variable with `echo` (a Kubernetes secret, often) ends in a newline that
    // no header value can carry: request.ts trims it as it trims every value, so it is not an error here
    const fromEnv = env[out.valueEnv]?.replace(/\r?\n$/, '')
    if (fromEnv !== undefined) headerValue(`auth.value_env (${out.valueEnv})`, fromEnv)
  }
  return out
}

export function parseRequest(request: Reader): RequestConfig {
  const flags = new Set<string>()
  const rawFlags = request.raw('flags')
  const listed = Array.isArray(rawFlags) ? rawFlags.map(String) : (request.str('flags') ?? '').split(',')
  for (const f of listed) {
    const t = f.trim()
    if (t === '') continue
    if (!/^[A-Za-z0-9_-]+$/.test(t))
      throw new ConfigError('request.flags', rawFlags, `bad flag ${JSON.stringify(t)}`)
    flags.add(t)
  }
  for (const key of FLAG_KEYS) if (request.bool(key, false)) flags.add(key)
  const zstd = flags.has('zstd')
  if (zstd && !nodeHasZstd()) {
    const named = request.bool('zstd', false) ? 'request.zstd' : 'request.flags'
    throw new ConfigError(
      named,
      request.raw(named === 'request.zstd' ? 'zstd' : 'flags'),
      `zstd needs a Node.js whose node:zlib has it (22.15 or later, 23.8 or later, 24); this is ${process.version}`,
    )
  }

  const settings = configured(
    'request.settings',
    request.raw('settings'),
    settingsEntry(request.str('settings')),
  )
  const settingsId = configured(
    'request.settings_id',
    request.raw('settings_id'),
    settingsIdEntry(request.str('settings_id')),
  )
  // the Settings-ID of mail from authenticated or relaying senders (scanned when [check] says so)
  const settingsIdOutbound = configured(
    'request.settings_id_outbound',
    request.raw('settings_id_outbound'),
    settingsIdEntry(request.str('settings_id_outbound')),
  )
  const urlFormat = request.str('url_format')
  if (urlFormat !== undefined) headerValue('request.url_format', urlFormat)
  return {
    settingsId,
    settingsIdOutbound,
    settings,
    flags: [...flags],
    passAll: request.bool('pass_all', false),
    raw: request.bool('raw', false),
    urlFormat,
    zstd,
    bodyBlock: flags.has('body_block'),
  }
}

/** node:zlib has zstd (zstdCompress, createZstdDecompress): Node 22.15+, 23.8+, 24. */
export function nodeHasZstd(): boolean {
  const z = zlib as unknown as Record<string, unknown>
  return typeof z.createZstdCompress === 'function' && typeof z.createZstdDecompress === 'function'
}

/**
 * What the plugin refuses of a Config that rspamd-lda accepts: `[request] body_block`. The message
 * rspamd rewrites cannot replace the one Haraka has queued (its body stream is the SMTP client's, and
 * other plugins have read it), so the rewritten message would be dropped and every scan would pay
 * for sending it back. Checked at start-up and on each reload.
 */
export function pluginProblems(request: RequestConfig): ConfigError | undefined {
  if (!request.bodyBlock) return undefined
  return new ConfigError(
    'request.body_block',
    true,
    "the Haraka plugin cannot deliver the message rspamd rewrites (it cannot replace Haraka's queued " +
      'message); body_block is for rspamd-lda only: remove it (or `body_block` from flags) here',
  )
}

export function parseRequestHeaders(s: Section): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(s)) {
    const key = `request_headers.${name}`
    const v = configured(key, value, requestHeaderEntry(name, value))
    if (v !== undefined) out[name] = v
  }
  return out
}
