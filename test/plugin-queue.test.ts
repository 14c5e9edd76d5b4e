// rspamd's discard and quarantine in the built plugin (haraka-test-fixtures + fake rspamd): what
// data_post answers and notes, what the plugin's own queue hooks answer, the [quarantine] choices,
// and the start-up error when config/plugins lacks queue/quarantine.

import assert from 'node:assert/strict'
import type { FixtureConnection, FixturePlugin } from 'haraka-test-fixtures'
import { FakeRspamd } from './support/fake-rspamd'
import { replyFor } from './support/replies'
import {
  DENY,
  DENYSOFT,
  OK,
  connectionWith,
  corpus,
  dataPost,
  headerBlock,
  iniFor,
  infoRecords,
  loadPlugin,
  queuedMessage,
  replyCode,
  replyText,
  unregister,
} from './support/harness'

/** A transaction note by path, through haraka-notes' get(). */
function note(conn: FixtureConnection, path: string): unknown {
  const notes = conn.transaction?.notes as { get(p: string): unknown } | undefined
  return notes?.get(path)
}

type Hook = (
  this: FixturePlugin,
  next: (code?: number, msg?: unknown) => void,
  conn: FixtureConnection,
) => void

/** Call one of the plugin's queue hooks; resolves at its next(). */
function queueHook(plugin: FixturePlugin, name: string, conn: FixtureConnection) {
  const hook = plugin[name] as Hook | undefined
  if (typeof hook !== 'function') throw new Error(`plugin has no ${name}`)
  return new Promise<{ code?: number; msg?: unknown }>((done) => {
    hook.call(plugin, (code, msg) => done({ code, msg }), conn)
  })
}

/** The plugin, registered, with its error lines collected from register() on. */
function loadWithErrors(ini: string, plugins: string): { plugin: FixturePlugin; errors: string[] } {
  const plugin = loadPlugin(ini, { register: false, files: { plugins } })
  const errors: string[] = []
  const original = (plugin.logerror as (msg: unknown) => void).bind(plugin)
  plugin.logerror = (msg: unknown) => {
    errors.push(String(msg))
    original(msg)
  }
  plugin.register()
  return { plugin, errors }
}

/** rspamd's reply for a force_actions / pre-result action, as rspamd 3.4 writes it. */
function forced(action: 'discard' | 'quarantine') {
  return replyFor('no action', {
    action: action as never,
    score: 3.5,
    messages: { smtp_message: `Test ${action}` },
  })
}

const WITH_QUARANTINE = 'rspamd\nqueue/quarantine\nqueue/smtp_forward\n'
const WITHOUT_QUARANTINE = 'rspamd\nqueue/smtp_forward\n'

