// rspamd.ini, as haraka-config returns it, → a typed, validated Config.
// Every 1.6.x key keeps its name, default and meaning; a bad value throws a ConfigError naming the key.

import { ConfigError } from './errors'
import {
  type AddHeaders,
  type Config,
  GREYLIST_STORES,
  HEADER_STYLES,
  type HeaderStyle,
  type IpRange,
  type Target,
  type Thresholds,
  TRANSPORTS,
} from './types'
import { ignoredKeys, isSection, Reader, section, type Section, tracked } from './reader'
import { checkTargets, parseServers, parseTarget } from './servers'
import { isIP } from 'node:net'
import {
  parseAuth,
  parseRequest,
  parseRequestHeaders,
  parsePath,
  parseServername,
  parseUpstream,
} from './request'

export { ConfigError, redacted, redactUrlCredentials } from './errors'
export { BOOL_WORDS, INI_BOOLEANS } from './reader'
export { hostProblem, parseServer, sameTarget, targetOrigin, transportFor } from './servers'
export { parseRedisIni, type RedisSettings } from './redis'
export {
  type AddHeaders,
  type AuthConfig,
  type Config,
  GREYLIST_STORES,
  type GreylistStoreKind,
  HEADER_STYLES,
  type HeaderStyle,
  type IpRange,
  type RequestConfig,
  type Target,
  type Thresholds,
  type TlsConfig,
  TRANSPORTS,
  type TransportKind,
  type UpstreamConfig,
} from './types'

/** Printable ASCII without colon or space: an RFC 5322 field-name (the verdict headers written into the message). */
const FIELD_NAME = /^[!-9;-~]+$/

/**
 * Turn haraka-config's parsed rspamd.ini into a Config.
 * `env` is where `[auth] value_env` is looked up (process.env at run time).
 */
