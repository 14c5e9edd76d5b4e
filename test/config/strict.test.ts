// src/config/index.ts, the promises a hurried operator relies on: booleans read from their text (no typo turns a
// protection off), every value that reaches a URL, a socket or a Pool checked at load, and secrets never in
// an error message. The ini text goes through src/config/ini.ts, which reads it as haraka-config does (test/config/ini.test.ts).

import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import harakaConfig from 'haraka-config'
import {
  BOOL_WORDS,
  type Config,
  ConfigError,
  INI_BOOLEANS,
  nodeHasZstd,
  parseConfig,
  parseIni,
} from '../../src/config'
import { RspamdClient } from '../../src/rspamd/client'
import { run } from '../../src/lda'

/** rspamd-lda --config with `text`: its exit code and stderr (it stops before reading the message). */
async function ldaWith(text: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stderr: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'lda-strict-'))
  try {
    const file = join(dir, 'rspamd.ini')
    writeFileSync(file, text)
    let stderr = ''
    const err = new PassThrough()
    err.on('data', (c: Buffer) => (stderr += c.toString()))
    const stdin = new PassThrough()
    stdin.end('Subject: x\r\n\r\nbody\r\n')
    const code = await run(['--config', file], { stdin, stdout: new PassThrough(), stderr: err, env })
    return { code, stderr }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** rspamd.ini text as 1.6.x read it: haraka-config's public get() with the declared booleans. */
function asOneSixRead(text: string): Record<string, Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'ini-1.6-'))
  const file = join(dir, 'rspamd.ini')
  try {
    writeFileSync(file, text)
    return harakaConfig.get(file, 'ini', { booleans: [...INI_BOOLEANS] }) as Record<
      string,
      Record<string, unknown>
    >
  } finally {
    harakaConfig.stop_watching(file)
    rmSync(dir, { recursive: true, force: true })
  }
}

/** rspamd.ini text as the plugin now reads it: no declared booleans. */
function fromText(text: string, env: NodeJS.ProcessEnv = {}): Config {
  return parseConfig(parseIni(text).sections, env)
}

/**
 * Asserts that `section.key` in `text` reads as `want`. `[request] zstd = true` is the one boolean whose
 * true needs something of the Node it runs on (zstd in node:zlib: 22.15+, 24): on Node 20 its true is
 * read all the same, then refused naming the key and saying why.
 */
function readsAs(text: string, section: string, key: string, want: unknown, label: string): void {
  if (want === true && section === 'request' && key === 'zstd' && !nodeHasZstd()) {
    const err = refused(text, 'request.zstd')
    assert.match(err.message, /zstd needs a Node\.js whose node:zlib has it/, label)
    return
  }
  assert.equal(boolOf(fromText(text), section, key), want, label)
}

