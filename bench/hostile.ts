// npm run bench:hostile: the CPU time of the worst replies rspamd could send (each just under the
// 16 MiB reply cap) and of a message with a huge Subject: JSON parse, decide() (every header style,
// X-Spam-Result, rspamd's milter block and DKIM signatures), and the whole data_post hook of the
// built plugin (haraka-test-fixtures, a local server sending the reply) with the edits applied to
// Haraka's header. Reports, never asserts: docs/failure-behaviour.md quotes the bound it shows.

import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import { cpus } from 'node:os'
import { MAX_REPLY_BYTES } from '../src/rspamd/client'
import { parseConfig } from '../src/config'
import { parseReplyBody } from '../src/rspamd/reply'
import { decide } from '../src/policy/verdict'
import {
  captureLogs,
  connectionWith,
  corpus,
  dataPost,
  loadPlugin,
  unregister,
} from '../test/support/harness'

const ROUNDS = Number(process.env.HOSTILE_ROUNDS ?? 3)
/** HOSTILE_ONLY=text: only the cases whose name contains it */
const ONLY = process.env.HOSTILE_ONLY
/** Each reply is built up to this many bytes of JSON. */
const TARGET = MAX_REPLY_BYTES - 64 * 1024

const INI = `add_headers = always
[spam_headers]
styles = rspamd, exim, extended, lda
lda_json = true
[rewrite_subject]
enabled = true
`

interface Case {
  name: string
  /** the reply's JSON text (≤ MAX_REPLY_BYTES), built when its turn comes (all at once would be GBs) */
  body: () => string
  /** the message's decoded Subject, for the subject template */
  subject?: string
}

/** Items from `make(i)` until their JSON reaches `bytes`. */
function fill<T>(bytes: number, make: (i: number) => T): T[] {
  const out: T[] = []
  let size = 0
  for (let i = 0; ; i++) {
    const item = make(i)
    size += Buffer.byteLength(JSON.stringify(item)) + 1
    if (size > bytes) break
    out.push(item)
  }
  return out
}

function entries<T>(bytes: number, make: (i: number) => [string, T]): Record<string, T> {
  const out: Record<string, T> = {}
  for (const [k, v] of fill(bytes, make)) out[k] = v
  return out
}

function reply(action: string, rest: Record<string, unknown>): string {
  return JSON.stringify({ action, score: 9.5, required_score: 15, ...rest })
}

function cases(): Case[] {
  const pad = (i: number, width: number) => String(i).padStart(width, '0')
  return [
    {
      name: 'symbols: as many as fit, with options',
      body: () =>
        reply('add header', {
          symbols: entries(TARGET, (i) => [
            `SYMBOL_${pad(i, 7)}`,
            { name: `SYMBOL_${pad(i, 7)}`, score: (i % 13) - 6, options: [`option-${i}`, 'x'.repeat(16)] },
          ]),
        }),
    },
    {
      name: 'symbols: 1 000 with 16 KiB names',
      body: () =>
        reply('add header', {
          symbols: entries(TARGET, (i) => [
            `S${pad(i, 5)}${'N'.repeat(16 * 1024)}`,
            { score: 1, options: [] },
          ]),
        }),
    },
    {
      name: 'symbol options: one symbol, all of the reply',
      body: () =>
        reply('add header', {
          symbols: { BIG: { score: 5, options: fill(TARGET, (i) => `opt-${pad(i, 7)}`) } },
        }),
    },
    {
      name: 'messages: as many as fit (exim report)',
      body: () => reply('add header', { messages: entries(TARGET, (i) => [`m${i}`, `message ${i}`]) }),
    },
    {
      name: 'milter add_headers: distinct names',
      body: () =>
        reply('add header', {
          milter: { add_headers: entries(TARGET, (i) => [`X-Add-${pad(i, 7)}`, 'v']) },
        }),
    },
    {
      name: 'milter add_headers: one name, values of 32 KiB',
      body: () =>
        reply('add header', {
          milter: { add_headers: { 'X-Big': fill(TARGET, (i) => `${i} ${'ü'.repeat(16 * 1024)}`) } },
        }),
    },
    {
      name: 'milter add_headers: 500 names of 32 KiB values',
      body: () =>
        reply('add header', {
          milter: {
            add_headers: entries(TARGET, (i) => [`X-Big-${pad(i, 4)}`, `${'word '.repeat(6 * 1024)}`]),
          },
        }),
    },
    {
      name: 'milter add_headers: invalid names',
      body: () =>
        reply('add header', {
          milter: { add_headers: entries(TARGET, (i) => [`X Bad ${pad(i, 7)}`, 'v']) },
        }),
    },
    {
      name: 'milter remove_headers: distinct names',
      body: () =>
        reply('add header', {
          milter: { remove_headers: entries(TARGET, (i) => [`X-Remove-${pad(i, 7)}`, 1]) },
        }),
    },
    {
      name: 'milter remove_headers: one name, all positions',
      body: () =>
        reply('add header', {
          milter: { remove_headers: { 'X-Numbered': fill(TARGET, (i) => (i % 2 ? -i : i + 1)) } },
        }),
    },
    {
      name: 'dkim-signature: as many as fit',
      body: () =>
        reply('add header', {
          'dkim-signature': fill(TARGET, (i) => `v=1; a=rsa-sha256; d=example.com; s=s${i}; b=abcdef`),
        }),
    },
    {
      name: 'dkim-signature: 10 of 1.6 MiB',
      body: () =>
        reply('add header', {
          'dkim-signature': fill(TARGET, () => `v=1; b=${'A'.repeat(1600 * 1024)}`),
        }),
    },
    {
      name: 'wrong types: every item a warning',
      body: () => reply('add header', { 'dkim-signature': fill(TARGET, () => 0) }),
    },
    {
      name: "rspamd's subject: 16 MiB, non-ASCII",
      body: () => reply('rewrite subject', { subject: 'ä '.repeat(Math.floor(TARGET / 4)) }),
    },
    {
      name: "message's Subject: 900 KB folded over 900 lines",
      body: () => reply('rewrite subject', {}),
      // within Haraka's default max_lines (1000 header lines): 900 lines of 1 000 characters
      subject: Array.from({ length: 900 }, () => 'free money '.repeat(91)).join('\r\n '),
    },
  ]
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since)
  return (u.user + u.system) / 1000
}

