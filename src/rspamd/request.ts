// Sender facts (from Haraka's connection and transaction, gathered by index.ts) → rspamd request headers.
// Every value is a single-line string: an object or a CR/LF never reaches the wire. Also the request
// note other plugins leave on the transaction (docs/plugin-authors.md), checked by the same rules as
// `[request_headers]` and `[request] settings` (src/config/request.ts) and bounded in size.

import type { Config } from '../config'
import { isPlainObject } from '../config/reader'
import { requestHeaderEntry, settingsEntry, settingsIdEntry } from '../config/request'
import { CONTROLS, controlClass } from '../escape'

/** What the plugin knows about one message, as plain values. */
export interface Envelope {
  ip?: string
  /** FCrDNS name when known, else the remote host name */
  hostname?: string
  helo?: string
  /** envelope sender; '' for the null sender <> */
  mailFrom?: string
  rcpts: string[]
  queueId?: string
  /** authenticated user */
  user?: string
  tlsCipher?: string
  tlsVersion?: string
  mtaName?: string
  /** an authenticated or relaying sender: `[request] settings_id_outbound` applies */
  outbound?: boolean
}

/** Header name → one value, or several (sent as repeated headers, e.g. one Rcpt per recipient). */
export type RequestHeaders = Record<string, string | string[]>

const CONTROL = controlClass([CONTROLS.butTab], 'g', true)

/** One header value: text only, controls (CR, LF, NUL…) collapsed to a space, trimmed. */
export function headerText(v: unknown): string | undefined {
  if (typeof v !== 'string' && typeof v !== 'number') return undefined
  const s = String(v).replace(CONTROL, ' ').trim()
  return s === '' ? undefined : s
}

function set(headers: RequestHeaders, name: string, v: unknown): void {
  const s = headerText(v)
  if (s !== undefined) headers[name] = s
}

export function buildRequestHeaders(
  env: Envelope,
  cfg: Config,
  processEnv: NodeJS.ProcessEnv = process.env,
  note?: RequestNote,
): RequestHeaders {
  const h: RequestHeaders = {}
  set(h, 'IP', env.ip)
  set(h, 'Hostname', env.hostname)
  set(h, 'Helo', env.helo)
  // rspamd reads an empty From as the null sender; send '<>' so it is not taken as "unknown"
  if (env.mailFrom !== undefined) h.From = headerText(env.mailFrom) ?? '<>'
  const rcpts = env.rcpts.map(headerText).filter((r): r is string => r !== undefined)
  if (rcpts.length > 0) h.Rcpt = rcpts
  // Deliver-To selects per-user settings in rspamd; it only makes sense for a single recipient
  if (rcpts.length === 1) h['Deliver-To'] = rcpts[0]
  set(h, 'Queue-Id', env.queueId)
  set(h, 'User', env.user)
  set(h, 'TLS-Cipher', env.tlsCipher)
  set(h, 'TLS-Version', env.tlsVersion)
  set(h, 'MTA-Name', env.mtaName)

  const req = cfg.request
  // the note's settings, from a plugin that knows this message, win over the configured ones
  const settingsId = env.outbound === true ? (req.settingsIdOutbound ?? req.settingsId) : req.settingsId
  set(h, 'Settings-ID', note?.settingsId ?? settingsId)
  set(h, 'Settings', note?.settings ?? req.settings)
  if (req.passAll) h.Pass = 'all'
  if (req.raw) h.Raw = 'yes'
  if (req.flags.length > 0) h.Flags = req.flags.join(',')
  set(h, 'URL-Format', req.urlFormat)

  const auth = cfg.auth
  if (auth.basicUser !== undefined) {
    const token = Buffer.from(`${auth.basicUser}:${auth.basicPass ?? ''}`).toString('base64')
    h.Authorization = `Basic ${token}`
  }
  if (auth.header !== undefined) {
    // the environment wins, so a secret can stay out of rspamd.ini
    const value = (auth.valueEnv !== undefined ? processEnv[auth.valueEnv] : undefined) ?? auth.value
    set(h, auth.header, value)
  }

  for (const [name, value] of Object.entries(cfg.requestHeaders)) {
    const v = headerText(value)
    if (v === undefined) continue
    // it replaces ours of the same name in any case (`deliver-to` too): undici would send both
    const lower = name.toLowerCase()
    for (const k of Object.keys(h)) if (k.toLowerCase() === lower) delete h[k]
    h[name] = v
  }
  // checked by readRequestNote(): no name of the plugin's own or of the operator's is among them
  if (note !== undefined) for (const [name, value] of note.headers) h[name] = value
  return h
}

// ---- the request note ----

/** The headers the plugin sets itself (and HTTP's own): a note naming one of them is not heard. */
const OWN_HEADERS = [
  'IP',
  'Hostname',
  'Helo',
  'From',
  'Rcpt',
  'Deliver-To',
  'Queue-Id',
  'User',
  'TLS-Cipher',
  'TLS-Version',
  'MTA-Name',
  'Settings-ID',
  'Settings',
  'Pass',
  'Raw',
  'Flags',
  'URL-Format',
  'Authorization',
  'Compression',
  'Dictionary',
  'Host',
  'Connection',
  'Keep-Alive',
  'Content-Length',
  'Content-Type',
  'Content-Encoding',
  'Transfer-Encoding',
  'TE',
  'Trailer',
  'Upgrade',
  'Expect',
  'Proxy-Authorization',
] as const
const OWN = new Set(OWN_HEADERS.map((n) => n.toLowerCase()))

