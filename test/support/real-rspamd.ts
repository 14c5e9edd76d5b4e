// The real rspamd of scripts/rspamd.sh (on RSPAMD_PORT) for tests: started when it is not running,
// and left afterwards as it was found, so a test run stops only the rspamd it started.

import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO } from './harness'

const run = promisify(execFile)
const SCRIPT = join(REPO, 'scripts', 'rspamd.sh')
export const RSPAMD_PORT = Number(process.env.RSPAMD_PORT ?? 11343)

async function script(cmd: 'start' | 'stop' | 'status'): Promise<void> {
  await run('bash', [SCRIPT, cmd], {
    // start installs rspamd with apt-get when it is missing
    timeout: 300_000,
    env: { ...process.env, RSPAMD_PORT: String(RSPAMD_PORT) },
  })
}

export class RealRspamd {
  private constructor(private readonly wasRunning: boolean) {}

  /** Makes sure rspamd answers on RSPAMD_PORT; never skips: an rspamd that cannot start is a failure. */
  static async start(): Promise<RealRspamd> {
    const wasRunning = await script('status').then(
      () => true,
      () => false,
    )
    if (!wasRunning) await script('start')
    return new RealRspamd(wasRunning)
  }

  /** Stops rspamd now (for a test of what happens when it goes away); restore() brings it back if needed. */
  async stop(): Promise<void> {
    await script('stop')
  }

  /** Leaves rspamd as start() found it: stopped if this run started it, running if it was running before. */
  async restore(): Promise<void> {
    await script(this.wasRunning ? 'start' : 'stop')
  }
}
