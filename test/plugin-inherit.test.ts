// A plugin that inherits this one, as haraka/Haraka#3604 made 1.6.x's methods reusable: loaded by
// haraka-test-fixtures, whose inherits() copies the parent's exports and runs its register() on the
// child, as Haraka's does. The child asks rspamd its own way and hands the reply to handle_rspamd.

import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as constants from 'haraka-constants'
import * as fixtures from 'haraka-test-fixtures'
import type { FixtureConnection, FixturePlugin } from 'haraka-test-fixtures'
import { replyFor } from './support/replies'
import { connectionWith, corpus, replyCode, replyText, scratchDir, unregister } from './support/harness'

// haraka-test-fixtures 1.7's hook helper (not in types/haraka-test-fixtures.d.ts): calls the method
// the plugin registered for data_post and resolves with what it passed to next()
const { callDataPost } = fixtures as unknown as {
  callDataPost(plugin: FixturePlugin, conn: FixtureConnection): Promise<{ rc?: number; msg?: unknown }>
}

// The child: a package plugin (as Haraka loads one from node_modules) that registers its own data_post
// hook, checks [check] with should_check and acts on a reply it got itself (here: from a note).
const CHILD = `'use strict'
exports.register = function () {
  this.inherits('rspamd')
  this.register_hook('data_post', 'child_data_post')
}
exports.child_data_post = function (next, connection) {
  if (!this.should_check(connection)) return next()
  this.handle_rspamd(next, connection, connection.transaction.notes.child_reply, Date.now() - 5)
}
`

function loadChild(ini: string): FixturePlugin {
  const dir = scratchDir('child')
  const pkg = join(dir, 'haraka-plugin-rspamd-child')
  mkdirSync(pkg)
  writeFileSync(
    join(pkg, 'package.json'),
    JSON.stringify({ name: 'haraka-plugin-rspamd-child', main: 'index.js' }),
  )
  writeFileSync(join(pkg, 'index.js'), CHILD)
  const haraka = join(dir, 'haraka')
  mkdirSync(join(haraka, 'config'), { recursive: true })
  writeFileSync(join(haraka, 'config', 'rspamd.ini'), ini)
  // what the shipped [quarantine] action = queue needs, so that register() logs no error about it
  writeFileSync(join(haraka, 'config', 'plugins'), 'queue/quarantine\nrspamd_child\n')
  const saved = process.env.HARAKA
  process.env.HARAKA = haraka
  try {
    const child = new fixtures.plugin(pkg)
    child.name = 'rspamd_child'
    child.timeout = 30
    child.register()
    return child
  } finally {
    if (saved === undefined) delete process.env.HARAKA
    else process.env.HARAKA = saved
  }
}

async function scanned(reply: unknown, sender = {}): Promise<FixtureConnection> {
  const conn = await connectionWith(corpus('ham.eml'), sender)
  const txn = conn.transaction
  assert.ok(txn)
  txn.notes.child_reply = reply
  return conn
}

