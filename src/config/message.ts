// The sections that say what is written into a message (read by src/message/): `add_headers` (when),
// `[header]` (the names of the bar, report and score headers), `[spambar]` and `[spam_headers]` (which
// families of verdict headers; parseStyles also reads rspamd-lda's --styles).

import { ConfigError } from './errors'
import type { Reader } from './reader'
import { type AddHeaders, type Config, HEADER_STYLES, type HeaderStyle } from './types'
import { CONTROLS, controlClass } from '../escape'

/** What a [spambar] value may not hold: it is a header value. */
const SPAMBAR_CONTROL = controlClass([CONTROLS.all, CONTROLS.jsLineBreaks])

/** Printable ASCII without colon or space: an RFC 5322 field-name (the verdict headers written into the message). */
const FIELD_NAME = /^[!-9;-~]+$/

export function parseAddHeaders(main: Reader): AddHeaders {
  // 1.6.x: the old always_add_headers=true meant add_headers=always; read (and checked) even when
  // add_headers is set, as 1.6.x's declared boolean was
  const always = main.bool('always_add_headers', false)
  const v = main.str('add_headers')
  if (v === undefined) return always ? 'always' : 'sometimes'
  const t = v.toLowerCase()
  if (t === 'always' || t === 'never' || t === 'sometimes') return t
  throw new ConfigError('add_headers', v, 'expected always, never or sometimes')
}

export function parseHeaderNames(header: Reader): Config['header'] {
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

export function parseSpambar(spambar: Reader): Config['spambar'] {
  const out = {
    positive: spambar.str('positive') ?? '+',
    negative: spambar.str('negative') ?? '-',
    neutral: spambar.str('neutral') ?? '/',
  }
  // any text 1.6.x took, bar controls: the bar is a header value (non-ASCII is RFC 2047-encoded there)
  for (const [k, v] of Object.entries(out)) {
    if (SPAMBAR_CONTROL.test(v)) throw new ConfigError(`spambar.${k}`, v, 'control character')
  }
  return out
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

export function parseSpamHeaders(r: Reader): Config['spamHeaders'] {
  const raw = r.raw('styles')
  return {
    styles: raw === undefined || raw === null ? ['rspamd'] : parseStyles(r.name('styles'), raw),
    ldaJson: r.bool('lda_json', false),
    removeForeign: r.bool('remove_foreign', true),
  }
}
