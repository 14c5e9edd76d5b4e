// The in-flight limit per rspamd server and the line of scans waiting for room (src/rspamd/limiter.ts),
// then the client's admission by deadline and selection by load over fake rspamd servers, and the
// plugin's answer for a scan shed because rspamd was saturated (issue 26).

import assert from 'node:assert/strict'
import { Readable, type Writable } from 'node:stream'
import { parseConfig, type Config } from '../../src/config'
import {
  CALM_MS,
  type ClientEvent,
  type MessageSource,
  RspamdClient,
  ScanCancel,
} from '../../src/rspamd/client'
import {
  ConcurrencyLimit,
  DEFAULT_CEILING,
  INITIAL_LIMIT,
  LatencyWindow,
  RateWindow,
  WaitLine,
} from '../../src/rspamd/limiter'
import { FakeRspamd } from '../support/fake-rspamd'
import {
  connectionWith,
  corpus,
  DENYSOFT,
  dataPost,
  loadPlugin,
  replyCode,
  unregister,
} from '../support/harness'

const adaptive = (maxInFlight = 0) => new ConcurrencyLimit({ maxInFlight, adaptive: true })

/** Answers `n` scans sent at `sentAt` in `ms` each, with the limit in use (as many held as it allows). */
function answerMany(
  l: ConcurrencyLimit,
  n: number,
  ms: number,
  targetMs: number,
  sentAt = performance.now(),
): void {
  for (let i = 0; i < n; i++) {
    l.held = l.slots()
    l.answered(ms, targetMs, sentAt)
  }
  l.held = 0
}

describe('limiter: the in-flight limit of one server', function () {
  it('starts at INITIAL_LIMIT under the default ceiling, and at max_in_flight when that is lower', () => {
    assert.equal(adaptive().slots(), INITIAL_LIMIT)
    assert.equal(adaptive().ceiling, DEFAULT_CEILING)
    assert.equal(adaptive(5).slots(), 5)
  })

  it('grows by one per quick answer while in use (slow start)', () => {
    const l = adaptive()
    answerMany(l, 10, 10, 1000)
    assert.equal(l.slots(), INITIAL_LIMIT + 10)
  })

  it('does not grow while the limit is not in use (an idle server says nothing)', () => {
    const l = adaptive()
    l.held = 2
    for (let i = 0; i < 100; i++) l.answered(10, 1000, performance.now())
    assert.equal(l.slots(), INITIAL_LIMIT)
  })

  it('shrinks on an answer over the target, once per round: scans sent before the decrease do not shrink it again', () => {
    const l = adaptive()
    const before = performance.now()
    assert.ok(l.answered(1500, 1000, before))
    assert.equal(l.slots(), Math.floor(INITIAL_LIMIT * 0.7))
    // another late answer of a scan sent before the decrease: the same backlog, already answered for
    assert.equal(l.answered(1500, 1000, before), false)
    assert.equal(l.slots(), Math.floor(INITIAL_LIMIT * 0.7))
    // one sent after it: a new sign
    l.answered(1500, 1000, performance.now() + 1)
    assert.equal(l.slots(), Math.floor(INITIAL_LIMIT * 0.7 * 0.7))
  })

  it('shrinks on timeouts (and 5xx), never below 1', () => {
    const l = adaptive()
    for (let i = 0; i < 50; i++) l.backlog(performance.now() + i)
    assert.equal(l.slots(), 1)
    assert.equal(l.hasRoom(), true)
    l.held = 1
    assert.equal(l.hasRoom(), false)
  })

  it('after the first backlog grows by one per `limit` answers, not one per answer', () => {
    const l = adaptive()
    l.backlog(performance.now())
    const start = l.slots()
    answerMany(l, start + 1, 10, 1000, performance.now() + 1)
    assert.equal(l.slots(), start + 1)
  })

  it('never grows over max_in_flight, the ceiling', () => {
    const l = adaptive(25)
    answerMany(l, 100, 10, 1000)
    assert.equal(l.slots(), 25)
  })

  it('adaptive = false: a fixed limit of max_in_flight, 0 is unlimited (as 1.6.x)', () => {
    const fixed = new ConcurrencyLimit({ maxInFlight: 7, adaptive: false })
    fixed.backlog(performance.now())
    answerMany(fixed, 50, 10, 1000)
    assert.equal(fixed.slots(), 7)
    const unlimited = new ConcurrencyLimit({ maxInFlight: 0, adaptive: false })
    unlimited.held = 1_000_000
    assert.equal(unlimited.hasRoom(), true)
  })

  it('unlimited (adaptive = false, max_in_flight = 0): the load is the scans held, so the least busy server still wins', () => {
    const a = new ConcurrencyLimit({ maxInFlight: 0, adaptive: false })
    const b = new ConcurrencyLimit({ maxInFlight: 0, adaptive: false })
    a.held = 3
    b.held = 1
    assert.ok(b.load() < a.load())
  })

  it('a reload keeps what was learnt, within the new ceiling', () => {
    const old = adaptive()
    answerMany(old, 30, 10, 1000)
    const kept = adaptive()
    kept.inherit(old)
    assert.equal(kept.slots(), INITIAL_LIMIT + 30)
    const lower = adaptive(10)
    lower.inherit(old)
    assert.equal(lower.slots(), 10)
  })

  it('converges to fair shares: two workers sharing one overloaded server end within a factor of each other', () => {
    // a simulation without a clock: a server that finishes `capacity` scans per round; each worker
    // keeps its limit full, and a round whose total exceeds the capacity is late for both
    const a = adaptive()
    const b = adaptive()
    a.limit = 60
    const capacity = 30
    // each round starts after the last decrease (the limits compare with performance.now())
    let t = performance.now() + 1e6
    for (let round = 0; round < 400; round++) {
      t += 1000
      const late = a.slots() + b.slots() > capacity
      for (const l of [a, b]) {
        if (late) l.answered(2000, 1000, t)
        else answerMany(l, l.slots(), 10, 1000, t)
      }
    }
    const [small, big] = [a.slots(), b.slots()].sort((x, y) => x - y)
    assert.ok(small !== undefined && big !== undefined && big <= small * 2, `${a.slots()} vs ${b.slots()}`)
  })
})

