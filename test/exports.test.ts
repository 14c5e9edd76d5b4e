// What lands on Haraka's plugin object: Haraka copies every enumerable export of dist/index.js onto
// it (`for (const k in require(dir))`), and inherits() copies them again onto a plugin that inherits
// this one. So the exports are the plugin's API and nothing else: its hooks, register and shutdown,
// and the 1.6.x methods an inheriting plugin may call (docs/upgrading.md lists the rest).

import assert from 'node:assert/strict'
import { REPO } from './support/harness'

/** The exports, each with why it is there. A helper exported by mistake fails the first test. */
const API = {
  register: 'Haraka calls it at load',
  shutdown: 'Haraka calls it at stop',
  rspamd_data_post: 'the data_post hook',
  rspamd_init_master: 'the init_master hook',
  rspamd_init_child: 'the init_child hook',
  rspamd_queue: 'the first queue and queue_outbound hook',
  rspamd_queue_guard: 'the last queue and queue_outbound hook',
  should_check: "1.6.x's should_check(connection), for inheriting plugins",
  handle_rspamd: "1.6.x's handle_rspamd, as (next, connection, reply[, start]), for inheriting plugins",
}

describe('exports (what Haraka copies onto the plugin object)', function () {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(REPO) as Record<string, unknown>

  it('are exactly the hooks, register, shutdown and the 1.6.x API', () => {
    const copied: string[] = []
    // as Haraka's plugins.js copies them
    for (const k in mod) copied.push(k)
    assert.deepEqual(copied.sort(), Object.keys(API).sort())
  })

  it('are all functions', () => {
    for (const name of Object.keys(API)) assert.equal(typeof mod[name], 'function', name)
  })

  it('do not include helpers such as scanTimeoutMs', () => {
    assert.equal('scanTimeoutMs' in mod, false)
  })
})
