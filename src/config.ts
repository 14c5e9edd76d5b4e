// rspamd.ini, as haraka-config returns it, → a typed, validated Config.
// Every 1.6.x key keeps its name, default and meaning; a bad value throws a ConfigError naming the key.

import { readFileSync } from 'node:fs'

export type AddHeaders = 'always' | 'never' | 'sometimes'

/** `[spam_headers] styles`: which families of verdict headers are written (SPEC §5). */
export const HEADER_STYLES = ['rspamd', 'exim', 'extended', 'lda'] as const
export type HeaderStyle = (typeof HEADER_STYLES)[number]

export type Target =
  { kind: 'tcp'; scheme: 'http' | 'https'; host: string; port: number } | { kind: 'unix'; socketPath: string }

export interface TlsConfig {
  rejectUnauthorized: boolean
  servername?: string
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
}

export interface AuthConfig {
  basicUser?: string
  basicPass?: string
  header?: string
  value?: string
  valueEnv?: string
}

export interface RequestConfig {
  settingsId?: string
  settings?: string
  /** rspamd `Flags` header values, from `flags` and the boolean flag keys */
  flags: string[]
  passAll: boolean
  raw: boolean
  urlFormat?: string
}

export interface Config {
  target: Target
  path: string
  /** total seconds for one scan; undefined = Haraka's plugin timeout − 1 s */
  timeout?: number
  addHeaders: AddHeaders
  subject: string
  tls: TlsConfig
  auth: AuthConfig
  request: RequestConfig
  requestHeaders: Record<string, string>
  dkim: { enabled: boolean }
  /** header names; '' = don't add that header */
  header: { bar: string; report: string; score: string }
  spambar: { positive: string; negative: string; neutral: string }
  check: { authenticated: boolean; relay: boolean; privateIp: boolean; localIp: boolean }
  reject: { message: string; spam: boolean; authenticated: boolean }
  softReject: { enabled: boolean; message: string }
  rewriteSubject: { enabled: boolean }
  rmilterHeaders: { enabled: boolean }
  smtpMessage: { enabled: boolean }
  defer: { error: boolean; timeout: boolean }
  /** styles: in the order given, duplicates collapsed; ldaJson: the lda style also writes X-Spam-Result */
  spamHeaders: { styles: HeaderStyle[]; ldaJson: boolean }
}

/** Booleans declared to haraka-config, with 1.6.x's defaults (+ = true, - = false). */
export const INI_BOOLEANS: readonly string[] = [
  '-main.always_add_headers',
  '-check.authenticated',
  '-check.private_ip',
  '-check.local_ip',
  '-check.relay',
  '+dkim.enabled',
  '+reject.spam',
  '-reject.authenticated',
  '+rewrite_subject.enabled',
  '+rmilter_headers.enabled',
  '+soft_reject.enabled',
  '+smtp_message.enabled',
  '-defer.error',
  '-defer.timeout',
  '-request.pass_all',
  '-request.body_block',
  '-request.ext_urls',
  '-request.groups',
  '-request.milter',
  '-request.no_log',
  '-request.profile',
  '-request.skip',
  '-request.skip_process',
  '-request.zstd',
  '-request.raw',
  '+tls.reject_unauthorized',
  '-spam_headers.lda_json',
]

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

export class ConfigError extends Error {
  readonly key: string
  readonly value: unknown
  constructor(key: string, value: unknown, why: string) {
    super(`rspamd.ini: ${key} = ${JSON.stringify(value)}: ${why}`)
    this.name = 'ConfigError'
    this.key = key
    this.value = value
  }
}

type Section = Record<string, unknown>

