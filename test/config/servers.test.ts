// src/config/index.ts, the server pool keys new in 2.x: `servers`, `connect_timeout` and `[upstream]`
// (rmilter's servers, connect_timeout, error_time, dead_time and max_errors).

import assert from 'node:assert/strict'
import { type Config, ConfigError, type Target, parseConfig, parseServer, sameTarget } from '../../src/config'

const tcp = (host: string, port = 11333, scheme: 'http' | 'https' = 'http'): Target => ({
  kind: 'tcp',
  scheme,
  host,
  port,
})

const SERVER_ENTRIES: Array<[entry: string, expected: Target]> = [
  ['rspamd.example.net', tcp('rspamd.example.net')],
  ['127.0.0.1:11343', tcp('127.0.0.1', 11343)],
  ['[::1]:11333', tcp('::1')],
  ['[::1]', tcp('::1')],
  ['[2001:db8::5]:1', tcp('2001:db8::5', 1)],
  ['/run/rspamd/normal.sock', { kind: 'unix', socketPath: '/run/rspamd/normal.sock' }],
  ['unix:/run/rspamd/normal.sock', { kind: 'unix', socketPath: '/run/rspamd/normal.sock' }],
  ['http://10.0.0.2:11333', tcp('10.0.0.2')],
  ['http://10.0.0.2:11333/', tcp('10.0.0.2')],
  ['https://scan.example.net:443', tcp('scan.example.net', 443, 'https')],
  ['HTTPS://[::1]:8443', tcp('::1', 8443, 'https')],
  ['https://scan.example.net', tcp('scan.example.net', 443, 'https')],
  ['http://scan.example.net', tcp('scan.example.net')],
]

const BAD_ENTRIES: Array<[entry: string, why: RegExp]> = [
  ['::1', /IPv6 address needs brackets/],
  ['2001:db8::5:11333', /IPv6 address needs brackets/],
  ['host:0', /bad port "0"/],
  ['host:65536', /bad port/],
  ['host:11333x', /bad port/],
  ['host:', /bad port ""/],
  [':11333', /expected a host name/],
  ['ftp://host:21', /unknown scheme ftp/],
  ['http://host:11333/checkv2', /names a server only/],
  ['user@host:11333', /expected a host name/],
  ['[::1', /expected a host name|brackets/],
  ['/run/my socket', /spaces/],
]

function servers(value: unknown, extra: Record<string, unknown> = {}): Config {
  return parseConfig({ main: { servers: value, ...extra } })
}

