// Issue 5's sender and size policy through the built plugin in haraka-test-fixtures against the fake
// rspamd: whitelist, skip_ports and max_size skips, greylisting with state, local thresholds, [ham] ok.

import assert from 'node:assert/strict'
import type { FixturePlugin } from 'haraka-test-fixtures'
import { Greylist } from '../src/policy/greylist'
import { FakeRspamd } from './support/fake-rspamd'
import { replyFor } from './support/replies'
import {
  DENY,
  DENYSOFT,
  OK,
  connectionWith,
  corpus,
  dataPost,
  iniFor,
  nextLog,
  rewriteConfig,
  infoLines,
  loadPlugin,
  replyCode,
  replyText,
  unregister,
} from './support/harness'

describe('plugin: sender and size policy, greylisting, thresholds, [ham] ok', function () {
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

  describe('skips', function () {
    const CASES: Array<
      [label: string, ini: string, sender: Parameters<typeof connectionWith>[1], skip: string]
    > = [
      [
        'a client inside a whitelisted network',
        '[check]\nwhitelist = 198.51.100.0/24',
        { ip: '198.51.100.20' },
        'whitelist',
      ],
      [
        'a whitelisted IPv6 client',
        '[check]\nwhitelist = 10.0.0.1, 2001:db8::/32',
        { ip: '2001:db8::25' },
        'whitelist',
      ],
      ['mail to a skipped port', '[check]\nskip_ports = 587', { localPort: 587 }, 'port'],
    ]
    for (const [label, extra, sender, skip] of CASES) {
      it(`does not scan ${label} and records skip=${skip}`, async () => {
        plugin = loadPlugin(iniFor(server, extra))
        const before = server.requests.length
        const conn = await connectionWith(corpus('ham.eml'), sender)
        const res = await dataPost(plugin, conn)
        assert.equal(res.code, undefined)
        assert.equal(server.requests.length, before, 'nothing sent to rspamd')
        assert.deepEqual(conn.transaction?.results.get('rspamd')?.skip, [skip])
      })
    }

    // every [check] reason: one info line, and what would scan such mail
    const REASONS: Array<[sender: Parameters<typeof connectionWith>[1], ini: string, line: RegExp]> = [
      [
        { authUser: 'alice' },
        '',
        /^skip=authed size=\d+ why="authenticated sender; \[check\] authenticated = true scans it"$/,
      ],
      [
        { relaying: true },
        '',
        /^skip=relay size=\d+ why="relaying client; \[check\] relay = true scans it"$/,
      ],
      [
        { isLocal: true, isPrivate: true, ip: '127.0.0.1' },
        '',
        /^skip=local_ip,private_ip size=\d+ why="client on this machine; \[check\] local_ip = true scans it; client on a private network; \[check\] private_ip = true scans it"$/,
      ],
      [
        { isPrivate: true, ip: '10.1.2.3' },
        '',
        /^skip=private_ip size=\d+ why="client on a private network; /,
      ],
      [
        { ip: '198.51.100.20' },
        '[check]\nwhitelist = 198.51.100.0/24',
        /^skip=whitelist size=\d+ why="client in \[check\] whitelist"$/,
      ],
      [
        { localPort: 587 },
        '[check]\nskip_ports = 587',
        /^skip=port size=\d+ why="local port in \[check\] skip_ports"$/,
      ],
    ]
    for (const [sender, extra, line] of REASONS) {
      it(`logs one line for a message skipped as ${/skip=([\w,]+)/.exec(line.source)?.[1] ?? ''}, naming what would scan it`, async () => {
        plugin = loadPlugin(iniFor(server, extra))
        const conn = await connectionWith(corpus('ham.eml'), sender)
        const lines = infoLines(conn)
        await dataPost(plugin, conn)
        assert.equal(lines.length, 1, lines.join('\n'))
        assert.match(lines[0] ?? '', line)
      })
    }

    it('scans a client outside the whitelist and mail to another port', async () => {
      plugin = loadPlugin(iniFor(server, '[check]\nwhitelist = 198.51.100.0/24\nskip_ports = 587'))
      const before = server.requests.length
      const conn = await connectionWith(corpus('ham.eml'), { ip: '198.51.101.20', localPort: 25 })
      await dataPost(plugin, conn)
      assert.equal(server.requests.length, before + 1)
      assert.equal(conn.transaction?.results.get('rspamd')?.action, 'no action')
    })

    it('does not scan a message over max_size, and logs its size and the limit', async () => {
      const size = corpus('ham.eml').length
      plugin = loadPlugin(iniFor(server, `max_size = ${size - 1}`))
      const before = server.requests.length
      const conn = await connectionWith(corpus('ham.eml'))
      const lines = infoLines(conn)
      const res = await dataPost(plugin, conn)
      assert.equal(res.code, undefined)
      assert.equal(server.requests.length, before, 'nothing sent to rspamd')
      assert.deepEqual(conn.transaction?.results.get('rspamd')?.skip, ['size'])
      assert.deepEqual(lines, [`skip=size size=${size} why="message over max_size (${size - 1} bytes)"`])
    })

    it('scans a message of exactly max_size', async () => {
      plugin = loadPlugin(iniFor(server, `max_size = ${corpus('ham.eml').length}`))
      const before = server.requests.length
      await dataPost(plugin, await connectionWith(corpus('ham.eml')))
      assert.equal(server.requests.length, before + 1)
    })
  })

  describe('[greylist] enabled', function () {
    let now = 0
    /** The plugin's greylist, on a clock the test moves. */
    function fakeClock(p: FixturePlugin): (ms: number) => void {
      now = 1_700_000_000_000
      p.greylist = new Greylist({ now: () => now })
      return (ms) => (now += ms)
    }
    const GREY = { ip: '203.0.113.5', mailFrom: 'alice@example.org', rcpts: ['bob@example.net'] }

    async function attempt(sender = GREY) {
      const conn = await connectionWith(corpus('ham.eml'), sender)
      const res = await dataPost(plugin, conn)
      return { res, result: conn.transaction?.results.get('rspamd') }
    }

    it('defers the first attempt and an early retry with 451, accepts the retry after the delay', async () => {
      plugin = loadPlugin(iniFor(server, '[greylist]\nenabled = true\ndelay = 300'))
      const advance = fakeClock(plugin)
      server.setReply(replyFor('greylist'))

      const first = await attempt()
      assert.equal(first.res.code, DENYSOFT)
      assert.equal(replyCode(first.res.msg), 451)
      assert.equal(replyText(first.res.msg), '4.7.1 Try again later')
      assert.equal(first.result?.greylist, 'deferred')
      assert.equal(first.result?.verdict, 'defer')

      advance(299_000)
      const early = await attempt()
      assert.equal(early.res.code, DENYSOFT)
      assert.equal(early.result?.greylist, 'deferred')

      advance(1000)
      const retry = await attempt()
      assert.equal(retry.res.code, undefined)
      assert.equal(retry.result?.greylist, 'passed')
      assert.equal(retry.result?.verdict, 'accept')
    })

    it('defers a first attempt from another sender while a known triplet passes', async () => {
      plugin = loadPlugin(iniFor(server, '[greylist]\nenabled = true\ndelay = 60'))
      const advance = fakeClock(plugin)
      server.setReply(replyFor('greylist'))
      await attempt()
      advance(60_000)
      assert.equal((await attempt()).res.code, undefined)
      assert.equal((await attempt({ ...GREY, mailFrom: 'mallory@example.org' })).res.code, DENYSOFT)
    })

    it('uses [greylist] message', async () => {
      plugin = loadPlugin(iniFor(server, '[greylist]\nenabled = true\nmessage = Greylisted, please retry'))
      fakeClock(plugin)
      server.setReply(replyFor('greylist'))
      assert.equal(replyText((await attempt()).res.msg), '4.7.1 Greylisted, please retry')
    })

    it('records nothing in the greylist for other actions', async () => {
      plugin = loadPlugin(iniFor(server, '[greylist]\nenabled = true'))
      fakeClock(plugin)
      server.setReply(replyFor('add header'))
      const { res, result } = await attempt()
      assert.equal(res.code, undefined)
      assert.equal(result?.greylist, undefined)
      assert.equal((plugin.greylist as Greylist).size, 0)
    })

    it('accepts greylist without touching the state when [greylist] is not enabled', async () => {
      plugin = loadPlugin(iniFor(server))
      fakeClock(plugin)
      server.setReply(replyFor('greylist'))
      const { res, result } = await attempt()
      assert.equal(res.code, undefined)
      assert.equal(result?.greylist, undefined)
      assert.equal((plugin.greylist as Greylist).size, 0)
    })

    it('keeps its state across a config reload', async () => {
      plugin = loadPlugin(iniFor(server, '[greylist]\nenabled = true\ndelay = 300'))
      const advance = fakeClock(plugin)
      const state = plugin.greylist
      server.setReply(replyFor('greylist'))
      assert.equal((await attempt()).res.code, DENYSOFT)

      const reloaded = nextLog(plugin, 'loginfo', /reloaded/)
      rewriteConfig(plugin, iniFor(server, '[greylist]\nenabled = true\ndelay = 120'))
      await reloaded
      assert.equal(plugin.greylist, state, 'the same state object')
      advance(120_000)
      assert.equal((await attempt()).res.code, undefined, 'passes after the new, shorter delay')
    })

    it('keeps one state for the life of the plugin (register() does not replace it)', () => {
      plugin = loadPlugin(iniFor(server, '[greylist]\nenabled = true'))
      const state = plugin.greylist
      assert.equal(typeof (state as { check?: unknown } | undefined)?.check, 'function', 'a greylist')
      plugin.register()
      assert.equal(plugin.greylist, state)
    })
  })

  describe('[thresholds]', function () {
    it('rejects with 550 a message rspamd only marks, when the score is over the local reject', async () => {
      plugin = loadPlugin(iniFor(server, '[thresholds]\nreject = 6'))
      server.setReply(replyFor('add header'))
      const conn = await connectionWith(corpus('ham.eml'))
      const res = await dataPost(plugin, conn)
      assert.equal(res.code, DENY)
      assert.equal(replyText(res.msg), '5.7.1 Detected as spam')
      const result = conn.transaction?.results.get('rspamd')
      assert.equal(result?.action, 'add header', "rspamd's action as it sent it")
      assert.equal(result?.local_action, 'reject')
    })

    it("adds the spam headers when the local add_header is below rspamd's score", async () => {
      plugin = loadPlugin(iniFor(server, '[thresholds]\nadd_header = 0'))
      server.setReply(replyFor('no action', { score: 0.4 }))
      const conn = await connectionWith(corpus('ham.eml'))
      const res = await dataPost(plugin, conn)
      assert.equal(res.code, undefined)
      assert.match(conn.transaction?.header.get('X-Rspamd-Score') ?? '', /0\.4/)
      assert.equal(conn.transaction?.results.get('rspamd')?.local_action, 'add header')
    })

    it('records no local_action when the thresholds do not change the action', async () => {
      plugin = loadPlugin(iniFor(server, '[thresholds]\nreject = 100'))
      server.setReply(replyFor('add header'))
      const conn = await connectionWith(corpus('ham.eml'))
      await dataPost(plugin, conn)
      const result = conn.transaction?.results.get('rspamd')
      assert.ok(result && !('local_action' in result), JSON.stringify(result))
    })
  })

  describe('[ham] ok', function () {
    it('calls next(OK) for a clean verdict', async () => {
      plugin = loadPlugin(iniFor(server, '[ham]\nok = true'))
      server.setReply(replyFor('no action'))
      const conn = await connectionWith(corpus('ham.eml'))
      const res = await dataPost(plugin, conn)
      assert.equal(res.code, OK)
      assert.equal(conn.transaction?.results.get('rspamd')?.verdict, 'ok')
    })

    it('calls next() for a clean verdict over max_score', async () => {
      plugin = loadPlugin(iniFor(server, '[ham]\nok = true\nmax_score = -1'))
      server.setReply(replyFor('no action', { score: 0 }))
      const res = await dataPost(plugin, await connectionWith(corpus('ham.eml')))
      assert.equal(res.code, undefined)
    })

    it('calls next() for a message that is not clean', async () => {
      plugin = loadPlugin(iniFor(server, '[ham]\nok = true'))
      server.setReply(replyFor('add header'))
      const res = await dataPost(plugin, await connectionWith(corpus('ham.eml')))
      assert.equal(res.code, undefined)
    })

    it('calls next() when rspamd fails, whatever [ham] says', async () => {
      plugin = loadPlugin(iniFor(server, '[ham]\nok = true'))
      server.setMode('status:500')
      const res = await dataPost(plugin, await connectionWith(corpus('ham.eml')))
      assert.equal(res.code, undefined)
    })

    it('still adds the headers of add_headers=always with OK', async () => {
      plugin = loadPlugin(iniFor(server, 'add_headers = always\n[ham]\nok = true'))
      server.setReply(replyFor('no action'))
      const conn = await connectionWith(corpus('ham.eml'))
      const res = await dataPost(plugin, conn)
      assert.equal(res.code, OK)
      assert.notEqual(conn.transaction?.header.get('X-Rspamd-Score'), '')
    })
  })
})