function isSection(v: unknown): v is Section {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** One ini section; a missing one is empty, anything else is an error. */
function section(ini: Section, name: string): Section {
  const s = ini[name]
  if (s === undefined || s === null) return {}
  if (!isSection(s)) throw new ConfigError(`[${name}]`, s, 'expected a section')
  return s
}

/** Reads keys of one section with the key's full ini name in every error. */
class Reader {
  constructor(
    private readonly s: Section,
    private readonly prefix: string,
  ) {}

  name(key: string): string {
    return this.prefix ? `${this.prefix}.${key}` : key
  }

  raw(key: string): unknown {
    return this.s[key]
  }

  /** A string value, trimmed; '' and missing are undefined. */
  str(key: string): string | undefined {
    const v = this.s[key]
    if (v === undefined || v === null) return undefined
    if (typeof v === 'number' || typeof v === 'boolean') return String(v)
    if (typeof v !== 'string') throw new ConfigError(this.name(key), v, 'expected text')
    const t = v.trim()
    return t === '' ? undefined : t
  }

  /** Like str(), but keeps an explicit empty value as '' (header names: '' = off). */
  strOrEmpty(key: string, dflt: string): string {
    const v = this.s[key]
    if (v === undefined || v === null) return dflt
    if (typeof v !== 'string') throw new ConfigError(this.name(key), v, 'expected text')
    return v.trim()
  }

  bool(key: string, dflt: boolean): boolean {
    const v = this.s[key]
    if (v === undefined || v === null || v === '') return dflt
    if (typeof v === 'boolean') return v
    if (typeof v === 'number' && (v === 0 || v === 1)) return v === 1
    if (typeof v === 'string') {
      const t = v.trim().toLowerCase()
      if (['true', 'yes', 'on', '1'].includes(t)) return true
      if (['false', 'no', 'off', '0'].includes(t)) return false
    }
    throw new ConfigError(this.name(key), v, 'expected true or false')
  }

  /** A positive number of seconds (fractions allowed). */
  seconds(key: string): number | undefined {
    const v = this.s[key]
    if (v === undefined || v === null || v === '') return undefined
    const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v.trim()) : NaN
    if (!Number.isFinite(n) || n <= 0) {
      throw new ConfigError(this.name(key), v, 'expected a positive number of seconds')
    }
    return n
  }

  port(key: string, dflt: number): number {
    const v = this.s[key]
    if (v === undefined || v === null || v === '') return dflt
    const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v.trim()) : NaN
    if (!Number.isInteger(n) || n < 1 || n > 65535) {
      throw new ConfigError(this.name(key), v, 'expected a TCP port, 1 to 65535')
    }
    return n
  }

  file(key: string): Buffer | undefined {
    const path = this.str(key)
    if (path === undefined) return undefined
    try {
      return readFileSync(path)
    } catch (err) {
      throw new ConfigError(this.name(key), path, `cannot read: ${(err as Error).message}`)
    }
  }
}

/** Printable ASCII without colon or space: RFC 5322 field-name, also valid as an HTTP token here. */
const FIELD_NAME = /^[!-9;-~]+$/
// CR, LF and NUL would split or end an HTTP header line.
const UNSAFE_VALUE = /[\r\n\0]/

function headerValue(key: string, value: string): string {
  if (UNSAFE_VALUE.test(value)) throw new ConfigError(key, value, 'CR, LF or NUL in a header value')
  return value
}

/**
 * Turn haraka-config's parsed rspamd.ini into a Config.
 * `env` is where `[auth] value_env` is looked up (process.env at run time).
 */
export function parseConfig(ini: unknown, env: NodeJS.ProcessEnv = process.env): Config {
  if (!isSection(ini)) throw new ConfigError('rspamd.ini', ini, 'expected an ini file')
  const main = new Reader(section(ini, 'main'), '')
  const tls = new Reader(section(ini, 'tls'), 'tls')
  const auth = new Reader(section(ini, 'auth'), 'auth')
  const request = new Reader(section(ini, 'request'), 'request')

  return {
    target: parseTarget(main),
    path: parsePath(main),
    timeout: main.seconds('timeout'),
    addHeaders: parseAddHeaders(main),
    subject: main.str('subject') ?? '[SPAM] %s',
    tls: {
      rejectUnauthorized: tls.bool('reject_unauthorized', true),
      servername: tls.str('servername'),
      ca: tls.file('ca_file'),
      cert: tls.file('cert_file'),
      key: tls.file('key_file'),
    },
    auth: parseAuth(auth, env),
    request: parseRequest(request),
    requestHeaders: parseRequestHeaders(section(ini, 'request_headers')),
    dkim: { enabled: new Reader(section(ini, 'dkim'), 'dkim').bool('enabled', true) },
    header: parseHeaderNames(new Reader(section(ini, 'header'), 'header')),
    spambar: parseSpambar(new Reader(section(ini, 'spambar'), 'spambar')),
    check: parseCheck(new Reader(section(ini, 'check'), 'check')),
    reject: parseReject(new Reader(section(ini, 'reject'), 'reject')),
    softReject: parseSoftReject(new Reader(section(ini, 'soft_reject'), 'soft_reject')),
    rewriteSubject: {
      enabled: new Reader(section(ini, 'rewrite_subject'), 'rewrite_subject').bool('enabled', true),
    },
    rmilterHeaders: {
      enabled: new Reader(section(ini, 'rmilter_headers'), 'rmilter_headers').bool('enabled', true),
    },
    smtpMessage: {
      enabled: new Reader(section(ini, 'smtp_message'), 'smtp_message').bool('enabled', true),
    },
    defer: parseDefer(new Reader(section(ini, 'defer'), 'defer')),
    spamHeaders: parseSpamHeaders(new Reader(section(ini, 'spam_headers'), 'spam_headers')),
  }
}