describe('a plugin that inherits this one (1.6.x API: should_check, handle_rspamd)', function () {
  let child: FixturePlugin

  beforeEach(() => {
    child = loadChild('host = 127.0.0.1\nport = 9\n')
  })
  afterEach(() => unregister(child))

  it("gets the parent's methods and config, and only its own hook (none of the parent's)", () => {
    for (const name of ['should_check', 'handle_rspamd', 'rspamd_data_post', 'shutdown']) {
      assert.equal(typeof child[name], 'function', name)
    }
    assert.deepEqual(child.hooks, { data_post: ['child_data_post'] })
    assert.equal(
      (child.cfg as { target?: unknown } | undefined)?.target !== undefined,
      true,
      'register() ran on it',
    )
  })

  it('should_check: false for a sender [check] skips, with the skip recorded; true otherwise', async () => {
    const skipped = await scanned(JSON.stringify(replyFor('reject')), { isPrivate: true })
    assert.equal((child.should_check as (c: unknown) => boolean).call(child, skipped), false)
    assert.deepEqual(skipped.transaction?.results.get('rspamd_child')?.skip, ['private_ip'])
    const outside = await scanned(JSON.stringify(replyFor('reject')))
    assert.equal((child.should_check as (c: unknown) => boolean).call(child, outside), true)
    assert.equal(outside.transaction?.results.get('rspamd_child'), undefined)
  })

  it('a skipped sender is not acted on: the hook continues although the reply says reject', async () => {
    const conn = await scanned(JSON.stringify(replyFor('reject')), { isLocal: true, isPrivate: true })
    const res = await callDataPost(child, conn)
    assert.equal(res.rc, undefined)
  })

  it('handle_rspamd: a reject as JSON text → DENY with the 550 5.7.1 DSN, and the results record', async () => {
    const conn = await scanned(JSON.stringify(replyFor('reject')))
    const res = await callDataPost(child, conn)
    assert.equal(res.rc, constants.deny)
    assert.equal(replyCode(res.msg), 550)
    assert.match(replyText(res.msg) ?? '', /^5\.7\.1 /)
    const rec = conn.transaction?.results.get('rspamd_child')
    assert.equal(rec?.action, 'reject')
    assert.ok(typeof rec?.time === 'number' && rec.time >= 0.005, 'time from start')
  })

  it("handle_rspamd: a soft reject as a parsed object → DENYSOFT 451; as 1.6.x's {data, log} the same", async () => {
    for (const reply of [replyFor('soft reject'), { data: replyFor('soft reject'), log: {} }]) {
      const res = await callDataPost(child, await scanned(reply))
      assert.equal(res.rc, constants.denysoft)
      assert.equal(replyCode(res.msg), 451)
    }
  })

  it("handle_rspamd: add header → continue, with the parent's spam headers on the message", async () => {
    const conn = await scanned(Buffer.from(JSON.stringify(replyFor('add header'))))
    const res = await callDataPost(child, conn)
    assert.equal(res.rc, undefined)
    assert.match(conn.transaction?.header.get('X-Rspamd-Score') ?? '', /^6\.5/)
    assert.equal((conn.transaction?.notes.rspamd as { action?: string }).action, 'add header')
  })

  it("handle_rspamd: a reply that is not rspamd's is a failed scan under [defer] error, named in the results", async () => {
    for (const reply of ['not json', { score: 3 }, undefined, 42]) {
      const conn = await scanned(reply)
      const res = await callDataPost(child, conn)
      assert.equal(res.rc, undefined, `${String(reply)}: accepted (defer.error = false)`)
      const err = conn.transaction?.results.get('rspamd_child')?.err
      assert.match(String(err), /handle_rspamd: /, String(reply))
    }
    await unregister(child)
    child = loadChild('host = 127.0.0.1\nport = 9\n[defer]\nerror = true\n')
    const res = await callDataPost(child, await scanned('not json'))
    assert.equal(res.rc, constants.denysoft)
    assert.equal(replyCode(res.msg), 451)
  })

  it("handle_rspamd: called with 1.6.x's argument order, it throws a TypeError naming the new one", async () => {
    const conn = await scanned(replyFor('reject'))
    assert.throws(
      () =>
        (child.handle_rspamd as (...a: unknown[]) => void).call(child, conn, {
          data: replyFor('reject'),
          log: {},
        }),
      (err: unknown) =>
        err instanceof TypeError && /handle_rspamd\(next, connection, reply/.test(err.message),
    )
  })

  it('handle_rspamd: a reply text over the 16 MiB cap is a too-large failure, not parsed', async () => {
    const conn = await scanned(`{"action":"reject","x":"${'a'.repeat(16 * 1024 * 1024)}"}`)
    const res = await callDataPost(child, conn)
    assert.equal(res.rc, undefined, 'accepted per [defer] error = false')
    assert.match(
      String(conn.transaction?.results.get('rspamd_child')?.err),
      /^too-large: handle_rspamd: reply of \d+ bytes is over 16777216/,
    )
  })

  it('should_check and handle_rspamd before register(): an error line naming it, no scan, next() once', async () => {
    const unregistered = Object.create(child) as FixturePlugin
    unregistered.cfg = undefined
    const conn = await scanned(JSON.stringify(replyFor('reject')))
    const errors: string[] = []
    ;(conn as unknown as { logerror: (p: unknown, m: string) => void }).logerror = (_p, m) => errors.push(m)
    assert.equal((child.should_check as (c: unknown) => boolean).call(unregistered, conn), false)
    let calls = 0
    const codes: unknown[] = []
    ;(child.handle_rspamd as (...a: unknown[]) => void).call(
      unregistered,
      (code?: number) => {
        calls++
        codes.push(code)
      },
      conn,
      JSON.stringify(replyFor('reject')),
    )
    assert.equal(calls, 1)
    assert.deepEqual(codes, [undefined])
    assert.deepEqual(errors, [
      'should_check: no rspamd.ini loaded (register() has not run): not scanning',
      'handle_rspamd: no rspamd.ini loaded (register() has not run): continuing',
    ])
  })

  it('handle_rspamd without a transaction calls next() once and touches nothing', () => {
    let calls = 0
    ;(child.handle_rspamd as (...a: unknown[]) => void).call(
      child,
      () => calls++,
      { transaction: null },
      '{}',
    )
    assert.equal(calls, 1)
  })
})
