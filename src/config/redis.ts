// redis.ini, read for `[greylist] store = redis`: haraka-plugin-redis's file, read as that plugin reads it
// (`[server]` over `[opts]`, the old key names, a redis:// url), with rspamd.ini's own `[redis]` over both
// as karma's and limit's `[redis]` is → RedisSettings. Errors name the file and section of the value.

import { ConfigError } from './errors'
import { isSection, section, type Section } from './reader'
import { hostProblem } from './servers'

/**
 * Where Redis is and how to log in: rspamd.ini's `[redis]` over redis.ini's `[server]` over its `[opts]`, as
 * haraka-plugin-redis merges an inheriting plugin's `[redis]` (karma, limit) over its own file.
 */
export interface RedisSettings {
  /** a TCP host and port, or a Unix socket path (`path`) */
  host: string
  port: number
  path?: string
  database: number
  username?: string
  password?: string
  tls: boolean
  /** ms to open the connection */
  connectTimeout?: number
}

/** A value and where it came from: `section.key` and the file, for the error that names it. */
interface Picked {
  key: string
  value: unknown
  file: string
}

/**
 * haraka-config's parsed redis.ini, and rspamd.ini's `[redis]` section → RedisSettings. redis.ini is
 * haraka-plugin-redis's: `[opts]` applies to every connection, `[server]` overrides it; `ip` is the old
 * name of `host`, `db` of `database`. Keys other plugins use there (`[pubsub]`, node-redis options we do
 * not need) are left alone. `[redis]` of rspamd.ini (this plugin's own, as karma.ini's `[redis]` is
 * karma's) takes the same keys and wins over both, key by key: `[redis] database = 2` alone moves the
 * greylist to database 2 of the server redis.ini names.
 */
export function parseRedisIni(ini: unknown, own: Section = {}): RedisSettings {
  if (ini === undefined || ini === null) ini = {}
  if (!isSection(ini)) throw new ConfigError('redis.ini', ini, 'expected an ini file', 'redis.ini')
  const opts = section(ini, 'opts', 'redis.ini')
  const server = section(ini, 'server', 'redis.ini')
  // the first section that has the key wins (an old name in one section wins over the new name in a later
  // one, as haraka-plugin-redis merges whole sections); errors name the section the value came from
  const sources = [
    ['redis', own, 'rspamd.ini'],
    ['server', server, 'redis.ini'],
    ['opts', opts, 'redis.ini'],
  ] as const
  const pick = (...keys: string[]): Picked | undefined => {
    for (const [name, s, file] of sources) {
      for (const key of keys) {
        const value = s[key]
        if (value !== undefined && value !== null && value !== '')
          return { key: `${name}.${key}`, value, file }
      }
    }
    return undefined
  }
  const fail = (p: Picked, why: string): never => {
    throw new ConfigError(p.key, p.value, why, p.file)
  }
  const text = (p: Picked | undefined): string | undefined => {
    if (p === undefined) return undefined
    if (typeof p.value !== 'string' && typeof p.value !== 'number') return fail(p, 'expected text')
    return String(p.value).trim()
  }
  const whole = (p: Picked | undefined, min: number, max: number, why: string) => {
    if (p === undefined) return undefined
    const n = Number(typeof p.value === 'string' ? p.value.trim() : p.value)
    if (!Number.isInteger(n) || n < min || n > max) return fail(p, why)
    return n
  }

  const hostAt = pick('host', 'ip')
  let host = text(hostAt) ?? '127.0.0.1'
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1)
  const hostWhy = hostProblem(host)
  if (hostAt && hostWhy !== undefined) fail(hostAt, hostWhy)
  const pathAt = pick('path')
  const path = text(pathAt)
  if (pathAt && !path?.startsWith('/')) fail(pathAt, 'expected an absolute path to a Unix socket')
  const tlsAt = pick('tls')
  let tls = false
  if (tlsAt) {
    const t = typeof tlsAt.value === 'string' ? tlsAt.value.trim().toLowerCase() : tlsAt.value
    if (t === true || t === 1 || t === 'true' || t === 'yes' || t === 'on' || t === '1') tls = true
    else if (!(t === false || t === 0 || t === 'false' || t === 'no' || t === 'off' || t === '0'))
      fail(tlsAt, 'expected true or false')
  }
  const out: RedisSettings = {
    host,
    port: whole(pick('port'), 1, 65535, 'expected a TCP port, 1 to 65535') ?? 6379,
    path,
    database: whole(pick('database', 'db'), 0, 2 ** 31 - 1, 'expected a database number, 0 or more') ?? 0,
    username: text(pick('username')),
    password: text(pick('password')),
    tls,
    connectTimeout: whole(pick('connectTimeout'), 1, 2 ** 31 - 1, 'expected milliseconds, 1 or more'),
  }
  const urlAt = pick('url')
  if (urlAt !== undefined)
    applyRedisUrl(out, text(urlAt) ?? '', tlsAt !== undefined, (why) => fail(urlAt, why))
  return out
}

/**
 * redis.ini's `url`, as haraka-plugin-redis hands it to node-redis (RedisClient.parseOptions): what the URL
 * names wins over the separate keys — its host and scheme always, its port, user, password and database
 * when it has them. node-redis refuses a url whose scheme says otherwise than an explicit `tls`; a Unix
 * socket `path` would win over the url's host without a word, so the two together are refused as well.
 */
function applyRedisUrl(out: RedisSettings, url: string, tlsSet: boolean, fail: (why: string) => never): void {
  const form = 'expected redis://[[user]:password@]host[:port][/database] or rediss://… for TLS'
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return fail(form)
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') return fail(form)
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1')
  if (host === '' || hostProblem(host) !== undefined) return fail(`${form}: no host name or IP address`)
  if (out.path !== undefined) return fail('set either url or path (a Unix socket), not both')
  const tls = u.protocol === 'rediss:'
  if (tlsSet && tls !== out.tls) {
    return fail(`the url's ${u.protocol}// says TLS ${tls ? 'on' : 'off'}, tls = says otherwise`)
  }
  out.host = host
  out.tls = tls
  if (u.port !== '') out.port = Number(u.port)
  try {
    if (u.username !== '') out.username = decodeURIComponent(u.username)
    if (u.password !== '') out.password = decodeURIComponent(u.password)
  } catch {
    return fail('a user or password in the url is not valid %-encoding')
  }
  if (u.pathname.length > 1) {
    const db = u.pathname.slice(1)
    if (!/^\d{1,10}$/.test(db) || Number(db) > 2 ** 31 - 1) return fail(`${form}: the database is a number`)
    out.database = Number(db)
  }
  if (u.search !== '' || u.hash !== '') return fail(`${form}: no ?query or #fragment`)
}

/**
 * rspamd.ini's `[redis]`: each key checked as parseRedisIni() reads it (at start-up, on reload and in
 * rspamd-lda alike, whatever the greylist store), returned as written, for parseRedisIni() to merge over
 * redis.ini. `read` is the section as the unused-key report sees it; `raw` the same section untracked.
 */
export function parseOwnRedis(read: Section, raw: Section): Readonly<Section> {
  parseRedisIni(undefined, read)
  return Object.freeze({ ...raw })
}
