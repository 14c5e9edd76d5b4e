// redis.ini's [server] url against a real Redis (scripts/redis.sh): the url wins over host, port and db,
// and its password is never logged. The parsing itself, without a server: test/config/redis.test.ts.

import assert from 'node:assert/strict'
import { parseRedisIni } from '../../src/config'
import { tripletDigest } from '../../src/policy/greylist'
import { RedisGreylist } from '../../src/policy/greylist-redis'
import { REDIS_PORT, redisClient, redisServer } from '../support/redis'
import { loadPlugin, unregister } from '../support/harness'

describe('config: redis.ini url against a real redis-server', function () {
  this.timeout(60_000)
  before(() => redisServer('start'))
  after(() => redisServer('stop'))

  it('greylists in the Redis and database the url names, over [server] host, port and db', async () => {
    // host, port and db point nowhere useful: only the url leads to the test Redis, database 5
    const settings = parseRedisIni({
      server: { host: '192.0.2.1', port: 1, db: 2, url: `redis://127.0.0.1:${REDIS_PORT}/5` },
    })
    const grey = new RedisGreylist({ settings, keyPrefix: 'url-test:' })
    const redis = await redisClient()
    try {
      grey.open()
      const res = await grey.check('192.0.2.9', 'a@example.org', ['b@example.net'], 300_000, 5000)
      assert.equal(res.ok, true, JSON.stringify(res))
      await redis.select(5)
      const key = `url-test:${tripletDigest('192.0.2.9', 'a@example.org', 'b@example.net')}`
      assert.deepEqual(await redis.keys('url-test:*'), [key])
      await redis.del(key)
      assert.equal(grey.server, `redis://127.0.0.1:${REDIS_PORT}/5`)
    } finally {
      await grey.close()
      await redis.close()
    }
  })

  it('never logs the password of the url (start-up and a refused redis.ini)', async () => {
    const plugin = loadPlugin('[greylist]\nenabled = true\nstore = redis\n', {
      register: false,
      files: { 'redis.ini': `[server]\nurl = redis://haraka:hunter2-s3cret@127.0.0.1:${REDIS_PORT}/5\n` },
    })
    const lines: string[] = []
    for (const level of ['loginfo', 'logwarn', 'logerror'] as const) {
      plugin[level] = (msg: string) => lines.push(String(msg))
    }
    try {
      plugin.register()
      assert.ok(
        lines.some((l) => l.includes(`greylisting in Redis at redis://127.0.0.1:${REDIS_PORT}/5`)),
        lines.join('\n'),
      )
      assert.equal(lines.filter((l) => l.includes('hunter2')).length, 0, lines.join('\n'))
    } finally {
      await unregister(plugin)
    }
    const bad = loadPlugin('[greylist]\nenabled = true\nstore = redis\n', {
      register: false,
      files: { 'redis.ini': '[server]\nurl = http://haraka:hunter2-s3cret@127.0.0.1/5\n' },
    })
    assert.throws(
      () => bad.register(),
      (err: Error) =>
        err.name === 'ConfigError' && /server\.url/.test(err.message) && !/hunter2/.test(err.message),
    )
    await unregister(bad)
  })
})
