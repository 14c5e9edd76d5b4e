// rspamd.ini's text → sections of values, read as haraka-config 1.7's ini reader reads it for Haraka (the
// plugin gets its ini from Haraka; rspamd-lda reads its --config file here). haraka-config's reader is not a
// public module (only config.get(), which watches the file's directory and prints bad lines to stdout, where
// rspamd-lda writes the message), so this is our own, checked against it by test/config/ini.test.ts.
// No declared booleans: parseConfig() reads every boolean from its text.

/** Section and key names that would reach an object's prototype: skipped, as haraka-config skips them. */
const UNSAFE = new Set(['__proto__', 'constructor', 'prototype'])

const SECTION = /^\s*\[([^\]]*)\]\s*$/
const PARAM = /^\s*([\w@:._+\-/[\]]+)\s*(?:=\s*(.*?)\s*)?$/
const COMMENT = /^\s*[;#]/
const BLANK = /^\s*$/
const CONTINUATION = /\\[ \t]*$/
const INTEGER = /^-?\d+$/
const FLOAT = /^-?\d+\.\d+$/

export type IniValue = string | number | undefined | Array<string | number | undefined>
export type IniSection = Record<string, IniValue>

/** A line the reader skipped: its number (from 1) and why; never its text, which may hold a password. */
export interface IniProblem {
  line: number
  reason: 'not key = value' | 'unsafe section name' | 'unsafe key'
}

export interface IniText {
  /** `main` for the keys before the first [section], then one entry per section */
  sections: Record<string, IniSection>
  problems: IniProblem[]
}

const newSection = (): IniSection => Object.create(null) as IniSection

/** A value as haraka-config types it: an integer or a decimal becomes a number, the rest stays text. */
function typed(text: string | undefined): string | number | undefined {
  if (text === undefined) return undefined
  if (INTEGER.test(text)) return parseInt(text, 10)
  if (FLOAT.test(text)) return parseFloat(text)
  return text
}

export function parseIni(text: string): IniText {
  const sections = Object.create(null) as Record<string, IniSection>
  const problems: IniProblem[] = []
  let current = newSection()
  sections.main = current
  // a line ending in a backslash continues on the next one; haraka-config keeps it across a [section] line
  let pending = ''
  const lines = text.split(/\r\n|\r|\n/)
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] ?? ''
    if (COMMENT.test(raw) || BLANK.test(raw)) continue
    const header = SECTION.exec(raw)
    if (header) {
      const name = (header[1] ?? '').trim()
      if (UNSAFE.has(name)) {
        problems.push({ line: i + 1, reason: 'unsafe section name' })
        current = newSection()
      } else {
        current = sections[name] ?? (sections[name] = newSection())
      }
      continue
    }
    if (CONTINUATION.test(raw)) {
      pending += raw.replace(CONTINUATION, '')
      continue
    }
    const line = pending + raw
    pending = ''
    const param = PARAM.exec(line)
    if (!param) {
      problems.push({ line: i + 1, reason: 'not key = value' })
      continue
    }
    const key = param[1] ?? ''
    const value = typed(param[2])
    const isList = key.length > 2 && key.endsWith('[]')
    // haraka-config drops the first `[]` of the name, wherever it is
    const base = isList ? key.replace('[]', '') : key
    if (UNSAFE.has(base)) {
      problems.push({ line: i + 1, reason: 'unsafe key' })
      continue
    }
    if (!isList) {
      current[key] = value
      continue
    }
    const list = current[base]
    if (Array.isArray(list)) list.push(value)
    else current[base] = [value]
  }
  return { sections, problems }
}