function parseTarget(main: Reader): Target {
  const socketPath = main.str('unix_socket')
  const scheme = (main.str('scheme') ?? 'http').toLowerCase()
  if (scheme !== 'http' && scheme !== 'https') {
    throw new ConfigError('scheme', main.raw('scheme'), 'expected http or https')
  }
  const host = main.str('host') ?? 'localhost'
  if (/[\s/]/.test(host)) throw new ConfigError('host', host, 'expected a host name or IP address')
  const port = main.port('port', 11333)
  if (socketPath !== undefined) {
    if (!socketPath.startsWith('/')) {
      throw new ConfigError('unix_socket', socketPath, 'expected an absolute path')
    }
    return { kind: 'unix', socketPath }
  }
  // [::1] and ::1 both name an IPv6 host; undici wants the bracketed form in a URL.
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
  return { kind: 'tcp', scheme, host: bare, port }
}

function parsePath(main: Reader): string {
  const path = main.str('path') ?? '/checkv2'
  if (!path.startsWith('/') || /[\s?#]/.test(path)) {
    throw new ConfigError('path', path, 'expected an absolute URL path such as /checkv2')
  }
  return path
}

function parseAddHeaders(main: Reader): AddHeaders {
  const v = main.str('add_headers')
  if (v === undefined) {
    // 1.6.x: the old always_add_headers=true meant add_headers=always
    return main.bool('always_add_headers', false) ? 'always' : 'sometimes'
  }
  const t = v.toLowerCase()
  if (t === 'always' || t === 'never' || t === 'sometimes') return t
  throw new ConfigError('add_headers', v, 'expected always, never or sometimes')
}

function parseAuth(auth: Reader, env: NodeJS.ProcessEnv): AuthConfig {
  const header = auth.str('header')
  if (header !== undefined && !FIELD_NAME.test(header)) {
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
    const fromEnv = env[out.valueEnv]
    if (fromEnv !== undefined) headerValue(`auth.value_env (${out.valueEnv})`, fromEnv)
  }
  return out
}

function parseRequest(request: Reader): RequestConfig {
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

  const settings = request.str('settings')
  if (settings !== undefined) {
    headerValue('request.settings', settings)
    try {
      JSON.parse(settings)
    } catch {
      // rspamd also accepts UCL here, so this is only worth a clear error for JSON-looking text
      if (settings.startsWith('{')) throw new ConfigError('request.settings', settings, 'not valid JSON')
    }
  }
  const settingsId = request.str('settings_id')
  if (settingsId !== undefined) headerValue('request.settings_id', settingsId)
  const urlFormat = request.str('url_format')
  if (urlFormat !== undefined) headerValue('request.url_format', urlFormat)
  return {
    settingsId,
    settings,
    flags: [...flags],
    passAll: request.bool('pass_all', false),
    raw: request.bool('raw', false),
    urlFormat,
  }
}

function parseRequestHeaders(s: Section): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(s)) {
    const key = `request_headers.${name}`
    if (!FIELD_NAME.test(name)) throw new ConfigError(key, value, 'not a valid header name')
    if (value === undefined || value === null || value === '' || value === false) continue
    if (typeof value === 'object') throw new ConfigError(key, value, 'expected text')
    out[name] = headerValue(key, String(value))
  }
  return out
}