describe('config: servers, connect_timeout, [upstream]', function () {
  describe('one servers entry', function () {
    for (const [entry, expected] of SERVER_ENTRIES) {
      it(`reads ${JSON.stringify(entry)}`, () => assert.deepEqual(parseServer(entry), expected))
    }
    for (const [entry, why] of BAD_ENTRIES) {
      it(`refuses ${JSON.stringify(entry)}`, () => {
        const r = parseServer(entry)
        assert.equal(typeof r, 'string')
        assert.match(String(r), why)
      })
    }
    it('uses the scheme key for entries without a scheme of their own', () => {
      const c = servers('a:1, http://b:2', { scheme: 'https' })
      assert.deepEqual(c.targets, [tcp('a', 1, 'https'), tcp('b', 2, 'http')])
    })
  })

  describe('the list', function () {
    it('replaces host, port and unix_socket when set, and target is the first server', () => {
      const c = servers(' 127.0.0.1:1 ,[::1]:2,, /run/r.sock ', { host: 'other', port: 9, unix_socket: '/x' })
      assert.deepEqual(c.targets, [
        tcp('127.0.0.1', 1),
        tcp('::1', 2),
        { kind: 'unix', socketPath: '/run/r.sock' },
      ])
      assert.deepEqual(c.target, tcp('127.0.0.1', 1))
    })
    it('accepts the list as an array too (haraka-config list syntax)', () => {
      assert.deepEqual(servers(['a:1', 'b:2']).targets, [tcp('a', 1), tcp('b', 2)])
    })
    it('falls back to host/port when empty', () => {
      const c = parseConfig({ main: { servers: ' , ', host: 'h', port: 7 } })
      assert.deepEqual(c.targets, [tcp('h', 7)])
    })
    it('is the one host/port target when not set', () => {
      assert.deepEqual(parseConfig({}).targets, [tcp('localhost')])
    })
    it('refuses a server listed twice, naming the entry', () => {
      assert.throws(() => servers('a:1, http://a:1'), /servers = .*"http:\/\/a:1" is listed twice/)
    })
    for (const [entry] of BAD_ENTRIES) {
      it(`names servers and the entry for ${JSON.stringify(entry)}`, () => {
        assert.throws(
          () => servers(`good:1, ${entry}`),
          (err: unknown) =>
            err instanceof ConfigError &&
            err.key === 'servers' &&
            err.message.includes(JSON.stringify(entry)),
        )
      })
    }
  })

  describe('connect_timeout and [upstream]', function () {
    it('defaults to rmilter’s: connect 1 s, error_time 10 s, dead_time 300 s, max_errors 10', () => {
      const c = parseConfig({})
      assert.equal(c.connectTimeout, 1)
      assert.deepEqual(c.upstream, {
        errorTime: 10,
        deadTime: 300,
        maxErrors: 10,
        maxInFlight: 0,
        adaptive: true,
      })
    })
    it('reads each key, fractions of seconds included', () => {
      const c = parseConfig({
        main: { connect_timeout: '0.25' },
        upstream: { error_time: '5', dead_time: 60, max_errors: '3', max_in_flight: '40', adaptive: 'false' },
      })
      assert.equal(c.connectTimeout, 0.25)
      assert.deepEqual(c.upstream, {
        errorTime: 5,
        deadTime: 60,
        maxErrors: 3,
        maxInFlight: 40,
        adaptive: false,
      })
    })
    it('reads max_in_flight = 0 as no number of the operator’s (adaptive up to the default ceiling)', () => {
      assert.equal(parseConfig({ upstream: { max_in_flight: '0' } }).upstream.maxInFlight, 0)
      assert.equal(parseConfig({ upstream: { max_in_flight: 12 } }).upstream.maxInFlight, 12)
    })
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ main: { connect_timeout: '0' } }, 'connect_timeout'],
      [{ main: { connect_timeout: '-1' } }, 'connect_timeout'],
      [{ main: { connect_timeout: 'soon' } }, 'connect_timeout'],
      [{ upstream: { error_time: '0' } }, 'upstream.error_time'],
      [{ upstream: { dead_time: 'x' } }, 'upstream.dead_time'],
      [{ upstream: { max_errors: '0' } }, 'upstream.max_errors'],
      [{ upstream: { max_errors: '2.5' } }, 'upstream.max_errors'],
      [{ upstream: { max_errors: 'many' } }, 'upstream.max_errors'],
      [{ upstream: { max_in_flight: '-1' } }, 'upstream.max_in_flight'],
      [{ upstream: { max_in_flight: '2.5' } }, 'upstream.max_in_flight'],
      [{ upstream: { max_in_flight: 'lots' } }, 'upstream.max_in_flight'],
      [{ upstream: { max_in_flight: '100001' } }, 'upstream.max_in_flight'],
      [{ upstream: { adaptive: 'maybe' } }, 'upstream.adaptive'],
    ]
    for (const [ini, key] of bad) {
      it(`refuses ${JSON.stringify(ini)} naming ${key}`, () => {
        assert.throws(
          () => parseConfig(ini),
          (err: unknown) => err instanceof ConfigError && err.key === key && err.message.includes(key),
        )
      })
    }
  })

  describe('sameTarget() with servers', function () {
    const base = servers('a:1, b:2')
    it('is true for the same list', () => assert.ok(sameTarget(base, servers('a:1,b:2'))))
    it('is false for another order, another server or one less', () => {
      assert.ok(!sameTarget(base, servers('b:2, a:1')))
      assert.ok(!sameTarget(base, servers('a:1, c:2')))
      assert.ok(!sameTarget(base, servers('a:1')))
    })
    it('is false when path changes (the client sends every scan to it)', () => {
      assert.ok(!sameTarget(base, servers('a:1, b:2', { path: '/checkv3' })))
      assert.ok(sameTarget(base, servers('a:1, b:2', { path: '/checkv2' })))
    })
    it('is false when connect_timeout, transport or [upstream] changes (the pools carry them)', () => {
      assert.ok(!sameTarget(base, servers('a:1, b:2', { connect_timeout: 2 })))
      assert.ok(!sameTarget(base, servers('a:1, b:2', { transport: 'undici' })))
      assert.ok(
        !sameTarget(base, parseConfig({ main: { servers: 'a:1, b:2' }, upstream: { dead_time: 10 } })),
      )
      assert.ok(
        !sameTarget(base, parseConfig({ main: { servers: 'a:1, b:2' }, upstream: { max_in_flight: 10 } })),
      )
      assert.ok(
        !sameTarget(base, parseConfig({ main: { servers: 'a:1, b:2' }, upstream: { adaptive: false } })),
      )
    })
  })
})
