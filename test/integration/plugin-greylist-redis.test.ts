// [greylist] store = redis through the built plugin in haraka-test-fixtures, the fake rspamd and a real Redis
// (scripts/redis.sh): triplets shared by two plugin instances (two workers), redis.ini read as
// haraka-plugin-redis reads it, and a Redis that is away or slow: mail flows per [defer], next() once.

import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import type { FixturePlugin } from 'haraka-test-fixtures'
import { parseRedisIni } from '../../src/config'
import { RedisGreylist } from '../../src/policy/greylist-redis'
import { FakeRspamd } from '../support/fake-rspamd'
import { replyFor } from '../support/replies'
import {
  captureLogs,
  connectionWith,
  corpus,
  dataPost,
  DENYSOFT,
  iniFor,
  iniPathOf,
  loadPlugin,
  replyText,
} from '../support/harness'
import { REDIS_INI, REDIS_PORT, redisClient, redisServer, type TestRedis } from '../support/redis'

const GREY = { ip: '203.0.113.5', mailFrom: 'alice@example.org', rcpts: ['bob@example.net'] }
const PREFIX = 'plugin-test:'
const REDIS_GREYLIST = `[greylist]\nenabled = true\ndelay = 300\nstore = redis\nkey_prefix = ${PREFIX}\n`