/** A server that answers every /checkv2 with `body`. */
async function serve(body: () => Buffer): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      const b = body()
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': b.length })
      res.end(b)
    })
  })
  // a scan that takes seconds must not find its keep-alive socket closed under it
  server.keepAliveTimeout = 120_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      server.closeAllConnections()
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? NaN
}

async function main(): Promise<void> {
  const iniObj = {
    main: { host: '127.0.0.1', add_headers: 'always' },
    spam_headers: { styles: 'rspamd, exim, extended, lda', lda_json: true },
    rewrite_subject: { enabled: true },
  }
  const cfg = parseConfig(iniObj)
  let current = Buffer.alloc(0)
  const server = await serve(() => current)
  const plugin = loadPlugin(`host = 127.0.0.1\nport = ${server.port}\ntimeout = 25\n${INI}`, { timeout: 30 })
  console.log(
    `hostile replies: ${ROUNDS} rounds, median CPU ms (user + system) on ${cpus()[0]?.model ?? '?'}, Node ${process.version}`,
  )
  console.log('| case | reply | parse | decide | whole hook | verdict, headers written |')
  console.log('| --- | ---: | ---: | ---: | ---: | --- |')
  let worst = 0
  try {
    for (const c of cases()) {
      if (ONLY !== undefined && !c.name.includes(ONLY)) continue
      current = Buffer.from(c.body())
      if (current.length > MAX_REPLY_BYTES) throw new Error(`${c.name}: ${current.length} bytes`)
      const parse: number[] = []
      const decided: number[] = []
      const hook: number[] = []
      let outcome = ''
      for (let r = 0; r < ROUNDS; r++) {
        let t = process.cpuUsage()
        const parsed = parseReplyBody(current)
        parse.push(cpuMs(t))
        if (!parsed.ok) throw new Error(`${c.name}: ${parsed.error}`)
        t = process.cpuUsage()
        const v = decide(parsed.reply, cfg, {
          authenticated: false,
          // Haraka's decoded value, unfolded as index.ts unfolds it
          subject: c.subject?.replace(/\r\n /g, ' ') ?? 'hello',
          style: { json: parsed.json, replyBytes: current.length, scanTimeMs: 12, queueId: 'Q' },
        })
        decided.push(cpuMs(t))
        if (v.kind === 'accept' || v.kind === 'ok') {
          let bytes = 0
          for (const f of v.edits.add) bytes += f.name.length + f.value.length + 3
          outcome = `${v.kind}, ${v.edits.add.length} headers (${(bytes / 1024).toFixed(0)} KiB), ${v.edits.dropped.length} refusal lines`
        } else outcome = v.kind

        const message = c.subject
          ? `Subject: ${c.subject}\r\n${corpus('ham.eml')
              .toString()
              .replace(/^Subject:.*\r\n/m, '')}`
          : corpus('ham.eml')
        const conn = await connectionWith(message)
        const logs = captureLogs(conn)
        t = process.cpuUsage()
        const res = await dataPost(plugin, conn)
        hook.push(cpuMs(t))
        if (res.code !== undefined) throw new Error(`${c.name}: the hook answered ${res.code}`)
        // an internal error or a failed scan accepts too: only a scanned message counts
        const verdict = logs.find((l) => /^INFO .*verdict: (accept|ok)/.test(l))
        if (!verdict || logs.some((l) => l.startsWith('ERROR'))) {
          throw new Error(`${c.name}: not scanned: ${logs.join('\n').slice(0, 2000)}`)
        }
      }
      const row = [median(parse), median(decided), median(hook)]
      worst = Math.max(worst, row[2] ?? 0)
      console.log(
        `| ${c.name} | ${(current.length / 1024 / 1024).toFixed(1)} MiB | ${row.map((x) => x.toFixed(0)).join(' | ')} | ${outcome} |`,
      )
    }
  } finally {
    await unregister(plugin)
    await server.close()
  }
  console.log(`\nworst whole hook: ${worst.toFixed(0)} ms CPU per message`)
}

main().catch((err: unknown) => {
  console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
  process.exitCode = 1
})