/** At most this many entries of `headers` are read; the rest are dropped, with one problem said. */
export const NOTE_MAX_HEADERS = 64
/** At most this many bytes in one header value or in the settings of the note. */
export const NOTE_MAX_VALUE = 8 * 1024
/** At most this many bytes in all the note sends (names, values, settings): rspamd reads 80 KiB of headers in all. */
export const NOTE_MAX_BYTES = 32 * 1024
/** At most this many problems are listed; past them, one more says how many were not. */
export const NOTE_MAX_PROBLEMS = 10
/** How much of a name from the note a problem shows. */
const NAME_SHOWN = 64

/** The request note, checked: what buildRequestHeaders() sends for it. */
export interface RequestNote {
  /** [name, value] in the note's order; no two names alike in any case */
  headers: [string, string][]
  settings?: string
  settingsId?: string
}

/** What readRequestNote() made of a note: what to send, and one text per entry dropped (not escaped). */
export interface ReadNote {
  note: RequestNote
  problems: string[]
}

/** A name from the note, quoted and cut: the log line escapes it again, this keeps it short. */
function shown(name: string): string {
  return JSON.stringify(name.length > NAME_SHOWN ? `${name.slice(0, NAME_SHOWN)}…` : name)
}

/**
 * The request note of other plugins (`transaction.notes.rspamd_request`: `headers`, `settings`,
 * `settings_id`) → what to send. Each entry is checked as its config twin is; an entry that fails,
 * names a header the plugin or the operator sets (the envelope, `[auth]`, `[request_headers]`), or
 * goes past the bounds is dropped with a problem naming it. Never throws, whatever the note holds.
 */
export function readRequestNote(raw: unknown, cfg: Config, where = 'rspamd_request'): ReadNote {
  try {
    return readNote(raw, cfg, where)
  } catch (err) {
    // a getter or a Proxy of another plugin's making: the note is not trusted, the scan goes on
    const why = err instanceof Error ? err.message : String(err)
    return { note: { headers: [] }, problems: [`${where}: could not be read: ${why}; the note is dropped`] }
  }
}

function readNote(raw: unknown, cfg: Config, where: string): ReadNote {
  const note: RequestNote = { headers: [] }
  const problems: string[] = []
  let unlisted = 0
  const problem = (text: string): void => {
    if (problems.length < NOTE_MAX_PROBLEMS) problems.push(text)
    else unlisted++
  }
  if (raw === undefined || raw === null) return { note, problems }
  if (!isPlainObject(raw)) {
    problem(`${where}: expected an object of headers, settings and settings_id; the note is not read`)
    return { note, problems }
  }
  let bytes = 0

  const settingsId = settingsIdEntry(raw.settings_id)
  if (!settingsId.ok) problem(`${where}.settings_id: ${settingsId.problem}; dropped`)
  else if (settingsId.value !== undefined) {
    if (settingsId.value.length > NOTE_MAX_VALUE) {
      problem(`${where}.settings_id: ${settingsId.value.length} characters, over ${NOTE_MAX_VALUE}; dropped`)
    } else {
      note.settingsId = settingsId.value
      bytes += settingsId.value.length
    }
  }

  const settings = settingsEntry(raw.settings)
  if (!settings.ok) problem(`${where}.settings: ${settings.problem}; dropped`)
  else if (settings.value !== undefined) {
    if (settings.value.length > NOTE_MAX_VALUE) {
      problem(`${where}.settings: ${settings.value.length} characters, over ${NOTE_MAX_VALUE}; dropped`)
    } else {
      note.settings = settings.value
      bytes += settings.value.length
    }
  }

  const headers = raw.headers
  if (headers !== undefined && headers !== null) {
    if (!isPlainObject(headers))
      problem(`${where}.headers: expected an object of header name → value; dropped`)
    else {
      // the names already sent, in any case: the plugin's own, [auth] header, [request_headers]
      const taken = new Set(OWN)
      if (cfg.auth.header !== undefined) taken.add(cfg.auth.header.toLowerCase())
      for (const name in cfg.requestHeaders) taken.add(name.toLowerCase())
      const named = new Set<string>()
      let seen = 0
      for (const name in headers) {
        if (!Object.hasOwn(headers, name)) continue
        if (seen === NOTE_MAX_HEADERS) {
          problem(`${where}.headers: more than ${NOTE_MAX_HEADERS} entries; the rest dropped`)
          break
        }
        seen++
        const field = `${where}.headers[${shown(name)}]`
        const checked = requestHeaderEntry(name, headers[name])
        if (!checked.ok) {
          problem(`${field}: ${checked.problem}; dropped`)
          continue
        }
        if (checked.value === undefined) continue
        const lower = name.toLowerCase()
        if (taken.has(lower)) {
          problem(`${field}: a header the plugin or rspamd.ini sets, which a note cannot change; dropped`)
          continue
        }
        if (named.has(lower)) {
          problem(`${field}: the note names this header twice (in another case); dropped`)
          continue
        }
        if (checked.value.length > NOTE_MAX_VALUE) {
          problem(`${field}: ${checked.value.length} characters, over ${NOTE_MAX_VALUE}; dropped`)
          continue
        }
        const size = name.length + checked.value.length
        if (bytes + size > NOTE_MAX_BYTES) {
          problem(`${field}: the note is over ${NOTE_MAX_BYTES} bytes with it; dropped`)
          continue
        }
        bytes += size
        named.add(lower)
        note.headers.push([name, checked.value])
      }
    }
  }
  if (unlisted > 0) problems.push(`${where}: ${unlisted} more entries dropped`)
  return { note, problems }
}