/** Asserts that loading `text` is a ConfigError naming `key`, and returns it. */
function refused(text: string, key: string, env: NodeJS.ProcessEnv = {}): ConfigError {
  let caught: unknown
  try {
    fromText(text, env)
  } catch (err) {
    caught = err
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError for ${key}, got ${String(caught)}`)
  assert.equal(caught.key, key)
  assert.ok(caught.message.includes(key), `message does not name ${key}: ${caught.message}`)
  return caught
}

/** `section.key` of INI_BOOLEANS → [section, key, 1.6.x default] */
const BOOLEANS = INI_BOOLEANS.map((b): [string, string, boolean] => {
  const [section, key] = b.slice(1).split('.') as [string, string]
  return [section, key, b.startsWith('+')]
})

/** The Config value of one boolean key. */
function boolOf(cfg: Config, section: string, key: string): boolean {
  const flag = (name: string) => cfg.request.flags.includes(name)
  const table: Record<string, () => boolean> = {
    'main.always_add_headers': () => cfg.addHeaders === 'always',
    'check.authenticated': () => cfg.check.authenticated,
    'check.private_ip': () => cfg.check.privateIp,
    'check.local_ip': () => cfg.check.localIp,
    'check.relay': () => cfg.check.relay,
    'dkim.enabled': () => cfg.dkim.enabled,
    'reject.spam': () => cfg.reject.spam,
    'reject.authenticated': () => cfg.reject.authenticated,
    'rewrite_subject.enabled': () => cfg.rewriteSubject.enabled,
    'rmilter_headers.enabled': () => cfg.rmilterHeaders.enabled,
    'milter_envelope.enabled': () => cfg.milterEnvelope.enabled,
    'soft_reject.enabled': () => cfg.softReject.enabled,
    'smtp_message.enabled': () => cfg.smtpMessage.enabled,
    'greylist.enabled': () => cfg.greylist.enabled,
    'ham.ok': () => cfg.ham.ok,
    'defer.error': () => cfg.defer.error,
    'defer.timeout': () => cfg.defer.timeout,
    'request.pass_all': () => cfg.request.passAll,
    'request.raw': () => cfg.request.raw,
    'tls.reject_unauthorized': () => cfg.tls.rejectUnauthorized,
    'spam_headers.lda_json': () => cfg.spamHeaders.ldaJson,
    'spam_headers.remove_foreign': () => cfg.spamHeaders.removeForeign,
    'upstream.adaptive': () => cfg.upstream.adaptive,
  }
  const get = table[`${section}.${key}`] ?? (() => flag(key))
  return get()
}

/** The ini text setting one boolean ([tls] is read for an https:// server only). */
function boolIni(section: string, line: string): string {
  const https = section === 'tls' ? 'scheme = https\n' : ''
  return section === 'main' ? `${https}${line}\n` : `${https}[${section}]\n${line}\n`
}

const TRUE_WRITTEN = ['true', 'TRUE', 'Yes', 'ok', 'Enabled', 'on', 'ON', '1', ' true ']
const FALSE_WRITTEN = ['false', 'False', 'no', 'NO', 'disabled', 'off', 'Off', '0']
const TYPOS = ['flase', 'ture', 'tru', 'yes please', 'nein', '2', '-1', 'enable', 'disable', 'null', '']

describe('config: strict booleans', function () {
  for (const [section, key, dflt] of BOOLEANS) {
    const name = section === 'main' ? key : `${section}.${key}`
    it(`${name}: absent is ${dflt}, as in 1.6.x`, () => {
      assert.equal(boolOf(fromText(section === 'tls' ? 'scheme = https\n' : ''), section, key), dflt)
    })
    it(`${name}: each true word is true, each false word false, in any case`, () => {
      for (const w of TRUE_WRITTEN) readsAs(boolIni(section, `${key} = ${w}`), section, key, true, w)
      for (const w of FALSE_WRITTEN)
        assert.equal(boolOf(fromText(boolIni(section, `${key} = ${w}`)), section, key), false, w)
    })
    it(`${name}: a typo, an empty value or a bare key stops the load, naming the key`, () => {
      for (const w of TYPOS) refused(boolIni(section, `${key} = ${w}`), name)
      refused(boolIni(section, key), name)
    })
  }

  it('reads every word haraka-config knows exactly as 1.6.x did (declared booleans)', () => {
    const words = [...BOOL_WORDS.true, ...BOOL_WORDS.false, 'TRUE', 'Off', 'Enabled']
    for (const [section, key] of BOOLEANS) {
      for (const w of words) {
        const text = boolIni(section, `${key} = ${w}`)
        const was = asOneSixRead(text)[section]?.[key]
        readsAs(text, section, key, was, `${section}.${key} = ${w}`)
      }
    }
  })

  it('names the words it takes in the error', () => {
    const err = refused('[reject]\nspam = flase\n', 'reject.spam')
    assert.match(
      err.message,
      /"flase": expected true or false \(true: true, yes, ok, enabled, on, 1; false: false/,
    )
  })

  it('checks always_add_headers even when add_headers overrides it', () => {
    refused('add_headers = always\nalways_add_headers = ture\n', 'always_add_headers')
  })
})

describe('config: what reaches a URL, a socket or a Pool', function () {
  // [ini text, key named]
  const BAD: Array<[string, string]> = [
    ['scheme = https\nhost = rspamd.example.com:11334', 'host'],
    ['host = rspamd.example.com:11334', 'host'],
    ['host = rspamd%example', 'host'],
    ['host = rspamd#1', 'host'],
    ['host = rspamd?x', 'host'],
    ['host = [rspamd', 'host'],
    ['host = rspamd]', 'host'],
    ['host = [::1', 'host'],
    ['host = user@rspamd', 'host'],
    ['host = rspämd.example', 'host'],
    ['host = -rspamd', 'host'],
    ['host = rspamd..example', 'host'],
    ['host = ' + 'a'.repeat(64), 'host'],
    ['transport = undici\nhost = rspamd%x', 'host'],
    ['transport = undici\nhost = fe80::1%eth0', 'host'],
    ['scheme = https\nhost = xn--a.example', 'host'],
    // an xn-- label that does not decode: refused on every Node (Node 24's URL parser alone would take it)
    ['host = xn--a.example', 'host'],
    ['host = mail.xn--zz', 'host'],
    ['host = xn--a-.example', 'host'],
    ['servers = xn--.example:11334', 'servers'],
    ['servers = rspamd.example.com:11334:1', 'servers'],
    ['servers = https://rspamd%x:1', 'servers'],
    ['servers = rspamd#a', 'servers'],
    ['servers = [fe80::1%eth0]:11333, https://[fe80::1%eth0]:1', 'servers'],
    ['unix_socket = /run/rspamd sock', 'unix_socket'],
    ['servers = /run/a\u0001b', 'servers'],
    ['path = /checkv2?x', 'path'],
    ['path = /chéck', 'path'],
    ['path = /check\u0007', 'path'],
    ['connect_timeout = 1e10', 'connect_timeout'],
    ['timeout = 3000000', 'timeout'],
    ['[upstream]\ndead_time = 9999999', 'upstream.dead_time'],
    ['[upstream]\nmax_in_flight = -3', 'upstream.max_in_flight'],
    ['[upstream]\nmax_in_flight = some', 'upstream.max_in_flight'],
    ['scheme = https\n[tls]\nservername = bad name', 'tls.servername'],
    ['scheme = https\n[tls]\nservername = 192.0.2.1', 'tls.servername'],
    // header names and values node:http and undici throw at, on every request
    ['[auth]\nheader = X(Key)\nvalue = k', 'auth.header'],
    ['[request_headers]\nX@Key = v', 'request_headers.X@Key'],
    ['[request_headers]\nX/Key = v', 'request_headers.X/Key'],
    ['[request_headers]\nX-Tag = 東京', 'request_headers.X-Tag'],
    ['[request_headers]\nX-Tag = a\u0001b', 'request_headers.X-Tag'],
    ['[request]\nsettings = {"city":"東京"}', 'request.settings'],
    ['[auth]\nheader = X-Key\nvalue = k€y', 'auth.value'],
  ]
  for (const [text, key] of BAD) {
    it(`refuses ${JSON.stringify(text)}, naming ${key}`, () => {
      refused(text, key)
    })
  }

  const GOOD: Array<[string, string]> = [
    ['host = rspamd.example.com', 'http://rspamd.example.com:11333'],
    ['host = rspamd_1', 'http://rspamd_1:11333'],
    ['host = rspamd.example.com.', 'http://rspamd.example.com.:11333'],
    ['host = xn--mnchen-3ya.example', 'http://xn--mnchen-3ya.example:11333'],
    ['scheme = https\nhost = XN--MNCHEN-3YA.example', 'https://XN--MNCHEN-3YA.example:11333'],
    ['scheme = https\nhost = [2001:db8::1]', 'https://[2001:db8::1]:11333'],
    ['transport = undici\nhost = ::1', 'http://[::1]:11333'],
    ['host = fe80::1%eth0', 'http://[fe80::1%eth0]:11333'],
    ['servers = [fe80::1%eth0]:11334', 'http://[fe80::1%eth0]:11334'],
    ['servers = https://rspamd.example:443, /run/r.sock', 'https://rspamd.example:443, unix:/run/r.sock'],
  ]
  it('sends a header value of Latin-1 text (as 1.6.x did) and a tab', () => {
    const cfg = fromText('[request_headers]\nX-City = Zürich\nX-Tab = a\tb\n')
    assert.deepEqual(cfg.requestHeaders, { 'X-City': 'Zürich', 'X-Tab': 'a\tb' })
  })

  for (const [text, server] of GOOD) {
    it(`loads ${JSON.stringify(text)} and builds its client (${server})`, async () => {
      const client = new RspamdClient(fromText(text))
      try {
        assert.equal(client.server, server)
      } finally {
        await client.destroy()
      }
    })
  }
})

describe('config: secrets never printed', function () {
  const SECRET = 'hunter2-s3cret'
  // [ini text, env, key named]
  const CASES: Array<[label: string, text: string, env: NodeJS.ProcessEnv, key: string]> = [
    ['[auth] value with a NUL', `[auth]\nheader = X-Key\nvalue = ${SECRET}\u0000x`, {}, 'auth.value'],
    [
      '[auth] basic_pass as a list',
      `[auth]\nbasic_user = u\nbasic_pass[] = ${SECRET}`,
      {},
      'auth.basic_pass',
    ],
    ['[auth] value as a list', `[auth]\nheader = X-Key\nvalue[] = ${SECRET}`, {}, 'auth.value'],
    [
      'value_env contents with a line break inside',
      '[auth]\nheader = X-Key\nvalue_env = KEY',
      { KEY: `${SECRET}\r\nX-Evil: 1` },
      'auth.value_env (KEY)',
    ],
    [
      'value_env contents with two newlines at the end',
      '[auth]\nheader = X-Key\nvalue_env = KEY',
      { KEY: `${SECRET}\n\n` },
      'auth.value_env (KEY)',
    ],
    [
      '[request_headers] value with a NUL',
      `[request_headers]\nX-Api-Key = ${SECRET}\u0000`,
      {},
      'request_headers.X-Api-Key',
    ],
    [
      '[request_headers] value on a bad name',
      `[request_headers]\nX-Api-Key: = ${SECRET}`,
      {},
      'request_headers.X-Api-Key:',
    ],
    ['credentials in a servers URL', `servers = https://haraka:${SECRET}@rspamd.example:1`, {}, 'servers'],
  ]
  for (const [label, text, env, key] of CASES) {
    it(`shows ${label} as <redacted, N bytes>`, () => {
      const err = refused(text, key, env)
      assert.doesNotMatch(err.message, /hunter2/)
      assert.doesNotMatch(String(err.value), /hunter2/)
      assert.match(err.message, /<redacted, \d+ bytes>/)
    })
  }

  it('counts the bytes of what it hides', () => {
    const err = refused('[auth]\nheader = X-Key\nvalue = é\u0000', 'auth.value')
    assert.match(err.message, /<redacted, 3 bytes>/)
  })

  it('accepts a value_env secret with one trailing newline (a Kubernetes secret file), as request.ts sends it', () => {
    for (const v of [`${SECRET}\n`, `${SECRET}\r\n`]) {
      const cfg = fromText('[auth]\nheader = X-Key\nvalue_env = KEY', { KEY: v })
      assert.equal(cfg.auth.valueEnv, 'KEY')
    }
  })
})

