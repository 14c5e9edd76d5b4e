// A real Redis for the greylisting tests: scripts/redis.sh start|stop (Debian's redis-server on
// 127.0.0.1:REDIS_PORT, installed with apt-get when missing). Never skipped: no Redis is a failure.

import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { createClient } from '@redis/client'
import { REPO } from './harness'

const run = promisify(execFile)

export const REDIS_PORT = Number(process.env.REDIS_PORT ?? 16379)

/** scripts/redis.sh start or stop, with this run's REDIS_PORT. */
export async function redisServer(cmd: 'start' | 'stop'): Promise<void> {
  await run('bash', [join(REPO, 'scripts', 'redis.sh'), cmd], {
    timeout: 300_000,
    env: { ...process.env, REDIS_PORT: String(REDIS_PORT) },
  })
}

function newClient() {
  return createClient({ socket: { host: '127.0.0.1', port: REDIS_PORT, reconnectStrategy: false } })
}

export type TestRedis = ReturnType<typeof newClient>

/** A plain client of the test Redis, for looking at (and changing) what the plugin stored. */
export async function redisClient(): Promise<TestRedis> {
  const client = newClient()
  client.on('error', () => {})
  await client.connect()
  return client
}

/** redis.ini as an operator writes it for the test Redis. */
export const REDIS_INI = `[server]\nhost = 127.0.0.1\nport = ${REDIS_PORT}\n`
