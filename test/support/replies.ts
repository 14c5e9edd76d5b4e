// Realistic rspamd 3.x /checkv2 replies, one per action, for the fake rspamd and pure tests.
// Shapes follow what rspamd 3.4+ sends (SPEC §2): symbols keyed by name, `metric_score` being the
// configured weight and `score` the one applied (they differ for dynamic symbols such as BAYES_SPAM).

export type RspamdAction =
  'no action' | 'greylist' | 'add header' | 'rewrite subject' | 'soft reject' | 'reject'

export interface RspamdSymbolJson {
  name: string
  score: number
  metric_score?: number
  description?: string
  options?: string[]
}

/** One `add_headers` entry: a plain value, `{value, order}` (order optional), or several of those. */
export type MilterHeaderJson =
  string | { value: string; order?: number } | Array<string | { value: string; order?: number }>

export interface RspamdMilterJson {
  add_headers?: Record<string, MilterHeaderJson>
  /** rspamd's count: 0 = every instance, n = the n-th */
  remove_headers?: Record<string, number | number[]>
  /** envelope changes, as rspamd's milter sends them (SMFIR_CHGFROM, SMFIR_ADDRCPT, SMFIR_DELRCPT) */
  change_from?: string
  add_rcpt?: string[]
  del_rcpt?: string[]
  reject?: string
  no_action?: boolean
  spam_header?: string | Record<string, string>
}

export interface RspamdReplyJson {
  is_skipped: boolean
  score: number
  required_score: number
  /** one of RspamdAction in real life; a string so tests can send an unknown one */
  action: string
  thresholds: Record<string, number>
  symbols: Record<string, RspamdSymbolJson>
  messages: Record<string, string>
  'message-id': string
  time_real: number
  subject?: string
  milter?: RspamdMilterJson
  'dkim-signature'?: string | string[]
  urls?: string[]
  emails?: string[]
}

/** rspamd's default actions block as it reports it (soft reject has no score threshold). */
export const THRESHOLDS: Readonly<Record<string, number>> = Object.freeze({
  reject: 15,
  'rewrite subject': 8,
  'add header': 6,
  greylist: 4,
})

export const REQUIRED_SCORE = 15

/** The score each fixture carries. */
export const SCORES: Readonly<Record<RspamdAction, number>> = Object.freeze({
  'no action': 1.2,
  greylist: 4.5,
  'add header': 6.5,
  'rewrite subject': 8.2,
  'soft reject': 11,
  reject: 16.5,
})

type SymbolRow = [name: string, score: number, options: string[], description: string, metricScore?: number]

// Scores of each list add up to SCORES[action], so a report built from them is consistent.
const SYMBOLS: Record<RspamdAction, SymbolRow[]> = {
  'no action': [
    ['MIME_GOOD', -0.1, ['text/plain'], 'Known content-type'],
    ['R_SPF_ALLOW', -0.2, ['+ip4:198.51.100.0/24'], 'SPF verification allows sending'],
    ['ARC_NA', 0, [], 'ARC signature absent'],
    ['FROM_HAS_DN', 0, [], 'From header has a display name'],
    ['DATE_IN_PAST', 1, ['26'], 'Message date is in past'],
    ['HAS_REPLYTO', 0.5, ['alice@example.org'], 'Has Reply-To header'],
  ],
  greylist: [
    ['HFILTER_HOSTNAME_UNKNOWN', 2.5, [], 'Unknown client hostname (PTR or A mismatch)'],
    ['RDNS_NONE', 1, [], 'Delivered from a host without reverse DNS'],
    ['ONCE_RECEIVED', 0.1, [], 'One received header in a message'],
    ['R_SPF_SOFTFAIL', 0, ['~all:c'], 'SPF verification soft-failed'],
    ['MIME_GOOD', -0.1, ['text/plain'], 'Known content-type'],
    ['FORGED_SENDER', 0.3, ['bob@example.net', 'bounce@example.com'], 'Sender is forged'],
    ['MISSING_MID', 0.7, [], 'Message-ID header is missing', 2.5],
  ],
  'add header': [
    ['BAYES_SPAM', 3, ['91.20%'], 'Message probably spam, probability of spam', 5.1],
    ['R_SPF_FAIL', 1, ['-all'], 'SPF verification failed'],
    ['SUBJ_ALL_CAPS', 1.5, ['6'], 'Subject contains mostly capital letters', 3],
    ['MIME_HTML_ONLY', 0.2, [], 'Message has only an HTML part'],
    [
      'FROM_NEQ_ENVFROM',
      0,
      ['offers@example.net', 'bounce@example.com'],
      'From address is different to the envelope',
    ],
    ['HFILTER_HELO_NOT_FQDN', 0.8, ['mailer'], 'Helo not FQDN', 2],
  ],
  'rewrite subject': [
    ['BAYES_SPAM', 5.1, ['99.99%'], 'Message probably spam, probability of spam', 5.1],
    ['R_SPF_FAIL', 1, ['-all'], 'SPF verification failed'],
    ['DMARC_POLICY_QUARANTINE', 1.5, ['example.com', 'quarantine'], 'DMARC quarantine policy'],
    ['MIME_HTML_ONLY', 0.2, [], 'Message has only an HTML part'],
    ['FREEMAIL_FROM', 0, ['gmail.com'], 'From is a Freemail address'],
    ['R_DKIM_REJECT', 0.4, ['example.com:s=mail'], 'DKIM verification failed', 1],
  ],
  'soft reject': [
    ['BAYES_SPAM', 5.1, ['98.10%'], 'Message probably spam, probability of spam', 5.1],
    ['R_SPF_FAIL', 1, ['-all'], 'SPF verification failed'],
    [
      'RBL_SENDERSCORE',
      2,
      ['25.2.0.192.bl.score.senderscore.com:from'],
      'From address is listed in Senderscore RBL',
    ],
    ['MIME_HTML_ONLY', 0.2, [], 'Message has only an HTML part'],
    ['HFILTER_HOSTNAME_UNKNOWN', 2.5, [], 'Unknown client hostname (PTR or A mismatch)'],
    ['RATELIMITED', 0.2, ['user(1 / 1m)'], 'Sender was ratelimited', 0],
  ],
  reject: [
    ['BAYES_SPAM', 5.1, ['100.00%'], 'Message probably spam, probability of spam', 5.1],
    ['URIBL_BLACK', 7.5, ['spam.example.biz:url'], 'A domain in the message is listed in URIBL.com black'],
    ['R_SPF_FAIL', 1, ['-all'], 'SPF verification failed'],
    ['DMARC_POLICY_REJECT', 2, ['example.com', 'reject'], 'DMARC reject policy'],
    ['MIME_HTML_ONLY', 0.2, [], 'Message has only an HTML part'],
    ['R_DKIM_REJECT', 0.7, ['example.com:s=mail'], 'DKIM verification failed', 1],
    ['GTUBE', 0, [], 'Generic Test for Unsolicited Bulk Email'],
  ],
}

