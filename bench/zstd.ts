// [request] zstd side by side: bytes on the wire and client CPU per message at 100 KB and 1 MB, with
// and without zstd, against a local server that counts what it receives and answers a fixed JSON
// (compressed when the request was, as rspamd does). Needs Node 22.15+ (zstd in node:zlib).
// Run: npm run build && <node 22/24> node_modules/.bin/tsx bench/zstd.ts

import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable, type Writable } from 'node:stream'
import * as zlib from 'node:zlib'
import { nodeHasZstd, parseConfig } from '../src/config'
import { RspamdClient } from '../src/rspamd/client'

if (!nodeHasZstd())
  throw new Error(`bench/zstd.ts needs zstd in node:zlib (Node 22.15+); this is ${process.version}`)
const z = zlib as unknown as { zstdCompressSync(b: Buffer): Buffer }
const REPLY = Buffer.from(
  JSON.stringify({ action: 'no action', score: 1.2, required_score: 15, symbols: {} }),
)

/** a mail-like message: headers, text lines (2/3), and a base64 attachment of random bytes (1/3) */
function message(size: number): Buffer {
  const words = 'the quick brown fox jumps over lazy dogs while rspamd scans every message it gets'.split(' ')
  const lines = ['From: a@example.org', 'To: b@example.net', 'Subject: bench', '']
  let n = 0
  for (let i = 0; n < (size * 2) / 3; i++) {
    const l = Array.from({ length: 12 }, (_, k) => words[(i * 7 + k * 3) % words.length]).join(' ')
    lines.push(l)
    n += l.length + 2
  }
  const b64 = randomBytes(Math.floor(size / 4)).toString('base64')
  for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76))
  return Buffer.from(`${lines.join('\r\n')}\r\n`)
}

async function main() {
  let wire = 0
  const server = createServer((req, res) => {
    req.on('data', (c: Buffer) => (wire += c.length))
    req.on('end', () => {
      const packed = req.headers.compression === 'zstd'
      const body = packed ? z.zstdCompressSync(REPLY) : REPLY
      res.writeHead(200, { 'Content-Length': body.length, ...(packed ? { Compression: 'zstd' } : {}) })
      res.end(body)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  console.log(
    `node ${process.version}; per message, mean of N scans (client CPU: user+system of this process, server included)`,
  )
  console.log('size     zstd  N    wire bytes   ratio   CPU ms/msg')
  for (const size of [100 * 1024, 1024 * 1024]) {
    const msg = message(size)
    for (const zstd of [false, true]) {
      const cfg = parseConfig({
        main: { host: '127.0.0.1', port: String(port) },
        request: { zstd: String(zstd) },
      })
      const client = new RspamdClient(cfg, { transport: 'node' })
      const n = size > 200 * 1024 ? 100 : 400
      const scan = () =>
        client.scan({
          headers: {},
          timeoutMs: 10_000,
          source: {
            pipe(dest: Writable) {
              const parts: Buffer[] = []
              for (let i = 0; i < msg.length; i += 16 * 1024) parts.push(msg.subarray(i, i + 16 * 1024))
              Readable.from(parts, { objectMode: false }).pipe(dest)
            },
            unpipe() {},
          },
        })
      for (let i = 0; i < 10; i++) await scan()
      wire = 0
      const cpu = process.cpuUsage()
      for (let i = 0; i < n; i++) {
        const r = await scan()
        if (!r.ok) throw new Error(r.error.message)
      }
      const used = process.cpuUsage(cpu)
      const perMsg = (used.user + used.system) / 1000 / n
      const w = wire / n
      console.log(
        `${String(msg.length).padEnd(8)} ${String(zstd).padEnd(5)} ${String(n).padEnd(4)} ${String(Math.round(w)).padEnd(12)} ${(w / msg.length).toFixed(3).padEnd(7)} ${perMsg.toFixed(3)}`,
      )
      await client.destroy()
    }
  }
  server.close()
}

void main()
