// src/errors.ts: every failure kind has its stable code, the HTTP status is a number that health
// decisions read (never the message text), and the module stays the base layer (no project imports).

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  ClientGone,
  ConnectTimeout,
  httpStatusError,
  internalError,
  isServerError,
  type ScanError,
  scanError,
  SCAN_ERROR_CODES,
  storeError,
  TimeoutReason,
} from '../src/errors'
import { countsAgainstHealth } from '../src/rspamd/upstream'

/** The codes as operators and callers may rely on them: changing one is a breaking change. */
const SCAN_CODES = {
  connect: 'ERR_RSPAMD_CONNECT',
  network: 'ERR_RSPAMD_NETWORK',
  timeout: 'ERR_RSPAMD_TIMEOUT',
  http: 'ERR_RSPAMD_HTTP_STATUS',
  parse: 'ERR_RSPAMD_PARSE',
  'too-large': 'ERR_RSPAMD_REPLY_TOO_LARGE',
  aborted: 'ERR_RSPAMD_CLIENT_GONE',
  saturated: 'ERR_RSPAMD_SATURATED',
} as const

describe('errors: one vocabulary of failures', function () {
  describe('each kind has its stable code', function () {
    for (const [kind, code] of Object.entries(SCAN_CODES)) {
      it(`${kind} → ${code}`, () => {
        assert.equal(SCAN_ERROR_CODES[kind as keyof typeof SCAN_CODES], code)
        const e = kind === 'http' ? httpStatusError(500, 'HTTP 500') : scanError(kind as 'connect', 'x')
        assert.equal(e.kind, kind)
        assert.equal(e.code, code)
      })
    }

    it('no two kinds share a code', () => {
      const codes = Object.values(SCAN_ERROR_CODES)
      assert.equal(new Set(codes).size, codes.length)
    })

    it('the kinds are the words logs have always printed', () => {
      assert.deepEqual(Object.keys(SCAN_ERROR_CODES).sort(), Object.keys(SCAN_CODES).sort())
    })

    it('internal → ERR_RSPAMD_PLUGIN_INTERNAL', () => {
      const e = internalError('boom')
      assert.equal(e.kind, 'internal')
      assert.equal(e.code, 'ERR_RSPAMD_PLUGIN_INTERNAL')
      assert.equal(e.message, 'boom')
    })

    it('Redis error → ERR_GREYLIST_REDIS, Redis timeout → ERR_GREYLIST_REDIS_TIMEOUT', () => {
      assert.equal(storeError('error', 'ECONNREFUSED').code, 'ERR_GREYLIST_REDIS')
      assert.equal(storeError('timeout', 'no answer within 100 ms').code, 'ERR_GREYLIST_REDIS_TIMEOUT')
    })

    it("a store failure carries its code as a field like every other failure's", () => {
      const e = storeError('timeout', 'no answer within 100 ms')
      assert.deepEqual(e, {
        kind: 'timeout',
        code: 'ERR_GREYLIST_REDIS_TIMEOUT',
        message: 'no answer within 100 ms',
      })
      assert.deepEqual(storeError('error', 'x'), { kind: 'error', code: 'ERR_GREYLIST_REDIS', message: 'x' })
    })

    it('the reasons a request is torn down with carry the code of the failure they become', () => {
      assert.equal(new TimeoutReason(100, true, 'x').code, SCAN_CODES.timeout)
      assert.equal(new ClientGone().code, SCAN_CODES.aborted)
      // a socket's errno: the failure's message quotes it, so it stays what it was
      assert.equal(new ConnectTimeout('http://a:11333', 100).code, 'ETIMEDOUT')
    })

    it('the texts of the reasons are unchanged', () => {
      assert.equal(new TimeoutReason(100, true, 'x').message, 'no reply from rspamd within 100 ms')
      assert.equal(
        new TimeoutReason(50, false, 'http://a:11333').message,
        'no reply from http://a:11333 within 50 ms',
      )
      assert.equal(new ClientGone().message, 'scan aborted: the SMTP client went away')
      assert.equal(
        new ConnectTimeout('http://a:11333', 100).message,
        'no connection to http://a:11333 within 100 ms (connect_timeout)',
      )
    })
  })

  describe('the HTTP status is a number, and 5xx is decided by it', function () {
    it('keeps the status as a field next to the log text', () => {
      const e = httpStatusError(503, 'HTTP 503: overloaded')
      assert.equal(e.status, 503)
      assert.equal(e.message, 'HTTP 503: overloaded')
    })

    for (const status of [500, 502, 503, 599]) {
      it(`${status} is a server error, and counts against the server's health`, () => {
        const e = httpStatusError(status, `HTTP ${status}`)
        assert.equal(isServerError(e), true)
        assert.equal(countsAgainstHealth(e), true)
      })
    }

    for (const status of [400, 404, 413, 499, 600, 301]) {
      it(`${status} is not, and does not count`, () => {
        const e = httpStatusError(status, `HTTP ${status}`)
        assert.equal(isServerError(e), false)
        assert.equal(countsAgainstHealth(e), false)
      })
    }

    it('a message text mimicking "HTTP 5xx" does not make a 5xx', () => {
      // a 4xx whose text (rspamd's or a proxy's, quoted) reads like a 5xx
      const mimic: ScanError = { kind: 'http', code: SCAN_CODES.http, status: 404, message: 'HTTP 503: gone' }
      assert.equal(isServerError(mimic), false)
      assert.equal(countsAgainstHealth(mimic), false)
      // a client that went away, with a text that starts like an HTTP status
      const gone = scanError('aborted', 'HTTP 500 Internal Server Error')
      assert.equal(isServerError(gone), false)
      assert.equal(countsAgainstHealth(gone), false)
    })

    it('the other kinds count against health as before; a client that went away does not', () => {
      for (const kind of ['connect', 'network', 'timeout', 'parse', 'too-large'] as const) {
        assert.equal(countsAgainstHealth(scanError(kind, 'x')), true, kind)
      }
      assert.equal(countsAgainstHealth(scanError('aborted', 'x')), false)
    })
  })

  it('docs/failure-behaviour.md lists every code', () => {
    const doc = readFileSync(join(__dirname, '..', 'docs', 'failure-behaviour.md'), 'utf8')
    const codes = [
      ...Object.values(SCAN_ERROR_CODES),
      internalError('x').code,
      storeError('error', 'x').code,
      storeError('timeout', 'x').code,
    ]
    for (const code of codes) assert.ok(doc.includes(`\`${code}\``), code)
  })

  it('is the base layer: imports nothing from the project', () => {
    const src = readFileSync(join(__dirname, '..', 'src', 'errors.ts'), 'utf8')
    const imports = [...src.matchAll(/^\s*(?:import|export)\b[^;]*?from\s+'([^']+)'/gm)].map((m) => m[1])
    const required = [...src.matchAll(/require\(\s*'([^']+)'/g)].map((m) => m[1])
    for (const spec of [...imports, ...required]) {
      assert.ok(!spec?.startsWith('.'), `src/errors.ts imports ${spec}`)
    }
  })
})
