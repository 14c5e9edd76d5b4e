// src/config/index.ts, redis.ini for [greylist] store = redis: haraka-plugin-redis's file, read as it reads it
// ([opts] for every connection, [server] over it, the old ip and db names), each bad value naming its key.

import assert from 'node:assert/strict'
import { ConfigError, parseRedisIni, type RedisSettings } from '../../src/config'

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
  // url: what node-redis makes of haraka-plugin-redis's options, the url's parts over the separate keys
  [
    '[server] url with every part',
    { server: { url: 'redis://haraka:p%40ss@redis.example:6390/3' } },
    { host: 'redis.example', port: 6390, username: 'haraka', password: 'p@ss', database: 3 },
  ],
  ['[opts] url, host only', { opts: { url: 'redis://redis.example' } }, { host: 'redis.example' }],
  [
    'url over host, port and database; [server] port kept where the url has none',
    { server: { host: 'a', port: 6381, database: 1, url: 'redis://b/2' } },
    { host: 'b', port: 6381, database: 2 },
  ],
  [
    'url without credentials keeps [opts] password',
    { opts: { password: 'pw' }, server: { url: 'redis://b:1' } },
    { host: 'b', port: 1, password: 'pw' },
  ],
  ['rediss:// is TLS', { server: { url: 'rediss://b' } }, { host: 'b', tls: true }],
  ['rediss:// with tls = true', { server: { url: 'rediss://b', tls: 'true' } }, { host: 'b', tls: true }],
  ['an IPv6 url', { server: { url: 'redis://[::1]:7000' } }, { host: '::1', port: 7000 }],
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
  ['[server] host:port in host', { server: { host: 'redis.example:6380' } }, 'server.host'],
  ['[server] url that is not one', { server: { url: 'redis.example:6379' } }, 'server.url'],
  ['[server] url of another scheme', { server: { url: 'http://redis.example' } }, 'server.url'],
  ['[opts] url without a host', { opts: { url: 'redis://' } }, 'opts.url'],
  ['[server] url with a bad database', { server: { url: 'redis://b/x' } }, 'server.url'],
  ['[server] url and path', { server: { url: 'redis://b', path: '/run/redis.sock' } }, 'server.url'],
  ['[server] redis:// url with tls = true', { server: { url: 'redis://b', tls: 'true' } }, 'server.url'],
  ['[server] url with bad %-encoding', { server: { url: 'redis://u:%zz@b' } }, 'server.url'],
]

describe('config: redis.ini secrets', function () {
  const CASES: Array<[label: string, ini: unknown, key: string]> = [
    ['a password as a list', { opts: { password: ['hunter2-s3cret'] } }, 'opts.password'],
    ['credentials in a url that is not one', { server: { url: 'redis//u:hunter2-s3cret@b' } }, 'server.url'],
    [
      'credentials in a url of another scheme',
      { server: { url: 'http://u:hunter2-s3cret@b' } },
      'server.url',
    ],
    [
      'credentials in a url with a bad database',
      { server: { url: 'redis://:hunter2-s3cret@b/x' } },
      'server.url',
    ],
  ]
  for (const [label, ini, key] of CASES) {
    it(`shows ${label} as <redacted, N bytes>, naming ${key}`, () => {
      assert.throws(
        () => parseRedisIni(ini),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.key === key &&
          !/hunter2/.test(err.message) &&
          !/hunter2/.test(String(err.value)) &&
          /<redacted, \d+ bytes>/.test(err.message),
      )
    })
  }
})

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
