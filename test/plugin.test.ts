// The built plugin in haraka-test-fixtures against the fake rspamd: every action, the bytes and
// headers rspamd receives, what lands on the transaction, and each failure under the [defer] policy.

import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { writeFileSync } from 'node:fs'
import type { FixtureConnection, FixturePlugin } from 'haraka-test-fixtures'
import { FakeRspamd } from './support/fake-rspamd'
import { packageVersion } from '../src/version'
import { replyFor } from './support/replies'
import {
  DENY,
  DENYSOFT,
  assertWellFormed,
  connectionWith,
  corpus,
  dataPost,
  iniFor,
  iniPathOf,
  logsDuring,
  nextLog,
  rewriteConfig,
  infoLines,
  infoRecords,
  loadPlugin,
  queuedMessage,
  replyCode,
  REPO,
  replyText,
  unregister,
} from './support/harness'

const CORPUS_FILES = [
  'ham.eml',
  'gtube.eml',
  'utf8-subject.eml',
  'spoofed-verdict-headers.eml',
  'multipart-attachment.eml',
  'long-subject.eml',
  'leading-dots.eml',
]

const version = packageVersion()

describe('plugin (haraka-test-fixtures + fake rspamd)', function () {
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
  })

  describe('sends each message exactly as received', function () {
    for (const file of CORPUS_FILES) {
      it(`streams ${file} byte-identical with CRLF line endings`, async () => {
        plugin = loadPlugin(iniFor(server))
        server.setReply(replyFor('no action'))
        const before = server.requests.length
        const conn = await connectionWith(corpus(file))
        const res = await dataPost(plugin, conn)
        assert.equal(res.code, undefined)
        assert.equal(server.requests.length, before + 1)
        const req = server.requests[before]
        assert.equal(req.method, 'POST')
        assert.equal(req.path, '/checkv2')
        assert.ok(
          req.body.equals(corpus(file)),
          `${file}: rspamd got ${req.body.length} bytes, sent ${corpus(file).length}`,
        )
      })
    }

    it('sends the envelope and connection facts as rspamd request headers', async () => {
      plugin = loadPlugin(
        iniFor(
          server,
          '[request]\nsettings_id = outbound\npass_all = true\n[request_headers]\nMTA-Tag = haraka',
        ),
      )
      const before = server.requests.length
      const conn = await connectionWith(corpus('ham.eml'), {
        ip: '198.51.100.7',
        host: 'mx.example.org',
        helo: 'helo.example.org',
        mailFrom: 'alice@example.org',
        rcpts: ['bob@example.net', 'carol@example.net'],
        tls: { name: 'TLS_AES_256_GCM_SHA384', version: 'TLSv1.3' },
      })
      conn.results.add({ name: 'fcrdns' }, { fcrdns: ['fcrdns.example.org'] })
      await dataPost(plugin, conn)
      const h = server.requests[before].headers
      assert.equal(h.ip, '198.51.100.7')
      assert.equal(h.hostname, 'fcrdns.example.org')
      assert.equal(h.helo, 'helo.example.org')
      assert.equal(h.from, 'alice@example.org')
      assert.equal(h['queue-id'], conn.transaction?.uuid)
      assert.equal(h['tls-cipher'], 'TLS_AES_256_GCM_SHA384')
      assert.equal(h['tls-version'], 'TLSv1.3')
      assert.equal(h['settings-id'], 'outbound')
      assert.equal(h.pass, 'all')
      assert.equal(h['mta-tag'], 'haraka')
      assert.equal(h['deliver-to'], undefined, 'Deliver-To only for a single recipient')
      const raw = server.requests[before].rawHeaders
      const rcpts = raw.filter((_, i) => i % 2 === 1 && raw[i - 1].toLowerCase() === 'rcpt')
      assert.deepEqual(rcpts, ['bob@example.net', 'carol@example.net'])
    })

    for (const host of ['NXDOMAIN', 'DNSERROR', 'Unknown', 'unknown']) {
      it(`sends no Hostname for a client without a reverse name (Haraka's ${host}), so rspamd looks it up and scores RDNS_NONE`, async () => {
        plugin = loadPlugin(iniFor(server))
        const before = server.requests.length
        await dataPost(plugin, await connectionWith(corpus('ham.eml'), { host }))
        const h = server.requests[before]?.headers
        assert.ok(h)
        assert.equal(h.hostname, undefined)
        assert.equal(h.ip, '192.0.2.10')
      })
    }

    it('sends Deliver-To and User for one recipient of an authenticated sender scanned by [check] authenticated=true', async () => {
      plugin = loadPlugin(iniFor(server, '[check]\nauthenticated = true'))
      const before = server.requests.length
      const conn = await connectionWith(corpus('ham.eml'), { rcpts: ['only@example.net'], authUser: 'alice' })
      await dataPost(plugin, conn)
      const h = server.requests[before].headers
      assert.equal(h['deliver-to'], 'only@example.net')
      assert.equal(h.user, 'alice')
    })
  })

  describe('acts on each action', function () {
    const cases: {
      action: Parameters<typeof replyFor>[0]
      code: number | undefined
      smtp?: RegExp
      headers: Record<string, RegExp | null>
    }[] = [
      { action: 'no action', code: undefined, headers: { 'X-Rspamd-Score': null, 'X-Rspamd-Bar': null } },
      { action: 'greylist', code: undefined, headers: { 'X-Rspamd-Score': null } },
      {
        action: 'add header',
        code: undefined,
        headers: {
          'X-Rspamd-Score': /^6\.5$/,
          'X-Rspamd-Bar': /^\+{6}$/,
          'X-Rspamd-Report': /\w+\([\d.-]+\)/,
        },
      },
      {
        action: 'rewrite subject',
        code: undefined,
        headers: { Subject: /^\[SPAM\] Garden club meets on Wednesday$/ },
      },
      { action: 'soft reject', code: DENYSOFT, smtp: /^4\.7\.1 /, headers: {} },
      { action: 'reject', code: DENY, smtp: /^5\.7\.1 /, headers: {} },
    ]
    for (const c of cases) {
      it(`${c.action} → ${c.code === undefined ? 'continue' : c.code === DENY ? 'DENY 550' : 'DENYSOFT 451'}`, async () => {
        plugin = loadPlugin(iniFor(server))
        const reply = replyFor(c.action)
        delete (reply as { subject?: unknown }).subject
        server.setReply(reply)
        const conn = await connectionWith(corpus('ham.eml'))
        const res = await dataPost(plugin, conn)
        assert.equal(res.code, c.code)
        if (c.smtp) {
          assert.match(replyText(res.msg) ?? '', c.smtp)
          assert.equal(replyCode(res.msg), c.code === DENY ? 550 : 451)
        }
        const txn = conn.transaction
        assert.ok(txn)
        for (const [name, want] of Object.entries(c.headers)) {
          const got: string = txn.header.get(name).replace(/\r?\n$/, '')
          if (want === null) assert.equal(got, '', `${name} should not be set`)
          else assert.match(got.replace(/\r?\n[ \t]+/g, ' '), want, name)
        }
        const result = txn.results.get('rspamd')
        assert.ok(result)
        assert.equal(result.action, c.action)
        assert.equal(typeof result.score, 'number')
        assert.equal(typeof result.time, 'number')
        const names = result.symbols as unknown[]
        const scores = result.symbol_scores as Record<string, unknown>
        assert.ok(Array.isArray(names) && names.length > 0, 'symbols as [NAME, …]')
        assert.deepEqual(names, Object.keys(scores), 'symbol_scores has the same names')
        assert.ok(
          Object.values(scores).every((v) => typeof v === 'number'),
          'symbol_scores as {NAME: score}',
        )
        assert.equal(
          result.is_spam,
          ['reject', 'soft reject', 'rewrite subject', 'add header'].includes(c.action),
        )
        assert.equal((txn.notes.rspamd as { action?: string }).action, c.action)
        assertWellFormed(await queuedMessage(conn))
      })
    }

    it("uses rspamd's smtp_message as the reject text when [smtp_message] is enabled", async () => {
      plugin = loadPlugin(iniFor(server))
      server.setReply(replyFor('reject', { messages: { smtp_message: 'Go away, spammer' } }))
      const res = await dataPost(plugin, await connectionWith(corpus('gtube.eml')))
      assert.equal(res.code, DENY)
      assert.equal(replyText(res.msg), '5.7.1 Go away, spammer')
    })

    it("answers with haraka-dsn's DSN, whose text is what Haraka's own message log line prints", async () => {
      plugin = loadPlugin(iniFor(server))
      server.setReply(replyFor('reject', { messages: { smtp_message: 'Go away, spammer' } }))
      const res = await dataPost(plugin, await connectionWith(corpus('gtube.eml')))
      // Haraka's respond() takes (code, reply) from an object whose constructor is named DSN, and
      // its "[core] message … msg=" line prints the object as a string ("[object Object]" before)
      assert.equal((res.msg as { constructor: { name: string } }).constructor.name, 'DSN')
      assert.equal(replyCode(res.msg), 550)
      assert.equal(String(res.msg), '5.7.1 Go away, spammer')
      server.setReply(replyFor('soft reject'))
      const soft = await dataPost(plugin, await connectionWith(corpus('ham.eml')))
      assert.equal(soft.code, DENYSOFT)
      assert.equal(replyCode(soft.msg), 451)
      assert.match(String(soft.msg), /^4\.7\.1 \S/)
    })

    it('uses [reject] message when [smtp_message] enabled=false', async () => {
      plugin = loadPlugin(iniFor(server, '[smtp_message]\nenabled=false\n[reject]\nmessage = No spam here'))
      server.setReply(replyFor('reject', { messages: { smtp_message: 'Go away, spammer' } }))
      const res = await dataPost(plugin, await connectionWith(corpus('gtube.eml')))
      assert.equal(replyText(res.msg), '5.7.1 No spam here')
    })

    it('delivers a reject with spam headers when [reject] spam=false', async () => {
      plugin = loadPlugin(iniFor(server, '[reject]\nspam = false'))
      server.setReply(replyFor('reject'))
      const conn = await connectionWith(corpus('gtube.eml'))
      const res = await dataPost(plugin, conn)
      assert.equal(res.code, undefined)
      assert.match(conn.transaction?.header.get('X-Rspamd-Score') ?? '', /16\.5/)
    })

    it('does not reject an authenticated sender unless [reject] authenticated=true', async () => {
      plugin = loadPlugin(iniFor(server, '[check]\nauthenticated = true'))
      server.setReply(replyFor('reject'))
      const res = await dataPost(plugin, await connectionWith(corpus('gtube.eml'), { authUser: 'alice' }))
      assert.equal(res.code, undefined)
      await unregister(plugin)
      plugin = loadPlugin(iniFor(server, '[check]\nauthenticated = true\n[reject]\nauthenticated = true'))
      const res2 = await dataPost(plugin, await connectionWith(corpus('gtube.eml'), { authUser: 'alice' }))
      assert.equal(res2.code, DENY)
    })

    it("rewrites the subject with rspamd's subject when it sends one", async () => {
      plugin = loadPlugin(iniFor(server))
      // what rspamd sends: its template with the message's subject already in place of %s
      server.setReply(replyFor('rewrite subject', { subject: '*** SPAM *** Garden club meets on Wednesday' }))
      const conn = await connectionWith(corpus('ham.eml'))
      await dataPost(plugin, conn)
      assert.equal(conn.transaction?.header.get_all('Subject').length, 1)
      assert.equal(
        (conn.transaction?.header.get('Subject') ?? '').trim(),
        '*** SPAM *** Garden club meets on Wednesday',
      )
    })

    it("does not substitute %s again in rspamd's finished subject", async () => {
      plugin = loadPlugin(iniFor(server))
      // the sender's subject holds a %s; rspamd has already put it into its own template
      server.setReply(replyFor('rewrite subject', { subject: '*** SPAM *** Save 50%s on shoes' }))
      const conn = await connectionWith(corpus('ham.eml'))
      await dataPost(plugin, conn)
      assert.deepEqual(
        conn.transaction?.header.get_all('Subject').map((v) => v.trim()),
        ['*** SPAM *** Save 50%s on shoes'],
      )
    })

    it('rewrites an RFC 2047 subject keeping it encoded and decodable', async () => {
      plugin = loadPlugin(iniFor(server, 'subject = [SPAM] %s'))
      const reply = replyFor('rewrite subject')
      delete (reply as { subject?: unknown }).subject
      server.setReply(reply)
      const conn = await connectionWith(corpus('utf8-subject.eml'))
      await dataPost(plugin, conn)
      const raw = conn.transaction?.header.get('Subject') ?? ''
      assert.ok(/^[\t\n\r -~]*$/.test(raw), 'the written Subject is ASCII (RFC 2047)')
      assert.equal(
        conn.transaction?.header.get_decoded('Subject').replace(/\s+/g, ' ').trim(),
        '[SPAM] Menü der Woche – Crème brûlée & 抹茶',
      )
    })

    it('replaces forged verdict headers with ours', async () => {
      plugin = loadPlugin(iniFor(server, 'add_headers = always'))
      server.setReply(replyFor('add header'))
      const conn = await connectionWith(corpus('spoofed-verdict-headers.eml'))
      await dataPost(plugin, conn)
      const txn = conn.transaction
      assert.ok(txn)
      assert.deepEqual(
        txn.header.get_all('X-Rspamd-Score').map((v) => v.trim()),
        ['6.5'],
      )
      assert.equal(txn.header.get_all('X-Rspamd-Bar').length, 1)
    })

    it('is the plugin of this checkout (dist/ beside this test), also through a symlinked node_modules', () => {
      plugin = loadPlugin(iniFor(server))
      assert.equal(plugin.plugin_path, join(REPO, 'package.json'))
    })

    it('writes every [spam_headers] style and replaces the forged X-Spam-* and X-Spamd-Result headers', async () => {
      plugin = loadPlugin(
        iniFor(
          server,
          'add_headers = sometimes\n[spam_headers]\nstyles = rspamd, exim, extended, lda\nlda_json = true',
        ),
      )
      const json = replyFor('add header')
      server.setReply(json)
      const conn = await connectionWith(corpus('spoofed-verdict-headers.eml'))
      await dataPost(plugin, conn)
      const txn = conn.transaction
      assert.ok(txn)
      const all = (name: string) => txn.header.get_all(name).map((v) => v.replace(/\r?\n[ \t]+/g, ' ').trim())
      assert.deepEqual(all('X-Spam'), ['yes'])
      assert.deepEqual(all('X-Spam-Action'), ['add header'])
      assert.deepEqual(all('X-Spam-Scanner'), [`haraka-plugin-rspamd ${version}`])
      assert.deepEqual(all('X-Spam-Score'), ['6.5 (++++++)'])
      assert.equal(all('X-Spamd-Result').length, 1)
      assert.match(all('X-Spamd-Result')[0] ?? '', /^default: False \[6\.50 \/ 15\.00\]; /)
      assert.deepEqual(all('X-Rspamd-Queue-Id'), [txn.uuid])
      // the fake rspamd listens on 127.0.0.1: rspamd runs on this host
      assert.deepEqual(all('X-Rspamd-Server'), [hostname()])
      const result = all('X-Spam-Result')
      assert.equal(result.length, 1)
      assert.deepEqual(JSON.parse(Buffer.from(result[0] ?? '', 'base64').toString('utf8')), json)
      assert.deepEqual(all('X-Rspamd-Score'), ['6.5'])
      assertWellFormed(await queuedMessage(conn))
    })

    it('writes no style header for "no action" with add_headers=sometimes, so forged ones stay untouched only then', async () => {
      plugin = loadPlugin(iniFor(server, '[spam_headers]\nstyles = lda, exim'))
      server.setReply(replyFor('no action'))
      const conn = await connectionWith(corpus('ham.eml'))
      await dataPost(plugin, conn)
      for (const n of ['X-Spam', 'X-Spam-Action', 'X-Spam-Scanner', 'X-Spam-Score', 'X-Spam-Report'])
        assert.equal(conn.transaction?.header.get(n), '', n)
    })

    it("applies rspamd's milter add/remove headers and adds DKIM-Signature", async () => {
      plugin = loadPlugin(iniFor(server))
      server.setReply(
        replyFor('no action', {
          milter: {
            add_headers: {
              'X-Virus': 'no',
              'X-Order': { value: 'first', order: 0 },
              'X-Multi': ['a', { value: 'b' }],
            },
            remove_headers: { 'X-Mailer': 0 },
          },
          'dkim-signature': 'v=1; a=rsa-sha256; d=example.org; s=sel; b=abc',
        }),
      )
      const conn = await connectionWith(`X-Mailer: old\r\n${corpus('ham.eml').toString()}`)
      await dataPost(plugin, conn)
      const h = conn.transaction?.header
      assert.ok(h)
      assert.equal(h.get('X-Mailer'), '')
      assert.equal(h.get('X-Virus').trim(), 'no')
      assert.deepEqual(
        h.get_all('X-Multi').map((v) => v.trim()),
        ['a', 'b'],
      )
      assert.match(h.get('DKIM-Signature'), /d=example\.org/)
      assertWellFormed(await queuedMessage(conn))
    })

    it('ignores milter headers and DKIM when [rmilter_headers] and [dkim] are disabled', async () => {
      plugin = loadPlugin(iniFor(server, '[rmilter_headers]\nenabled=false\n[dkim]\nenabled=false'))
      server.setReply(
        replyFor('no action', {
          milter: { add_headers: { 'X-Virus': 'no' } },
          'dkim-signature': 'v=1; d=example.org',
        }),
      )
      const conn = await connectionWith(corpus('ham.eml'))
      await dataPost(plugin, conn)
      assert.equal(conn.transaction?.header.get('X-Virus'), '')
      assert.equal(conn.transaction?.header.get('DKIM-Signature'), '')
    })

    it('logs one info line per message, as fields: action, score, required, verdict, server, ms, size, symbols heaviest first', async () => {
      plugin = loadPlugin(iniFor(server))
      server.setReply(replyFor('add header'))
      const conn = await connectionWith(corpus('ham.eml'))
      const { lines, fields } = infoRecords(conn)
      await dataPost(plugin, conn)
      assert.equal(lines.length, 1, lines.join('\n'))
      assert.deepEqual(Object.keys(fields[0] ?? {}), [
        'action',
        'score',
        'required',
        'verdict',
        'server',
        'ms',
        'size',
        'symbols',
      ])
      const line = lines[0]
      assert.match(
        line,
        new RegExp(
          `^action="add header" score=[\\d.]+ required=15 verdict=accept server=http://127\\.0\\.0\\.1:${server.port} ` +
            'ms=[\\d.]+ size=\\d+ symbols="',
        ),
      )
      // every symbol of the reply, by |score| descending
      const reply = replyFor('add header')
      const listed = [...(/symbols="(.*)"$/.exec(line)?.[1] ?? '').matchAll(/(\w+)\((-?[\d.]+)\)/g)]
      assert.deepEqual(listed.map((m) => m[1]).sort(), Object.keys(reply.symbols).sort())
      const scores = listed.map((m) => Math.abs(Number(m[2])))
      assert.deepEqual(
        scores,
        [...scores].sort((a, b) => b - a),
      )
    })

    it('logs the SMTP code and reply of a reject and a defer, and the failure of a failed scan', async () => {
      plugin = loadPlugin(iniFor(server))
      server.setReply(replyFor('reject', { messages: { smtp_message: 'Go away' } }))
      let conn = await connectionWith(corpus('gtube.eml'))
      let rec = infoRecords(conn)
      await dataPost(plugin, conn)
      assert.equal(rec.fields.length, 1)
      assert.equal(rec.fields[0]?.verdict, 'deny')
      assert.equal(rec.fields[0]?.code, 550)
      assert.equal(rec.fields[0]?.reply, '5.7.1 Go away')
      server.setMode('status:500')
      conn = await connectionWith(corpus('ham.eml'))
      rec = infoRecords(conn)
      await dataPost(plugin, conn)
      assert.equal(rec.fields.length, 1, rec.lines.join('\n'))
      assert.match(rec.lines[0] ?? '', /^error=http verdict=accept server=\S+ ms=[\d.]+ size=\d+$/)
    })

    it('escapes symbol names in the log line and lists at most 64 of them', async () => {
      plugin = loadPlugin(iniFor(server))
      const symbols: Record<string, { name: string; score: number }> = {}
      for (let i = 0; i < 500; i++) symbols[`S${i}`] = { name: `S${i}`, score: i / 100 }
      symbols.evil = { name: 'EVIL\r\n[INFO] forged line', score: 100 }
      server.setReply(replyFor('no action', { symbols } as never))
      const conn = await connectionWith(corpus('ham.eml'))
      const lines = infoLines(conn)
      await dataPost(plugin, conn)
      assert.equal(lines.length, 1)
      assert.doesNotMatch(lines[0], /[\r\n]/)
      assert.match(lines[0], /symbols="EVIL\\\\u000d\\\\u000a\[INFO\] forged line\(100\) S499\(4\.99\) /)
      assert.match(lines[0], /… 437 more"$/)
      assert.ok(lines[0].length < 2000, `${lines[0].length} characters`)
    })

    it('accepts an unknown action and logs a warning', async () => {
      plugin = loadPlugin(iniFor(server))
      server.setReply(replyFor('no action', { action: 'spam trap' }))
      const conn = await connectionWith(corpus('ham.eml'))
      const res = await dataPost(plugin, conn)
      assert.equal(res.code, undefined)
      assert.equal(conn.transaction?.results.get('rspamd')?.action, 'spam trap')
    })
  })

  describe('skips senders per [check]', function () {
    // every reason that applies is recorded, as 1.6.x did (a local address is a private one too)
    const cases: { name: string; sender: Parameters<typeof connectionWith>[1]; skip: string[] }[] = [
      { name: 'an authenticated sender', sender: { authUser: 'alice' }, skip: ['authed'] },
      { name: 'a relaying client', sender: { relaying: true }, skip: ['relay'] },
      { name: 'a private IP', sender: { ip: '10.1.2.3', isPrivate: true }, skip: ['private_ip'] },
      {
        name: 'a local IP',
        sender: { ip: '127.0.0.1', isLocal: true, isPrivate: true },
        skip: ['local_ip', 'private_ip'],
      },
      {
        name: 'an authenticated, relaying sender on a private IP',
        sender: { authUser: 'alice', relaying: true, ip: '10.1.2.3', isPrivate: true },
        skip: ['authed', 'relay', 'private_ip'],
      },
    ]
    for (const c of cases) {
      it(`does not scan ${c.name} and records skip=${c.skip.join(',')}`, async () => {
        plugin = loadPlugin(iniFor(server))
        const before = server.requests.length
        const conn = await connectionWith(corpus('ham.eml'), c.sender)
        const res = await dataPost(plugin, conn)
        assert.equal(res.code, undefined)
        assert.equal(server.requests.length, before, 'nothing sent to rspamd')
        assert.deepEqual(conn.transaction?.results.get('rspamd')?.skip, c.skip)
      })
    }
  })

  describe('fails per [defer]', function () {
    const failures: { name: string; setup: (s: FakeRspamd) => Promise<string>; kind: 'error' | 'timeout' }[] =
      [
        {
          name: 'rspamd is down (connection refused)',
          setup: async () => `host = 127.0.0.1\nport = ${await FakeRspamd.unusedPort()}\n`,
          kind: 'error',
        },
        {
          name: 'rspamd does not answer in time',
          setup: async (s) => {
            s.setMode('hang')
            return `${iniFor(s)}timeout = 0.3\n`
          },
          kind: 'timeout',
        },
        {
          name: 'rspamd answers HTTP 500',
          setup: async (s) => (s.setMode('status:500'), iniFor(s)),
          kind: 'error',
        },
        {
          name: 'rspamd answers non-JSON',
          setup: async (s) => (s.setMode('garbage'), iniFor(s)),
          kind: 'error',
        },
        {
          name: 'the reply is over the 16 MiB cap',
          setup: async (s) => (s.setMode('huge:17825792'), iniFor(s)),
          kind: 'error',
        },
      ]
    for (const f of failures) {
      for (const defer of [false, true]) {
        it(`${defer ? 'defers with 451' : 'accepts'} when ${f.name} and defer.${f.kind}=${defer}`, async () => {
          const ini = await f.setup(server)
          plugin = loadPlugin(`${ini}[defer]\n${f.kind} = ${defer}\n`)
          const conn = await connectionWith(corpus('ham.eml'))
          const res = await dataPost(plugin, conn)
          if (defer) {
            assert.equal(res.code, DENYSOFT)
            assert.equal(replyCode(res.msg), 451)
          } else assert.equal(res.code, undefined)
          const err = conn.transaction?.results.get('rspamd')?.err as string[] | undefined
          assert.ok(err && err.length === 1, 'one error recorded')
          assert.equal(conn.transaction?.header.get('X-Rspamd-Score'), '')
          // whatever else the failure does later (its sockets closing, here at once by closing the pool rather
          // than after the pool's 4 s idle timeout), next() was called once
          await unregister(plugin)
          await server.waitForIdle()
          assert.equal(res.calls(), 1)
        })
      }
    }
  })

  describe('the SMTP client goes away during the scan', function () {
    it('aborts the request, calls next() once, and touches nothing on the gone transaction', async () => {
      plugin = loadPlugin(iniFor(server))
      server.setMode('hang')
      const conn: FixtureConnection = await connectionWith(corpus('ham.eml'))
      const client = new EventEmitter()
      conn.client = client
      const txn = conn.transaction
      const seen = server.requests.length
      const pending = dataPost(plugin, conn)
      await server.waitForRequests(seen + 1)
      assert.ok(server.openConnections > 0, 'the scan is in flight')
      // Haraka: the socket closes, the transaction is reset
      conn.transaction = null
      client.emit('close')
      const res = await pending
      assert.equal(res.code, undefined)
      await server.waitForIdle()
      assert.equal(res.calls(), 1)
      assert.equal(txn?.results.get('rspamd'), undefined, 'nothing recorded on the gone transaction')
    })
  })

  describe('config', function () {
    it('refuses to register with a bad value, naming the key', () => {
      assert.throws(() => loadPlugin('add_headers = sometimes-ish\n'), /add_headers/)
      assert.throws(() => loadPlugin('port = 70000\n'), /port/)
    })

    const cfgOf = (p: FixturePlugin) =>
      (p as unknown as { cfg: { addHeaders: string; target: { port?: number } } }).cfg

    it('warns about keys it does not use (typos, wrong section), at start-up and on reload', async () => {
      plugin = loadPlugin(`${iniFor(server)}timout = 5\n[check]\nmax_size = 1M\n`, { register: false })
      const warned = nextLog(plugin, 'logwarn', /not used/)
      plugin.register()
      assert.match(await warned, /rspamd\.ini: not used: timout, check\.max_size/)
      const again = nextLog(plugin, 'logwarn', /not used/)
      rewriteConfig(plugin, `${iniFor(server)}[greylist]\ndealy = 3\n`)
      assert.match(await again, /not used: greylist\.dealy/)
    })

    it('keeps the previous config when a reload brings a bad value, and logs the key', async () => {
      plugin = loadPlugin(iniFor(server))
      const refused = nextLog(plugin, 'logerror', /reload refused/)
      rewriteConfig(plugin, `${iniFor(server)}add_headers = bogus\n`)
      assert.match(await refused, /add_headers/)
      assert.equal(cfgOf(plugin).addHeaders, 'sometimes')
      const res = await dataPost(plugin, await connectionWith(corpus('ham.eml')))
      assert.equal(res.code, undefined)
    })

    // through haraka-config's own watcher (5 s of settling): the other reload tests call the callback at once
    it('picks up an edited rspamd.ini and moves to a new rspamd without a restart', async () => {
      const other = await FakeRspamd.start()
      try {
        plugin = loadPlugin(iniFor(server))
        const reloaded = nextLog(plugin, 'loginfo', /reloaded/)
        writeFileSync(iniPathOf(plugin), `${iniFor(other)}add_headers = always\n`)
        await reloaded
        assert.equal(cfgOf(plugin).addHeaders, 'always')
        const before = other.requests.length
        await dataPost(plugin, await connectionWith(corpus('ham.eml')))
        assert.equal(other.requests.length, before + 1, 'the new server got the scan')
      } finally {
        await unregister(plugin)
        await other.close()
      }
    })

    it('keeps a dead server dead across a reload that keeps it (health is not forgotten)', async () => {
      const refusing = await FakeRspamd.unusedPort()
      const ini = (deadTime: number) =>
        `servers = 127.0.0.1:${refusing}, 127.0.0.1:${server.port}\n[upstream]\nmax_errors = 1\ndead_time = ${deadTime}\n`
      plugin = loadPlugin(ini(60))
      type Health = { health(): { dead: boolean }[] }
      const health = () => (plugin as unknown as { client: Health }).client.health().map((h) => h.dead)
      // round robin starts with the refusing server: one failure marks it dead (max_errors = 1)
      await dataPost(plugin, await connectionWith(corpus('ham.eml')))
      assert.deepEqual(health(), [true, false])
      // new health settings make a new client; the server it keeps is still dead in it
      const reloaded = nextLog(plugin, 'loginfo', /reloaded/)
      rewriteConfig(plugin, ini(120))
      await reloaded
      assert.deepEqual(health(), [true, false])
      const before = server.requests.length
      for (let i = 0; i < 3; i++) await dataPost(plugin, await connectionWith(corpus('ham.eml')))
      assert.equal(server.requests.length, before + 3, 'every scan went straight to the live server')
    })

    it('reloads nothing after shutdown (Haraka stopping): no new rspamd pool or Redis store for it', async () => {
      plugin = loadPlugin(iniFor(server, '[greylist]\nenabled = true\nstore = redis'))
      type State = { client?: unknown; greylistRedis?: unknown; cfg?: unknown }
      const state = plugin as unknown as State
      assert.ok(state.client && state.greylistRedis, 'a pool and a store before shutdown')
      const cfg = state.cfg
      await unregister(plugin)
      const lines = logsDuring(plugin, () => {
        rewriteConfig(
          plugin,
          iniFor(server, '[greylist]\nenabled = true\nstore = redis\n[redis]\ndatabase = 4'),
        )
        rewriteConfig(plugin, '[server]\nport = 6390\n', 'redis.ini')
      }).map((l) => l.line)
      assert.equal(state.client, undefined)
      assert.equal(state.greylistRedis, undefined)
      assert.equal(state.cfg, cfg)
      assert.deepEqual(
        lines.filter((l) => /changed after shutdown/.test(l)),
        ['rspamd.ini changed after shutdown: not reloaded', 'redis.ini changed after shutdown: not reloaded'],
      )
      assert.equal(lines.filter((l) => /reloaded:|greylisting in Redis/.test(l)).length, 0, lines.join('\n'))
    })

    it('sends to the new path after a reload that changes only path', async () => {
      plugin = loadPlugin(iniFor(server))
      await dataPost(plugin, await connectionWith(corpus('ham.eml')))
      assert.equal(server.requests.at(-1)?.path, '/checkv2')
      const reloaded = nextLog(plugin, 'loginfo', /reloaded/)
      rewriteConfig(plugin, `${iniFor(server)}path = /checkv3\n`)
      await reloaded
      await dataPost(plugin, await connectionWith(corpus('ham.eml')))
      assert.equal(server.requests.at(-1)?.path, '/checkv3')
    })
  })
})
