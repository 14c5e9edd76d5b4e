// Header fields by name, as RFC 5322 reads them: which name a raw header line carries, and which
// fields a message may carry once. One rule for the plugin (Haraka's header lines) and rspamd-lda
// (the raw header block), so both remove the same fields.

/**
 * RFC 5322 §3.6.8 field-name (printable US-ASCII but colon), then §4.5.8's obsolete whitespace
 * before the colon (`obs-optional = field-name *WSP ":" unstructured`), which receivers must accept:
 * `X-Spam : yes` is an X-Spam field to a reader. Only SP and HTAB count (WSP); a line whose name
 * has anything else in it is not a field of any name.
 */
const FIELD_START = /^([!-9;-~]+)([ \t]*):/

export interface FieldName {
  /** the name in lower case: names match case-insensitively (RFC 5322 §1.2.2) */
  lower: string
  /**
   * written with whitespace before the colon. Haraka parses no value for such a line (it stays in
   * its header_list only) and rspamd counts it as no header at all, so it is never one of the
   * instances rspamd's milter numbers; a removal of every instance of the name takes it.
   */
  obsolete: boolean
}

/**
 * The field name a header line (the first line of a field; continuation lines may follow) starts
 * with, or undefined when it starts no field (a continuation line, a line without a colon, a name
 * with characters RFC 5322 does not allow).
 */
export function fieldNameOf(line: string): FieldName | undefined {
  // only the start is looked at: a folded value may be long
  const m = FIELD_START.exec(line.length > 1024 ? line.slice(0, 1024) : line)
  if (!m) return undefined
  return { lower: (m[1] as string).toLowerCase(), obsolete: m[2] !== '' }
}

/**
 * RFC 5322 §3.6: the fields a message carries at most once (Date, From, Sender, Reply-To, To, Cc,
 * Bcc, Message-ID, In-Reply-To, References, Subject). After our edits there is at most one of each:
 * a second value added for one of them is dropped (and logged), the first one written wins.
 */
export const SINGLE_FIELDS: ReadonlySet<string> = new Set([
  'date',
  'from',
  'sender',
  'reply-to',
  'to',
  'cc',
  'bcc',
  'message-id',
  'in-reply-to',
  'references',
  'subject',
])