function parseHeaderNames(header: Reader): Config['header'] {
  const out = {
    bar: header.strOrEmpty('bar', 'X-Rspamd-Bar'),
    report: header.strOrEmpty('report', 'X-Rspamd-Report'),
    score: header.strOrEmpty('score', 'X-Rspamd-Score'),
  }
  for (const [k, v] of Object.entries(out)) {
    if (v !== '' && !FIELD_NAME.test(v)) throw new ConfigError(`header.${k}`, v, 'not a valid header name')
  }
  return out
}

function parseSpambar(spambar: Reader): Config['spambar'] {
  const out = {
    positive: spambar.str('positive') ?? '+',
    negative: spambar.str('negative') ?? '-',
    neutral: spambar.str('neutral') ?? '/',
  }
  for (const [k, v] of Object.entries(out)) {
    if (!/^[\x21-\x7e]+$/.test(v)) throw new ConfigError(`spambar.${k}`, v, 'expected printable ASCII')
  }
  return out
}

function parseCheck(check: Reader): Config['check'] {
  return {
    authenticated: check.bool('authenticated', false),
    relay: check.bool('relay', false),
    privateIp: check.bool('private_ip', false),
    localIp: check.bool('local_ip', false),
  }
}

function smtpText(r: Reader, key: string, dflt: string): string {
  const v = r.str(key) ?? dflt
  // the text goes out as an SMTP reply line
  if (/[\r\n\0]/.test(v)) throw new ConfigError(r.name(key), v, 'CR, LF or NUL in an SMTP reply')
  return v
}

function parseReject(reject: Reader): Config['reject'] {
  return {
    message: smtpText(reject, 'message', 'Detected as spam'),
    spam: reject.bool('spam', true),
    authenticated: reject.bool('authenticated', false),
  }
}

function parseSoftReject(soft: Reader): Config['softReject'] {
  return {
    enabled: soft.bool('enabled', true),
    message: smtpText(soft, 'message', 'Deferred by policy'),
  }
}

function parseDefer(defer: Reader): Config['defer'] {
  return { error: defer.bool('error', false), timeout: defer.bool('timeout', false) }
}

/** A comma list of styles (also the LDA command's --styles); '' or an unknown name is an error. */
export function parseStyles(key: string, raw: unknown): HeaderStyle[] {
  const listed = Array.isArray(raw) ? raw.map(String) : typeof raw === 'string' ? raw.split(',') : undefined
  if (listed === undefined) throw new ConfigError(key, raw, 'expected a comma list of header styles')
  const out = new Set<HeaderStyle>()
  for (const item of listed) {
    const t = item.trim().toLowerCase()
    if (t === '') continue
    const style = HEADER_STYLES.find((h) => h === t)
    if (!style)
      throw new ConfigError(
        key,
        raw,
        `unknown style ${JSON.stringify(t)}, expected ${HEADER_STYLES.join(', ')}`,
      )
    out.add(style)
  }
  // an empty list would silently stop every verdict header; add_headers = never says that on purpose
  if (out.size === 0) throw new ConfigError(key, raw, `expected at least one of ${HEADER_STYLES.join(', ')}`)
  return [...out]
}

function parseSpamHeaders(r: Reader): Config['spamHeaders'] {
  const raw = r.raw('styles')
  return {
    styles: raw === undefined || raw === null ? ['rspamd'] : parseStyles(r.name('styles'), raw),
    ldaJson: r.bool('lda_json', false),
  }
}

/** Where two configs would need a different connection pool. */
export function sameTarget(a: Config, b: Config): boolean {
  const ta = a.target
  const tb = b.target
  if (ta.kind !== tb.kind) return false
  if (ta.kind === 'unix' && tb.kind === 'unix') return ta.socketPath === tb.socketPath
  if (ta.kind === 'tcp' && tb.kind === 'tcp') {
    if (ta.scheme !== tb.scheme || ta.host !== tb.host || ta.port !== tb.port) return false
  }
  const sa = a.tls
  const sb = b.tls
  const eq = (x?: Buffer, y?: Buffer) => (x === undefined ? y === undefined : y !== undefined && x.equals(y))
  return (
    sa.rejectUnauthorized === sb.rejectUnauthorized &&
    sa.servername === sb.servername &&
    eq(sa.ca, sb.ca) &&
    eq(sa.cert, sb.cert) &&
    eq(sa.key, sb.key)
  )
}