export function parseConfig(ini: unknown, env: NodeJS.ProcessEnv = process.env): Config {
  if (!isSection(ini)) throw new ConfigError('rspamd.ini', ini, 'expected an ini file')
  const read = new Map<string, Set<string>>()
  const sec = (name: string): Section => tracked(section(ini, name), name, read)
  const main = new Reader(sec('main'), '')
  const tls = new Reader(sec('tls'), 'tls')
  const auth = new Reader(sec('auth'), 'auth')
  const request = new Reader(sec('request'), 'request')

  // every key is checked, and every error reported at once (one line each), not only the first
  const errors: ConfigError[] = []
  const get = <T>(fn: () => T): T => {
    try {
      return fn()
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      for (const e of err.problems) errors.push(e)
      // never used: the file is refused below
      return undefined as T
    }
  }
  let serversBad = false
  const listed = get(() => {
    try {
      return parseServers(main)
    } catch (err) {
      serversBad = true
      throw err
    }
  })
  const targets = listed ?? (serversBad ? [] : (get(() => [parseTarget(main)]) ?? []))
  const transport = get(() => main.choice('transport', TRANSPORTS, 'auto')) ?? 'auto'
  if (targets.length > 0) {
    get(() =>
      checkTargets(targets, transport, listed ? 'servers' : 'host', main.raw(listed ? 'servers' : 'host')),
    )
  }
  // [tls] is read only for an https:// server (as 1.6.x did): a file named there need not exist
  // otherwise, and its keys are reported as not used
  const secure = targets.some((t) => t.kind === 'tcp' && t.scheme === 'https')
  const cfg: Omit<Config, 'ignored'> = {
    target: targets[0] ?? (undefined as unknown as Target),
    targets,
    connectTimeout: get(() => main.seconds('connect_timeout')) ?? 1,
    transport,
    upstream: get(() => parseUpstream(new Reader(sec('upstream'), 'upstream'))),
    path: get(() => parsePath(main)),
    // 1.6.x: `timeout || Haraka's timeout - 1`, so 0 meant the default, as it does here
    timeout: get(() =>
      main.raw('timeout') === 0 || String(main.raw('timeout')).trim() === '0'
        ? undefined
        : main.seconds('timeout'),
    ),
    addHeaders: get(() => parseAddHeaders(main)),
    subject: get(() => main.str('subject')) ?? '[SPAM] %s',
    tls: get(() =>
      secure
        ? {
            rejectUnauthorized: tls.bool('reject_unauthorized', true),
            servername: parseServername(tls),
            ca: tls.file('ca_file'),
            cert: tls.file('cert_file'),
            key: tls.file('key_file'),
          }
        : { rejectUnauthorized: true },
    ),
    auth: get(() => parseAuth(auth, env)),
    request: get(() => parseRequest(request)),
    requestHeaders: get(() => parseRequestHeaders(sec('request_headers'))),
    dkim: { enabled: get(() => new Reader(sec('dkim'), 'dkim').bool('enabled', true)) },
    header: get(() => parseHeaderNames(new Reader(sec('header'), 'header'))),
    spambar: get(() => parseSpambar(new Reader(sec('spambar'), 'spambar'))),
    check: get(() => parseCheck(new Reader(sec('check'), 'check'))),
    maxSize: get(() => parseSize(main, 'max_size')),
    greylist: get(() => parseGreylist(new Reader(sec('greylist'), 'greylist'))),
    thresholds: get(() => parseThresholds(new Reader(sec('thresholds'), 'thresholds'))),
    ham: get(() => parseHam(new Reader(sec('ham'), 'ham'))),
    reject: get(() => parseReject(new Reader(sec('reject'), 'reject'))),
    softReject: get(() => parseSoftReject(new Reader(sec('soft_reject'), 'soft_reject'))),
    rewriteSubject: {
      enabled: get(() => new Reader(sec('rewrite_subject'), 'rewrite_subject').bool('enabled', true)),
    },
    rmilterHeaders: {
      enabled: get(() => new Reader(sec('rmilter_headers'), 'rmilter_headers').bool('enabled', true)),
    },
    smtpMessage: {
      enabled: get(() => new Reader(sec('smtp_message'), 'smtp_message').bool('enabled', true)),
    },
    defer: get(() => parseDefer(new Reader(sec('defer'), 'defer'))),
    spamHeaders: get(() => parseSpamHeaders(new Reader(sec('spam_headers'), 'spam_headers'))),
  }
  if (errors.length > 0) throw ConfigError.all(errors)
  const ignored = ignoredKeys(ini, read).map((k) =>
    !secure && k.startsWith('tls.') ? `${k} (no https:// server)` : k,
  )
  return { ...cfg, ignored }
}

function parseAddHeaders(main: Reader): AddHeaders {
  // 1.6.x: the old always_add_headers=true meant add_headers=always; read (and checked) even when
  // add_headers is set, as 1.6.x's declared boolean was
  const always = main.bool('always_add_headers', false)
  const v = main.str('add_headers')
  if (v === undefined) return always ? 'always' : 'sometimes'
  const t = v.toLowerCase()
  if (t === 'always' || t === 'never' || t === 'sometimes') return t
  throw new ConfigError('add_headers', v, 'expected always, never or sometimes')
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
  // any text 1.6.x took, bar controls: the bar is a header value (non-ASCII is RFC 2047-encoded there)
  for (const [k, v] of Object.entries(out)) {
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f\u2028\u2029]/.test(v)) throw new ConfigError(`spambar.${k}`, v, 'control character')
  }
  return out
}

function parseCheck(check: Reader): Config['check'] {
  return {
    authenticated: check.bool('authenticated', false),
    relay: check.bool('relay', false),
    privateIp: check.bool('private_ip', false),
    localIp: check.bool('local_ip', false),
    whitelist: check.list('whitelist').map((entry) => {
      const range = parseIpRange(entry)
      if (typeof range === 'string') throw new ConfigError('check.whitelist', entry, range)
      return range
    }),
    skipPorts: check.list('skip_ports').map((entry) => {
      const n = Number(entry)
      if (!/^\d+$/.test(entry) || n < 1 || n > 65535) {
        throw new ConfigError('check.skip_ports', entry, 'expected a TCP port, 1 to 65535')
      }
      return n
    }),
  }
}

