// src/config/index.ts: rspamd.ini as haraka-config returns it → Config. Every default, every key with a
// valid value, and every invalid value as a ConfigError that names the key.

import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { type Config, ConfigError, parseConfig, sameTarget } from '../../src/config'

type Ini = Record<string, unknown>
type Getter = (c: Config) => unknown

/** Asserts `fn` throws a ConfigError whose key is `key` and whose message names it. */
function assertConfigError(fn: () => unknown, key: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`)
    assert.equal(err.key, key)
    assert.ok(err.message.includes(key), `message does not name ${key}: ${err.message}`)
    return true
  })
}

const DEFAULTS: Array<[what: string, get: Getter, expected: unknown]> = [
  ['target', (c) => c.target, { kind: 'tcp', scheme: 'http', host: 'localhost', port: 11333 }],
  ['path', (c) => c.path, '/checkv2'],
  ['transport', (c) => c.transport, 'auto'],
  ['timeout', (c) => c.timeout, undefined],
  ['add_headers', (c) => c.addHeaders, 'sometimes'],
  ['subject', (c) => c.subject, '[SPAM] %s'],
  ['[quarantine] action', (c) => c.quarantine.action, 'queue'],
  ['header.bar', (c) => c.header.bar, 'X-Rspamd-Bar'],
  ['header.report', (c) => c.header.report, 'X-Rspamd-Report'],
  ['header.score', (c) => c.header.score, 'X-Rspamd-Score'],
  ['spambar', (c) => c.spambar, { positive: '+', negative: '-', neutral: '/' }],
  [
    'check',
    (c) => c.check,
    { authenticated: false, relay: false, privateIp: false, localIp: false, whitelist: [], skipPorts: [] },
  ],
  ['max_size (no limit)', (c) => c.maxSize, 0],
  [
    'greylist',
    (c) => c.greylist,
    {
      enabled: false,
      delay: 300,
      message: 'Try again later',
      store: 'memory',
      keyPrefix: 'haraka-rspamd:greylist:',
      redisTimeout: 0.2,
    },
  ],
  ['thresholds (none)', (c) => c.thresholds, {}],
  ['ham', (c) => c.ham, { ok: false, maxScore: undefined }],
  ['reject', (c) => c.reject, { message: 'Detected as spam', spam: true, authenticated: false }],
  ['soft_reject', (c) => c.softReject, { enabled: true, message: 'Deferred by policy' }],
  ['dkim.enabled', (c) => c.dkim.enabled, true],
  ['rewrite_subject.enabled', (c) => c.rewriteSubject.enabled, true],
  ['rmilter_headers.enabled', (c) => c.rmilterHeaders.enabled, true],
  ['milter_envelope.enabled', (c) => c.milterEnvelope.enabled, true],
  ['smtp_message.enabled', (c) => c.smtpMessage.enabled, true],
  ['defer', (c) => c.defer, { error: false, timeout: false }],
  ['tls.reject_unauthorized', (c) => c.tls.rejectUnauthorized, true],
  [
    'tls files',
    (c) => [c.tls.ca, c.tls.cert, c.tls.key, c.tls.servername],
    [undefined, undefined, undefined, undefined],
  ],
  ['auth', (c) => Object.values(c.auth).filter((v) => v !== undefined), []],
  ['request flags', (c) => c.request.flags, []],
  ['request pass_all/raw', (c) => [c.request.passAll, c.request.raw], [false, false]],
  [
    'request settings',
    (c) => [c.request.settingsId, c.request.settings, c.request.urlFormat],
    [undefined, undefined, undefined],
  ],
  ['request_headers', (c) => c.requestHeaders, {}],
  ['spam_headers', (c) => c.spamHeaders, { styles: ['rspamd'], ldaJson: false, removeForeign: true }],
]

// [ini text as it reads, ini object, getter, expected]
const VALID: Array<[label: string, ini: Ini, get: Getter, expected: unknown]> = [
  ...(
    [
      ['exim', ['exim']],
      ['extended', ['extended']],
      ['lda', ['lda']],
      ['rspamd, exim, extended, lda', ['rspamd', 'exim', 'extended', 'lda']],
      ['lda,rspamd', ['lda', 'rspamd']],
      [' Exim , LDA ', ['exim', 'lda']],
      ['exim, exim, rspamd, exim', ['exim', 'rspamd']],
      ['exim,,lda,', ['exim', 'lda']],
    ] as Array<[string, string[]]>
  ).map(([styles, expected]): [string, Ini, Getter, unknown] => [
    `[spam_headers] styles=${styles}`,
    { spam_headers: { styles } },
    (c) => c.spamHeaders.styles,
    expected,
  ]),
  [
    '[spam_headers] styles as an array',
    { spam_headers: { styles: ['extended', 'lda'] } },
    (c) => c.spamHeaders.styles,
    ['extended', 'lda'],
  ],
  ['[spam_headers] lda_json=true', { spam_headers: { lda_json: true } }, (c) => c.spamHeaders.ldaJson, true],
  ['[spam_headers] lda_json=yes', { spam_headers: { lda_json: 'yes' } }, (c) => c.spamHeaders.ldaJson, true],
  [
    '[spam_headers] remove_foreign=false',
    { spam_headers: { remove_foreign: false } },
    (c) => c.spamHeaders.removeForeign,
    false,
  ],
  [
    'host=rspamd.local',
    { main: { host: 'rspamd.local' } },
    (c) => c.target,
    { kind: 'tcp', scheme: 'http', host: 'rspamd.local', port: 11333 },
  ],
  [
    'host=192.0.2.7',
    { main: { host: '192.0.2.7' } },
    (c) => c.target,
    { kind: 'tcp', scheme: 'http', host: '192.0.2.7', port: 11333 },
  ],
  [
    'host=[::1] (IPv6, brackets dropped)',
    { main: { host: '[::1]' } },
    (c) => c.target,
    { kind: 'tcp', scheme: 'http', host: '::1', port: 11333 },
  ],
  [
    'host=::1',
    { main: { host: '::1' } },
    (c) => c.target,
    { kind: 'tcp', scheme: 'http', host: '::1', port: 11333 },
  ],
  [
    'port=11334',
    { main: { port: 11334 } },
    (c) => c.target,
    { kind: 'tcp', scheme: 'http', host: 'localhost', port: 11334 },
  ],
  [
    'port="11335" as text',
    { main: { port: '11335' } },
    (c) => c.target,
    { kind: 'tcp', scheme: 'http', host: 'localhost', port: 11335 },
  ],
  [
    'port=1',
    { main: { port: 1 } },
    (c) => c.target,
    { kind: 'tcp', scheme: 'http', host: 'localhost', port: 1 },
  ],
  [
    'port=65535',
    { main: { port: 65535 } },
    (c) => c.target,
    { kind: 'tcp', scheme: 'http', host: 'localhost', port: 65535 },
  ],
  [
    'scheme=https',
    { main: { scheme: 'https', host: 'r.example', port: 443 } },
    (c) => c.target,
    { kind: 'tcp', scheme: 'https', host: 'r.example', port: 443 },
  ],
  [
    'scheme=HTTPS',
    { main: { scheme: 'HTTPS' } },
    (c) => c.target,
    { kind: 'tcp', scheme: 'https', host: 'localhost', port: 11333 },
  ],
  [
    'unix_socket=/run/rspamd.sock',
    { main: { unix_socket: '/run/rspamd.sock' } },
    (c) => c.target,
    { kind: 'unix', socketPath: '/run/rspamd.sock' },
  ],
  [
    'unix_socket wins over host and port',
    { main: { unix_socket: '/var/run/r.sock', host: 'r.example', port: 1 } },
    (c) => c.target,
    { kind: 'unix', socketPath: '/var/run/r.sock' },
  ],
  ['path=/check', { main: { path: '/check' } }, (c) => c.path, '/check'],
  ['transport=node', { main: { transport: 'node' } }, (c) => c.transport, 'node'],
  ['transport=Undici (any case)', { main: { transport: 'Undici' } }, (c) => c.transport, 'undici'],
  ['transport=auto', { main: { transport: 'auto' } }, (c) => c.transport, 'auto'],
  ['timeout=5', { main: { timeout: 5 } }, (c) => c.timeout, 5],
  ['timeout=2.5 as text', { main: { timeout: '2.5' } }, (c) => c.timeout, 2.5],
  ['add_headers=always', { main: { add_headers: 'always' } }, (c) => c.addHeaders, 'always'],
  ['add_headers=never', { main: { add_headers: 'never' } }, (c) => c.addHeaders, 'never'],
  ['add_headers=sometimes', { main: { add_headers: 'sometimes' } }, (c) => c.addHeaders, 'sometimes'],
  ['add_headers=Always (any case)', { main: { add_headers: 'Always' } }, (c) => c.addHeaders, 'always'],
  ['always_add_headers=true', { main: { always_add_headers: true } }, (c) => c.addHeaders, 'always'],
  ['always_add_headers=false', { main: { always_add_headers: false } }, (c) => c.addHeaders, 'sometimes'],
  [
    'add_headers=never over always_add_headers=true',
    { main: { always_add_headers: true, add_headers: 'never' } },
    (c) => c.addHeaders,
    'never',
  ],
  [
    'add_headers=sometimes over always_add_headers=true',
    { main: { always_add_headers: true, add_headers: 'sometimes' } },
    (c) => c.addHeaders,
    'sometimes',
  ],
  ['subject=*** SPAM *** %s', { main: { subject: '*** SPAM *** %s' } }, (c) => c.subject, '*** SPAM *** %s'],
  [
    '[tls] reject_unauthorized=false',
    { main: { scheme: 'https' }, tls: { reject_unauthorized: false } },
    (c) => c.tls.rejectUnauthorized,
    false,
  ],
  [
    '[tls] servername',
    { main: { scheme: 'https' }, tls: { servername: 'rspamd.example' } },
    (c) => c.tls.servername,
    'rspamd.example',
  ],
  [
    '[auth] basic_user and basic_pass',
    { auth: { basic_user: 'haraka', basic_pass: 'p:w' } },
    (c) => [c.auth.basicUser, c.auth.basicPass],
    ['haraka', 'p:w'],
  ],
  [
    '[auth] header and value',
    { auth: { header: 'X-Api-Key', value: 'k3y' } },
    (c) => [c.auth.header, c.auth.value],
    ['X-Api-Key', 'k3y'],
  ],
  [
    '[auth] value_env',
    { auth: { header: 'X-Api-Key', value_env: 'RSPAMD_KEY' } },
    (c) => c.auth.valueEnv,
    'RSPAMD_KEY',
  ],
  [
    '[request] settings_id',
    { request: { settings_id: 'outbound' } },
    (c) => c.request.settingsId,
    'outbound',
  ],
  [
    '[request] settings as JSON',
    { request: { settings: '{"actions":{"reject":20}}' } },
    (c) => c.request.settings,
    '{"actions":{"reject":20}}',
  ],
  [
    "[request] settings in rspamd's UCL with braces (1.6.x sent it as it was)",
    { request: { settings: '{symbols_disabled = ["MY_SYMBOL"]}' } },
    (c) => c.request.settings,
    '{symbols_disabled = ["MY_SYMBOL"]}',
  ],
  ['timeout=0 (1.6.x: the default)', { main: { timeout: 0 } }, (c) => c.timeout, undefined],
  ["timeout='0' (1.6.x: the default)", { main: { timeout: '0' } }, (c) => c.timeout, undefined],
  [
    '[spambar] any text but controls (1.6.x took it)',
    { spambar: { positive: '★', negative: '− ', neutral: '. .' } },
    (c) => c.spambar,
    { positive: '★', negative: '−', neutral: '. .' },
  ],
  [
    '[request] settings as UCL',
    { request: { settings: 'actions = { reject = 20 }' } },
    (c) => c.request.settings,
    'actions = { reject = 20 }',
  ],
  ['[request] pass_all=true', { request: { pass_all: true } }, (c) => c.request.passAll, true],
  ['[request] raw=true', { request: { raw: true } }, (c) => c.request.raw, true],
  [
    '[request] url_format=extended',
    { request: { url_format: 'extended' } },
    (c) => c.request.urlFormat,
    'extended',
  ],
  [
    '[request_headers] X-Tenant=acme',
    { request_headers: { 'X-Tenant': 'acme' } },
    (c) => c.requestHeaders,
    { 'X-Tenant': 'acme' },
  ],
  [
    '[request_headers] a number value',
    { request_headers: { 'X-Level': 3 } },
    (c) => c.requestHeaders,
    { 'X-Level': '3' },
  ],
  [
    '[request_headers] an empty value is left out',
    { request_headers: { 'X-Empty': '' } },
    (c) => c.requestHeaders,
    {},
  ],
  ['[dkim] enabled=false', { dkim: { enabled: false } }, (c) => c.dkim.enabled, false],
  ['[header] bar=X-Spam-Bar', { header: { bar: 'X-Spam-Bar' } }, (c) => c.header.bar, 'X-Spam-Bar'],
  [
    '[header] report=X-Spam-Report',
    { header: { report: 'X-Spam-Report' } },
    (c) => c.header.report,
    'X-Spam-Report',
  ],
  [
    '[header] score=X-Spam-Score',
    { header: { score: 'X-Spam-Score' } },
    (c) => c.header.score,
    'X-Spam-Score',
  ],
  [
    '[header] bar= (empty, disabled)',
    { header: { bar: '' } },
    (c) => c.header,
    { bar: '', report: 'X-Rspamd-Report', score: 'X-Rspamd-Score' },
  ],
  [
    '[header] all three empty',
    { header: { bar: '', report: '', score: '' } },
    (c) => c.header,
    { bar: '', report: '', score: '' },
  ],
  [
    '[spambar] positive/negative/neutral',
    { spambar: { positive: '#', negative: '~', neutral: '.' } },
    (c) => c.spambar,
    { positive: '#', negative: '~', neutral: '.' },
  ],
  ['[check] authenticated=true', { check: { authenticated: true } }, (c) => c.check.authenticated, true],
  ['[check] relay=true', { check: { relay: true } }, (c) => c.check.relay, true],
  ['[check] private_ip=true', { check: { private_ip: true } }, (c) => c.check.privateIp, true],
  ['[check] local_ip=true', { check: { local_ip: true } }, (c) => c.check.localIp, true],
  ['[reject] message', { reject: { message: 'Go away' } }, (c) => c.reject.message, 'Go away'],
  ['[reject] spam=false', { reject: { spam: false } }, (c) => c.reject.spam, false],
  ['[reject] authenticated=true', { reject: { authenticated: true } }, (c) => c.reject.authenticated, true],
  ['[soft_reject] enabled=false', { soft_reject: { enabled: false } }, (c) => c.softReject.enabled, false],
  ['[soft_reject] message', { soft_reject: { message: 'Later' } }, (c) => c.softReject.message, 'Later'],
  [
    '[rewrite_subject] enabled=false',
    { rewrite_subject: { enabled: false } },
    (c) => c.rewriteSubject.enabled,
    false,
  ],
  [
    '[rmilter_headers] enabled=false',
    { rmilter_headers: { enabled: false } },
    (c) => c.rmilterHeaders.enabled,
    false,
  ],
  ['[smtp_message] enabled=false', { smtp_message: { enabled: false } }, (c) => c.smtpMessage.enabled, false],
  ['[defer] error=true', { defer: { error: true } }, (c) => c.defer, { error: true, timeout: false }],
  ['[defer] timeout=true', { defer: { timeout: true } }, (c) => c.defer, { error: false, timeout: true }],
  [
    '[check] whitelist of IPv4 and IPv6 addresses and networks',
    { check: { whitelist: '192.0.2.7, 198.51.100.0/24,2001:db8::/32 , ::1' } },
    (c) => c.check.whitelist,
    [
      { family: 'ipv4', address: '192.0.2.7', prefix: 32 },
      { family: 'ipv4', address: '198.51.100.0', prefix: 24 },
      { family: 'ipv6', address: '2001:db8::', prefix: 32 },
      { family: 'ipv6', address: '::1', prefix: 128 },
    ],
  ],
  [
    '[check] whitelist as an array (whitelist[] = …)',
    { check: { whitelist: ['10.0.0.0/8', '0.0.0.0/0'] } },
    (c) => c.check.whitelist.map((r) => `${r.address}/${r.prefix}`),
    ['10.0.0.0/8', '0.0.0.0/0'],
  ],
  [
    '[check] whitelist with host bits set (kept: the prefix decides)',
    { check: { whitelist: '192.0.2.77/24' } },
    (c) => c.check.whitelist,
    [{ family: 'ipv4', address: '192.0.2.77', prefix: 24 }],
  ],
  ['[check] whitelist empty', { check: { whitelist: '' } }, (c) => c.check.whitelist, []],
  ['[check] skip_ports = 587', { check: { skip_ports: 587 } }, (c) => c.check.skipPorts, [587]],
  [
    '[check] skip_ports = 587, 465',
    { check: { skip_ports: '587, 465' } },
    (c) => c.check.skipPorts,
    [587, 465],
  ],
  [
    '[check] skip_ports = 1,65535',
    { check: { skip_ports: '1,65535' } },
    (c) => c.check.skipPorts,
    [1, 65535],
  ],
  ['max_size = 1048576', { main: { max_size: 1048576 } }, (c) => c.maxSize, 1048576],
  ['max_size = "2000" as text', { main: { max_size: '2000' } }, (c) => c.maxSize, 2000],
  ['max_size = 0 (no limit)', { main: { max_size: 0 } }, (c) => c.maxSize, 0],
  ['max_size = 512k', { main: { max_size: '512k' } }, (c) => c.maxSize, 512 * 1024],
  ['max_size = 512K', { main: { max_size: '512K' } }, (c) => c.maxSize, 512 * 1024],
  ['max_size = 10M', { main: { max_size: '10M' } }, (c) => c.maxSize, 10 * 1024 * 1024],
  ['max_size = 10 MB', { main: { max_size: '10 MB' } }, (c) => c.maxSize, 10 * 1024 * 1024],
  ['max_size = 1G', { main: { max_size: '1G' } }, (c) => c.maxSize, 1024 ** 3],
  ['[greylist] enabled=true', { greylist: { enabled: true } }, (c) => c.greylist.enabled, true],
  ['[greylist] delay=60', { greylist: { delay: 60 } }, (c) => c.greylist.delay, 60],
  ['[greylist] delay=1 (small, for tests)', { greylist: { delay: '1' } }, (c) => c.greylist.delay, 1],
  ['[greylist] delay=0.5', { greylist: { delay: 0.5 } }, (c) => c.greylist.delay, 0.5],
  ['[greylist] message', { greylist: { message: 'Greylisted' } }, (c) => c.greylist.message, 'Greylisted'],
  ['[greylist] store=redis', { greylist: { store: 'redis' } }, (c) => c.greylist.store, 'redis'],
  ['[greylist] store=Redis (any case)', { greylist: { store: 'Redis' } }, (c) => c.greylist.store, 'redis'],
  ['[greylist] store=memory', { greylist: { store: 'memory' } }, (c) => c.greylist.store, 'memory'],
  ['[quarantine] action=reject', { quarantine: { action: 'reject' } }, (c) => c.quarantine.action, 'reject'],
  [
    '[quarantine] action=Soft_Reject (any case)',
    { quarantine: { action: 'Soft_Reject' } },
    (c) => c.quarantine.action,
    'soft_reject',
  ],
  ['[quarantine] action=accept', { quarantine: { action: 'accept' } }, (c) => c.quarantine.action, 'accept'],
  [
    '[greylist] key_prefix',
    { greylist: { key_prefix: 'mx1:grey:' } },
    (c) => c.greylist.keyPrefix,
    'mx1:grey:',
  ],
  ['[greylist] redis_timeout=0.5', { greylist: { redis_timeout: 0.5 } }, (c) => c.greylist.redisTimeout, 0.5],
  [
    '[thresholds] all four in order',
    { thresholds: { add_header: 5, rewrite_subject: '8', soft_reject: 12, reject: 15.5 } },
    (c) => c.thresholds,
    { addHeader: 5, rewriteSubject: 8, softReject: 12, reject: 15.5 },
  ],
  ['[thresholds] reject only', { thresholds: { reject: 20 } }, (c) => c.thresholds, { reject: 20 }],
  [
    '[thresholds] negative scores in order',
    { thresholds: { add_header: -2, reject: -1 } },
    (c) => c.thresholds,
    { addHeader: -2, reject: -1 },
  ],
  [
    '[thresholds] add_header and soft_reject with gaps',
    { thresholds: { add_header: 4, soft_reject: 9, reject: '' } },
    (c) => c.thresholds,
    { addHeader: 4, softReject: 9 },
  ],
  ['[ham] ok=true', { ham: { ok: true } }, (c) => c.ham, { ok: true, maxScore: undefined }],
  ['[ham] max_score=-1', { ham: { ok: true, max_score: -1 } }, (c) => c.ham, { ok: true, maxScore: -1 }],
  ['[ham] max_score="2.5"', { ham: { max_score: '2.5' } }, (c) => c.ham.maxScore, 2.5],
  ['a boolean written as yes', { defer: { error: 'yes' } }, (c) => c.defer.error, true],
  ['a boolean written as off', { dkim: { enabled: 'off' } }, (c) => c.dkim.enabled, false],
]

// [label, ini, key the error must name]
const INVALID: Array<[label: string, ini: unknown, key: string]> = [
  ['an ini that is not an object', 'host=x', 'rspamd.ini'],
  ['add_headers=sometimes-ish', { main: { add_headers: 'sometimes-ish' } }, 'add_headers'],
  ['scheme=ftp', { main: { scheme: 'ftp' } }, 'scheme'],
  ['port=0', { main: { port: 0 } }, 'port'],
  ['port=70000', { main: { port: 70000 } }, 'port'],
  ['port=abc', { main: { port: 'abc' } }, 'port'],
  ['port=-1', { main: { port: -1 } }, 'port'],
  ['port=1.5', { main: { port: 1.5 } }, 'port'],
  ['timeout=-1', { main: { timeout: -1 } }, 'timeout'],
  ['timeout=x', { main: { timeout: 'x' } }, 'timeout'],
  ['host with a space', { main: { host: 'rspamd local' } }, 'host'],
  ['unix_socket=run/rspamd.sock (relative)', { main: { unix_socket: 'run/rspamd.sock' } }, 'unix_socket'],
  ['path=checkv2 (no slash)', { main: { path: 'checkv2' } }, 'path'],
  ['path with a space', { main: { path: '/check v2' } }, 'path'],
  ['[header] bar with a space', { header: { bar: 'X Rspamd Bar' } }, 'header.bar'],
  ['[header] report with a colon', { header: { report: 'X-Report:' } }, 'header.report'],
  ['[header] score with a colon inside', { header: { score: 'X:Score' } }, 'header.score'],
  [
    '[request_headers] value with CR LF',
    { request_headers: { 'X-Tenant': 'acme\r\nX-Evil: 1' } },
    'request_headers.X-Tenant',
  ],
  [
    '[request_headers] value with LF',
    { request_headers: { 'X-Tenant': 'a\nb' } },
    'request_headers.X-Tenant',
  ],
  [
    '[request_headers] name with a space',
    { request_headers: { 'X Tenant': 'acme' } },
    'request_headers.X Tenant',
  ],
  [
    '[request_headers] name with a colon',
    { request_headers: { 'X-Tenant:': 'acme' } },
    'request_headers.X-Tenant:',
  ],
  [
    '[request_headers] an object value',
    { request_headers: { 'X-Tenant': { a: 1 } } },
    'request_headers.X-Tenant',
  ],
  ['[auth] header with a space', { auth: { header: 'X Api Key', value: 'k' } }, 'auth.header'],
  ['[auth] header with a colon', { auth: { header: 'X-Api-Key:', value: 'k' } }, 'auth.header'],
  ['[auth] value with CR LF', { auth: { header: 'X-Api-Key', value: 'k\r\nX: y' } }, 'auth.value'],
  ['[auth] basic_user with a colon', { auth: { basic_user: 'ha:raka', basic_pass: 'p' } }, 'auth.basic_user'],
  ['[spambar] positive with a control character', { spambar: { positive: '+\u0001+' } }, 'spambar.positive'],
  ['[spambar] negative with U+2028', { spambar: { negative: '-\u2028-' } }, 'spambar.negative'],
  ['[reject] message with CRLF', { reject: { message: 'Spam\r\n250 OK' } }, 'reject.message'],
  ['[soft_reject] message with LF', { soft_reject: { message: 'Later\nnow' } }, 'soft_reject.message'],
  ['[reject] spam=maybe', { reject: { spam: 'maybe' } }, 'reject.spam'],
  ['[defer] timeout=2', { defer: { timeout: 2 } }, 'defer.timeout'],
  ['[tls] as text, not a section', { tls: 'yes' }, '[tls]'],
  ['[request] as an array, not a section', { request: ['raw'] }, '[request]'],
  ['[main] as a number, not a section', { main: 5 }, '[main]'],
  ['[request] settings with CR LF', { request: { settings: '{a = 1}\r\nX: y' } }, 'request.settings'],
  ['[request] flags with a bad flag', { request: { flags: 'groups, no log' } }, 'request.flags'],
  ['[request] settings_id with LF', { request: { settings_id: 'a\nb' } }, 'request.settings_id'],
  ['[check] whitelist with a host name', { check: { whitelist: 'mail.example.com' } }, 'check.whitelist'],
  [
    '[check] whitelist with a bad entry among good',
    { check: { whitelist: '10.0.0.0/8, 10.0.0/8' } },
    'check.whitelist',
  ],
  ['[check] whitelist 192.0.2.0/33', { check: { whitelist: '192.0.2.0/33' } }, 'check.whitelist'],
  ['[check] whitelist 2001:db8::/129', { check: { whitelist: '2001:db8::/129' } }, 'check.whitelist'],
  ['[check] whitelist 192.0.2.0/24junk', { check: { whitelist: '192.0.2.0/24junk' } }, 'check.whitelist'],
  ['[check] whitelist 192.0.2.0/ (no prefix)', { check: { whitelist: '192.0.2.0/' } }, 'check.whitelist'],
  ['[check] whitelist 192.0.2.0/-1', { check: { whitelist: '192.0.2.0/-1' } }, 'check.whitelist'],
  ['[check] whitelist 256.1.1.1', { check: { whitelist: '256.1.1.1' } }, 'check.whitelist'],
  [
    '[check] whitelist fe80::1%eth0 (zone index)',
    { check: { whitelist: 'fe80::1%eth0' } },
    'check.whitelist',
  ],
  ['[check] whitelist [::1] (brackets)', { check: { whitelist: '[::1]' } }, 'check.whitelist'],
  ['[check] whitelist as a section', { check: { whitelist: { a: 1 } } }, 'check.whitelist'],
  ['[check] skip_ports=0', { check: { skip_ports: 0 } }, 'check.skip_ports'],
  ['[check] skip_ports=65536', { check: { skip_ports: '25, 65536' } }, 'check.skip_ports'],
  ['[check] skip_ports=submission', { check: { skip_ports: 'submission' } }, 'check.skip_ports'],
  ['[check] skip_ports=587.5', { check: { skip_ports: '587.5' } }, 'check.skip_ports'],
  ['[check] skip_ports=-25', { check: { skip_ports: '-25' } }, 'check.skip_ports'],
  ['max_size=-1', { main: { max_size: -1 } }, 'max_size'],
  ['max_size=1.5M', { main: { max_size: '1.5M' } }, 'max_size'],
  ['max_size=10T', { main: { max_size: '10T' } }, 'max_size'],
  ['max_size=big', { main: { max_size: 'big' } }, 'max_size'],
  ['max_size=true', { main: { max_size: true } }, 'max_size'],
  ['[greylist] enabled=sometimes', { greylist: { enabled: 'sometimes' } }, 'greylist.enabled'],
  ['[greylist] delay=0', { greylist: { delay: 0 } }, 'greylist.delay'],
  ['[greylist] delay=-300', { greylist: { delay: -300 } }, 'greylist.delay'],
  ['[greylist] delay=5m', { greylist: { delay: '5m' } }, 'greylist.delay'],
  ['[greylist] message with CR LF', { greylist: { message: 'Later\r\n250 OK' } }, 'greylist.message'],
  ['[greylist] store=disk', { greylist: { store: 'disk' } }, 'greylist.store'],
  ['[greylist] store=5', { greylist: { store: 5 } }, 'greylist.store'],
  ['[quarantine] action=hold', { quarantine: { action: 'hold' } }, 'quarantine.action'],
  [
    '[quarantine] action=soft reject (a space)',
    { quarantine: { action: 'soft reject' } },
    'quarantine.action',
  ],
  ['[quarantine] action=true', { quarantine: { action: true } }, 'quarantine.action'],
  ['[greylist] key_prefix with a space', { greylist: { key_prefix: 'my prefix' } }, 'greylist.key_prefix'],
  ['[greylist] redis_timeout=0', { greylist: { redis_timeout: 0 } }, 'greylist.redis_timeout'],
  ['[greylist] redis_timeout=200ms', { greylist: { redis_timeout: '200ms' } }, 'greylist.redis_timeout'],
  ['[thresholds] reject=high', { thresholds: { reject: 'high' } }, 'thresholds.reject'],
  ['[thresholds] add_header=Infinity', { thresholds: { add_header: 'Infinity' } }, 'thresholds.add_header'],
  [
    '[thresholds] reject below add_header',
    { thresholds: { add_header: 10, reject: 5 } },
    'thresholds.reject',
  ],
  [
    '[thresholds] soft_reject equal to rewrite_subject',
    { thresholds: { rewrite_subject: 8, soft_reject: 8 } },
    'thresholds.soft_reject',
  ],
  [
    '[thresholds] reject below soft_reject',
    { thresholds: { soft_reject: 15, reject: 12 } },
    'thresholds.reject',
  ],
  [
    '[thresholds] rewrite_subject below add_header',
    { thresholds: { add_header: 6, rewrite_subject: 4, reject: 15 } },
    'thresholds.rewrite_subject',
  ],
  ['transport=fetch', { main: { transport: 'fetch' } }, 'transport'],
  ['[ham] ok=2', { ham: { ok: 2 } }, 'ham.ok'],
  ['[ham] max_score=low', { ham: { max_score: 'low' } }, 'ham.max_score'],
  ['[greylist] as text, not a section', { greylist: 'on' }, '[greylist]'],
  ['[spam_headers] styles= (empty)', { spam_headers: { styles: '' } }, 'spam_headers.styles'],
  ['[spam_headers] styles= , , (no style)', { spam_headers: { styles: ' , ,' } }, 'spam_headers.styles'],
  ['[spam_headers] styles=spamassassin', { spam_headers: { styles: 'spamassassin' } }, 'spam_headers.styles'],
  [
    '[spam_headers] styles=rspamd,exim,bogus',
    { spam_headers: { styles: 'rspamd,exim,bogus' } },
    'spam_headers.styles',
  ],
  ['[spam_headers] styles=5', { spam_headers: { styles: 5 } }, 'spam_headers.styles'],
  ['[spam_headers] lda_json=sometimes', { spam_headers: { lda_json: 'sometimes' } }, 'spam_headers.lda_json'],
]

describe('config', function () {
  describe('defaults from an empty ini', function () {
    const cfg = parseConfig({}, {})
    for (const [what, get, expected] of DEFAULTS) {
      it(`defaults ${what} to ${JSON.stringify(expected)}`, () => {
        assert.deepEqual(get(cfg), expected)
      })
    }

    it('gives the same defaults for empty sections', () => {
      const empty = Object.fromEntries(
        ['main', 'tls', 'auth', 'request', 'request_headers', 'dkim', 'header', 'spambar', 'check']
          .concat([
            'reject',
            'soft_reject',
            'rewrite_subject',
            'rmilter_headers',
            'milter_envelope',
            'smtp_message',
            'defer',
          ])
          .concat(['greylist', 'thresholds', 'ham', 'spam_headers'])
          .map((s) => [s, {}]),
      )
      assert.deepEqual(parseConfig(empty, {}), cfg)
    })
  })

  describe('valid values', function () {
    for (const [label, ini, get, expected] of VALID) {
      it(`reads ${label}`, () => {
        assert.deepEqual(get(parseConfig(ini, {})), expected)
      })
    }
  })

  describe('[request] flags', function () {
    const FLAG_CASES: Array<[label: string, request: Ini, expected: string[]]> = [
      ['flags = groups, milter', { flags: 'groups, milter' }, ['groups', 'milter']],
      [
        'each boolean flag key',
        { body_block: true, ext_urls: true, no_log: true, profile: true },
        ['body_block', 'ext_urls', 'no_log', 'profile'],
      ],
      ['skip, skip_process', { skip: true, skip_process: true }, ['skip', 'skip_process']],
      [
        'flags and booleans, deduplicated',
        { flags: 'groups, milter', groups: true, profile: true },
        ['groups', 'milter', 'profile'],
      ],
      ['a flag listed twice once', { flags: 'milter,milter, ,' }, ['milter']],
      ['false booleans add nothing', { groups: false, milter: false }, []],
      ['flags as an array', { flags: ['groups', 'ext_urls'] }, ['ext_urls', 'groups']],
    ]
    for (const [label, request, expected] of FLAG_CASES) {
      it(`reads ${label}`, () => {
        const flags = parseConfig({ request }, {}).request.flags
        assert.deepEqual([...flags].sort(), [...expected].sort())
        assert.equal(new Set(flags).size, flags.length, 'a flag is listed twice')
      })
    }
  })

  describe('[auth] value_env', function () {
    it('reads value_env from the env argument and accepts a clean value', () => {
      const cfg = parseConfig(
        { auth: { header: 'X-Api-Key', value_env: 'RSPAMD_KEY' } },
        { RSPAMD_KEY: 's3cret' },
      )
      assert.equal(cfg.auth.header, 'X-Api-Key')
      assert.equal(cfg.auth.valueEnv, 'RSPAMD_KEY')
    })
    it('accepts value_env naming a variable that is not set', () => {
      const cfg = parseConfig({ auth: { header: 'X-Api-Key', value_env: 'RSPAMD_KEY' } }, {})
      assert.equal(cfg.auth.valueEnv, 'RSPAMD_KEY')
    })
    it('rejects value_env whose variable holds CR LF, naming the key', () => {
      assert.throws(
        () =>
          parseConfig({ auth: { header: 'X-Api-Key', value_env: 'RSPAMD_KEY' } }, { RSPAMD_KEY: 'a\r\nb' }),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError)
          assert.match(err.key, /^auth\.value_env/)
          assert.match(err.message, /auth\.value_env/)
          return true
        },
      )
    })
  })

  describe('[tls] files', function () {
    let dir = ''
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'rspamd-config-test-'))
      writeFileSync(join(dir, 'ca.pem'), 'CA PEM\n')
      writeFileSync(join(dir, 'cert.pem'), 'CERT PEM\n')
      writeFileSync(join(dir, 'key.pem'), 'KEY PEM\n')
    })
    after(() => rmSync(dir, { recursive: true, force: true }))

    it('reads ca_file, cert_file and key_file into buffers', () => {
      const cfg = parseConfig(
        {
          main: { scheme: 'https' },
          tls: {
            ca_file: join(dir, 'ca.pem'),
            cert_file: join(dir, 'cert.pem'),
            key_file: join(dir, 'key.pem'),
          },
        },
        {},
      )
      assert.equal(cfg.tls.ca?.toString(), 'CA PEM\n')
      assert.equal(cfg.tls.cert?.toString(), 'CERT PEM\n')
      assert.equal(cfg.tls.key?.toString(), 'KEY PEM\n')
    })

    for (const key of ['ca_file', 'cert_file', 'key_file']) {
      it(`rejects an unreadable ${key} naming tls.${key}`, () => {
        assertConfigError(
          () => parseConfig({ main: { scheme: 'https' }, tls: { [key]: join(dir, 'missing.pem') } }, {}),
          `tls.${key}`,
        )
      })
    }
    it('rejects a directory as ca_file naming tls.ca_file', () => {
      assertConfigError(
        () => parseConfig({ main: { scheme: 'https' }, tls: { ca_file: dir } }, {}),
        'tls.ca_file',
      )
    })

    it('reads no [tls] file without an https:// server (1.6.x neither), and says the keys are not used', () => {
      const tls = { ca_file: join(dir, 'missing.pem'), cert_file: join(dir, 'missing.pem'), servername: 'x' }
      for (const main of [{}, { unix_socket: '/run/rspamd.sock' }]) {
        const cfg = parseConfig({ main, tls }, {})
        assert.equal(cfg.tls.ca, undefined)
        assert.deepEqual(cfg.ignored, [
          'tls.ca_file (no https:// server)',
          'tls.cert_file (no https:// server)',
          'tls.servername (no https:// server)',
        ])
      }
      // one https:// server among several is enough for them to be read
      assertConfigError(
        () => parseConfig({ main: { servers: 'http://a:1, https://b:2' }, tls }, {}),
        'tls.ca_file',
      )
    })
  })

  describe('invalid values', function () {
    for (const [label, ini, key] of INVALID) {
      it(`rejects ${label} naming ${key}`, () => {
        assertConfigError(() => parseConfig(ini, {}), key)
      })
    }
    it('puts the offending value in the message', () => {
      assert.throws(() => parseConfig({ main: { port: 70000 } }, {}), /70000/)
      assert.throws(() => parseConfig({ main: { scheme: 'ftp' } }, {}), /ftp/)
      assert.throws(
        () => parseConfig({ spam_headers: { styles: 'rspamd, bogus' } }, {}),
        /spam_headers\.styles = "rspamd, bogus": unknown style "bogus", expected rspamd, exim, extended, lda/,
      )
    })
  })

  describe('sameTarget()', function () {
    let dir = ''
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'rspamd-config-test-'))
      writeFileSync(join(dir, 'a.pem'), 'A\n')
      writeFileSync(join(dir, 'a-copy.pem'), 'A\n')
      writeFileSync(join(dir, 'b.pem'), 'B\n')
    })
    after(() => rmSync(dir, { recursive: true, force: true }))

    // [tls] is read for https:// servers only
    const HTTPS = { scheme: 'https' }
    const CASES: Array<[label: string, a: () => Ini, b: () => Ini, same: boolean]> = [
      ['two empty inis', () => ({}), () => ({}), true],
      [
        'localhost and an explicit localhost:11333',
        () => ({}),
        () => ({ main: { host: 'localhost', port: 11333 } }),
        true,
      ],
      ['[::1] and ::1', () => ({ main: { host: '[::1]' } }), () => ({ main: { host: '::1' } }), true],
      [
        'configs differing only outside the target',
        () => ({}),
        () => ({ main: { timeout: 3, subject: 'x %s' }, reject: { spam: false } }),
        true,
      ],
      ['another host', () => ({}), () => ({ main: { host: 'rspamd.local' } }), false],
      ['another port', () => ({}), () => ({ main: { port: 11334 } }), false],
      ['another scheme', () => ({}), () => ({ main: { scheme: 'https' } }), false],
      ['tcp and unix', () => ({}), () => ({ main: { unix_socket: '/run/r.sock' } }), false],
      [
        'the same unix socket',
        () => ({ main: { unix_socket: '/run/r.sock' } }),
        () => ({ main: { unix_socket: '/run/r.sock' } }),
        true,
      ],
      [
        'two unix sockets',
        () => ({ main: { unix_socket: '/run/r.sock' } }),
        () => ({ main: { unix_socket: '/run/s.sock' } }),
        false,
      ],
      [
        'reject_unauthorized true and false',
        () => ({ main: HTTPS }),
        () => ({ main: HTTPS, tls: { reject_unauthorized: false } }),
        false,
      ],
      [
        'another servername',
        () => ({ main: HTTPS, tls: { servername: 'a' } }),
        () => ({ main: HTTPS, tls: { servername: 'b' } }),
        false,
      ],
      [
        'a CA and none',
        () => ({ main: HTTPS, tls: { ca_file: join(dir, 'a.pem') } }),
        () => ({ main: HTTPS }),
        false,
      ],
      [
        'two files with the same CA',
        () => ({ main: HTTPS, tls: { ca_file: join(dir, 'a.pem') } }),
        () => ({ main: HTTPS, tls: { ca_file: join(dir, 'a-copy.pem') } }),
        true,
      ],
      [
        'two different CAs',
        () => ({ main: HTTPS, tls: { ca_file: join(dir, 'a.pem') } }),
        () => ({ main: HTTPS, tls: { ca_file: join(dir, 'b.pem') } }),
        false,
      ],
      [
        'two different client certs',
        () => ({ main: HTTPS, tls: { cert_file: join(dir, 'a.pem') } }),
        () => ({ main: HTTPS, tls: { cert_file: join(dir, 'b.pem') } }),
        false,
      ],
      [
        'two different client keys',
        () => ({ main: HTTPS, tls: { key_file: join(dir, 'a.pem') } }),
        () => ({ main: HTTPS, tls: { key_file: join(dir, 'b.pem') } }),
        false,
      ],
    ]
    for (const [label, a, b, same] of CASES) {
      it(`${same ? 'shares' : 'does not share'} a pool for ${label}`, () => {
        const ca = parseConfig(a(), {})
        const cb = parseConfig(b(), {})
        assert.equal(sameTarget(ca, cb), same)
        assert.equal(sameTarget(cb, ca), same, 'not symmetric')
      })
    }
  })
})

describe('config: every error of a file at once', function () {
  it('reports each bad key of the file, one line each, not only the first', () => {
    const ini = {
      main: { timeout: 'soon', add_headers: 'bogus' },
      reject: { spam: 'flase' },
      defer: { error: 'ture' },
      greylist: { delay: '-3' },
    }
    assert.throws(
      () => parseConfig(ini),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError)
        const keys = err.problems.map((e) => e.key)
        assert.deepEqual(keys.sort(), [
          'add_headers',
          'defer.error',
          'greylist.delay',
          'reject.spam',
          'timeout',
        ])
        assert.equal(err.message.split('\n').length, 5)
        for (const line of err.message.split('\n')) assert.match(line, /^rspamd\.ini: \S+ = /)
        return true
      },
    )
  })

  it('is printed by util.inspect (as Haraka prints an error thrown at start-up) as its lines alone: no stack, no fields', () => {
    const one = (() => {
      try {
        parseConfig({ main: { add_headers: 'bogus' }, reject: { spam: 'flase' } })
      } catch (err) {
        return err
      }
      return undefined
    })()
    const lines = inspect(one).split('\n')
    assert.equal(lines.length, 2, inspect(one))
    // (Node writes an error without frames in brackets)
    assert.match(lines[0] ?? '', /^\[?ConfigError: rspamd\.ini: add_headers = "bogus": /)
    assert.match(lines[1] ?? '', /^rspamd\.ini: reject\.spam = "flase": expected true or false/)
    assert.doesNotMatch(inspect(one), /\bat \S+ \(|key:|value:/)
  })
})