describe('rspamd-lda --config: the same rules', function () {
  it('exits 78 naming the key for a boolean typo', async () => {
    const r = await ldaWith('host = 127.0.0.1\nport = 1\n[defer]\nerror = ture\n')
    assert.equal(r.code, 78)
    assert.match(r.stderr, /rspamd\.ini: defer\.error = "ture": expected true or false/)
  })

  it('exits 78 naming upstream.max_in_flight for a bad value, as the plugin refuses it', async () => {
    const r = await ldaWith('host = 127.0.0.1\nport = 1\n[upstream]\nmax_in_flight = 1.5\n')
    assert.equal(r.code, 78)
    assert.match(r.stderr, /rspamd\.ini: upstream\.max_in_flight = "?1\.5"?: expected a whole number/)
  })

  it('exits 78 naming host for the https host:port typo', async () => {
    const r = await ldaWith('scheme = https\nhost = rspamd.example.com:11334\n')
    assert.equal(r.code, 78)
    assert.match(r.stderr, /rspamd\.ini: host = /)
  })

  it('never writes a secret to stderr', async () => {
    const secret = '[auth]\nheader = X-Key\nvalue_env = KEY\n'
    const r = await ldaWith(`host = 127.0.0.1\nport = 1\n${secret}`, { KEY: 'hunter2-s3cret\u0000' })
    assert.equal(r.code, 78)
    assert.doesNotMatch(r.stderr, /hunter2/)
    assert.match(r.stderr, /auth\.value_env \(KEY\) = "<redacted, 15 bytes>"/)
    // a line haraka-config cannot read, in [auth]: by its number, not its text
    const bad = await ldaWith('host = 127.0.0.1\n[auth]\nhunter2 s3cret\n')
    assert.equal(bad.code, 78)
    assert.doesNotMatch(bad.stderr, /hunter2/)
    assert.match(bad.stderr, /line 3 is not key = value/)
    // a name haraka-config skips as unsafe: refused too, by its line
    const unsafe = await ldaWith('host = 127.0.0.1\n[auth]\nconstructor = hunter2\n')
    assert.equal(unsafe.code, 78)
    assert.doesNotMatch(unsafe.stderr, /hunter2/)
    assert.match(unsafe.stderr, /line 3 has an unsafe key/)
  })
})
