// src/policy/greylist-redis.ts against a real Redis (scripts/redis.sh): the rules of the memory store, with the
// triplets in Redis — first attempt, early retry, retry after the delay, expiry by Redis, two workers at
// once — and what a missing or stalled Redis gives (a value, never an exception).

import assert from 'node:assert/strict'
import { createServer, type Server, type Socket } from 'node:net'
import type { RedisSettings } from '../../src/config'
import { EXPIRE_MS, tripletDigest } from '../../src/policy/greylist'
import { RedisGreylist, type RedisGreylistOptions } from '../../src/policy/greylist-redis'
import { REDIS_PORT, redisClient, redisServer, type TestRedis } from '../support/redis'

const DELAY = 300_000
const IP = '192.0.2.77'
const FROM = 'alice@example.org'
const TO = ['bob@example.net']
const PREFIX = 'test-greylist:'
const BOUND = 2000
const SETTINGS: RedisSettings = { host: '127.0.0.1', port: REDIS_PORT, database: 0, tls: false }

describe('greylist in Redis (real redis-server)', function () {
  this.timeout(60_000)
  let redis: TestRedis
  const stores: RedisGreylist[] = []

  /** A store on a clock the test moves (each store its own, as two hosts would have). */
  function withClock(opts: Partial<RedisGreylistOptions> = {}) {
    let now = 1_700_000_000_000
    const grey = new RedisGreylist({ settings: SETTINGS, keyPrefix: PREFIX, now: () => now, ...opts })
    stores.push(grey)
    return {
      grey,
      check: (rcpts = TO, ip = IP, from = FROM) => grey.check(ip, from, rcpts, DELAY, BOUND),
      advance: (ms: number) => (now += ms),
    }
  }

  const keyOf = (rcpt = TO[0]) => `${PREFIX}${tripletDigest(IP, FROM, rcpt)}`

  before(async () => {
    await redisServer('start')
    redis = await redisClient()
  })
  after(async () => {
    await redis?.close()
    await redisServer('stop')
  })
  beforeEach(async () => {
    await redis.flushDb()
  })
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()))
  })

  it('defers the first attempt for the whole delay and stores one key under the prefix', async () => {
    const { check } = withClock()
    assert.deepEqual(await check(), { ok: true, outcome: { passed: false, retryInMs: DELAY } })
    assert.deepEqual(await redis.keys('*'), [keyOf()])
    assert.equal(await redis.get(keyOf()), '1700000000000', 'the first-seen time')
    const ttl = await redis.pTTL(keyOf())
    assert.ok(ttl > DELAY + EXPIRE_MS - 60_000 && ttl <= DELAY + EXPIRE_MS, `Redis forgets it: PTTL ${ttl}`)
  })

  it('defers a retry before the delay has passed, counting from the first attempt', async () => {
    const { check, advance } = withClock()
    await check()
    advance(DELAY - 1000)
    assert.deepEqual(await check(), { ok: true, outcome: { passed: false, retryInMs: 1000 } })
  })

  it('passes the retry once the delay has passed, and remembers the triplet 24 h from then', async () => {
    const { check, advance } = withClock()
    await check()
    advance(DELAY)
    assert.deepEqual(await check(), { ok: true, outcome: { passed: true } })
    assert.equal(await redis.get(keyOf()), 'passed')
    const ttl = await redis.pTTL(keyOf())
    assert.ok(ttl > EXPIRE_MS - 60_000 && ttl <= EXPIRE_MS, `PTTL ${ttl}`)
    advance(3_600_000)
    assert.deepEqual(await check(), { ok: true, outcome: { passed: true } }, 'later messages pass at once')
  })

  it('waits for the youngest triplet of a message to several recipients', async () => {
    const { check, advance } = withClock()
    await check(['a@example.net'])
    advance(DELAY / 2)
    // b is new: the message waits the whole delay although a is half-way through
    assert.deepEqual(await check(['a@example.net', 'b@example.net']), {
      ok: true,
      outcome: { passed: false, retryInMs: DELAY },
    })
    advance(DELAY / 2)
    assert.deepEqual(await check(['a@example.net', 'b@example.net']), {
      ok: true,
      outcome: { passed: false, retryInMs: DELAY / 2 },
    })
    advance(DELAY / 2)
    assert.deepEqual(await check(['a@example.net', 'b@example.net']), { ok: true, outcome: { passed: true } })
  })

  it('treats the same client network, sender and recipient in other case as the same triplet', async () => {
    const { check, advance } = withClock()
    await check()
    advance(DELAY)
    assert.deepEqual(await check(['BOB@example.NET'], '192.0.2.1', 'Alice@EXAMPLE.org'), {
      ok: true,
      outcome: { passed: true },
    })
  })

  it('starts afresh once Redis has expired the key (Redis does the forgetting)', async () => {
    // keyspace events of our own test server: the expiry is an event to wait for, not a sleep
    await redis.configSet('notify-keyspace-events', 'Ex')
    const sub = redis.duplicate()
    sub.on('error', () => {})
    await sub.connect()
    try {
      const expired = new Promise<void>((resolve) => {
        void sub.subscribe('__keyevent@0__:expired', (key) => {
          if (key === keyOf()) resolve()
        })
      })
      // a pending key lives delay + expiry: 20 + 50 ms here
      const { grey } = withClock({ expireMs: 50 })
      const first = await grey.check(IP, FROM, TO, 20, BOUND)
      assert.deepEqual(first, { ok: true, outcome: { passed: false, retryInMs: 20 } })
      await expired
      assert.deepEqual(await grey.check(IP, FROM, TO, 20, BOUND), {
        ok: true,
        outcome: { passed: false, retryInMs: 20 },
      })
    } finally {
      await sub.close()
      await redis.configSet('notify-keyspace-events', '')
    }
  })

  it('keeps installations with different key prefixes apart', async () => {
    const a = withClock()
    const b = withClock({ keyPrefix: 'other-haraka:' })
    await a.check()
    a.advance(DELAY)
    b.advance(DELAY)
    assert.deepEqual(await b.check(), { ok: true, outcome: { passed: false, retryInMs: DELAY } })
    assert.deepEqual(await a.check(), { ok: true, outcome: { passed: true } })
  })

  it('creates one triplet when two workers see the same first attempt at once; either passes the retry', async () => {
    const one = withClock()
    const two = withClock()
    two.advance(1) // the other worker's clock reads 1 ms later
    const rcpts = Array.from({ length: 50 }, (_, i) => [`r${i}@example.net`])
    const results = await Promise.all(rcpts.flatMap((r) => [one.check(r), two.check(r)]))
    // per triplet: one worker created it (waits the whole delay), the other found it (never longer)
    for (const r of results)
      assert.ok(r.ok && !r.outcome.passed && r.outcome.retryInMs >= DELAY - 1, String(r))
    assert.equal((await redis.keys(`${PREFIX}*`)).length, 50, 'one key per triplet')
    for (const [rcpt] of rcpts) {
      const firstSeen = Number(await redis.get(keyOf(rcpt)))
      assert.ok(firstSeen === 1_700_000_000_000 || firstSeen === 1_700_000_000_001, String(firstSeen))
    }
    one.advance(DELAY + 1)
    two.advance(DELAY + 1)
    for (let i = 0; i < rcpts.length; i++) {
      const worker = i % 2 === 0 ? one : two
      assert.deepEqual(await worker.check(rcpts[i]), { ok: true, outcome: { passed: true } })
    }
  })

  it("uses Redis's own clock when none is given: hosts agree on the delay", async () => {
    const grey = new RedisGreylist({ settings: SETTINGS, keyPrefix: PREFIX })
    stores.push(grey)
    assert.deepEqual(await grey.check(IP, FROM, TO, DELAY, BOUND), {
      ok: true,
      outcome: { passed: false, retryInMs: DELAY },
    })
    const [seconds] = await redis.time().then((t) => [Number(t[0])])
    const firstSeen = Number(await redis.get(keyOf()))
    assert.ok(Math.abs(firstSeen / 1000 - seconds) < 5, `first seen ${firstSeen}, Redis time ${seconds}`)
    const early = await grey.check(IP, FROM, TO, DELAY, BOUND)
    assert.ok(early.ok && !early.outcome.passed && early.outcome.retryInMs <= DELAY)
  })

  it('loads the script again after Redis has lost it (SCRIPT FLUSH, a restart)', async () => {
    const { check, advance } = withClock()
    await check()
    await redis.scriptFlush()
    advance(DELAY)
    assert.deepEqual(await check(), { ok: true, outcome: { passed: true } })
  })

  it('answers with an error, at once, when Redis is not there', async () => {
    const nobody = await unusedPort()
    const { check } = withClock({ settings: { ...SETTINGS, port: nobody } })
    const res = await check()
    assert.equal(res.ok, false)
    assert.equal(!res.ok && res.error.kind, 'error')
  })

  it('answers with a timeout when Redis does not answer within the bound', async () => {
    const { grey, check } = withClock()
    await check() // connected and ready
    const paused = await redis.sendCommand(['CLIENT', 'PAUSE', '1000', 'ALL'])
    assert.equal(paused, 'OK')
    try {
      const res = await grey.check(IP, FROM, TO, DELAY, 100)
      assert.deepEqual(res, {
        ok: false,
        error: { kind: 'timeout', code: 'ERR_GREYLIST_REDIS_TIMEOUT', message: 'no answer within 100 ms' },
      })
    } finally {
      await redis.sendCommand(['CLIENT', 'UNPAUSE'])
    }
  })

  it('answers with a timeout when a server accepts the connection but never speaks', async () => {
    const silent = await silentServer()
    try {
      const { grey } = withClock({ settings: { ...SETTINGS, port: silent.port } })
      const res = await grey.check(IP, FROM, TO, DELAY, 200)
      assert.equal(res.ok, false)
      assert.ok(!res.ok && (res.error.kind === 'timeout' || res.error.kind === 'error'), JSON.stringify(res))
    } finally {
      await silent.close()
    }
  })

  /** connections Redis has open besides the test's own one */
  const othersConnected = async () => {
    const own = String(await redis.sendCommand(['CLIENT', 'ID']))
    return String(await redis.sendCommand(['CLIENT', 'LIST']))
      .trim()
      .split('\n')
      .filter((l) => !l.startsWith(`id=${own} `)).length
  }

  it('closes without rejecting and leaves no connection when a check is stuck on a stalled Redis', async () => {
    const { grey, check } = withClock()
    await check() // connected and ready
    assert.equal(await othersConnected(), 1)
    await redis.sendCommand(['CLIENT', 'PAUSE', '1500', 'ALL'])
    try {
      const res = await grey.check(IP, FROM, TO, DELAY, 100)
      assert.equal(!res.ok && res.error.kind, 'timeout')
      // its command is still queued when close() comes: the grace time runs out, the socket goes
      const t0 = performance.now()
      await grey.close(300)
      assert.ok(performance.now() - t0 < 1_200, 'not held until Redis answers')
    } finally {
      await redis.sendCommand(['CLIENT', 'UNPAUSE'])
    }
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.equal(await othersConnected(), 0)
  })

  it('leaves no connection when closed while it is still connecting', async () => {
    const events: string[] = []
    const grey = new RedisGreylist({
      settings: SETTINGS,
      keyPrefix: PREFIX,
      onEvent: (e) => events.push(e.message),
    })
    grey.open()
    await grey.close()
    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.equal(await othersConnected(), 0)
    const res = await grey.check(IP, FROM, TO, DELAY, BOUND)
    assert.equal(!res.ok && res.error.kind, 'error')
    assert.ok(events.length <= 1, events.join('\n'))
  })

  it('answers with an error after close()', async () => {
    const { grey, check } = withClock()
    await check()
    await grey.close()
    const res = await check()
    assert.equal(!res.ok && res.error.kind, 'error')
  })
})

async function unusedPort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const addr = srv.address()
  await new Promise((resolve) => srv.close(resolve))
  return typeof addr === 'object' && addr ? addr.port : 0
}

/** A TCP server on 127.0.0.1 that takes connections and never answers. */
async function silentServer(): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  const srv: Server = createServer((s) => {
    sockets.add(s)
    s.on('error', () => {})
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const addr = srv.address()
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy()
        srv.close(() => resolve())
      }),
  }
}
