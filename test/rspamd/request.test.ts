// src/rspamd/request.ts: sender facts + Config → rspamd request headers. One row per header, then 500
// random hostile envelopes: every value goes out as single-line text, never as an object.

import assert from 'node:assert/strict'
import { type Config, parseConfig } from '../../src/config'
import { buildRequestHeaders, type Envelope, type RequestHeaders } from '../../src/rspamd/request'
import { prng } from '../support/prng'

const BASE = parseConfig({}, {})

function cfgWith(patch: {
  request?: Partial<Config['request']>
  auth?: Partial<Config['auth']>
  requestHeaders?: Config['requestHeaders']
}): Config {
  return {
    ...BASE,
    request: { ...BASE.request, ...patch.request },
    auth: { ...BASE.auth, ...patch.auth },
    requestHeaders: { ...BASE.requestHeaders, ...patch.requestHeaders },
  }
}

function basic(user: string, pass: string): string {
  return `Basic ${Buffer.from(`${user}:${pass}`, 'utf8').toString('base64')}`
}

interface Row {
  label: string
  env?: Partial<Envelope>
  cfg?: Config
  processEnv?: NodeJS.ProcessEnv
  /** every header expected, exactly */
  expected: RequestHeaders
}

const ROWS: Row[] = [
  { label: 'nothing for an empty envelope and the defaults', expected: {} },
  { label: 'IP', env: { ip: '192.0.2.1' }, expected: { IP: '192.0.2.1' } },
  { label: 'IP (v6)', env: { ip: '2001:db8::1' }, expected: { IP: '2001:db8::1' } },
  { label: 'Hostname', env: { hostname: 'mx.example.net' }, expected: { Hostname: 'mx.example.net' } },
  { label: 'Helo', env: { helo: 'mail.example.net' }, expected: { Helo: 'mail.example.net' } },
  { label: 'From', env: { mailFrom: 'alice@example.org' }, expected: { From: 'alice@example.org' } },
  { label: 'From <> for the null sender', env: { mailFrom: '' }, expected: { From: '<>' } },
  { label: 'no From when the sender is unknown', env: { mailFrom: undefined }, expected: {} },
  {
    label: 'one Rcpt and Deliver-To for a single recipient',
    env: { rcpts: ['bob@example.com'] },
    expected: { Rcpt: ['bob@example.com'], 'Deliver-To': 'bob@example.com' },
  },
  {
    label: 'one Rcpt per recipient and no Deliver-To for two',
    env: { rcpts: ['bob@example.com', 'carol@example.com'] },
    expected: { Rcpt: ['bob@example.com', 'carol@example.com'] },
  },
  {
    label: 'one Rcpt per recipient for five, in order',
    env: { rcpts: ['a@x.test', 'b@x.test', 'c@x.test', 'd@x.test', 'e@x.test'] },
    expected: { Rcpt: ['a@x.test', 'b@x.test', 'c@x.test', 'd@x.test', 'e@x.test'] },
  },
  {
    label: 'Queue-Id',
    env: { queueId: '8C4D1E5F-2A3B-4C5D-9E8F-0A1B2C3D4E5F.1' },
    expected: { 'Queue-Id': '8C4D1E5F-2A3B-4C5D-9E8F-0A1B2C3D4E5F.1' },
  },
  { label: 'User', env: { user: 'alice' }, expected: { User: 'alice' } },
  {
    label: 'TLS-Cipher and TLS-Version',
    env: { tlsCipher: 'TLS_AES_256_GCM_SHA384', tlsVersion: 'TLSv1.3' },
    expected: { 'TLS-Cipher': 'TLS_AES_256_GCM_SHA384', 'TLS-Version': 'TLSv1.3' },
  },
  { label: 'MTA-Name', env: { mtaName: 'mx1.example.org' }, expected: { 'MTA-Name': 'mx1.example.org' } },
  {
    label: 'Settings-ID',
    cfg: cfgWith({ request: { settingsId: 'outbound' } }),
    expected: { 'Settings-ID': 'outbound' },
  },
  {
    label: 'Settings',
    cfg: cfgWith({ request: { settings: '{"actions":{"reject":20}}' } }),
    expected: { Settings: '{"actions":{"reject":20}}' },
  },
  { label: 'Pass: all', cfg: cfgWith({ request: { passAll: true } }), expected: { Pass: 'all' } },
  { label: 'Raw: yes', cfg: cfgWith({ request: { raw: true } }), expected: { Raw: 'yes' } },
  {
    label: 'Flags for one flag',
    cfg: cfgWith({ request: { flags: ['milter'] } }),
    expected: { Flags: 'milter' },
  },
  {
    label: 'Flags joined by a comma',
    cfg: cfgWith({ request: { flags: ['groups', 'milter', 'zstd'] } }),
    expected: { Flags: 'groups,milter,zstd' },
  },
  {
    label: 'URL-Format',
    cfg: cfgWith({ request: { urlFormat: 'extended' } }),
    expected: { 'URL-Format': 'extended' },
  },
  {
    label: 'Authorization Basic for user and password',
    cfg: cfgWith({ auth: { basicUser: 'haraka', basicPass: 'p@ss:w0rd' } }),
    expected: { Authorization: basic('haraka', 'p@ss:w0rd') },
  },
  {
    label: 'Authorization Basic with an empty password',
    cfg: cfgWith({ auth: { basicUser: 'haraka' } }),
    expected: { Authorization: basic('haraka', '') },
  },
  {
    label: 'Authorization Basic for a UTF-8 password',
    cfg: cfgWith({ auth: { basicUser: 'haraka', basicPass: 'pässwörd' } }),
    expected: { Authorization: 'Basic aGFyYWthOnDDpHNzd8O2cmQ=' },
  },
  {
    label: 'a custom auth header with value',
    cfg: cfgWith({ auth: { header: 'X-Api-Key', value: 'k3y' } }),
    expected: { 'X-Api-Key': 'k3y' },
  },
  {
    label: 'a custom auth header from value_env',
    cfg: cfgWith({ auth: { header: 'X-Api-Key', valueEnv: 'RSPAMD_KEY' } }),
    processEnv: { RSPAMD_KEY: 'fr0m-env' },
    expected: { 'X-Api-Key': 'fr0m-env' },
  },
  {
    label: 'value_env over value',
    cfg: cfgWith({ auth: { header: 'X-Api-Key', value: 'k3y', valueEnv: 'RSPAMD_KEY' } }),
    processEnv: { RSPAMD_KEY: 'fr0m-env' },
    expected: { 'X-Api-Key': 'fr0m-env' },
  },
  {
    label: 'value when value_env is not set',
    cfg: cfgWith({ auth: { header: 'X-Api-Key', value: 'k3y', valueEnv: 'RSPAMD_KEY' } }),
    processEnv: {},
    expected: { 'X-Api-Key': 'k3y' },
  },
  {
    label: 'no custom auth header without a value',
    cfg: cfgWith({ auth: { header: 'X-Api-Key', valueEnv: 'RSPAMD_KEY' } }),
    processEnv: {},
    expected: {},
  },
  {
    label: 'a value_env holding CR LF as one line',
    cfg: cfgWith({ auth: { header: 'X-Api-Key', valueEnv: 'RSPAMD_KEY' } }),
    processEnv: { RSPAMD_KEY: 'k3y\r\nX-Evil: 1' },
    expected: { 'X-Api-Key': 'k3y X-Evil: 1' },
  },
  {
    label: 'every [request_headers] entry',
    cfg: cfgWith({ requestHeaders: { 'X-Tenant': 'acme', 'X-Level': '3' } }),
    expected: { 'X-Tenant': 'acme', 'X-Level': '3' },
  },
  {
    label: 'values with CR, LF and NUL collapsed to single-line text',
    env: { helo: 'evil\r\nIP: 10.0.0.1', hostname: 'a\0b', user: '\r\n' },
    expected: { Helo: 'evil IP: 10.0.0.1', Hostname: 'a b' },
  },
  {
    label: 'a null sender with only whitespace as <>',
    env: { mailFrom: ' \r\n ' },
    expected: { From: '<>' },
  },
  {
    label: 'recipients that are empty left out, Deliver-To for the one left',
    env: { rcpts: ['', 'bob@example.com', '\r\n'] },
    expected: { Rcpt: ['bob@example.com'], 'Deliver-To': 'bob@example.com' },
  },
  {
    label: 'every envelope header together',
    env: {
      ip: '192.0.2.1',
      hostname: 'mx.example.net',
      helo: 'mail.example.net',
      mailFrom: 'alice@example.org',
      rcpts: ['bob@example.com'],
      queueId: 'Q1',
      user: 'alice',
      tlsCipher: 'TLS_AES_128_GCM_SHA256',
      tlsVersion: 'TLSv1.3',
      mtaName: 'mx1',
    },
    expected: {
      IP: '192.0.2.1',
      Hostname: 'mx.example.net',
      Helo: 'mail.example.net',
      From: 'alice@example.org',
      Rcpt: ['bob@example.com'],
      'Deliver-To': 'bob@example.com',
      'Queue-Id': 'Q1',
      User: 'alice',
      'TLS-Cipher': 'TLS_AES_128_GCM_SHA256',
      'TLS-Version': 'TLSv1.3',
      'MTA-Name': 'mx1',
    },
  },
]

