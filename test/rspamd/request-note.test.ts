// The request note other plugins leave for rspamd (transaction.notes.rspamd_request, read by
// readRequestNote() in src/rspamd/request.ts) and [request] settings_id_outbound: each entry checked
// by the same function as its config twin, bounded in count and size, a bad entry dropped with a
// problem naming it, the plugin's own headers out of its reach, and never a throw.

import assert from 'node:assert/strict'
import { type Config, ConfigError, parseConfig } from '../../src/config'
import { requestHeaderEntry, settingsEntry } from '../../src/config/request'
import {
  buildRequestHeaders,
  NOTE_MAX_BYTES,
  NOTE_MAX_HEADERS,
  NOTE_MAX_PROBLEMS,
  NOTE_MAX_VALUE,
  readRequestNote,
} from '../../src/rspamd/request'

const BASE = parseConfig({}, {})
const ENV = { ip: '192.0.2.1', mailFrom: 'alice@example.org', rcpts: ['bob@example.net'], queueId: 'Q1' }

function headersFor(note: unknown, cfg: Config = BASE, outbound = false) {
  const read = readRequestNote(note, cfg)
  return { ...read, headers: buildRequestHeaders({ ...ENV, outbound }, cfg, {}, read.note) }
}

describe('rspamd/request: the request note of other plugins', function () {
  it('sends its headers, its settings object as ASCII JSON and its settings_id', () => {
    const { headers, problems } = headersFor({
      headers: { 'X-Geo-Country': 'NZ', 'X-Karma-Score': 3, 'X-Empty': '', 'X-Off': false },
      settings: { symbols_disabled: ['X'], note: 'café' },
      settings_id: 'dkim_only',
    })
    assert.deepEqual(problems, [])
    assert.equal(headers['X-Geo-Country'], 'NZ')
    assert.equal(headers['X-Karma-Score'], '3')
    assert.equal('X-Empty' in headers, false, 'an empty value sends nothing, as in [request_headers]')
    assert.equal('X-Off' in headers, false)
    assert.equal(headers.Settings, '{"symbols_disabled":["X"],"note":"caf\\u00e9"}')
    assert.deepEqual(JSON.parse(String(headers.Settings)), { symbols_disabled: ['X'], note: 'café' })
    assert.equal(headers['Settings-ID'], 'dkim_only')
    assert.equal(headers.From, 'alice@example.org')
  })

  it('takes settings as text (JSON or UCL) as [request] settings does', () => {
    const { headers, problems } = headersFor({ settings: '{symbols_disabled = [X]}' })
    assert.deepEqual(problems, [])
    assert.equal(headers.Settings, '{symbols_disabled = [X]}')
  })

  it('wins over [request] settings and settings_id for its message only', () => {
    const cfg = parseConfig({ request: { settings: '{"a":1}', settings_id: 'inbound' } }, {})
    assert.equal(headersFor({ settings: { b: 2 }, settings_id: 'special' }, cfg).headers.Settings, '{"b":2}')
    assert.equal(headersFor({ settings_id: 'special' }, cfg).headers['Settings-ID'], 'special')
    const none = headersFor(undefined, cfg).headers
    assert.equal(none.Settings, '{"a":1}')
    assert.equal(none['Settings-ID'], 'inbound')
  })

  it('reads no note (undefined, null) without a problem, and a note that is not an object with one', () => {
    for (const n of [undefined, null]) assert.deepEqual(readRequestNote(n, BASE).problems, [])
    for (const n of ['X-A: b', 42, ['X-A', 'b'], true]) {
      const { note, problems } = readRequestNote(n, BASE)
      assert.deepEqual(note.headers, [])
      assert.equal(problems.length, 1)
      assert.match(problems[0], /^rspamd_request: expected an object/)
    }
    const { problems } = readRequestNote({ headers: ['X-A'] }, BASE)
    assert.match(problems[0], /^rspamd_request\.headers: expected an object/)
  })

  it('cannot override a header the plugin sets, in any case, even one this message does not have', () => {
    const cfg = parseConfig(
      { auth: { header: 'X-Api-Key', value: 'secret' }, request_headers: { 'MTA-Tag': 'edge' } },
      {},
    )
    const { headers, problems } = headersFor(
      {
        headers: {
          From: 'mallory@example.com',
          rcpt: 'x@example.com',
          IP: '10.0.0.1',
          'queue-id': 'forged',
          HELO: 'forged',
          User: 'admin', // no User for this message: a note must not make it look authenticated
          Authorization: 'Basic Zm9vOmJhcg==',
          'x-api-key': 'other',
          'mta-tag': 'other',
          'Content-Length': '0',
          'Settings-ID': 'x',
          'X-Fine': 'yes',
        },
      },
      cfg,
    )
    assert.equal(headers.From, 'alice@example.org')
    assert.deepEqual(headers.Rcpt, ['bob@example.net'])
    assert.equal(headers.IP, '192.0.2.1')
    assert.equal(headers['Queue-Id'], 'Q1')
    assert.equal(headers['X-Api-Key'], 'secret')
    assert.equal(headers['MTA-Tag'], 'edge')
    for (const name of [
      'rcpt',
      'queue-id',
      'HELO',
      'User',
      'x-api-key',
      'mta-tag',
      'Content-Length',
      'Settings-ID',
    ])
      assert.equal(name in headers, false, `${name} must not be sent`)
    assert.equal(headers['X-Fine'], 'yes')
    // 11 refused: the first NOTE_MAX_PROBLEMS listed, then the count
    assert.equal(problems.length, NOTE_MAX_PROBLEMS + 1)
    assert.ok(problems.slice(0, -1).every((p) => /a header the plugin or rspamd\.ini sets/.test(p)))
    assert.equal(problems.at(-1), 'rspamd_request: 1 more entries dropped')
    assert.match(problems[0], /^rspamd_request\.headers\["From"\]: /)
  })

  it('drops a value with CR, LF or NUL, and a name that is not an HTTP token, naming each', () => {
    const { headers, problems } = headersFor({
      headers: {
        'X-Split': 'a\r\nX-Injected: 1',
        'X-Nul': 'a\0b',
        'X-Wide': 'Ω',
        'Bad Name': 'v',
        'X-Inj\r\nFrom': 'v',
        'X-Obj': { a: 1 },
        'X-NaN': Number.NaN,
        'X-Good': 'ok',
      },
    })
    assert.deepEqual(
      Object.keys(headers).filter((k) => k.startsWith('X-') || k.includes(' ')),
      ['X-Good'],
    )
    assert.equal(problems.length, 7)
    assert.match(problems[0], /\["X-Split"\]: CR, LF or NUL in a header value; dropped$/)
    assert.match(problems[1], /\["X-Nul"\]: CR, LF or NUL/)
    assert.match(problems[2], /\["X-Wide"\]: a control character or one past U\+00FF/)
    assert.match(problems[3], /\["Bad Name"\]: not a valid HTTP header name/)
    // the name is quoted: its CR LF are \r\n in the text, and the log escapes the text again
    assert.ok(problems[4].includes('["X-Inj\\r\\nFrom"]'))
    assert.ok(!/[\r\n]/.test(problems.join('')))
    assert.match(problems[5], /\["X-Obj"\]: expected text/)
    assert.match(problems[6], /\["X-NaN"\]: expected text/)
  })

  it('drops bad settings: not JSON-able, not an object, not one line', () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    const cases: [unknown, RegExp][] = [
      [cyclic, /settings: cannot be written as JSON: .*circular/i],
      [{ n: 10n }, /settings: cannot be written as JSON: .*BigInt/i],
      [
        {
          toJSON() {
            throw new Error('boom')
          },
        },
        /settings: cannot be written as JSON: boom/,
      ],
      [{ toJSON: () => undefined }, /settings: cannot be written as JSON; dropped/],
      [['symbols_disabled'], /settings: expected an object of settings or its JSON text/],
      [42, /settings: expected an object of settings or its JSON text/],
      ['{"a":\n1}', /settings: CR, LF or NUL in a header value/],
      ['{"a":"\u0001"}', /settings: a control character/],
    ]
    for (const [settings, want] of cases) {
      const { headers, problems } = headersFor({ settings, headers: { 'X-Still': 'sent' } })
      assert.equal(headers.Settings, undefined)
      assert.equal(problems.length, 1, String(problems))
      assert.match(problems[0], want)
      assert.equal(headers['X-Still'], 'sent', 'the rest of the note is still sent')
    }
    const id = headersFor({ settings_id: 'a\nb' })
    assert.equal(id.headers['Settings-ID'], undefined)
    assert.match(id.problems[0], /^rspamd_request\.settings_id: CR, LF or NUL/)
    assert.match(headersFor({ settings_id: { id: 'x' } }).problems[0], /settings_id: expected the name/)
  })

  it(`reads at most ${NOTE_MAX_HEADERS} entries of 10⁵ headers, with ${NOTE_MAX_PROBLEMS} problems listed and a count`, () => {
    const many: Record<string, string> = {}
    for (let i = 0; i < 100_000; i++) many[`X-H${i}`] = `v${i}`
    const t0 = process.hrtime.bigint()
    const { note, problems } = readRequestNote({ headers: many }, BASE)
    const ms = Number(process.hrtime.bigint() - t0) / 1e6
    assert.equal(note.headers.length, NOTE_MAX_HEADERS)
    assert.deepEqual(note.headers[0], ['X-H0', 'v0'])
    assert.deepEqual(problems, [
      `rspamd_request.headers: more than ${NOTE_MAX_HEADERS} entries; the rest dropped`,
    ])
    assert.ok(ms < 1000, `${ms} ms`)

    const bad: Record<string, string> = {}
    for (let i = 0; i < 100_000; i++) bad[`X-B${i}`] = 'a\nb'
    const worst = readRequestNote({ headers: bad }, BASE)
    assert.equal(worst.note.headers.length, 0)
    assert.equal(worst.problems.length, NOTE_MAX_PROBLEMS + 1)
    assert.equal(
      worst.problems.at(-1),
      `rspamd_request: ${NOTE_MAX_HEADERS + 1 - NOTE_MAX_PROBLEMS} more entries dropped`,
    )
  })

  it('drops a megabyte value, megabyte settings, and whatever takes the note past its byte bound', () => {
    const mb = 'x'.repeat(1024 * 1024)
    const { headers, problems } = headersFor({
      headers: { 'X-Big': mb, 'X-Small': 'ok' },
      settings: `{"a":"${mb}"}`,
      settings_id: mb,
    })
    assert.equal(headers['X-Big'], undefined)
    assert.equal(headers.Settings, undefined)
    assert.equal(headers['Settings-ID'], undefined)
    assert.equal(headers['X-Small'], 'ok')
    assert.equal(problems.length, 3)
    assert.ok(problems.every((p) => p.length < 200 && p.includes(`over ${NOTE_MAX_VALUE}`)))

    const chunk = 'y'.repeat(NOTE_MAX_VALUE - 10)
    const fill: Record<string, string> = {}
    for (let i = 0; i < 10; i++) fill[`X-F${i}`] = chunk
    const filled = readRequestNote({ headers: fill }, BASE)
    let sent = 0
    for (const [n, v] of filled.note.headers) sent += n.length + v.length
    assert.ok(sent <= NOTE_MAX_BYTES, `${sent} bytes sent`)
    assert.equal(filled.note.headers.length, Math.floor(NOTE_MAX_BYTES / (chunk.length + 5)))
    assert.match(filled.problems[0], new RegExp(`the note is over ${NOTE_MAX_BYTES} bytes with it`))
  })

  it('drops a header named twice in different case', () => {
    const { note, problems } = readRequestNote({ headers: { 'X-Tag': 'a', 'x-tag': 'b' } }, BASE)
    assert.deepEqual(note.headers, [['X-Tag', 'a']])
    assert.match(problems[0], /\["x-tag"\]: the note names this header twice/)
  })

  it('never throws: a getter or a proxy that throws drops the note with a problem', () => {
    const getter = {
      get headers(): unknown {
        throw new Error('getter says no')
      },
    }
    const proxy = new Proxy(
      {},
      {
        ownKeys() {
          throw new Error('proxy says no')
        },
      },
    )
    for (const raw of [getter, { headers: proxy }]) {
      const { note, problems } = readRequestNote(raw, BASE)
      assert.deepEqual(note.headers, [])
      assert.equal(problems.length, 1)
      assert.match(problems[0], /^rspamd_request: could not be read: .* says no; the note is dropped$/)
    }
  })

  it('checks a header value and settings with the very function of [request_headers] and [request] settings', () => {
    const values: unknown[] = ['ok', 'a\rb', 'a\nb', 'a\0b', 'tab\there', 'Ω', 'é', 7, true, '', false, null]
    for (const v of values) {
      let configError: string | undefined
      try {
        parseConfig({ request_headers: { 'X-V': v } }, {})
      } catch (err) {
        assert.ok(err instanceof ConfigError)
        configError = err.message
      }
      const entry = requestHeaderEntry('X-V', v)
      const noted = readRequestNote({ headers: { 'X-V': v } }, BASE)
      assert.equal(configError !== undefined, !entry.ok, `config and entry agree on ${JSON.stringify(v)}`)
      assert.equal(noted.problems.length > 0, !entry.ok, `note and entry agree on ${JSON.stringify(v)}`)
      if (!entry.ok)
        assert.ok(configError?.includes(entry.problem) && noted.problems[0].includes(entry.problem))
    }
    for (const s of ['{"a":1}', '{a = 1}', 'a\nb', '\u0001']) {
      let configError = false
      try {
        parseConfig({ request: { settings: s } }, {})
      } catch {
        configError = true
      }
      assert.equal(configError, !settingsEntry(s).ok, JSON.stringify(s))
      assert.equal(readRequestNote({ settings: s }, BASE).problems.length > 0, configError, JSON.stringify(s))
    }
  })
})

