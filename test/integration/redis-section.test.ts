// rspamd.ini's [redis] over redis.ini in a real Haraka: the greylist store connects to the database
// [redis] names on the server config/redis.ini names, and keeps the triplet there (real rspamd answering
// `greylist`, real Redis from scripts/redis.sh).

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO, withTestHeaders } from '../support/harness'
import { REDIS_INI, REDIS_PORT, redisClient, redisServer } from '../support/redis'
import { Haraka } from './haraka'
import { sendMail } from './smtp'

const run = promisify(execFile)
const RSPAMD_PORT = Number(process.env.RSPAMD_PORT ?? 11343)

async function rspamd(cmd: 'start' | 'stop'): Promise<void> {
  await run('bash', [join(REPO, 'scripts', 'rspamd.sh'), cmd], {
    timeout: 300_000,
    env: { ...process.env, RSPAMD_PORT: String(RSPAMD_PORT) },
  })
}

const DB = 7
const PREFIX = 'it-redis-section:'
// redis.ini names the server and database 0; [redis] moves this plugin to database DB of it
const INI =
  `host = 127.0.0.1\nport = ${RSPAMD_PORT}\ntimeout = 10\n[check]\nlocal_ip = true\nprivate_ip = true\n` +
  `[greylist]\nenabled = true\ndelay = 300\nstore = redis\nkey_prefix = ${PREFIX}\n[redis]\ndatabase = ${DB}\n`

describe('integration: [redis] of rspamd.ini over redis.ini (real Haraka, rspamd, Redis)', function () {
  this.timeout(240_000)
  let haraka: Haraka

  before(async function () {
    await Promise.all([rspamd('start'), redisServer('start')])
    haraka = await Haraka.start({
      rspamdIni: INI,
      extraConfig: { 'redis.ini': `${REDIS_INI}[opts]\ndatabase = 0\n` },
    })
  })
  after(async () => {
    await haraka?.stop()
    await Promise.all([rspamd('stop'), redisServer('stop')])
  })

  it("greylists in [redis]'s database of redis.ini's server", async () => {
    await haraka.waitForLog(
      new RegExp(`greylist store: connected to redis://127\\.0\\.0\\.1:${REDIS_PORT}/${DB}`),
    )
    const data = withTestHeaders('ham.eml', { 'X-Test-Action': 'greylist' })
    const res = await sendMail({
      port: haraka.port,
      from: 'erin@example.org',
      to: ['frank@example.net'],
      data,
    })
    assert.equal(res.final.code, 451, res.final.text)
    const redis = await redisClient()
    try {
      assert.deepEqual(await redis.keys(`${PREFIX}*`), [], 'nothing in database 0')
      await redis.select(DB)
      const keys = await redis.keys(`${PREFIX}*`)
      assert.equal(keys.length, 1, `one triplet in database ${DB}: ${keys.join(', ')}`)
      await redis.del(keys)
    } finally {
      await redis.close()
    }
  })
})