/** `192.0.2.1`, `192.0.2.0/24`, `2001:db8::/32`, … → IpRange; a string says what is wrong. */
export function parseIpRange(text: string): IpRange | string {
  const slash = text.indexOf('/')
  const address = slash === -1 ? text : text.slice(0, slash)
  const version = isIP(address)
  if (version === 0) return 'not an IPv4 or IPv6 address'
  // a client address never carries a zone index, so an entry with one could never match
  if (address.includes('%')) return 'an IPv6 zone index (%) cannot match a client address'
  const family = version === 4 ? 'ipv4' : 'ipv6'
  const max = version === 4 ? 32 : 128
  if (slash === -1) return { family, address, prefix: max }
  const bits = text.slice(slash + 1)
  // strict digits: parseInt would read '24junk' as 24 and '' as no prefix
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return `expected a prefix length of 0 to ${max}`
  return { family, address, prefix: Number(bits) }
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }

/** A byte count: a whole number, optionally with k, M or G (binary multiples). */
function parseSize(r: Reader, key: string): number {
  const v = r.raw(key)
  if (v === undefined || v === null || v === '') return 0
  const m =
    typeof v === 'string' || typeof v === 'number' ? /^(\d+)\s*([kmg]?)b?$/i.exec(String(v).trim()) : null
  if (!m) {
    throw new ConfigError(
      r.name(key),
      v,
      'expected a size in bytes such as 10485760, 512k or 10M (0 = no limit)',
    )
  }
  return Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()]
}

function parseGreylist(g: Reader): Config['greylist'] {
  const kind = g.choice('store', GREYLIST_STORES, 'memory')
  const keyPrefix = g.str('key_prefix') ?? 'haraka-rspamd:greylist:'
  if (!/^[\x21-\x7e]+$/.test(keyPrefix)) {
    throw new ConfigError(g.name('key_prefix'), keyPrefix, 'expected printable ASCII without spaces')
  }
  return {
    enabled: g.bool('enabled', false),
    delay: g.seconds('delay') ?? 300,
    message: smtpText(g, 'message', 'Try again later'),
    store: kind,
    keyPrefix,
    redisTimeout: g.seconds('redis_timeout') ?? 0.2,
  }
}

/** Threshold keys from the least to the most severe action: each must be above the ones before it. */
const THRESHOLD_KEYS = [
  ['add_header', 'addHeader'],
  ['rewrite_subject', 'rewriteSubject'],
  ['soft_reject', 'softReject'],
  ['reject', 'reject'],
] as const

function parseThresholds(t: Reader): Thresholds {
  const out: Thresholds = {}
  let below: { key: string; value: number } | undefined
  for (const [key, field] of THRESHOLD_KEYS) {
    const value = t.number(key)
    if (value === undefined) continue
    // a more severe action at a lower or equal score would make the milder one unreachable:
    // almost certainly a typo, and one that rejects mail
    if (below !== undefined && value <= below.value) {
      throw new ConfigError(t.name(key), value, `must be above ${t.name(below.key)} (${below.value})`)
    }
    out[field] = value
    below = { key, value }
  }
  return out
}

function parseHam(h: Reader): Config['ham'] {
  return { ok: h.bool('ok', false), maxScore: h.number('max_score') }
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
    removeForeign: r.bool('remove_foreign', true),
  }
}

/**
 * `fn` worked out once per config object and then remembered (a parsed Config is never changed;
 * a reload makes a new one): for values the hot path would otherwise rebuild for every message.
 */
export function oncePerConfig<C extends object, T>(fn: (cfg: C) => T): (cfg: C) => T {
  const values = new WeakMap<C, T>()
  return (cfg) => {
    if (values.has(cfg)) return values.get(cfg) as T
    const value = fn(cfg)
    values.set(cfg, value)
    return value
  }
}