describe('rspamd/request: [request] settings_id_outbound', function () {
  it('sends settings_id_outbound for an authenticated or relaying sender, settings_id for the rest', () => {
    const cfg = parseConfig({ request: { settings_id: 'inbound', settings_id_outbound: 'dkim_sign' } }, {})
    assert.equal(cfg.request.settingsIdOutbound, 'dkim_sign')
    assert.equal(headersFor(undefined, cfg, true).headers['Settings-ID'], 'dkim_sign')
    assert.equal(headersFor(undefined, cfg, false).headers['Settings-ID'], 'inbound')
    assert.equal(headersFor({ settings_id: 'note' }, cfg, true).headers['Settings-ID'], 'note')
  })

  it('falls back to settings_id when unset, and sends none when neither is set', () => {
    const inbound = parseConfig({ request: { settings_id: 'inbound' } }, {})
    assert.equal(headersFor(undefined, inbound, true).headers['Settings-ID'], 'inbound')
    const outboundOnly = parseConfig({ request: { settings_id_outbound: 'out' } }, {})
    assert.equal(headersFor(undefined, outboundOnly, false).headers['Settings-ID'], undefined)
    assert.equal(headersFor(undefined, outboundOnly, true).headers['Settings-ID'], 'out')
    assert.equal(headersFor(undefined, BASE, true).headers['Settings-ID'], undefined)
  })

  it('refuses a value HTTP cannot send, naming request.settings_id_outbound', () => {
    assert.throws(
      () => parseConfig({ request: { settings_id_outbound: 'a\nb' } }, {}),
      (err: unknown) => err instanceof ConfigError && /request\.settings_id_outbound/.test(err.message),
    )
  })
})
