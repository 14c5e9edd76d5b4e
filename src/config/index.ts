// The plugin's configuration. parseConfig() turns config/rspamd.ini, as haraka-config returns it (or
// rspamd-lda's --config file with its options), into a typed, validated Config; parseRedisIni() reads
// config/redis.ini, the file haraka-plugin-redis owns (with rspamd.ini's [redis] over it), when
// greylisting keeps its triplets in Redis. Every 1.6.x key keeps its name, default and meaning; a bad
// value throws a ConfigError naming the file and the key, and every bad key of the file is reported at
// once. This file holds parseConfig and re-exports what the rest of the plugin imports from '../config'.
// The rooms: ini.ts (rspamd-lda's ini text → sections, as haraka-config reads it), types.ts (the Config
// type and its parts), errors.ts (ConfigError, secret redaction), reader.ts (reading one key of an ini
// section, boolean words), servers.ts (where rspamd is: host/port/servers, transports, when a reload
// needs a new client), request.ts, message.ts and policy.ts (the sections read by src/rspamd/,
// src/message/ and src/policy/), redis.ts (redis.ini and [redis]) and memo.ts (oncePerConfig). Imports
// run one way: errors ← reader ← servers ← the section files and redis.ts ← index; types.ts, memo.ts and
// ini.ts import nothing.

import { ConfigError } from './errors'
import { ignoredKeys, isSection, Reader, section, type Section, tracked } from './reader'
import { checkTargets, parseServers, parseTarget } from './servers'
import { parseAddHeaders, parseHeaderNames, parseSpambar, parseSpamHeaders } from './message'
import {
  parseCheck,
  parseDefer,
  parseGreylist,
  parseHam,
  parseReject,
  parseSize,
  parseSoftReject,
  parseQuarantine,
  parseThresholds,
} from './policy'
import {
  parseAuth,
  parsePath,
  parseRequest,
  parseRequestHeaders,
  parseServername,
  parseUpstream,
} from './request'
import { parseOwnRedis } from './redis'
import { type Config, type Target, TRANSPORTS } from './types'

export { ConfigError, redacted, redactUrlCredentials } from './errors'
export { parseIni, type IniProblem, type IniText } from './ini'
export { nodeHasZstd, pluginProblems } from './request'
export { BOOL_WORDS, INI_BOOLEANS } from './reader'
export { hostProblem, parseServer, sameTarget, targetName, targetOrigin, transportFor } from './servers'
export { parseRedisIni, type RedisSettings } from './redis'
export { parseStyles } from './message'
export { parseIpRange } from './policy'
export { headerName, headerValue } from './request'
export { oncePerConfig } from './memo'
export {
  type AddHeaders,
  type AuthConfig,
  type Config,
  GREYLIST_STORES,
  type GreylistStoreKind,
  HEADER_STYLES,
  type HeaderStyle,
  type IpRange,
  QUARANTINE_ACTIONS,
  type QuarantineAction,
  type RequestConfig,
  type Target,
  type Thresholds,
  type TlsConfig,
  TRANSPORTS,
  type TransportKind,
  type UpstreamConfig,
} from './types'

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
    redis: get(() => parseOwnRedis(sec('redis'), section(ini, 'redis'))),
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
    milterEnvelope: {
      enabled: get(() => new Reader(sec('milter_envelope'), 'milter_envelope').bool('enabled', true)),
    },
    smtpMessage: {
      enabled: get(() => new Reader(sec('smtp_message'), 'smtp_message').bool('enabled', true)),
    },
    defer: get(() => parseDefer(new Reader(sec('defer'), 'defer'))),
    quarantine: get(() => parseQuarantine(new Reader(sec('quarantine'), 'quarantine'))),
    spamHeaders: get(() => parseSpamHeaders(new Reader(sec('spam_headers'), 'spam_headers'))),
  }
  if (errors.length > 0) throw ConfigError.all(errors)
  const ignored = ignoredKeys(ini, read).map((k) =>
    !secure && k.startsWith('tls.') ? `${k} (no https:// server)` : k,
  )
  return { ...cfg, ignored }
}