const CHARS = [
  'a',
  'Z',
  '0',
  '@',
  '.',
  ' ',
  '\t',
  '\r',
  '\n',
  '\r\n',
  '\0',
  '\x1b',
  '\x7f',
  'é',
  '<',
  '>',
  ':',
]

function randomValue(rnd: () => number): unknown {
  const pick = rnd()
  if (pick < 0.55) {
    let s = ''
    const len = Math.floor(rnd() * 12)
    for (let i = 0; i < len; i++) s += CHARS[Math.floor(rnd() * CHARS.length)]
    return s
  }
  const others: unknown[] = [
    undefined,
    null,
    {},
    { toString: () => 'x\r\ny' },
    [],
    ['a', 'b'],
    42,
    Number.NaN,
    true,
    Symbol('s'),
    new Date(0),
  ]
  return others[Math.floor(rnd() * others.length)]
}

const FIELDS = [
  'ip',
  'hostname',
  'helo',
  'mailFrom',
  'queueId',
  'user',
  'tlsCipher',
  'tlsVersion',
  'mtaName',
] as const

function randomEnvelope(rnd: () => number): Envelope {
  const env: Record<string, unknown> = {}
  for (const f of FIELDS) if (rnd() < 0.8) env[f] = randomValue(rnd)
  const rcpts: unknown[] = []
  const n = Math.floor(rnd() * 5)
  for (let i = 0; i < n; i++) rcpts.push(randomValue(rnd))
  env.rcpts = rcpts
  // the envelope comes from Haraka objects: at run time a field can be anything
  return env as unknown as Envelope
}