describe("plugin: rspamd's discard and quarantine", function () {
  let server: FakeRspamd
  let plugin: FixturePlugin | undefined

  before(async () => {
    server = await FakeRspamd.start()
  })
  after(async () => {
    await server.close()
  })
  afterEach(async () => {
    if (plugin) await unregister(plugin)
    plugin = undefined
    server.setMode('ok')
  })

  it('registers its queue hooks first and last, for inbound and relayed mail', () => {
    plugin = loadPlugin(iniFor(server))
    const hooks = plugin.hooks as Record<string, string[]>
    for (const hook of ['queue', 'queue_outbound']) {
      assert.deepEqual(hooks[hook], ['rspamd_queue', 'rspamd_queue_guard'], hook)
    }
  })

  describe('discard', function () {
    it('lets data_post go on, marks the transaction, and its queue hook answers OK (250, not queued)', async () => {
      plugin = loadPlugin(iniFor(server), { files: { plugins: WITHOUT_QUARANTINE } })
      server.setReply(forced('discard'))
      const conn = await connectionWith(corpus('ham.eml'))
      const rec = infoRecords(conn)
      const res = await dataPost(plugin, conn)
      assert.equal(res.code, undefined)
      const txn = conn.transaction
      assert.ok(txn)
      assert.equal(note(conn, 'queue.wants'), 'discard')
      assert.equal(txn.notes.discard, true, "queue/discard's own note")
      const result = txn.results.get('rspamd') as Record<string, unknown>
      assert.equal(result.verdict, 'discard')
      assert.equal(result.action, 'discard')
      const line = rec.fields.find((f) => f.verdict !== undefined)
      assert.equal(line?.verdict, 'discard')
      assert.equal(line?.action, 'discard')
      assert.equal(line?.code, undefined, 'no SMTP code of ours: Haraka answers 250')

      const first = await queueHook(plugin, 'rspamd_queue', conn)
      assert.equal(first.code, OK)
      assert.ok(
        rec.lines.some((l) => /discarding the message: rspamd's action is discard/.test(l)),
        rec.lines.join('\n'),
      )
    })

    it('writes no header onto a message it discards', async () => {
      plugin = loadPlugin(iniFor(server, 'add_headers = always'))
      server.setReply(forced('discard'))
      const conn = await connectionWith(corpus('ham.eml'))
      await dataPost(plugin, conn)
      assert.doesNotMatch(headerBlock(await queuedMessage(conn)), /^X-Spam|^X-Rspamd/im)
    })

    it('discards mail from an authenticated sender too (when [check] scans it)', async () => {
      plugin = loadPlugin(iniFor(server, '[check]\nauthenticated = true'))
      server.setReply(forced('discard'))
      const conn = await connectionWith(corpus('ham.eml'), { authUser: 'alice' })
      await dataPost(plugin, conn)
      assert.equal((await queueHook(plugin, 'rspamd_queue', conn)).code, OK)
    })
  })

  describe('the queue hooks leave other mail alone', function () {
    for (const action of ['no action', 'add header'] as const) {
      it(`"${action}": both queue hooks call next() without a code`, async () => {
        plugin = loadPlugin(iniFor(server), { files: { plugins: WITHOUT_QUARANTINE } })
        server.setReply(replyFor(action))
        const conn = await connectionWith(corpus('ham.eml'))
        await dataPost(plugin, conn)
        assert.equal((await queueHook(plugin, 'rspamd_queue', conn)).code, undefined)
        assert.equal((await queueHook(plugin, 'rspamd_queue_guard', conn)).code, undefined)
        assert.equal(note(conn, 'queue.wants'), undefined)
      })
    }
  })

  describe('quarantine, [quarantine] action = queue (the default)', function () {
    it('hands it to queue/quarantine: queue.wants, quarantine_action OK, the spam headers written', async () => {
      const loaded = loadWithErrors(iniFor(server), WITH_QUARANTINE)
      plugin = loaded.plugin
      assert.deepEqual(loaded.errors, [])
      server.setReply(forced('quarantine'))
      const conn = await connectionWith(corpus('ham.eml'))
      const rec = infoRecords(conn)
      const res = await dataPost(plugin, conn)
      assert.equal(res.code, undefined)
      const txn = conn.transaction
      assert.ok(txn)
      assert.equal(note(conn, 'queue.wants'), 'quarantine')
      assert.equal(txn.notes.quarantine_action, OK)
      assert.equal((txn.results.get('rspamd') as Record<string, unknown>).verdict, 'quarantine')
      assert.equal(rec.fields.find((f) => f.verdict !== undefined)?.verdict, 'quarantine')
      assert.match(headerBlock(await queuedMessage(conn)), /^X-Rspamd-Score: /m)
      // the first hook lets queue/quarantine run; the last one defers what it did not store
      assert.equal((await queueHook(plugin, 'rspamd_queue', conn)).code, undefined)
      const guard = await queueHook(plugin, 'rspamd_queue_guard', conn)
      assert.equal(guard.code, DENYSOFT)
      assert.equal(replyCode(guard.msg), 450)
    })

    it("keeps an operator's own quarantine_action", async () => {
      plugin = loadPlugin(iniFor(server), { files: { plugins: WITH_QUARANTINE } })
      server.setReply(forced('quarantine'))
      const conn = await connectionWith(corpus('ham.eml'))
      const own = [DENY, 'Held']
      if (conn.transaction) conn.transaction.notes.quarantine_action = own
      await dataPost(plugin, conn)
      assert.deepEqual(conn.transaction?.notes.quarantine_action, own)
    })

    it('says at start-up that queue/quarantine is missing, and defers such a message at once', async () => {
      const loaded = loadWithErrors(iniFor(server), WITHOUT_QUARANTINE)
      plugin = loaded.plugin
      assert.equal(loaded.errors.length, 1, loaded.errors.join('\n'))
      assert.match(
        loaded.errors[0],
        /\[quarantine\] action = queue, but queue\/quarantine is not in config\/plugins/,
      )
      assert.match(loaded.errors[0], /add the line "queue\/quarantine" to config\/plugins/)
      server.setReply(forced('quarantine'))
      const conn = await connectionWith(corpus('ham.eml'))
      await dataPost(plugin, conn)
      const first = await queueHook(plugin, 'rspamd_queue', conn)
      assert.equal(first.code, DENYSOFT)
      assert.equal(replyCode(first.msg), 450)
      assert.match(replyText(first.msg) ?? '', /held for review/i)
    })

    it('warns at start-up about a queue plugin listed before queue/quarantine', () => {
      const loaded = loadWithErrors(iniFor(server), 'rspamd\nqueue/smtp_forward\nqueue/quarantine\n')
      plugin = loaded.plugin
      assert.equal(loaded.errors.length, 1, loaded.errors.join('\n'))
      assert.match(loaded.errors[0], /queue\/smtp_forward comes before queue\/quarantine/)
    })
  })

  describe('quarantine, the other [quarantine] actions (no plugin needed, none said missing)', function () {
    const ROWS: Array<[how: string, code: number | undefined, smtp?: number]> = [
      ['reject', DENY, 550],
      ['soft_reject', DENYSOFT, 451],
      ['accept', undefined],
    ]
    for (const [how, code, smtp] of ROWS) {
      it(`action = ${how}: data_post answers ${smtp ?? 'nothing (delivered, marked)'}`, async () => {
        const loaded = loadWithErrors(iniFor(server, `[quarantine]\naction = ${how}`), WITHOUT_QUARANTINE)
        plugin = loaded.plugin
        assert.deepEqual(loaded.errors, [])
        server.setReply(forced('quarantine'))
        const conn = await connectionWith(corpus('ham.eml'))
        const res = await dataPost(plugin, conn)
        assert.equal(res.code, code)
        if (smtp !== undefined) {
          assert.equal(replyCode(res.msg), smtp)
          assert.equal(replyText(res.msg), `${smtp === 550 ? '5.7.1' : '4.7.1'} Test quarantine`)
          return
        }
        assert.equal(note(conn, 'queue.wants'), undefined)
        assert.match(headerBlock(await queuedMessage(conn)), /^X-Rspamd-Score: /m)
        assert.equal((await queueHook(plugin, 'rspamd_queue', conn)).code, undefined)
        assert.equal((await queueHook(plugin, 'rspamd_queue_guard', conn)).code, undefined)
      })
    }
  })
})
