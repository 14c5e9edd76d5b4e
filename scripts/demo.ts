// npm run demo: start rspamd and Haraka with this plugin, send a ham, a GTUBE spam, a soft-reject and a
// rewrite-subject message, print what happened to each, and stop everything it started.

import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Haraka } from '../test/integration/haraka'
import { queuedId, sendMail } from '../test/integration/smtp'
import { corpus, REPO } from '../test/support/harness'

const run = promisify(execFile)
const SCRIPT = join(REPO, 'scripts', 'rspamd.sh')
const PORT = process.env.RSPAMD_PORT ?? '11343'

const messages: { label: string; data: Buffer }[] = [
  { label: 'ham (ham.eml)', data: corpus('ham.eml') },
  { label: 'spam (gtube.eml)', data: corpus('gtube.eml') },
  {
    label: 'soft reject',
    data: Buffer.concat([Buffer.from('X-Test-Action: soft reject\r\n'), corpus('ham.eml')]),
  },
  {
    label: 'rewrite subject',
    data: Buffer.concat([Buffer.from('X-Test-Action: rewrite subject\r\n'), corpus('ham.eml')]),
  },
  {
    label: 'add header',
    data: Buffer.concat([Buffer.from('X-Test-Action: add header\r\n'), corpus('ham.eml')]),
  },
]

let haraka: Haraka | undefined
let rspamdStarted = false

async function cleanup(): Promise<void> {
  const h = haraka
  haraka = undefined
  await h?.stop().catch(() => undefined)
  if (rspamdStarted) {
    rspamdStarted = false
    await run('bash', [SCRIPT, 'stop']).catch(() => undefined)
  }
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n${sig}: stopping Haraka and rspamd`)
    void cleanup().then(() => process.exit(130))
  })
}

async function main(): Promise<void> {
  const env = { ...process.env, RSPAMD_PORT: PORT }
  const running = await run('bash', [SCRIPT, 'status'], { env }).then(
    () => true,
    () => false,
  )
  if (!running) {
    console.log('starting rspamd (installs the Debian package when missing) …')
    await run('bash', [SCRIPT, 'start'], { env, timeout: 600_000 })
    // stopped again at the end; an rspamd that was already running is left alone
    rspamdStarted = true
  }
  console.log('starting Haraka with haraka-plugin-rspamd installed from its npm tarball …')
  haraka = await Haraka.start({
    // the demo connects from 127.0.0.1, which [check] skips by default
    rspamdIni: `host = 127.0.0.1\nport = ${PORT}\n[check]\nlocal_ip = true\nprivate_ip = true\n`,
  })
  console.log(haraka.logged(/haraka-plugin-rspamd \S+ from/)[0]?.replace(/^.*\[rspamd\] /, 'loaded: ') ?? '')

  const rows: string[][] = []
  for (const m of messages) {
    const res = await sendMail({
      port: haraka.port,
      from: 'alice@example.org',
      to: ['bob@example.net'],
      data: m.data,
    })
    const id = queuedId(res.final)
    let action: string
    let score: string
    let added = ''
    if (id) {
      const q = haraka.queued(id)
      action = String(q.rspamd?.action ?? '')
      score = String(q.rspamd?.score ?? '')
      const sent = new Set(m.data.toString('latin1').split('\r\n\r\n')[0].split('\r\n'))
      const head = q.message
        .toString('latin1')
        .split('\r\n\r\n')[0]
        .replace(/\r\n[ \t]+/g, ' ')
      added = head
        .split('\r\n')
        .filter((l) => !sent.has(l) && /^(X-Rspamd|Subject|X-Spam)/i.test(l))
        .map((l) => cut(l, 60))
        .join('; ')
    } else {
      // rejected or deferred: what rspamd said is in Haraka's log line for this message
      // (the plugin's line is key=value fields, the action quoted when it has a space)
      const line = haraka.logged(/\[rspamd\].* action=/).at(-1) ?? ''
      const found = /action=(?:"([^"]*)"|(\S+))/.exec(line)
      action = found?.[1] ?? found?.[2] ?? ''
      score = /score=([-\d.]+)/.exec(line)?.[1] ?? ''
    }
    rows.push([
      m.label,
      cut(`${res.final.code} ${res.final.text.split('\n')[0].replace(/ \(.*$/, '')}`, 64),
      action,
      score,
      added,
    ])
  }
  const head = ['message', 'SMTP reply', 'rspamd action', 'score', 'headers added/changed']
  console.log(`\n| ${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|`)
  for (const r of rows) console.log(`| ${r.join(' | ')} |`)
}

main()
  .catch((err: unknown) => {
    console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`)
    if (haraka) console.error(haraka.log.slice(-20).join('\n'))
    process.exitCode = 1
  })
  .finally(() => cleanup())

/** At most n characters, marked when cut (a queue id must not look whole when it is not). */
function cut(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 3)}...` : s
}
