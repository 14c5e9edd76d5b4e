// ConfigError, the one error a bad rspamd.ini or redis.ini throws: it names the file and the key, shows the
// value (a secret's size only, a URL's password never), and carries every problem of the file at once.

import { forLog, LOG_LINE_MAX } from '../escape'

/**
 * Keys whose values are secrets: `[auth]` passwords and tokens (value_env's contents too), every
 * `[request_headers]` value (an API key, often; rspamd-lda's --header too), redis.ini's password. Their values never reach a message.
 */
function isSecretKey(key: string): boolean {
  return (
    /^auth\.(value|basic_pass|value_env)\b/.test(key) ||
    key === '[auth]' ||
    key === '[request_headers]' ||
    key.startsWith('request_headers.') ||
    // rspamd-lda's `--header Name: value`, the command line's [request_headers]
    key.startsWith('--header ') ||
    /^(server|opts|redis)\.password$/.test(key)
  )
}

/** redis.ini's url: a user and password in it are secret even where the text is not a URL. */
function isUrlKey(key: string): boolean {
  return /^(server|opts|redis)\.url$/.test(key)
}

/** Everything up to the last `@` of a text (a URL's user and password, however mistyped) redacted. */
function redactUserinfo(value: unknown): unknown {
  if (typeof value !== 'string') return redacted(value)
  const at = value.lastIndexOf('@')
  if (at === -1) return value
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(value)?.[0] ?? ''
  return `${scheme}${redacted(value.slice(scheme.length, at))}${value.slice(at)}`
}

/** What a log or error shows for a secret: its size only. */
export function redacted(value: unknown): string {
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value))
  return `<redacted, ${Buffer.byteLength(text)} bytes>`
}

/** `scheme://user:password@host…` with the user and password replaced by redacted(), wherever they appear. */
export function redactUrlCredentials(text: string): string {
  return text.replace(
    /([a-z][a-z0-9+.-]*:\/\/)([^\s"'/]*)@/gi,
    (_m, scheme: string, userinfo: string) => `${scheme}${redacted(userinfo)}@`,
  )
}

export class ConfigError extends Error {
  declare readonly key: string
  /** the offending value; for a secret key, only redacted() of it */
  declare readonly value: unknown
  /** every error of the file, this one first: a file is checked whole, each bad key reported */
  declare readonly problems: readonly ConfigError[]
  constructor(key: string, value: unknown, why: string, file = 'rspamd.ini') {
    const shown = isSecretKey(key)
      ? redacted(value)
      : isUrlKey(key)
        ? redactUserinfo(value)
        : typeof value === 'string'
          ? redactUrlCredentials(value)
          : value
    // one safe line for Haraka's log and rspamd-lda's stderr: JSON.stringify leaves C1 controls (NEL,
    // CSI) and U+2028/2029 as they are, and `why` may quote the value again
    super(
      forLog(
        redactUrlCredentials(`${file}: ${key} = ${JSON.stringify(shown) ?? String(shown)}: ${why}`),
        LOG_LINE_MAX,
      ),
    )
    this.name = 'ConfigError'
    // not enumerable, and no stack: Haraka prints an error thrown at start-up with util.inspect(), which
    // would add every own property and a dozen lines of our frames to what is the operator's typo
    Object.defineProperty(this, 'key', { value: key })
    Object.defineProperty(this, 'value', { value: shown })
    Object.defineProperty(this, 'problems', { value: [this] })
    this.stack = `${this.name}: ${this.message}`
  }

  /** One error for several: the first's key and value, a message of one line per error. */
  static all(errors: readonly ConfigError[]): ConfigError {
    const [first] = errors
    if (first === undefined) throw new Error('ConfigError.all() of no errors')
    if (errors.length === 1) return first
    const combined = Object.create(ConfigError.prototype) as ConfigError
    const message = errors.map((e) => e.message).join('\n')
    Object.defineProperty(combined, 'message', { value: message, writable: true })
    Object.defineProperty(combined, 'name', { value: 'ConfigError', writable: true })
    Object.defineProperty(combined, 'key', { value: first.key })
    Object.defineProperty(combined, 'value', { value: first.value })
    Object.defineProperty(combined, 'problems', { value: errors })
    Object.defineProperty(combined, 'stack', { value: `ConfigError: ${message}`, writable: true })
    return combined
  }
}
