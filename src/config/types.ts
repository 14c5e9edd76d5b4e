// The Config type and its parts: what parseConfig() makes of rspamd.ini, and what every other part of the
// plugin reads. Also the fixed word lists some of its fields take: header styles, transports, greylist
// stores. Imports nothing, so any file may import it.

export type AddHeaders = 'always' | 'never' | 'sometimes'

/** `[spam_headers] styles`: which families of verdict headers are written (SPEC §5). */
export const HEADER_STYLES = ['rspamd', 'exim', 'extended', 'lda'] as const
export type HeaderStyle = (typeof HEADER_STYLES)[number]

export type Target =
  { kind: 'tcp'; scheme: 'http' | 'https'; host: string; port: number } | { kind: 'unix'; socketPath: string }

/** How requests reach rspamd: auto = node:http for http:// and unix sockets, undici for https:// */
export const TRANSPORTS = ['auto', 'node', 'undici'] as const
export type TransportKind = (typeof TRANSPORTS)[number]

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
  /** `settings_id_outbound`: the Settings-ID for authenticated or relaying senders; settingsId when unset */
  settingsIdOutbound?: string
  settings?: string
  /** rspamd `Flags` header values, from `flags` and the boolean flag keys */
  flags: string[]
  passAll: boolean
  raw: boolean
  urlFormat?: string
  /**
   * `[request] zstd` (or `zstd` in `flags`): the message goes zstd-compressed (`Compression: zstd`),
   * and rspamd's compressed reply is decompressed. Only where node:zlib has zstd (Node 22.15+, 23.8+).
   */
  zstd: boolean
  /**
   * `[request] body_block` (or `body_block` in `flags`): rspamd appends the message it rewrote after
   * the JSON (`Message-Offset`). rspamd-lda delivers it; the plugin refuses the key (pluginProblems()).
   */
  bodyBlock: boolean
}

/** rmilter's upstream health rules: `maxErrors` failures within `errorTime` s → skipped for `deadTime` s. */
export interface UpstreamConfig {
  errorTime: number
  deadTime: number
  maxErrors: number
  /**
   * `max_in_flight`: the most scans one server is given at once; 0 = no number of the operator's
   * (the adaptive limit's ceiling is then DEFAULT_CEILING, src/rspamd/limiter.ts)
   */
  maxInFlight: number
  /** `adaptive`: the limit follows rspamd's scan times (true), or is max_in_flight fixed (false; 0 = unlimited) */
  adaptive: boolean
}

/** One `[check] whitelist` entry: an address, or a network in CIDR notation. */
export interface IpRange {
  family: 'ipv4' | 'ipv6'
  address: string
  /** 32 or 128 for a single address */
  prefix: number
}

/** Local score thresholds: the action rspamd would pick at that score; each optional. */
export interface Thresholds {
  reject?: number
  softReject?: number
  rewriteSubject?: number
  addHeader?: number
}

export interface Config {
  /** the first of `targets`: where a single-server setup scans */
  target: Target
  /** every server to scan with: `servers`, or the one of host/port/unix_socket */
  targets: Target[]
  /** seconds for the connect phase of one attempt (TCP + TLS), apart from `timeout` */
  connectTimeout: number
  /** the HTTP client: node:http or undici (auto picks per server) */
  transport: TransportKind
  upstream: UpstreamConfig
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
  check: {
    authenticated: boolean
    relay: boolean
    privateIp: boolean
    localIp: boolean
    whitelist: IpRange[]
    skipPorts: number[]
  }
  /** bytes; a larger message is not scanned. 0 = no limit */
  maxSize: number
  /**
   * delay and redisTimeout in seconds; store: where triplets live (this process's memory, or Redis as
   * redis.ini says, shared by every worker and host using that Redis); keyPrefix: of each Redis key
   */
  greylist: {
    enabled: boolean
    delay: number
    message: string
    store: GreylistStoreKind
    keyPrefix: string
    redisTimeout: number
  }
  /**
   * rspamd.ini's `[redis]` as written (its keys checked): merged over redis.ini's `[server]` by
   * parseRedisIni() for `[greylist] store = redis`, as karma's `[redis]` is merged
   */
  redis: Readonly<Record<string, unknown>>
  thresholds: Thresholds
  /** ok: a clean verdict calls next(OK); maxScore: and only up to this score */
  ham: { ok: boolean; maxScore?: number }
  reject: { message: string; spam: boolean; authenticated: boolean }
  softReject: { enabled: boolean; message: string }
  rewriteSubject: { enabled: boolean }
  rmilterHeaders: { enabled: boolean }
  /** apply the envelope changes of rspamd's milter block (change_from, add_rcpt, del_rcpt); policy/envelope */
  milterEnvelope: { enabled: boolean }
  smtpMessage: { enabled: boolean }
  defer: { error: boolean; timeout: boolean }
  /** what rspamd's `quarantine` action does: Haraka's queue/quarantine, a 550, a 451, or delivery with headers */
  quarantine: { action: QuarantineAction }
  /** styles: in the order given, duplicates collapsed; ldaJson: the lda style also writes X-Spam-Result */
  spamHeaders: { styles: HeaderStyle[]; ldaJson: boolean; removeForeign: boolean }
  /**
   * Keys and sections of the file that no setting reads — a typo, or a key in the wrong section
   * (`max_size` under `[check]`): worth a warning, since the operator meant something by them.
   */
  ignored: string[]
}

export const QUARANTINE_ACTIONS = ['queue', 'reject', 'soft_reject', 'accept'] as const
export type QuarantineAction = (typeof QUARANTINE_ACTIONS)[number]

export const GREYLIST_STORES = ['memory', 'redis'] as const
export type GreylistStoreKind = (typeof GREYLIST_STORES)[number]
