// The Subject of a `rewrite subject` verdict ([rewrite_subject]): rspamd's own rewritten subject,
// or the configured template around the message's subject, written so that it decodes to what
// the message said and never more.

import { encodedWords } from './fold'

/**
 * The new Subject: rspamd's own `subject` as it is when it sends one, else the template with its
 * first `%s` replaced by the current subject (a function replacement, so `$&` stays literal).
 * rspamd's subject is finished: rspamd has put the message's subject in place of its own template's
 * `%s` (and `%d`, `%%`) and RFC 2047-encoded the result when it is not ASCII
 * (rspamd_protocol_rewrite_subject in protocol.c). Replacing `%s` in it again would copy the subject
 * into itself wherever the sender wrote a `%s`; encodeValue() leaves its encoded-words as they are.
 * The current subject is decoded text, shown as it reads: see literalSubject().
 */
export function rewriteSubject(
  template: string,
  oldSubject: string | undefined,
  rspamdSubject?: string,
): string {
  if (rspamdSubject !== undefined && rspamdSubject.trim() !== '') return rspamdSubject
  return template.replace('%s', () => literalSubject(oldSubject ?? ''))
}

/** A word a lenient decoder could read an encoded-word in (Haraka's and libmime's decode them mid-word too). */
const HAS_ENCODED_WORD = /=\?/

/**
 * Decoded subject text made to read the same once the written Subject is decoded. Text that came out
 * of one decoding may itself look like an encoded-word (`=?UTF-8?B?RlJFRSBtb25leQ==?=` decodes to
 * that very text when the sender encoded it twice): written as it is, the reader's decoder would
 * decode it again and show `FREE money`, which the message never said. Each run of such words (with
 * the spaces between them, which a decoder drops between adjacent encoded-words, RFC 2047 §6.2) is
 * written as encoded-words of its own text, so it decodes to itself; other words are left for
 * prepareField() to encode as any value.
 */
export function literalSubject(text: string): string {
  if (!HAS_ENCODED_WORD.test(text)) return text
  let out = ''
  // the run of words to encode, with the whitespace inside it
  let run = ''
  let runWs = ''
  const flush = () => {
    if (run === '') return
    out += runWs + encodedWords(run)
    run = ''
  }
  let last = 0
  for (const m of text.matchAll(/([ \t]*)([^ \t]+)/g)) {
    const [all, ws = '', word = ''] = m
    last = (m.index ?? 0) + all.length
    if (HAS_ENCODED_WORD.test(word)) {
      if (run === '') runWs = ws
      else run += ws
      run += word
    } else {
      flush()
      out += ws + word
    }
  }
  flush()
  return out + text.slice(last)
}
