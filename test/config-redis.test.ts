// src/config.ts, redis.ini for [greylist] store = redis: haraka-plugin-redis's file, read as it reads it
// ([opts] for every connection, [server] over it, the old ip and db names), each bad value naming its key.

import assert from 'node:assert/strict'
import { ConfigError, parseRedisIni, type RedisSettings } from '../src/config'

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

const GOOD: Array<[label: string, ini: unknown, expected: Partial<RedisSettings>]> = [
  ['no redis.ini at all', undefined, {}],
  ['an empty file', {}, {}],
  ['haraka-plugin-redis defaults written out', { server: { host: '127.0.0.1', port: '6379' } }, {}],
  [
    '[server] host and port',
    { server: { host: 'redis.example.net', port: 6380 } },
    { host: 'redis.example.net', port: 6380 },
  ],
  ['[server] ip, the old name of host', { server: { ip: '10.0.0.5' } }, { host: '10.0.0.5' }],
  ['[server] host over ip', { server: { ip: '10.0.0.5', host: '10.0.0.6' } }, { host: '10.0.0.6' }],
  ['[opts] database', { opts: { database: 3 } }, { database: 3 }],
  ['[server] db, the old name of database', { server: { db: '2' } }, { database: 2 }],
  ['[opts] password', { opts: { password: 'battery-horse-staple' } }, { password: 'battery-horse-staple' }],
  [
    '[server] username and password (ACL)',
    { server: { username: 'haraka', password: 's3cret' } },
    { username: 'haraka', password: 's3cret' },
  ],
  [
    '[server] over [opts] for the same key',
    { opts: { database: 1, password: 'a' }, server: { database: 4 } },
    { database: 4, password: 'a' },
  ],
  ['[server] tls = true', { server: { tls: 'true' } }, { tls: true }],
  ['[opts] tls = false', { opts: { tls: 'false' } }, { tls: false }],
  [
    '[server] path (Unix socket)',
    { server: { path: '/run/redis/redis.sock' } },
    { path: '/run/redis/redis.sock' },
  ],
  ['[server] connectTimeout', { server: { connectTimeout: 500 } }, { connectTimeout: 500 }],
  ['[pubsub] is not ours', { pubsub: { host: 'elsewhere', port: 'x' } }, {}],
]

const BAD: Array<[label: string, ini: unknown, key: string]> = [
  ['[server] port = 0', { server: { port: 0 } }, 'server.port'],
  ['[server] port = 65536', { server: { port: 65536 } }, 'server.port'],
  ['[opts] port = six', { opts: { port: 'six' } }, 'opts.port'],
  ['[server] host with a space', { server: { host: 'redis host' } }, 'server.host'],
  ['[server] ip with a slash', { server: { ip: '10.0.0.0/8' } }, 'server.ip'],
  ['[opts] database = -1', { opts: { database: -1 } }, 'opts.database'],
  ['[server] db = one', { server: { db: 'one' } }, 'server.db'],
  ['[server] tls = maybe', { server: { tls: 'maybe' } }, 'server.tls'],
  ['[server] path relative', { server: { path: 'redis.sock' } }, 'server.path'],
  ['[server] connectTimeout = 0', { server: { connectTimeout: 0 } }, 'server.connectTimeout'],
  ['[server] as text', { server: 'on' }, '[server]'],
]

describe('config: redis.ini', function () {
  for (const [label, ini, expected] of GOOD) {
    it(`reads ${label}`, () => {
      assert.deepEqual(parseRedisIni(ini), { ...DEFAULT, ...expected })
    })
  }
  for (const [label, ini, key] of BAD) {
    it(`refuses ${label}, naming ${key}`, () => {
      assert.throws(
        () => parseRedisIni(ini),
        (err: unknown) =>
          err instanceof ConfigError && err.key === key && err.message.startsWith(`redis.ini: ${key} = `),
      )
    })
  }
})
