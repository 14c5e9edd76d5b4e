// A fast fake rspamd for the micro-benchmarks: drains each /checkv2 body and answers a fixed reply
// captured from the real rspamd, over keep-alive, or (mode 'close') the way rspamd 3.4 does: the reply
// says `Connection: close` and the server closes the connection after it, so every scan is a new
// connection. It counts, it does not record (25 MB bodies × 1000s).

import { readFileSync } from 'node:fs'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'

/** rspamd 3.4's reply to fixtures/spam-message.eml (38 symbols, milter add/remove, `add header`). */
export const REPLY_JSON: Buffer = Buffer.from(
  JSON.stringify(JSON.parse(readFileSync(join(__dirname, 'fixtures', 'rspamd-reply.json'), 'utf8'))),
)

export interface Counters {
  /** TCP connections accepted */
  connections: number
  /** requests answered */
  requests: number
  /** body bytes read */
  bodyBytes: number
  /** requests whose method or path was not POST /checkv2 */
  badRequests: number
}

/** keep-alive: connections are reused; close: one request per connection, as rspamd 3.4 answers */
export type ServerMode = 'keep-alive' | 'close'

export class FastRspamd {
  readonly counters: Counters = { connections: 0, requests: 0, bodyBytes: 0, badRequests: 0 }

  private constructor(
    private readonly server: http.Server,
    readonly port: number,
    readonly mode: ServerMode,
  ) {}

  static async start(mode: ServerMode = 'keep-alive'): Promise<FastRspamd> {
    // rspamd's own limit is 50 MiB; the 25 MB case needs no more
    const server = http.createServer({ keepAliveTimeout: 60_000, requestTimeout: 0 })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve())
    })
    const fake = new FastRspamd(server, (server.address() as AddressInfo).port, mode)
    server.on('connection', () => fake.counters.connections++)
    server.on('request', (req, res) => fake.answer(req, res))
    return fake
  }

  /** A copy of the counters now, to subtract later. */
  snapshot(): Counters {
    return { ...this.counters }
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (req.method !== 'POST' || req.url !== '/checkv2') this.counters.badRequests++
    req.on('data', (chunk: Buffer) => (this.counters.bodyBytes += chunk.length))
    req.on('end', () => {
      this.counters.requests++
      // node's server closes the socket once a response that says `Connection: close` is sent
      res.writeHead(200, {
        ...(this.mode === 'close' ? { Connection: 'close' } : {}),
        'Content-Type': 'application/json',
        'Content-Length': REPLY_JSON.length,
        Server: 'rspamd/3.4',
      })
      res.end(REPLY_JSON)
    })
  }

  close(): Promise<void> {
    this.server.closeAllConnections()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}