describe('limiter: recent scan times and the line', function () {
  it('p90 of the recent scans, the oldest forgotten once the ring is full', () => {
    const w = new LatencyWindow()
    assert.equal(w.p90(), undefined)
    for (let i = 1; i <= 100; i++) w.add(i)
    assert.equal(w.p90(), 91)
    for (let i = 0; i < 200; i++) w.add(5)
    assert.equal(w.p90(), 5)
  })

  it('the rate of recent ends per ms', () => {
    const r = new RateWindow()
    assert.equal(r.perMs(0), undefined)
    for (let i = 0; i <= 10; i++) r.add(i * 40)
    assert.equal(r.perMs(400), 10 / 400)
  })

  it('first come, first served; one taken out of the middle leaves the others in order', () => {
    const line = new WaitLine<number>()
    const woken: number[] = []
    const ws = [1, 2, 3, 4].map((n) => line.push(() => (woken.push(n), true)))
    assert.equal(line.remove(ws[1] as (typeof ws)[number]), true)
    assert.equal(line.remove(ws[1] as (typeof ws)[number]), false, 'out already')
    for (let w = line.shift(); w; w = line.shift()) w.wake(0)
    assert.deepEqual(woken, [1, 3, 4])
    assert.equal(line.length, 0)
  })

  it('holds 10⁵ waiters, takes every other one out and serves the rest in order', () => {
    const line = new WaitLine<number>()
    const ws = []
    for (let i = 0; i < 100_000; i++) ws.push(line.push(() => true))
    for (let i = 0; i < ws.length; i += 2) line.remove(ws[i] as (typeof ws)[number])
    assert.equal(line.length, 50_000)
    let n = 0
    let ok = true
    for (let w = line.shift(); w; w = line.shift()) ok &&= w === ws[2 * n++ + 1]
    assert.ok(ok)
    assert.equal(n, 50_000)
  })
})