/** rspamd's own default texts (greylist module, ratelimit, the reject action). */
const MESSAGES: Record<RspamdAction, Record<string, string>> = {
  'no action': {},
  greylist: {},
  'add header': {},
  'rewrite subject': {},
  'soft reject': { smtp_message: 'Try again later' },
  reject: { smtp_message: 'Spam message rejected' },
}

/** The milter block rspamd's milter_headers module sends (X-Spamd-Bar replaced, X-Virus added). */
export function milterExample(): RspamdMilterJson {
  return {
    add_headers: { 'X-Spamd-Bar': { value: '+++', order: 0 }, 'X-Virus': 'no' },
    remove_headers: { 'X-Spamd-Bar': 1 },
  }
}

/**
 * A DKIM-Signature value as rspamd's dkim_signing module returns it: the header value only
 * (no `DKIM-Signature:` name), already folded with CRLF + tab.
 */
export const DKIM_SIGNATURE_EXAMPLE =
  'v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;\r\n' +
  '\ts=dkim; t=1714556096; h=from:from:reply-to:subject:subject:date:date:\r\n' +
  '\t message-id:message-id:to:to:cc:mime-version:mime-version:content-type;\r\n' +
  '\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n' +
  '\tb=Yq3Q1qJ3Kpo6vQ0p1nYF2j1u8Wm5mX0Ck7m2b4m0q5s9hQ7a6xv0ZyQkq0+8xJ2v0z1t3dOe\r\n' +
  '\t qF1w3cJ5bWm3kT0c9e2rJ5M5c8kW0mS1yKpX2u0G1l7Bf9r4Qh0b5m8Z0W7eN9oS6yB4aUo='

let sequence = 0

/** rspamd echoes the Message-ID without angle brackets; each fixture gets its own. */
function messageId(): string {
  sequence += 1
  return `20240501093456.${sequence.toString(16).padStart(6, '0')}@mail.example.org`
}

/**
 * A fresh rspamd 3.x reply for `action` (safe to mutate). `extra` is merged over the top level,
 * so `replyFor('reject', { messages: { smtp_message: 'Go away' } })` replaces `messages`.
 * 'rewrite subject' carries a `subject`; 'soft reject' and 'reject' carry `messages.smtp_message`.
 */
export function replyFor(action: RspamdAction, extra: Partial<RspamdReplyJson> = {}): RspamdReplyJson {
  const symbols: Record<string, RspamdSymbolJson> = {}
  for (const [name, score, options, description, metricScore] of SYMBOLS[action]) {
    symbols[name] = { name, score, metric_score: metricScore ?? score, description, options: [...options] }
  }
  const reply: RspamdReplyJson = {
    is_skipped: false,
    score: SCORES[action],
    required_score: REQUIRED_SCORE,
    action,
    thresholds: { ...THRESHOLDS },
    symbols,
    messages: { ...MESSAGES[action] },
    'message-id': messageId(),
    time_real: 0.023461,
  }
  if (action === 'rewrite subject') reply.subject = '*** SPAM *** Lunch on Thursday?'
  if (action === 'reject') reply.urls = ['spam.example.biz']
  return { ...reply, ...structuredClone(extra) }
}

/** `reply` with rspamd's milter block (default: milterExample()). */
export function withMilter(
  reply: RspamdReplyJson,
  milter: RspamdMilterJson = milterExample(),
): RspamdReplyJson {
  return { ...reply, milter: structuredClone(milter) }
}

/** `reply` with a `dkim-signature` (default: DKIM_SIGNATURE_EXAMPLE; an array for several signatures). */
export function withDkim(
  reply: RspamdReplyJson = replyFor('no action'),
  signature: string | string[] = DKIM_SIGNATURE_EXAMPLE,
): RspamdReplyJson {
  return { ...reply, 'dkim-signature': Array.isArray(signature) ? [...signature] : signature }
}

/** What rspamd sends with a non-200 status. */
export function errorReply(message = 'fake rspamd: internal error'): { error: string } {
  return { error: message }
}