describe('plugin: [greylist] store = redis (real redis-server)', function () {
  this.timeout(60_000)
  let server: FakeRspamd
  let redis: TestRedis
  const plugins: FixturePlugin[] = []

  before(async () => {
    server = await FakeRspamd.start()
    await redisServer('start')
    redis = await redisClient()
  })
  after(async () => {
    await redis?.close()
    await redisServer('stop')
    await server.close()
  })
  beforeEach(async () => {
    await redis.flushDb()
    server.setReply(replyFor('greylist'))
  })
  afterEach(async () => {
    for (const p of plugins.splice(0)) await (p.shutdown as () => Promise<void>).call(p)
    server.setReply(replyFor('no action'))
  })

  function start(ini = REDIS_GREYLIST, redisIni = REDIS_INI): FixturePlugin {
    const p = loadPlugin(iniFor(server, ini), { files: { 'redis.ini': redisIni } })
    plugins.push(p)
    return p
  }

  /** A plugin whose Redis store runs on a clock the test moves, as a worker of a cluster would. */
  let now = 1_700_000_000_000
  function worker(ini = REDIS_GREYLIST): FixturePlugin {
    const p = start(ini)
    const old = p.greylistRedis as RedisGreylist
    void old.close()
    p.greylistRedis = new RedisGreylist({
      settings: parseRedisIni({ server: { host: '127.0.0.1', port: REDIS_PORT } }),
      keyPrefix: PREFIX,
      now: () => now,
    })
    return p
  }

  const storeOf = (p: FixturePlugin) => p.greylistRedis as RedisGreylist | undefined

  async function attempt(p: FixturePlugin) {
    const conn = await connectionWith(corpus('ham.eml'), GREY)
    const logs = captureLogs(conn)
    const requests = server.requests.length
    const res = await dataPost(p, conn)
    return {
      res,
      logs,
      scanned: server.requests.length === requests + 1,
      result: conn.transaction?.results.get('rspamd'),
    }
  }

  it('defers the first attempt on one worker and passes the retry after the delay on another', async () => {
    const one = worker()
    const two = worker()
    const first = await attempt(one)
    assert.equal(first.res.code, DENYSOFT)
    assert.equal(replyText(first.res.msg), '4.7.1 Try again later')
    assert.equal(first.result?.greylist, 'deferred')
    now += 299_000
    assert.equal((await attempt(two)).res.code, DENYSOFT, 'early retry on the other worker')
    now += 1000
    const retry = await attempt(two)
    assert.equal(retry.res.code, undefined)
    assert.equal(retry.result?.greylist, 'passed')
    assert.equal((await attempt(one)).res.code, undefined, 'and on the first worker too')
    assert.equal((await redis.keys(`${PREFIX}*`)).length, 1)
  })

  it('connects at start-up (init_master of a single process) and keeps the triplet in Redis', async () => {
    const p = start()
    await new Promise<void>((done) => (p.rspamd_init_master as (n: () => void, s: unknown) => void)(done, {}))
    const first = await attempt(p)
    assert.equal(first.res.code, DENYSOFT)
    assert.equal((await redis.keys(`${PREFIX}*`)).length, 1)
  })

  const down = (defer: string) => `${REDIS_GREYLIST}redis_timeout = 0.3\n[defer]\nerror = ${defer}\n`
  const nowhere = `[server]\nhost = 127.0.0.1\nport = 1\n`

  it('accepts a greylisted message when Redis is away ([defer] error = false), logging one line', async () => {
    const p = start(down('false'), nowhere)
    const a = await attempt(p)
    assert.equal(a.res.code, undefined, 'accepted')
    assert.ok(a.scanned, 'scanned by rspamd')
    assert.equal(a.result?.greylist, 'error')
    assert.equal(a.result?.verdict, 'accept')
    const warned = a.logs.filter((l) => /greylist store/.test(l))
    assert.equal(warned.length, 1, a.logs.join('\n'))
    assert.match(
      warned[0] ?? '',
      /^WARN .*redis:\/\/127\.0\.0\.1:1\/0: error: .*; accepting per \[defer\] error$/,
    )
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(a.res.calls(), 1, 'next() once')
  })

  it('defers with 451 when Redis is away and [defer] error = true', async () => {
    const p = start(down('true'), nowhere)
    const a = await attempt(p)
    assert.equal(a.res.code, DENYSOFT)
    assert.equal(replyText(a.res.msg), '4.7.1 Try again later')
    assert.equal(a.result?.greylist, 'error')
    assert.ok(
      a.logs.some((l) => /deferring with 451 per \[defer\] error/.test(l)),
      a.logs.join('\n'),
    )
  })

  it('accepts within redis_timeout when Redis stops answering, and scanning goes on', async () => {
    const p = start(down('false'))
    assert.equal((await attempt(p)).res.code, DENYSOFT, 'Redis answers: greylisted')
    await redis.sendCommand(['CLIENT', 'PAUSE', '1500', 'WRITE'])
    try {
      const slow = await attempt(p)
      assert.equal(slow.res.code, undefined)
      assert.equal(slow.result?.greylist, 'error')
      assert.ok(
        slow.logs.some((l) => /timeout: no answer within 300 ms; accepting/.test(l)),
        slow.logs.join('\n'),
      )
      server.setReply(replyFor('reject'))
      const next = await attempt(p)
      assert.ok(next.scanned)
      assert.equal(next.result?.action, 'reject', 'other verdicts do not touch Redis')
    } finally {
      await redis.sendCommand(['CLIENT', 'UNPAUSE'])
    }
  })

  it('never opens a Redis connection with store = memory or with greylisting off', () => {
    assert.equal(start('[greylist]\nenabled = true').greylistRedis, undefined)
    assert.equal(start('[greylist]\nstore = redis').greylistRedis, undefined)
  })

  it('warns at start-up that memory greylisting is per worker in cluster mode (nodes > 1)', () => {
    const warnings = (ini: string, nodes: unknown): string[] => {
      const p = start(ini)
      const out: string[] = []
      p.logwarn = (msg: string) => void out.push(msg)
      ;(p.rspamd_init_master as (n: () => void, s: unknown) => void)(() => {}, {
        cluster: {},
        cfg: { main: { nodes } },
      })
      return out.filter((w) => /greylist/.test(w))
    }
    assert.equal(warnings('[greylist]\nenabled = true', 2).length, 1)
    assert.match(warnings('[greylist]\nenabled = true', 4)[0] ?? '', /each worker keeps its own triplets/)
    assert.equal(warnings('[greylist]\nenabled = true', 1).length, 0, 'one worker')
    assert.equal(warnings(REDIS_GREYLIST, 2).length, 0, 'store = redis')
    assert.equal(warnings('[greylist]\nenabled = false', 2).length, 0, 'greylisting off')
  })

  it('opens Redis when a reload switches store = memory to redis, and closes it when switched back', async () => {
    const p = start('[greylist]\nenabled = true')
    await new Promise<void>((done) => (p.rspamd_init_master as (n: () => void, s: unknown) => void)(done, {}))
    assert.equal(storeOf(p), undefined)
    const reload = async (ini: string) => {
      const reloaded = new Promise<void>((done) => {
        const original = p.loginfo as (msg: string) => void
        p.loginfo = (msg: string) => {
          original.call(p, msg)
          if (/rspamd\.ini reloaded/.test(String(msg))) done()
        }
      })
      writeFileSync(iniPathOf(p), iniFor(server, ini))
      await reloaded
    }
    await reload(REDIS_GREYLIST)
    const store = storeOf(p)
    // the plugin's class comes from dist/, this file's from src/: compare by what it is, not by class
    assert.equal(store?.server, `redis://127.0.0.1:${REDIS_PORT}/0`)
    assert.equal((await attempt(p)).res.code, DENYSOFT)
    assert.equal((await redis.keys(`${PREFIX}*`)).length, 1, 'the triplet is in Redis')
    await reload('[greylist]\nenabled = true')
    assert.equal(storeOf(p), undefined)
    assert.ok(store)
    const closed = await store.check('192.0.2.1', 'a@example.org', ['b@example.net'], 1000, 1000)
    assert.equal(closed.ok, false, 'the old connection is closed')
  })

  it('refuses to start with a bad redis.ini value, naming the key', () => {
    assert.throws(
      () => start(REDIS_GREYLIST, '[server]\nport = 99999\n'),
      /redis\.ini: server\.port = 99999: expected a TCP port/,
    )
  })
})
