// rspamd.ini's [redis] over redis.ini's [server] (over its [opts]), as haraka-plugin-redis merges karma's
// and limit's [redis]: the merge key by key, errors naming rspamd.ini and the key, the section checked by
// parseConfig whatever the store (start-up, reload, rspamd-lda), and the plugin's greylist store built
// from the merge at start-up and on a reload. No Redis is needed: a store is opened only by init_*.

import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FixturePlugin } from 'haraka-test-fixtures'
import { ConfigError, parseConfig, parseRedisIni, type RedisSettings } from '../../src/config'
import { parseOptions } from '../../src/lda/options'
import { loadPlugin, nextLog, rewriteConfig, unregister } from '../support/harness'

const DEFAULT: RedisSettings = {
  host: '127.0.0.1',
  port: 6379,
  path: undefined,
  database: 0,
  username: undefined,
  password: undefined,
  tls: false,
  connectTimeout: undefined,
}

const SHARED = { server: { host: 'redis.example', port: 6380, database: 1 }, opts: { password: 'shared-pw' } }

const MERGED: Array<
  [label: string, redisIni: unknown, own: Record<string, unknown>, expected: Partial<RedisSettings>]
> = [
  [
    'no [redis]: redis.ini as it is',
    SHARED,
    {},
    { host: 'redis.example', port: 6380, database: 1, password: 'shared-pw' },
  ],
  [
    '[redis] database alone: the shared server, its own database',
    SHARED,
    { database: 2 },
    { host: 'redis.example', port: 6380, database: 2, password: 'shared-pw' },
  ],
  [
    '[redis] db, the old name, over [server] database',
    SHARED,
    { db: '3' },
    { host: 'redis.example', port: 6380, database: 3, password: 'shared-pw' },
  ],
  [
    '[redis] ip, the old name, over [server] host',
    SHARED,
    { ip: '10.0.0.7' },
    { host: '10.0.0.7', port: 6380, database: 1, password: 'shared-pw' },
  ],
  [
    '[redis] password over [opts] password, username added',
    SHARED,
    { username: 'greylist', password: 'own-pw' },
    { host: 'redis.example', port: 6380, database: 1, username: 'greylist', password: 'own-pw' },
  ],
  [
    '[redis] with no redis.ini at all',
    undefined,
    { host: 'redis.local', tls: 'true' },
    { host: 'redis.local', tls: true },
  ],
  [
    '[redis] url over [server] host, port and database',
    SHARED,
    { url: 'redis://other.example:7000/4' },
    { host: 'other.example', port: 7000, database: 4, password: 'shared-pw' },
  ],
  [
    '[redis] path, a Unix socket, beside [server] host',
    SHARED,
    { path: '/run/redis/greylist.sock' },
    {
      host: 'redis.example',
      port: 6380,
      path: '/run/redis/greylist.sock',
      database: 1,
      password: 'shared-pw',
    },
  ],
  [
    'an empty [redis] value is unset',
    SHARED,
    { port: '' },
    { host: 'redis.example', port: 6380, database: 1, password: 'shared-pw' },
  ],
]

const REFUSED: Array<[label: string, redisIni: unknown, own: Record<string, unknown>, key: string]> = [
  ['[redis] port = 0', SHARED, { port: 0 }, 'redis.port'],
  ['[redis] database = -1', SHARED, { database: -1 }, 'redis.database'],
  ['[redis] tls = maybe', SHARED, { tls: 'maybe' }, 'redis.tls'],
  ['[redis] host with a space', SHARED, { host: 'redis host' }, 'redis.host'],
  [
    '[redis] url beside redis.ini [server] path',
    { server: { path: '/run/redis.sock' } },
    { url: 'redis://b' },
    'redis.url',
  ],
]