/** A message source over a buffer. */
function source(message: Buffer): MessageSource {
  let current: Readable | undefined
  return {
    pipe(dest: Writable) {
      current = Readable.from([message], { objectMode: false })
      current.pipe(dest)
    },
    unpipe() {
      current?.unpipe()
      current?.destroy()
    },
  }
}

const SMALL = Buffer.from('From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n')

function configFor(servers: string, upstream: Record<string, string>): Config {
  return parseConfig({ main: { servers }, upstream })
}

describe('client: admission by deadline and selection by load', function () {
  this.timeout(20_000)
  const servers: FakeRspamd[] = []
  const clients: RspamdClient[] = []
  const start = async (mode?: Parameters<typeof FakeRspamd.start>[0]) => {
    const s = await FakeRspamd.start(mode)
    servers.push(s)
    return s
  }
  const client = (cfg: Config, events: ClientEvent[] = []) => {
    const c = new RspamdClient(cfg, { onEvent: (e) => events.push(e) })
    clients.push(c)
    return c
  }
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.destroy()))
    await Promise.all(servers.splice(0).map((s) => s.close()))
  })
  const scan = (c: RspamdClient, timeoutMs: number, cancel?: ScanCancel, id = '') =>
    c.scan({ headers: { 'Queue-Id': id }, source: source(SMALL), timeoutMs, cancel, sizeHint: SMALL.length })

  it('takes the fast path while a server has room: nobody waits, nothing is shed', async () => {
    const s = await start({ mode: 'delay:20' })
    const c = client(configFor(`127.0.0.1:${s.port}`, {}))
    let most = 0
    const all = Array.from({ length: 15 }, () =>
      scan(c, 4000).finally(() => (most = Math.max(most, c.waiting))),
    )
    assert.equal(c.waiting, 0)
    const results = await Promise.all(all)
    assert.ok(results.every((r) => r.ok))
    assert.equal(most, 0)
  })

  it('serves the waiters first come, first served', async () => {
    const s = await start({ mode: 'delay:30' })
    const c = client(configFor(`127.0.0.1:${s.port}`, { max_in_flight: '1', adaptive: 'false' }))
    const ids = ['a', 'b', 'c', 'd', 'e']
    const results = await Promise.all(ids.map((id) => scan(c, 8000, undefined, id)))
    assert.ok(results.every((r) => r.ok))
    assert.deepEqual(
      s.requests.map((r) => r.headers['queue-id']),
      ids,
    )
  })

  it('sheds at once a scan that could not finish in time (p90 over the time left), without sending it or marking the server dead', async () => {
    const s = await start({ mode: 'delay:300' })
    const events: ClientEvent[] = []
    const c = client(configFor(`127.0.0.1:${s.port}`, { max_in_flight: '1', adaptive: 'false' }), events)
    // history: scans take 300 ms
    for (let i = 0; i < 3; i++) assert.ok((await scan(c, 4000)).ok)
    const busy = scan(c, 4000)
    await s.waitForRequests(4)
    const order: string[] = []
    const shed = scan(c, 250).then((r) => (order.push('shed'), r))
    const first = busy.then((r) => (order.push('busy'), r))
    const [r] = await Promise.all([shed, first])
    assert.deepEqual(order, ['shed', 'busy'], 'answered before the scan ahead of it ended')
    assert.equal(r.ok, false)
    assert.equal(r.ok ? '' : r.error.kind, 'saturated')
    assert.equal(r.ok ? '' : r.error.code, 'ERR_RSPAMD_SATURATED')
    assert.match(r.ok ? '' : r.error.message, /^rspamd saturated: .*p90.*limit 1/)
    assert.equal(r.bytesSent, 0)
    assert.equal(s.requests.length, 4, 'never sent')
    assert.equal(c.health()[0]?.dead, false)
    assert.equal(c.health()[0]?.failures, 0)
    // one warning as saturation starts, not one per scan
    await scan(c, 100)
    assert.equal(events.filter((e) => /^rspamd saturated/.test(e.message)).length, 1)
  })

  it('says once that rspamd keeps up again after CALM_MS without a shed, also when no more mail comes', async function () {
    this.timeout(30_000)
    const s = await start({ mode: 'delay:200' })
    const events: ClientEvent[] = []
    const c = client(configFor(`127.0.0.1:${s.port}`, { max_in_flight: '1', adaptive: 'false' }), events)
    for (let i = 0; i < 3; i++) assert.ok((await scan(c, 4000)).ok)
    const busy = scan(c, 4000)
    await s.waitForRequests(4)
    const r = await scan(c, 150)
    assert.equal(r.ok ? '' : r.error.kind, 'saturated')
    await busy
    // no scan after this one: only the client's own check can see the calm
    const calmBy = Date.now() + 3 * CALM_MS
    while (!events.some((e) => /^rspamd keeps up again/.test(e.message)) && Date.now() < calmBy) {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const calm = events.filter((e) => /^rspamd keeps up again/.test(e.message))
    assert.equal(calm.length, 1, events.map((e) => e.message).join('\n'))
    assert.match(calm[0]?.message ?? '', /1 scans shed and 0 sent while saturated/)
  })

  it('a waiter whose time runs out in line is shed at its deadline, and the slot stays with the scan ahead', async () => {
    const s = await start({ mode: 'hang' })
    const c = client(configFor(`127.0.0.1:${s.port}`, { max_in_flight: '1', adaptive: 'false' }))
    const hung = scan(c, 3000)
    await s.waitForRequests(1)
    const r = await scan(c, 300)
    assert.equal(r.ok ? '' : r.error.kind, 'saturated')
    assert.match(r.ok ? '' : r.error.message, /no room within the 300 ms timeout/)
    assert.equal(c.waiting, 0)
    assert.equal(s.requests.length, 1)
    const h = await hung
    assert.equal(h.ok ? '' : h.error.kind, 'timeout')
  })

  it('a waiter whose SMTP client leaves is taken out of the line, and its slot is not lost', async () => {
    const s = await start({ mode: 'delay:200' })
    const c = client(configFor(`127.0.0.1:${s.port}`, { max_in_flight: '1', adaptive: 'false' }))
    const ahead = scan(c, 5000)
    await s.waitForRequests(1)
    const cancel = new ScanCancel()
    const gone = scan(c, 5000, cancel)
    const behind = scan(c, 5000, undefined, 'behind')
    assert.equal(c.waiting, 2)
    cancel.abort()
    const g = await gone
    assert.equal(g.ok ? '' : g.error.kind, 'aborted')
    assert.equal(c.waiting, 1)
    assert.ok((await ahead).ok)
    const b = await behind
    assert.ok(b.ok)
    assert.deepEqual(
      s.requests.map((r) => r.headers['queue-id']),
      ['', 'behind'],
    )
    // every slot given back: the next scan takes the fast path
    const next = scan(c, 5000)
    assert.equal(c.waiting, 0)
    assert.ok((await next).ok)
  })

  it('a reload keeps the limit learnt for a server it keeps, within the new max_in_flight', async () => {
    const s = await start()
    const old = client(configFor(`127.0.0.1:${s.port}`, {}))
    const internals = old as unknown as { upstreams: { limit: ConcurrencyLimit }[] }
    const learnt = internals.upstreams[0]?.limit
    assert.ok(learnt)
    learnt.limit = 7
    const same = new RspamdClient(configFor(`127.0.0.1:${s.port}`, { max_in_flight: '100' }), {
      previous: old,
    })
    const lower = new RspamdClient(configFor(`127.0.0.1:${s.port}`, { max_in_flight: '5' }), {
      previous: old,
    })
    clients.push(same, lower)
    assert.equal(same.health()[0]?.limit, 7)
    assert.equal(lower.health()[0]?.limit, 5)
  })

  it('never starts a failover try that could not come back in time (less than MIN_ATTEMPT_MS left)', async () => {
    const silent = await start({ mode: 'hang' })
    const good = await start()
    const c = client(configFor(`127.0.0.1:${silent.port}, 127.0.0.1:${good.port}`, {}))
    // the first server takes half of 150 ms; the 75 ms left are under MIN_ATTEMPT_MS (100)
    const r = await scan(c, 150)
    assert.equal(r.ok ? '' : r.error.kind, 'timeout')
    assert.equal(r.attempts.length, 0)
    assert.equal(good.requests.length, 0)
    // with time enough, the same failure fails over
    const r2 = await scan(c, 2000)
    assert.ok(r2.ok)
  })

  it('spills over to a server with room: a full server is not a dead one', async () => {
    const a = await start({ mode: 'hang' })
    const b = await start({ mode: 'hang' })
    const c = client(
      configFor(`127.0.0.1:${a.port}, 127.0.0.1:${b.port}`, { max_in_flight: '1', adaptive: 'false' }),
    )
    const scans = [scan(c, 600), scan(c, 600)]
    await Promise.all([a.waitForRequests(1), b.waitForRequests(1)])
    const third = scan(c, 600)
    assert.equal(c.waiting, 1, 'both servers full: the third waits, no server is skipped as dead')
    assert.ok(c.health().every((h) => !h.dead))
    await Promise.all([...scans, third])
  })

  it('picks the least loaded server (held ÷ limit), not the one with fewest in flight', async () => {
    const a = await start({ mode: 'hang' })
    const b = await start({ mode: 'hang' })
    const c = client(configFor(`127.0.0.1:${a.port}, 127.0.0.1:${b.port}`, { max_in_flight: '8' }))
    // a's limit learnt low (timeouts), b's still 8: of six scans, b takes most
    const internals = c as unknown as { upstreams: { limit: ConcurrencyLimit }[] }
    const la = internals.upstreams[0]?.limit
    assert.ok(la)
    la.limit = 2
    const scans = Array.from({ length: 6 }, () => scan(c, 400))
    await Promise.all([a.waitForRequests(2), b.waitForRequests(4)])
    assert.equal(a.requests.length, 2)
    assert.equal(b.requests.length, 4)
    await Promise.all(scans)
  })
})

