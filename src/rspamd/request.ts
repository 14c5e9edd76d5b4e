// Sender facts (from Haraka's connection and transaction, gathered by index.ts) → rspamd request headers.
// Every value is a single-line string: an object or a CR/LF never reaches the wire.

import type { Config } from '../config'
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
  set(h, 'Settings-ID', req.settingsId)
  set(h, 'Settings', req.settings)
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
  return h
}
