// This package's version, read once from its package.json (for logs and X-Spam-Scanner).

import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'

let cached: string | undefined

/** The version in the nearest package.json named haraka-plugin-rspamd above this file (dist/ or source). */
export function packageVersion(): string {
  if (cached !== undefined) return cached
  cached = 'unknown'
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: string
        version?: string
      }
      if (pkg.name === 'haraka-plugin-rspamd') {
        cached = pkg.version ?? 'unknown'
        break
      }
    } catch {
      // no package.json here: look one directory up
    }
  }
  return cached
}
