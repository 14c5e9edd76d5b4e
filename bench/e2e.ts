// End to end: real Haraka (test/integration/haraka.ts) + real rspamd (scripts/rspamd.sh, the offline
// config of test/rspamd) over SMTP with the corpus messages: Haraka + this plugin, Haraka + its bundled
// 1.6.1, Haraka without scanning, and rspamd alone driven by a bare undici client (the ceiling).

import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { Pool } from 'undici'
import { Haraka } from '../test/integration/haraka'
import { sendMail } from '../test/integration/smtp'
import { CORPUS, corpus, REPO } from '../test/support/harness'

export const E2E_VARIANTS = ['rspamd', 'v2', 'v1', 'none'] as const
export type E2eVariant = (typeof E2E_VARIANTS)[number]
export const E2E_CONCURRENCY = [1, 8, 32] as const

export interface E2eCell {
  variant: E2eVariant
  concurrency: number
  messages: number
  wallMs: number
  /** ms from the end of the message (SMTP: the final dot) to the verdict, per message */
  latencies: number[]
}

export interface E2eResults {
  loaded: Record<E2eVariant, string>
  cells: E2eCell[]
  corpus: string[]
}

export interface E2ePlan {
  rounds: number
  minMessages: number
  minMs: number
}

interface Message {
  name: string
  data: Buffer
  /** rspamd rejects it (GTUBE): a scanning Haraka answers 550 */
  spam: boolean
}

type Sender = (m: Message) => Promise<number>

function harakaSender(h: Haraka, scans: boolean): Sender {
  return async (m) => {
    const res = await sendMail({
      port: h.port,
      from: 'alice@example.org',
      to: ['bob@example.net'],
      data: m.data,
    })
    // the verdict proves the scan happened: GTUBE is refused only when rspamd was asked
    const expected = scans && m.spam ? 550 : 250
    if (res.final.code !== expected) {
      throw new Error(`${m.name}: expected ${expected}, got ${res.final.code} ${res.final.text}`)
    }
    return res.dataMs
  }
}

function rspamdSender(pool: Pool): Sender {
  return async (m) => {
    const start = performance.now()
    const res = await pool.request({
      method: 'POST',
      path: '/checkv2',
      headers: {
        IP: '127.0.0.1',
        Helo: 'client.example.org',
        From: 'alice@example.org',
        Rcpt: 'bob@example.net',
      },
      body: m.data,
    })
    const json = JSON.parse(await res.body.text()) as { action?: unknown }
    const ms = performance.now() - start
    if (res.statusCode !== 200 || (json.action === 'reject') !== m.spam) {
      throw new Error(`${m.name}: HTTP ${res.statusCode}, action ${String(json.action)}`)
    }
    return ms
  }
}

/** The haraka-plugin-rspamd Haraka finds when the Haraka directory has none: the path search of its plugins.js. */
function bundledPlugin(): string {
  const prefix = join(REPO, 'node_modules', 'Haraka')
  for (const p of [
    join(prefix, 'node_modules', 'haraka-plugin-rspamd', 'package.json'),
    join(dirname(prefix), 'haraka-plugin-rspamd', 'package.json'),
  ]) {
    try {
      const pkg = JSON.parse(readFileSync(p, 'utf8')) as { version: string }
      return `haraka-plugin-rspamd ${pkg.version} bundled with Haraka (${p})`
    } catch {
      // not at this place of Haraka's search path: the next one
    }
  }
  throw new Error('Haraka bundles no haraka-plugin-rspamd')
}

function harakaVersion(): string {
  const pkg = JSON.parse(readFileSync(join(REPO, 'node_modules', 'Haraka', 'package.json'), 'utf8')) as {
    version: string
  }
  return pkg.version
}

async function load(
  senders: Sender[],
  plan: E2ePlan,
  messages: Message[],
): Promise<Omit<E2eCell, 'variant'>> {
  const latencies: number[] = []
  let started = 0
  const start = performance.now()
  const more = () => started < plan.minMessages || performance.now() - start < plan.minMs
  await Promise.all(
    senders.map(async (send) => {
      while (more()) {
        const m = messages[started++ % messages.length]
        latencies.push(await send(m))
      }
    }),
  )
  return { concurrency: senders.length, messages: started, wallMs: performance.now() - start, latencies }
}

