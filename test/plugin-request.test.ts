// The built plugin (haraka-test-fixtures) against the fake rspamd, which records each request: the
// request note other plugins leave on the transaction (transaction.notes.rspamd_request) as the
// headers rspamd receives, [request] settings_id_outbound for authenticated and relaying senders,
// and the results record as the real haraka-plugin-karma reads it (its check_result(), fed the
// object haraka-results publishes).

import assert from 'node:assert/strict'
import { resolve } from 'node:path'
import * as fixtures from 'haraka-test-fixtures'
import type { FixtureConnection, FixturePlugin } from 'haraka-test-fixtures'
import { FakeRspamd } from './support/fake-rspamd'
import { replyFor } from './support/replies'
import {
  captureLogs,
  connectionWith,
  corpus,
  dataPost,
  iniFor,
  loadPlugin,
  REPO,
  unregister,
} from './support/harness'

describe('plugin: the request note, settings_id_outbound, and karma reading the results', function () {
  let server: FakeRspamd
  let plugin: FixturePlugin

  before(async () => {
    server = await FakeRspamd.start()
  })
  after(async () => {
    await server.close()
  })
  afterEach(async () => {
    if (plugin) await unregister(plugin)
    server.setMode('ok')
    server.setReply(replyFor('no action'))
  })

  function notes(conn: FixtureConnection): Record<string, unknown> {
    const txn = conn.transaction
    assert.ok(txn)
    return txn.notes as Record<string, unknown>
  }

  describe('transaction.notes.rspamd_request', function () {
    it("sends another plugin's headers, settings and settings_id to rspamd (upstream issue #4)", async () => {
      plugin = loadPlugin(iniFor(server, '[request]\nsettings_id = inbound\nsettings = {"a":1}'))
      const conn = await connectionWith(corpus('ham.eml'))
      notes(conn).rspamd_request = {
        headers: { 'X-Geo-Country': 'NZ', 'X-Karma-Score': -3 },
        settings: { symbols_enabled: ['GEO_NZ'] },
        settings_id: 'from_nz',
      }
      const before = server.requests.length
      const res = await dataPost(plugin, conn)
      assert.equal(res.code, undefined)
      const h = server.requests[before].headers
      assert.equal(h['x-geo-country'], 'NZ')
      assert.equal(h['x-karma-score'], '-3')
      assert.equal(h.settings, '{"symbols_enabled":["GEO_NZ"]}')
      assert.equal(h['settings-id'], 'from_nz')
    })

    it('a note set with haraka-notes dotted paths (notes.set) is read the same way', async () => {
      plugin = loadPlugin(iniFor(server))
      const conn = await connectionWith(corpus('ham.eml'))
      const n = notes(conn) as { set?: (path: string, v: unknown) => void }
      assert.equal(typeof n.set, 'function', 'the fixture transaction has haraka-notes')
      n.set?.('rspamd_request.headers.X-Spf-Result', 'pass')
      const before = server.requests.length
      await dataPost(plugin, conn)
      assert.equal(server.requests[before].headers['x-spf-result'], 'pass')
    })

    it('keeps the envelope headers, drops and logs each bad entry escaped, and still scans', async () => {
      plugin = loadPlugin(iniFor(server))
      server.setReply(replyFor('add header'))
      const conn = await connectionWith(corpus('ham.eml'), {
        mailFrom: 'alice@example.org',
        rcpts: ['bob@example.net'],
      })
      notes(conn).rspamd_request = {
        headers: {
          From: 'mallory@example.com',
          Rcpt: 'root@example.net',
          User: 'admin',
          'X-Split': 'a\r\nIP: 10.0.0.1',
          'X-Ok': 'yes',
        },
        settings: '{"a":\n1}',
      }
      const logs = captureLogs(conn)
      const before = server.requests.length
      const res = await dataPost(plugin, conn)
      assert.equal(res.code, undefined)
      assert.equal(server.requests.length, before + 1, 'scanned all the same')
      const req = server.requests[before]
      assert.equal(req.headers.from, 'alice@example.org')
      assert.equal(req.headers.rcpt, 'bob@example.net')
      assert.equal(req.headers.user, undefined, 'a note cannot make a sender authenticated')
      assert.equal(req.headers.ip, '192.0.2.10')
      assert.equal(req.headers.settings, undefined)
      assert.equal(req.headers['x-split'], undefined)
      assert.equal(req.headers['x-ok'], 'yes')
      const warns = logs.filter((l) => l.startsWith('WARN '))
      assert.equal(warns.length, 5, warns.join('\n'))
      assert.ok(warns.every((w) => w.startsWith('WARN request note: rspamd_request.')))
      assert.ok(warns.some((w) => w.includes('rspamd_request.settings: CR, LF or NUL')))
      assert.ok(warns.some((w) => w.includes('rspamd_request.headers["From"]: a header the plugin')))
      assert.ok(!warns.some((w) => /[\r\n]/.test(w)), 'every warning is one line')
      assert.equal(conn.transaction?.results.get('rspamd')?.action, 'add header')
    })

    it('a note that is not an object, or whose getter throws, is one warning and no failed scan', async () => {
      plugin = loadPlugin(iniFor(server))
      for (const note of [
        'X-A: b',
        {
          get headers(): unknown {
            throw new Error('no')
          },
        },
      ]) {
        const conn = await connectionWith(corpus('ham.eml'))
        notes(conn).rspamd_request = note
        const logs = captureLogs(conn)
        const before = server.requests.length
        const res = await dataPost(plugin, conn)
        assert.equal(res.code, undefined)
        assert.equal(server.requests.length, before + 1)
        assert.equal(logs.filter((l) => l.startsWith('WARN request note: rspamd_request:')).length, 1)
      }
    })
  })

  describe('[request] settings_id_outbound', function () {
    const ini =
      '[request]\nsettings_id = inbound\nsettings_id_outbound = dkim_sign\n[check]\nauthenticated = true\nrelay = true'
    const cases: { name: string; sender: Parameters<typeof connectionWith>[1]; id: string }[] = [
      { name: 'an authenticated sender', sender: { authUser: 'alice' }, id: 'dkim_sign' },
      { name: 'a relaying client', sender: { relaying: true }, id: 'dkim_sign' },
      { name: 'an inbound client', sender: {}, id: 'inbound' },
    ]
    for (const c of cases) {
      it(`sends Settings-ID ${c.id} for ${c.name}`, async () => {
        plugin = loadPlugin(iniFor(server, ini))
        const before = server.requests.length
        await dataPost(plugin, await connectionWith(corpus('ham.eml'), c.sender))
        assert.equal(server.requests.length, before + 1)
        assert.equal(server.requests[before].headers['settings-id'], c.id)
      })
    }
  })

  describe('karma reads the results record', function () {
    // the real haraka-plugin-karma (a devDependency of ours, pinned ^2.5.2), its rules as an operator writes them in
    // karma.ini [result_awards]; the shipped file reuses 237 and 238, so its is_spam rules are
    // overwritten by the DMARC ones: these ids are unique
    const RULES: Record<string, string> = {
      901: 'rspamd | action | equals | reject | -2 | rspamd suggested reject',
      902: 'rspamd | action | equals | greylist | -1 | rspamd suggested greylist',
      903: 'rspamd | score | gt | 10 | -1 |',
      904: 'rspamd | score | lt | 0 | 1 |',
      905: 'rspamd | is_spam | equals | true | -2 | rspamd detected as spam',
      906: 'rspamd | symbols | match | DMARC_POLICY_ALLOW | 1 | DMARC policy allow',
      907: 'rspamd | symbols | match | DMARC_POLICY_REJECT | -6 | DMARC policy reject',
    }

    function karma() {
      const k = new fixtures.plugin(resolve(REPO, 'node_modules', 'haraka-plugin-karma')) as unknown as {
        name: string
        register(): void
        cfg: { result_awards: Record<string, string> }
        result_awards: Record<string, unknown>
        preparse_result_awards(): void
        check_result(conn: unknown, message: string): void
      }
      k.name = 'karma'
      k.register()
      k.cfg.result_awards = RULES
      k.result_awards = {}
      k.preparse_result_awards()
      return k
    }

    async function awardsFor(reply: object): Promise<{ awards: string[]; record: Record<string, unknown> }> {
      plugin = loadPlugin(iniFor(server, '[reject]\nspam = false'))
      server.setReply(reply)
      const conn = await connectionWith(corpus('ham.eml'))
      // what haraka-results publishes to karma: the object handed to results.add()
      const published: Record<string, unknown>[] = []
      const results = conn.transaction?.results as unknown as {
        add(p: unknown, o: Record<string, unknown>): unknown
      }
      const add = results.add.bind(results)
      results.add = (p, o) => {
        published.push(o)
        return add(p, o)
      }
      await dataPost(plugin, conn)
      const record = published.find((o) => 'action' in o)
      assert.ok(record, 'the results record was added')
      const k = karma()
      conn.results.add({ name: 'karma' }, { score: 0 })
      k.check_result(conn, JSON.stringify({ plugin: 'rspamd', result: record }))
      const got = conn.results.get('karma') as { awards?: string[] } | undefined
      return { awards: [...(got?.awards ?? [])].sort(), record }
    }

    it('a reject with DMARC_POLICY_REJECT fires action, is_spam, score and the DMARC symbol rule', async () => {
      const base = replyFor('reject')
      const reply = {
        ...base,
        score: 16,
        symbols: {
          ...base.symbols,
          DMARC_POLICY_REJECT: { name: 'DMARC_POLICY_REJECT', score: 2, metric_score: 2 },
        },
      }
      const { awards, record } = await awardsFor(reply)
      assert.equal(record.is_spam, true)
      assert.ok((record.symbols as string[]).includes('DMARC_POLICY_REJECT'))
      assert.equal((record.symbol_scores as Record<string, number>).DMARC_POLICY_REJECT, 2)
      assert.deepEqual(awards, ['901', '903', '905', '907'])
    })

    it('a clean message with DMARC_POLICY_ALLOW fires the score and DMARC allow rules only', async () => {
      const base = replyFor('no action')
      const reply = {
        ...base,
        score: -1.5,
        symbols: {
          ...base.symbols,
          DMARC_POLICY_ALLOW: { name: 'DMARC_POLICY_ALLOW', score: -0.5, metric_score: -0.5 },
        },
      }
      const { awards, record } = await awardsFor(reply)
      assert.equal(record.is_spam, false)
      assert.deepEqual(awards, ['904', '906'])
    })

    it('greylist fires the greylist action rule and is not spam', async () => {
      const { awards, record } = await awardsFor({ ...replyFor('greylist'), score: 5 })
      assert.equal(record.is_spam, false)
      assert.deepEqual(awards, ['902'])
    })
  })
})
