// src/policy/greylist.ts with a fake clock: first attempt deferred, early retry deferred, retry after the delay
// passes, what counts as the same triplet, expiry, and the bound on the number of triplets.

import assert from 'node:assert/strict'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { clientNetwork, EXPIRE_MS, Greylist, MAX_TRIPLETS, tripletKey } from '../../src/policy/greylist'

const DELAY = 300_000
const IP = '192.0.2.77'
const FROM = 'alice@example.org'
const TO = ['bob@example.net']

/** A Greylist whose clock only moves when the test says so. */
function withClock(maxEntries?: number): { grey: Greylist; advance: (ms: number) => void } {
  let now = 1_700_000_000_000
  const grey = new Greylist({ maxEntries, now: () => now })
  return { grey, advance: (ms) => (now += ms) }
}

describe('greylist', function () {
  describe('one triplet', function () {
    it('defers the first attempt for the whole delay', () => {
      const { grey } = withClock()
      assert.deepEqual(grey.check(IP, FROM, TO, DELAY), { passed: false, retryInMs: DELAY })
    })

    it('defers a retry before the delay has passed, counting from the first attempt', () => {
      const { grey, advance } = withClock()
      grey.check(IP, FROM, TO, DELAY)
      advance(DELAY - 1000)
      assert.deepEqual(grey.check(IP, FROM, TO, DELAY), { passed: false, retryInMs: 1000 })
      advance(999)
      assert.deepEqual(grey.check(IP, FROM, TO, DELAY), { passed: false, retryInMs: 1 })
    })

    it('passes the retry once the delay has passed', () => {
      const { grey, advance } = withClock()
      grey.check(IP, FROM, TO, DELAY)
      advance(DELAY)
      assert.deepEqual(grey.check(IP, FROM, TO, DELAY), { passed: true })
    })

    it('passes later messages of a passed triplet at once', () => {
      const { grey, advance } = withClock()
      grey.check(IP, FROM, TO, DELAY)
      advance(DELAY)
      grey.check(IP, FROM, TO, DELAY)
      advance(60_000)
      assert.deepEqual(grey.check(IP, FROM, TO, DELAY), { passed: true })
    })

    it('uses the delay of each check (a reload may change it)', () => {
      const { grey, advance } = withClock()
      grey.check(IP, FROM, TO, DELAY)
      advance(2000)
      assert.deepEqual(grey.check(IP, FROM, TO, 1000), { passed: true })
    })
  })

  describe('what is the same triplet', function () {
    const SAME: Array<[label: string, ip: string, from: string, to: string]> = [
      ['another address of the same /24', '192.0.2.1', FROM, TO[0]],
      ['the sender in other case', IP, 'Alice@EXAMPLE.org', TO[0]],
      ['the recipient in other case', IP, FROM, 'BOB@example.NET'],
      ['the client as an IPv4-mapped IPv6 address', `::ffff:${IP}`, FROM, TO[0]],
    ]
    for (const [label, ip, from, to] of SAME) {
      it(`passes the retry from ${label}`, () => {
        const { grey, advance } = withClock()
        grey.check(IP, FROM, TO, DELAY)
        advance(DELAY)
        assert.deepEqual(grey.check(ip, from, [to], DELAY), { passed: true })
      })
    }

    const OTHER: Array<[label: string, ip: string, from: string, to: string]> = [
      ['another /24', '192.0.3.77', FROM, TO[0]],
      ['another sender', IP, 'mallory@example.org', TO[0]],
      ['the null sender', IP, '', TO[0]],
      ['another recipient', IP, FROM, 'carol@example.net'],
    ]
    for (const [label, ip, from, to] of OTHER) {
      it(`defers a first attempt from ${label}`, () => {
        const { grey, advance } = withClock()
        grey.check(IP, FROM, TO, DELAY)
        advance(DELAY)
        assert.deepEqual(grey.check(ip, from, [to], DELAY), { passed: false, retryInMs: DELAY })
      })
    }

    it('treats an IPv6 client by its /64', () => {
      const { grey, advance } = withClock()
      grey.check('2001:db8:1:2::25', FROM, TO, DELAY)
      advance(DELAY)
      assert.deepEqual(grey.check('2001:db8:1:2:ffff::1', FROM, TO, DELAY), { passed: true })
      assert.equal(grey.check('2001:db8:1:3::25', FROM, TO, DELAY).passed, false)
    })

    it('keys a bounce (null sender) apart from any sender', () => {
      assert.notEqual(tripletKey(IP, '', TO[0]), tripletKey(IP, '<>x', TO[0]))
      assert.match(tripletKey(IP, '', TO[0]), / <> /)
    })
  })

  describe('a message to several recipients', function () {
    it('defers the message while one triplet is new, then passes all on the retry', () => {
      const { grey, advance } = withClock()
      grey.check(IP, FROM, ['a@example.net'], DELAY)
      advance(DELAY)
      assert.deepEqual(grey.check(IP, FROM, ['a@example.net'], DELAY), { passed: true })
      // a is known and passed, b is new: the one transaction is deferred as a whole
      assert.deepEqual(grey.check(IP, FROM, ['a@example.net', 'b@example.net'], DELAY), {
        passed: false,
        retryInMs: DELAY,
      })
      advance(DELAY)
      assert.deepEqual(grey.check(IP, FROM, ['a@example.net', 'b@example.net'], DELAY), { passed: true })
    })

    it('waits for the youngest triplet', () => {
      const { grey, advance } = withClock()
      grey.check(IP, FROM, ['a@example.net'], DELAY)
      advance(DELAY / 2)
      grey.check(IP, FROM, ['a@example.net', 'b@example.net'], DELAY)
      advance(DELAY / 2)
      assert.deepEqual(grey.check(IP, FROM, ['a@example.net', 'b@example.net'], DELAY), {
        passed: false,
        retryInMs: DELAY / 2,
      })
    })

    it('greylists a message without recipients as one triplet', () => {
      const { grey, advance } = withClock()
      assert.equal(grey.check(IP, FROM, [], DELAY).passed, false)
      advance(DELAY)
      assert.equal(grey.check(IP, FROM, [], DELAY).passed, true)
      assert.equal(grey.size, 1)
    })
  })

  describe('expiry', function () {
    it('forgets a pending triplet whose sender did not retry within the delay + 24 h', () => {
      const { grey, advance } = withClock()
      grey.check(IP, FROM, TO, DELAY)
      advance(DELAY + EXPIRE_MS)
      assert.deepEqual(grey.check(IP, FROM, TO, DELAY), { passed: false, retryInMs: DELAY })
    })

    it('passes a retry just inside the retry window', () => {
      const { grey, advance } = withClock()
      grey.check(IP, FROM, TO, DELAY)
      advance(DELAY + EXPIRE_MS - 1)
      assert.deepEqual(grey.check(IP, FROM, TO, DELAY), { passed: true })
    })

    it('remembers a passed triplet for 24 h after its last message, each message renewing it', () => {
      const { grey, advance } = withClock()
      grey.check(IP, FROM, TO, DELAY)
      advance(DELAY)
      grey.check(IP, FROM, TO, DELAY)
      advance(EXPIRE_MS - 1)
      assert.deepEqual(grey.check(IP, FROM, TO, DELAY), { passed: true }, 'renewed')
      advance(EXPIRE_MS - 1)
      assert.deepEqual(grey.check(IP, FROM, TO, DELAY), { passed: true }, 'renewed again')
      advance(EXPIRE_MS)
      assert.equal(grey.check(IP, FROM, TO, DELAY).passed, false, 'forgotten after 24 h of silence')
    })

    it('drops expired triplets from memory, not only when they are asked about', () => {
      const { grey, advance } = withClock()
      for (let i = 0; i < 50; i++) grey.check(IP, FROM, [`r${i}@example.net`], DELAY)
      assert.equal(grey.size, 50)
      advance(DELAY + EXPIRE_MS)
      grey.check('198.51.100.1', FROM, TO, DELAY)
      assert.equal(grey.size, 1)
    })
  })

  describe('bounded state', function () {
    it(`keeps at most ${MAX_TRIPLETS} triplets under a flood of distinct ones, forgetting the oldest`, () => {
      // a clean heap figure: expose gc for this measurement (test-only)
      setFlagsFromString('--expose-gc')
      const gc = runInNewContext('gc') as () => void
      gc()
      const before = process.memoryUsage().heapUsed
      const { grey, advance } = withClock()
      const total = MAX_TRIPLETS + 50_000
      for (let i = 0; i < total; i++) {
        const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.1`
        grey.check(ip, `sender${i}@example.org`, [`rcpt${i}@example.net`], DELAY)
        advance(1)
      }
      gc()
      const grown = process.memoryUsage().heapUsed - before
      assert.equal(grey.size, MAX_TRIPLETS)
      console.log(
        `      ${grey.size} triplets held (of ${total} offered): heap grew ${(grown / 2 ** 20).toFixed(1)} MiB`,
      )
      // the newest is remembered: its retry passes once the delay is over
      advance(DELAY)
      const last = total - 1
      const lastIp = `10.${(last >> 16) & 255}.${(last >> 8) & 255}.1`
      assert.deepEqual(grey.check(lastIp, `sender${last}@example.org`, [`rcpt${last}@example.net`], DELAY), {
        passed: true,
      })
      // the first was evicted: its retry counts as a first attempt again
      assert.deepEqual(grey.check('10.0.0.1', 'sender0@example.org', ['rcpt0@example.net'], DELAY), {
        passed: false,
        retryInMs: DELAY,
      })
      assert.equal(grey.size, MAX_TRIPLETS)
    })

    it('keeps a recently retried triplet over older ones (least recently used goes first)', () => {
      const { grey, advance } = withClock(3)
      grey.check(IP, FROM, ['a@example.net'], DELAY)
      grey.check(IP, FROM, ['b@example.net'], DELAY)
      grey.check(IP, FROM, ['c@example.net'], DELAY)
      advance(DELAY)
      assert.equal(grey.check(IP, FROM, ['a@example.net'], DELAY).passed, true)
      grey.check(IP, FROM, ['d@example.net'], DELAY) // evicts b, the least recently seen
      assert.equal(grey.size, 3)
      assert.equal(grey.check(IP, FROM, ['a@example.net'], DELAY).passed, true)
      assert.equal(grey.check(IP, FROM, ['b@example.net'], DELAY).passed, false)
    })
  })

  describe('clientNetwork()', function () {
    const CASES: Array<[ip: string, network: string]> = [
      ['192.0.2.77', '192.0.2.0/24'],
      ['10.0.0.1', '10.0.0.0/24'],
      ['::ffff:192.0.2.77', '192.0.2.0/24'],
      ['::FFFF:192.0.2.77', '192.0.2.0/24'],
      ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
      ['2001:DB8:1:2::', '2001:db8:1:2::/64'],
      ['2001:db8::1', '2001:db8:0:0::/64'],
      ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8:0:0::/64'],
      ['::1', '0:0:0:0::/64'],
      ['::', '0:0:0:0::/64'],
      ['fe80::1:2:3:4', 'fe80:0:0:0::/64'],
      ['1:2:3:4:5:6:192.0.2.1', '1:2:3:4::/64'],
      ['64:ff9b::192.0.2.1', '64:ff9b:0:0::/64'],
      ['1:2:3::192.0.2.1', '1:2:3:0::/64'],
      ['unknown', 'unknown'],
      ['', ''],
    ]
    for (const [ip, network] of CASES) {
      it(`puts ${JSON.stringify(ip)} in ${network}`, () => {
        assert.equal(clientNetwork(ip), network)
      })
    }
  })
})
