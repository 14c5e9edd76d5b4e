// src/rspamd/lookup.ts: the host name lookup cache of the connections to rspamd, with a resolver and a
// clock of the test's own.

import assert from 'node:assert/strict'
import type { LookupAddress, LookupAllOptions } from 'node:dns'
import { LookupCache, LOOKUP_TTL_MS } from '../../src/rspamd/lookup'

type Done = (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void

/** A resolver that answers when told to, recording what it was asked. */
function resolver() {
  const asked: { hostname: string; options: LookupAllOptions; done: Done }[] = []
  return {
    asked,
    resolve: (hostname: string, options: LookupAllOptions, done: Done) => {
      asked.push({ hostname, options, done })
    },
  }
}

const V4: LookupAddress[] = [
  { address: '127.0.0.1', family: 4 },
  { address: '127.0.0.2', family: 4 },
]

/** Calls lookup and resolves to what its callback got. */
function ask(cache: LookupCache, hostname: string, options: object) {
  return new Promise<unknown[]>((resolve) => {
    cache.lookup(hostname, options, (...args: unknown[]) => resolve(args))
  })
}

describe('lookup cache', () => {
  let clock = 0
  const now = () => clock
  beforeEach(() => {
    clock = 1_000
  })

  it('answers from its cache within the TTL, and asks again after it', async () => {
    const r = resolver()
    const cache = new LookupCache(LOOKUP_TTL_MS, now, r.resolve)
    const first = ask(cache, 'rspamd.example', {})
    assert.equal(r.asked.length, 1)
    // asked for every address whatever the caller wants, so one answer serves both kinds of caller
    assert.equal(r.asked[0]?.options.all, true)
    r.asked[0]?.done(null, V4)
    assert.deepEqual(await first, [null, '127.0.0.1', 4])
    clock += LOOKUP_TTL_MS - 1
    assert.deepEqual(await ask(cache, 'rspamd.example', {}), [null, '127.0.0.1', 4])
    assert.deepEqual(await ask(cache, 'rspamd.example', { all: true }), [null, V4])
    assert.equal(r.asked.length, 1)
    clock += 1
    const again = ask(cache, 'rspamd.example', {})
    assert.equal(r.asked.length, 2)
    r.asked[1]?.done(null, [{ address: '127.0.0.9', family: 4 }])
    assert.deepEqual(await again, [null, '127.0.0.9', 4])
  })

  it('lookups of one name at the same moment share one resolver call', async () => {
    const r = resolver()
    const cache = new LookupCache(LOOKUP_TTL_MS, now, r.resolve)
    const all = [
      ask(cache, 'localhost', {}),
      ask(cache, 'localhost', { all: true }),
      ask(cache, 'localhost', {}),
    ]
    assert.equal(r.asked.length, 1)
    r.asked[0]?.done(null, V4)
    assert.deepEqual(await Promise.all(all), [
      [null, '127.0.0.1', 4],
      [null, V4],
      [null, '127.0.0.1', 4],
    ])
  })

  it('passes a failure on to every caller waiting and does not keep it', async () => {
    const r = resolver()
    const cache = new LookupCache(LOOKUP_TTL_MS, now, r.resolve)
    const failed = [ask(cache, 'gone.example', {}), ask(cache, 'gone.example', { all: true })]
    const err = Object.assign(new Error('getaddrinfo EAI_AGAIN gone.example'), { code: 'EAI_AGAIN' })
    r.asked[0]?.done(err, [])
    for (const [e] of await Promise.all(failed)) assert.equal(e, err)
    const next = ask(cache, 'gone.example', {})
    assert.equal(r.asked.length, 2, 'the next lookup asks the resolver again')
    r.asked[1]?.done(null, V4)
    assert.deepEqual(await next, [null, '127.0.0.1', 4])
  })

  it('a resolver that throws fails the callers of that moment, and the next lookup asks again', async () => {
    let calls = 0
    const cache = new LookupCache(LOOKUP_TTL_MS, now, (_h, _o, done) => {
      if (++calls === 1) throw new TypeError('The argument hints is invalid')
      done(null, V4)
    })
    const [err] = await ask(cache, 'localhost', {})
    assert.match(String(err), /hints is invalid/)
    assert.deepEqual(await ask(cache, 'localhost', {}), [null, '127.0.0.1', 4])
    assert.equal(calls, 2)
  })

  it('an empty answer is an ENOTFOUND error naming the host, and is not kept', async () => {
    const r = resolver()
    const cache = new LookupCache(LOOKUP_TTL_MS, now, r.resolve)
    const p = ask(cache, 'empty.example', {})
    r.asked[0]?.done(null, [])
    const [err] = await p
    assert.equal((err as NodeJS.ErrnoException).code, 'ENOTFOUND')
    assert.match((err as Error).message, /empty\.example/)
    void ask(cache, 'empty.example', {})
    assert.equal(r.asked.length, 2)
  })

  it('keeps an answer per address family asked for', async () => {
    const r = resolver()
    const cache = new LookupCache(LOOKUP_TTL_MS, now, r.resolve)
    const v4 = ask(cache, 'localhost', { family: 4 })
    const v6 = ask(cache, 'localhost', { family: 6 })
    assert.deepEqual(
      r.asked.map((a) => a.options.family),
      [4, 6],
    )
    r.asked[0]?.done(null, [{ address: '127.0.0.1', family: 4 }])
    r.asked[1]?.done(null, [{ address: '::1', family: 6 }])
    assert.deepEqual(await v4, [null, '127.0.0.1', 4])
    assert.deepEqual(await v6, [null, '::1', 6])
  })

  it('forget() drops one name (every family) and keeps the others', async () => {
    const r = resolver()
    const cache = new LookupCache(LOOKUP_TTL_MS, now, r.resolve)
    for (const [name, family] of [
      ['a.localhost', 4],
      ['localhost', 4],
      ['localhost', 6],
    ] as const) {
      const p = ask(cache, name, { family })
      r.asked.at(-1)?.done(null, V4)
      await p
    }
    assert.equal(r.asked.length, 3)
    cache.forget('localhost')
    void ask(cache, 'localhost', { family: 4 })
    void ask(cache, 'localhost', { family: 6 })
    assert.equal(r.asked.length, 5)
    void ask(cache, 'a.localhost', { family: 4 })
    assert.equal(r.asked.length, 5, 'a.localhost is still cached')
  })
})