describe('config: [redis] of rspamd.ini over redis.ini', function () {
  for (const [label, redisIni, own, expected] of MERGED) {
    it(`reads ${label}`, () => {
      assert.deepEqual(parseRedisIni(redisIni, own), { ...DEFAULT, ...expected })
    })
  }

  for (const [label, redisIni, own, key] of REFUSED) {
    it(`refuses ${label}, naming rspamd.ini and ${key}`, () => {
      assert.throws(
        () => parseRedisIni(redisIni, own),
        (err: unknown) =>
          err instanceof ConfigError && err.key === key && err.message.startsWith(`rspamd.ini: ${key} = `),
      )
    })
  }

  it('names redis.ini for a bad redis.ini value even with a [redis] section', () => {
    assert.throws(
      () => parseRedisIni({ server: { port: 'six' } }, { database: 2 }),
      /^ConfigError: redis\.ini: server\.port = "six": expected a TCP port/,
    )
  })

  it("never shows [redis]'s password or the password of its url", () => {
    for (const own of [{ password: ['hunter2-s3cret'] }, { url: 'http://u:hunter2-s3cret@b' }]) {
      assert.throws(
        () => parseRedisIni(undefined, own),
        (err: unknown) =>
          err instanceof ConfigError &&
          /^redis\.(password|url)$/.test(err.key) &&
          !/hunter2/.test(err.message) &&
          /<redacted, \d+ bytes>/.test(err.message),
      )
    }
  })
})

describe('config: parseConfig reads [redis]', function () {
  it('keeps the section as written, for the greylist store to merge', () => {
    const cfg = parseConfig({ redis: { database: 2, host: 'redis.local' } })
    assert.deepEqual(cfg.redis, { database: 2, host: 'redis.local' })
    assert.ok(Object.isFrozen(cfg.redis))
    assert.deepEqual(parseConfig({}).redis, {})
  })

  it('checks it whatever the greylist store, naming the key', () => {
    assert.throws(
      () => parseConfig({ greylist: { enabled: 'true', store: 'memory' }, redis: { port: 99999 } }),
      /^ConfigError: rspamd\.ini: redis\.port = 99999: expected a TCP port, 1 to 65535$/,
    )
    assert.throws(() => parseConfig({ redis: 'on' }), /rspamd\.ini: \[redis\] = "on": expected a section/)
  })

  it('reports a key it does not know as unused, and none of those it reads', () => {
    const cfg = parseConfig({ redis: { database: 2, expire_days: 60 } })
    assert.deepEqual(cfg.ignored, ['redis.expire_days'])
  })

  it('is named by rspamd-lda as a section of the Haraka plugin only, and checked there too', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rspamd-redis-section-'))
    try {
      const ini = join(dir, 'rspamd.ini')
      writeFileSync(ini, 'host = 127.0.0.1\n[redis]\ndatabase = 2\n')
      const opts = parseOptions(['--config', ini], {})
      assert.ok(typeof opts === 'object')
      assert.deepEqual(opts.haraka, ['redis'])
      writeFileSync(ini, 'host = 127.0.0.1\n[redis]\nport = 0\n')
      assert.throws(() => parseOptions(['--config', ini], {}), /rspamd\.ini: redis\.port = 0/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('plugin: the greylist store from [redis] over redis.ini', function () {
  const GREYLIST = '[greylist]\nenabled = true\nstore = redis\n'
  const REDIS_INI = '[server]\nhost = 127.0.0.1\nport = 6390\n[opts]\ndatabase = 1\n'
  const plugins: FixturePlugin[] = []
  afterEach(async () => {
    await Promise.all(plugins.splice(0).map((p) => unregister(p)))
  })
  const start = (ini: string): FixturePlugin => {
    const p = loadPlugin(`host = 127.0.0.1\n${ini}`, { files: { 'redis.ini': REDIS_INI } })
    plugins.push(p)
    return p
  }
  const serverOf = (p: FixturePlugin) => (p.greylistRedis as { server: string } | undefined)?.server

  it("uses redis.ini's server with [redis] database over its own", () => {
    assert.equal(serverOf(start(GREYLIST)), 'redis://127.0.0.1:6390/1')
    assert.equal(serverOf(start(`${GREYLIST}[redis]\ndatabase = 2\n`)), 'redis://127.0.0.1:6390/2')
  })

  it('refuses to start with a bad [redis] value, naming rspamd.ini and the key', () => {
    assert.throws(() => start(`${GREYLIST}[redis]\nport = 99999\n`), /rspamd\.ini: redis\.port = 99999/)
  })

  it('moves the store when a reload changes [redis]', async () => {
    const p = start(`${GREYLIST}[redis]\ndatabase = 2\n`)
    const reloaded = nextLog(p, 'loginfo', /rspamd\.ini reloaded/)
    rewriteConfig(p, `host = 127.0.0.1\n${GREYLIST}[redis]\ndatabase = 3\nport = 6391\n`)
    await reloaded
    assert.equal(serverOf(p), 'redis://127.0.0.1:6391/3')
  })
})
