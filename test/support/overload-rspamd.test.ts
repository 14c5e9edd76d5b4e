// The fixed-capacity fake rspamd of the overload test and benchmark: its reply names the scan, FIFO
// answers in arrival order, a scan whose client left is counted as performed and wasted, and a bad
// capacity is refused.

import assert from 'node:assert/strict'
import { OverloadRspamd, SCAN_HEADER } from './overload-rspamd'

function post(
  port: number,
  signal?: AbortSignal,
): Promise<{ status: number; json: Record<string, unknown> }> {
  return fetch(`http://127.0.0.1:${port}/checkv2`, {
    method: 'POST',
    body: 'Subject: x\r\n\r\nhi\r\n',
    signal,
  }).then(async (res) => ({ status: res.status, json: (await res.json()) as Record<string, unknown> }))
}

async function until(done: () => boolean): Promise<void> {
  while (!done()) await new Promise((resolve) => setTimeout(resolve, 5))
}

describe('overload fake rspamd (test/support/overload-rspamd.ts)', function () {
  this.timeout(20_000)
  let fake: OverloadRspamd | undefined
  afterEach(async () => {
    await fake?.close()
    fake = undefined
  })

  it('fifo: answers add header, one scan at a time in arrival order, each naming its scan', async () => {
    fake = await OverloadRspamd.start('fifo', 5) // 200 ms a scan
    const server = fake
    const order: string[] = []
    const one = async () => {
      const r = await post(server.port)
      assert.equal(r.status, 200)
      assert.equal(r.json.action, 'add header')
      const milter = r.json.milter as { add_headers: Record<string, string> }
      order.push(milter.add_headers[SCAN_HEADER])
    }
    // each arrives after the one before it, all while the first is in service
    const sent: Promise<void>[] = []
    for (let i = 1; i <= 3; i++) {
      sent.push(one())
      await until(() => server.snapshot().requests === i)
    }
    await Promise.all(sent)
    assert.deepEqual(order, ['1', '2', '3'])
    await server.drained(5000)
    const { maxInFlight, ...counts } = server.snapshot()
    assert.deepEqual(counts, { requests: 3, performed: 3, wasted: 0, inFlight: 0 })
    assert.ok(maxInFlight >= 2, `max in flight ${maxInFlight}`)
  })

  for (const model of ['fifo', 'ps'] as const) {
    it(`${model}: a scan whose client left is performed all the same and counted as wasted`, async () => {
      fake = await OverloadRspamd.start(model, 2) // 500 ms a scan
      const server = fake
      const ac = new AbortController()
      const gone = post(server.port, ac.signal).catch((err: unknown) => err)
      await until(() => server.snapshot().requests === 1)
      ac.abort()
      await gone
      await server.drained(5000)
      assert.equal(server.snapshot().performed, 1)
      assert.equal(server.snapshot().wasted, 1)
      assert.equal(server.openConnections, 0)
    })
  }

  it('ps: every scan in flight finishes', async () => {
    fake = await OverloadRspamd.start('ps', 100)
    const port = fake.port
    const replies = await Promise.all(Array.from({ length: 5 }, () => post(port)))
    assert.deepEqual(
      replies.map((r) => r.status),
      [200, 200, 200, 200, 200],
    )
    await fake.drained(5000)
    assert.equal(fake.snapshot().performed, 5)
    assert.equal(fake.snapshot().wasted, 0)
  })

  it('refuses a capacity that is not a positive number of scans per second', async () => {
    for (const bad of [0, -1, NaN, 1e9]) {
      await assert.rejects(OverloadRspamd.start('fifo', bad), /bad capacity/)
    }
  })

  it('answers /ping and nothing else but /checkv2', async () => {
    fake = await OverloadRspamd.start('fifo')
    const ping = await fetch(`http://127.0.0.1:${fake.port}/ping`)
    assert.equal(ping.status, 200)
    await ping.text()
    const other = await fetch(`http://127.0.0.1:${fake.port}/other`)
    assert.equal(other.status, 404)
    await other.text()
    assert.equal(fake.snapshot().requests, 0)
  })
})