export async function runE2e(
  rspamdPort: number,
  plan: E2ePlan,
  log: (s: string) => void,
): Promise<E2eResults> {
  const messages: Message[] = readdirSync(CORPUS)
    .filter((f) => f.endsWith('.eml'))
    .sort()
    .map((name) => ({ name, data: corpus(name), spam: name === 'gtube.eml' }))
  if (!messages.some((m) => m.spam)) throw new Error(`no gtube.eml in ${CORPUS}: cannot prove scanning`)
  // the load comes from 127.0.0.1, which [check] skips by default
  const ini = `host = 127.0.0.1\nport = ${rspamdPort}\ntimeout = 20\n[check]\nlocal_ip = true\nprivate_ip = true\n`
  const common = { rspamdIni: ini, discardQueue: true, pluginTimeout: 30 }
  const harakas: Haraka[] = []
  const pool = new Pool(`http://127.0.0.1:${rspamdPort}`, { connections: null })
  try {
    const [v2, v1, none] = await Promise.all([
      Haraka.start(common),
      Haraka.start({ ...common, installPlugin: false }),
      Haraka.start({ ...common, installPlugin: false, scan: false }),
    ])
    harakas.push(v2, v1, none)
    const line = await v2.waitForLog(/haraka-plugin-rspamd \S+ from /)
    if (
      !/haraka-plugin-rspamd 2\.\d+\.\d+ from /.test(line) ||
      !line.includes(join(v2.dir, 'node_modules'))
    ) {
      throw new Error(`Haraka + this plugin loaded something else: ${line}`)
    }
    if (v1.logged(/haraka-plugin-rspamd 2\./).length > 0) throw new Error('Haraka + 1.6.1 loaded 2.x')
    const loaded: Record<E2eVariant, string> = {
      rspamd: `rspamd ${rspamdVersion(await pool.request({ method: 'GET', path: '/ping' }))}, undici Pool`,
      v2: `Haraka ${harakaVersion()} + ${line.replace(/^.*(haraka-plugin-rspamd \S+ from [^,\s]+).*$/, '$1')}`,
      v1: `Haraka ${harakaVersion()} + ${bundledPlugin()}`,
      none: `Haraka ${harakaVersion()}, no rspamd plugin`,
    }
    const senders: Record<E2eVariant, () => Sender> = {
      rspamd: () => rspamdSender(pool),
      v2: () => harakaSender(v2, true),
      v1: () => harakaSender(v1, true),
      none: () => harakaSender(none, false),
    }
    // warm-up: JIT and connections of each variant, unmeasured
    for (const v of E2E_VARIANTS) {
      await load(
        Array.from({ length: 4 }, () => senders[v]()),
        { rounds: 1, minMessages: messages.length * 4, minMs: 0 },
        messages,
      )
    }
    const cells: E2eCell[] = []
    for (const concurrency of E2E_CONCURRENCY) {
      const sums = new Map<E2eVariant, E2eCell>()
      for (let round = 0; round < plan.rounds; round++) {
        const order = E2E_VARIANTS.map((_, i) => E2E_VARIANTS[(i + round) % E2E_VARIANTS.length])
        for (const v of order) {
          const r = await load(
            Array.from({ length: concurrency }, () => senders[v]()),
            plan,
            messages,
          )
          const s = sums.get(v) ?? { variant: v, concurrency, messages: 0, wallMs: 0, latencies: [] }
          s.messages += r.messages
          s.wallMs += r.wallMs
          s.latencies.push(...r.latencies)
          sums.set(v, s)
        }
      }
      log(
        `  end to end × ${concurrency}: ` +
          [...sums.values()]
            .map((s) => `${s.variant} ${((s.messages * 1000) / s.wallMs).toFixed(1)}/s`)
            .join(', '),
      )
      cells.push(...sums.values())
    }
    return { loaded, cells, corpus: messages.map((m) => m.name) }
  } finally {
    await Promise.all(harakas.map((h) => h.stop()))
    await pool.close()
  }
}

function rspamdVersion(res: {
  headers: Record<string, string | string[] | undefined>
  body: { dump(): Promise<void> }
}) {
  void res.body.dump()
  const server = res.headers.server
  return typeof server === 'string' ? server.replace(/^rspamd\//, '') : 'unknown'
}
