// Text from outside (rspamd's replies and error pages, the message's header names, config values,
// library error messages) made safe for one log line or one line of stderr: the one escaping
// function every log call and stderr write of the plugin and rspamd-lda goes through.

/**
 * The control characters, as classes for a RegExp's `[...]`, named by what each use lets through: the
 * one place that spells them (each use differs on purpose: a header value keeps its TAB and has its
 * own rule for line ends, a log line escapes C1 controls too). `controlClass()` builds the RegExp.
 */
export const CONTROLS = {
  /** every C0 control and DEL */
  all: '\\x00-\\x1f\\x7f',
  /** C0 controls but TAB, and DEL: what an HTTP header value may not hold */
  butTab: '\\x00-\\x08\\x0a-\\x1f\\x7f',
  /** C0 controls but TAB, LF and CR, and DEL: what a message header value loses before its line ends are folded */
  butTabAndLineEnds: '\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f',
  /** U+2028 and U+2029, line breaks to JavaScript and JSON readers */
  jsLineBreaks: '\\u2028\\u2029',
  /** white space (`\\s`) */
  space: '\\s',
} as const

/** A RegExp of one character (or, with `runs`, a run of them) of the given classes of CONTROLS. */
export function controlClass(classes: readonly string[], flags = '', runs = false): RegExp {
  return new RegExp(`[${classes.join('')}]${runs ? '+' : ''}`, flags)
}

/**
 * What may not reach a log line as it is: every C0 control (CR and LF would start a forged line, ESC
 * would drive the terminal that shows the log, TAB would shift columns), DEL, every C1 control
 * (U+0085 NEL is a line break to some readers, U+009B CSI an escape sequence to some terminals),
 * and U+2028/2029, which JavaScript and JSON readers take for line breaks.
 */
const UNSAFE = controlClass([CONTROLS.all, '\\x80-\\x9f', CONTROLS.jsLineBreaks])
const ALL_UNSAFE = controlClass([CONTROLS.all, '\\x80-\\x9f', CONTROLS.jsLineBreaks], 'g')

/** The default cap, in UTF-16 code units of the text before escaping. */
export const LOG_TEXT_MAX = 300
/** The cap for a whole log line (what a caller composed of capped parts stays far below it). */
export const LOG_LINE_MAX = 16 * 1024

/** Marks text cut at its cap. */
const CUT = '...'

/**
 * `text` as one safe line: cut to `max` code units (never inside a surrogate pair), ending in `...`
 * when cut, then every character of UNSAFE written as `\uXXXX`. The result holds no line break and
 * no control character, and is at most 6 × max + 3 long. Applying it again changes nothing (the
 * escapes are printable ASCII), so a line made of escaped parts can be escaped whole once more.
 */
export function forLog(text: string, max = LOG_TEXT_MAX): string {
  let s = text
  if (s.length > max) {
    let end = Math.max(0, max - CUT.length)
    // a cut between the halves of a surrogate pair would leave a lone one
    const code = s.charCodeAt(end - 1)
    if (code >= 0xd800 && code <= 0xdbff) end--
    s = `${s.slice(0, end)}${CUT}`
  }
  // most text has nothing to escape: a test is much cheaper than a replace with a function
  if (!UNSAFE.test(s)) return s
  return s.replace(ALL_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** Whether `text` would be changed by forLog() for a reason other than its length. */
export function hasUnsafe(text: string): boolean {
  return UNSAFE.test(text)
}

/** An error or thrown value as one safe line: its message (with a code), never its stack. */
export function errorForLog(err: unknown, max = LOG_TEXT_MAX): string {
  return forLog(err instanceof Error ? err.message : String(err), max)
}