describe('request', function () {
  describe('buildRequestHeaders()', function () {
    for (const row of ROWS) {
      it(`sends ${row.label}`, () => {
        const env: Envelope = { rcpts: [], ...row.env }
        const got = buildRequestHeaders(env, row.cfg ?? BASE, row.processEnv ?? {})
        assert.deepEqual(got, row.expected)
      })
    }

    it('does not mutate the envelope or the config', () => {
      const env: Envelope = { rcpts: ['a@x.test', 'b@x.test'], helo: 'h\r\n' }
      const cfg = cfgWith({ request: { flags: ['groups'] }, requestHeaders: { 'X-A': '1' } })
      const envCopy = structuredClone(env)
      const cfgCopy = structuredClone(cfg)
      buildRequestHeaders(env, cfg, {})
      assert.deepEqual(env, envCopy)
      assert.deepEqual(cfg, cfgCopy)
    })
  })

  describe('500 random hostile envelopes (seeded)', function () {
    const SEED = 0x5eed
    const rnd = prng(SEED)
    const cfg = cfgWith({
      request: { settingsId: 's', flags: ['groups'], passAll: true, raw: true },
      auth: { basicUser: 'u', basicPass: 'p', header: 'X-Api-Key', valueEnv: 'RSPAMD_KEY' },
      requestHeaders: { 'X-Tenant': 'acme' },
    })
    const cases: Array<{ env: Envelope; processEnv: NodeJS.ProcessEnv; headers: RequestHeaders }> = []
    for (let i = 0; i < 500; i++) {
      const env = randomEnvelope(rnd)
      const secret = randomValue(rnd)
      const processEnv: NodeJS.ProcessEnv = typeof secret === 'string' ? { RSPAMD_KEY: secret } : {}
      cases.push({ env, processEnv, headers: buildRequestHeaders(env, cfg, processEnv) })
    }
    const where = (i: number) => `case ${i} (seed ${SEED})`

    it('gives every header a string or an array of strings', () => {
      cases.forEach(({ headers }, i) => {
        for (const [name, v] of Object.entries(headers)) {
          const ok = typeof v === 'string' || (Array.isArray(v) && v.every((x) => typeof x === 'string'))
          assert.ok(ok, `${where(i)}: ${name} is ${typeof v}`)
        }
      })
    })

    it('never sends CR, LF or NUL in a header value', () => {
      cases.forEach(({ headers }, i) => {
        for (const [name, v] of Object.entries(headers)) {
          for (const s of [v].flat())
            assert.doesNotMatch(s, /[\r\n\0]/, `${where(i)}: ${name}=${JSON.stringify(s)}`)
        }
      })
    })

    it('never sends an object as [object Object]', () => {
      cases.forEach(({ headers }, i) => {
        for (const [name, v] of Object.entries(headers)) {
          for (const s of [v].flat()) assert.ok(!s.includes('[object'), `${where(i)}: ${name}=${s}`)
        }
      })
    })

    it('never sends an empty value', () => {
      cases.forEach(({ headers }, i) => {
        for (const [name, v] of Object.entries(headers)) {
          if (Array.isArray(v)) assert.ok(v.length > 0, `${where(i)}: ${name} is an empty list`)
          for (const s of [v].flat()) assert.notEqual(s.trim(), '', `${where(i)}: ${name} is empty`)
        }
      })
    })

    it('sends Deliver-To exactly when one Rcpt is sent, equal to it', () => {
      cases.forEach(({ headers }, i) => {
        const rcpt = headers.Rcpt
        const one = Array.isArray(rcpt) && rcpt.length === 1
        assert.equal('Deliver-To' in headers, one, where(i))
        if (one) assert.equal(headers['Deliver-To'], rcpt[0], where(i))
      })
    })

    it('always sends the configured headers', () => {
      cases.forEach(({ headers }, i) => {
        assert.equal(headers['Settings-ID'], 's', where(i))
        assert.equal(headers.Flags, 'groups', where(i))
        assert.equal(headers.Pass, 'all', where(i))
        assert.equal(headers.Raw, 'yes', where(i))
        assert.equal(headers['X-Tenant'], 'acme', where(i))
        assert.equal(headers.Authorization, basic('u', 'p'), where(i))
      })
    })
  })
})