describe('plugin: a scan shed because rspamd is saturated', function () {
  this.timeout(20_000)
  let server: FakeRspamd
  let plugin: ReturnType<typeof loadPlugin> | undefined
  beforeEach(async () => {
    server = await FakeRspamd.start({ mode: 'hang' })
  })
  afterEach(async () => {
    if (plugin) await unregister(plugin)
    plugin = undefined
    await server.close()
  })

  for (const defer of [true, false]) {
    it(`${defer ? 'defers with 451' : 'accepts unscanned'} with defer.timeout=${defer}, records shed, calls next() once`, async () => {
      plugin = loadPlugin(
        `host = 127.0.0.1\nport = ${server.port}\ntimeout = 1\n[upstream]\nmax_in_flight = 1\nadaptive = false\n` +
          `[defer]\ntimeout = ${defer}\n`,
      )
      const first = await connectionWith(corpus('ham.eml'))
      const hung = dataPost(plugin, first)
      await server.waitForRequests(1)
      const conn = await connectionWith(corpus('ham.eml'))
      const res = await dataPost(plugin, conn)
      if (defer) {
        assert.equal(res.code, DENYSOFT)
        assert.equal(replyCode(res.msg), 451)
      } else assert.equal(res.code, undefined)
      const rec = conn.transaction?.results.get('rspamd')
      assert.equal(rec?.shed, true)
      assert.deepEqual(rec?.err ?? [], [], 'no error record per message')
      assert.match(String((rec?.msg as string[] | undefined)?.[0]), /saturated: rspamd saturated/)
      assert.equal(server.requests.length, 1, 'the shed message never reached rspamd')
      await hung
      await server.waitForIdle()
      assert.equal(res.calls(), 1)
    })
  }
})
