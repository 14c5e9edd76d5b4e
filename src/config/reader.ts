// Reading an ini file as haraka-config parses it: a section by name (recording which keys a setting
// read, for `ignored`), and Reader, which reads one key as text, a choice, a boolean, seconds, a number, a
// list, a port or a file, and names the key in full (`section.key`) in every ConfigError. Also the boolean
// words (BOOL_WORDS) and the list of rspamd.ini's boolean keys with their defaults (INI_BOOLEANS).

import { readFileSync } from 'node:fs'
import { ConfigError } from './errors'

/**
 * The boolean keys, with 1.6.x's defaults (+ = true, - = false; a key new in 2.x, its own default). Not declared to haraka-config (1.6.x did):
 * it turns every word but `true yes ok enabled on 1` into false, so `spam = flase` would turn a protection
 * off without a word. Read as text instead, by Reader.bool: a word outside BOOL_WORDS is an error.
 */
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
  '+milter_envelope.enabled',
  '+soft_reject.enabled',
  '+smtp_message.enabled',
  '-greylist.enabled',
  '-ham.ok',
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
  '+spam_headers.remove_foreign',
  // new in 2.x (issue 26): the in-flight limit follows rspamd's scan times
  '+upstream.adaptive',
]

/** The words a boolean key takes, in any case: haraka-config's true words, and their opposites. */
export const BOOL_WORDS = {
  true: ['true', 'yes', 'ok', 'enabled', 'on', '1'],
  false: ['false', 'no', 'disabled', 'off', '0'],
} as const

export type Section = Record<string, unknown>

/**
 * A plain object (not null, not an array): an ini section, a JSON object of rspamd's reply, another
 * plugin's request note. The one such check of the plugin.
 */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** An ini section: a plain object. */
export const isSection: (v: unknown) => v is Section = isPlainObject

/** One ini section; a missing one is empty, anything else is an error. */
export function section(ini: Section, name: string, file = 'rspamd.ini'): Section {
  const s = ini[name]
  if (s === undefined || s === null) return {}
  if (!isSection(s)) throw new ConfigError(`[${name}]`, s, 'expected a section', file)
  return s
}

/** The section, recording each key that a setting reads from it. */
export function tracked(s: Section, name: string, read: Map<string, Set<string>>): Section {
  const keys = read.get(name) ?? new Set<string>()
  read.set(name, keys)
  return new Proxy(s, {
    get(target, key) {
      if (typeof key === 'string') keys.add(key)
      return Reflect.get(target, key) as unknown
    },
  })
}

/** Every `section.key` (or `[section]`) of the file that no setting read. */
export function ignoredKeys(ini: Section, read: Map<string, Set<string>>): string[] {
  const out: string[] = []
  for (const [name, value] of Object.entries(ini)) {
    const keys = read.get(name)
    if (!keys) {
      out.push(`[${name}]`)
      continue
    }
    if (!isSection(value)) continue
    for (const key of Object.keys(value)) {
      if (!keys.has(key)) out.push(name === 'main' ? key : `${name}.${key}`)
    }
  }
  return out
}

/** Reads keys of one section with the key's full ini name in every error. */
export class Reader {
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

  /** One of `choices`, in any case; `dflt` when unset. Anything else is an error listing the choices. */
  choice<T extends string>(key: string, choices: readonly T[], dflt: T): T {
    const v = this.str(key)
    if (v === undefined) return dflt
    const hit = choices.find((c) => c === v.toLowerCase())
    if (hit !== undefined) return hit
    const list = `${choices.slice(0, -1).join(', ')} or ${choices[choices.length - 1]}`
    throw new ConfigError(this.name(key), this.raw(key), `expected ${list}`)
  }

  /** Like str(), but keeps an explicit empty value as '' (header names: '' = off). */
  strOrEmpty(key: string, dflt: string): string {
    const v = this.s[key]
    if (v === undefined || v === null) return dflt
    if (typeof v !== 'string') throw new ConfigError(this.name(key), v, 'expected text')
    return v.trim()
  }

  /**
   * A key missing from the file is `dflt`; a word of BOOL_WORDS (any case) is its value; anything else,
   * an empty value and a bare `key` line included, is an error (1.6.x read each of them as false).
   */
  bool(key: string, dflt: boolean): boolean {
    const v = this.s[key]
    if (v === undefined && !Object.prototype.hasOwnProperty.call(this.s, key)) return dflt
    if (typeof v === 'boolean') return v
    // haraka-config reads 1 and 0 (and 01, 1.0) as numbers before we see them
    if (typeof v === 'number' && (v === 0 || v === 1)) return v === 1
    if (typeof v === 'string') {
      const t = v.trim().toLowerCase()
      if ((BOOL_WORDS.true as readonly string[]).includes(t)) return true
      if ((BOOL_WORDS.false as readonly string[]).includes(t)) return false
    }
    throw new ConfigError(
      this.name(key),
      v,
      `expected true or false (true: ${BOOL_WORDS.true.join(', ')}; false: ${BOOL_WORDS.false.join(', ')})`,
    )
  }

  /** A positive number of seconds (fractions allowed), at most MAX_SECONDS. */
  seconds(key: string): number | undefined {
    const v = this.s[key]
    if (v === undefined || v === null || v === '') return undefined
    const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v.trim()) : NaN
    if (!Number.isFinite(n) || n <= 0) {
      throw new ConfigError(this.name(key), v, 'expected a positive number of seconds')
    }
    // Node's timers take at most 2^31-1 ms and fire after 1 ms for anything longer (with a warning only)
    if (n > MAX_SECONDS) throw new ConfigError(this.name(key), v, `expected at most ${MAX_SECONDS} seconds`)
    return n
  }

  /** Any finite number (a score); '' and missing are undefined. */
  number(key: string): number | undefined {
    const v = this.s[key]
    if (v === undefined || v === null || v === '') return undefined
    const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v.trim()) : NaN
    if (!Number.isFinite(n)) throw new ConfigError(this.name(key), v, 'expected a number')
    return n
  }

  /** A comma list (or haraka-config's `key[]` array) of trimmed, non-empty entries. */
  list(key: string): string[] {
    const v = this.s[key]
    if (v === undefined || v === null || v === '') return []
    const items = Array.isArray(v) ? v : [v]
    const out: string[] = []
    for (const item of items) {
      if (typeof item !== 'string' && typeof item !== 'number') {
        throw new ConfigError(this.name(key), v, 'expected a comma-separated list')
      }
      for (const part of String(item).split(',')) if (part.trim() !== '') out.push(part.trim())
    }
    return out
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

/** The longest time a Node timer keeps: 2^31-1 ms, in whole seconds (24.8 days). */
const MAX_SECONDS = Math.floor((2 ** 31 - 1) / 1000)
