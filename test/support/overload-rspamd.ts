// A fake rspamd of fixed capacity (scans per second) for overload tests and bench/overload.ts: every
// /checkv2 is a scan that costs 1 ÷ capacity seconds of the server's time, served in one of two models,
// and answers `add header` with a milter header naming the scan (X-Overload-Scan: <n>), so that what a
// Haraka queued tells whether that message got this server's verdict. Like a busy rspamd it notices a
// client that went away only when it writes the reply: such a scan is counted as performed and wasted.
//
//   fifo: one scan at a time, first come first served (a normal worker blocked by a CPU-heavy rule)
//   ps:   processor sharing: every scan in flight progresses at capacity ÷ n (an event-driven worker
//         interleaving its tasks)

import * as http from 'node:http'
import type * as net from 'node:net'
import { replyFor } from './replies'

export type ServiceModel = 'fifo' | 'ps'

/** The milter header every reply asks the plugin to add; its value is the scan's number. */
export const SCAN_HEADER = 'X-Overload-Scan'

export interface OverloadCounts {
  /** /checkv2 requests whose body arrived in full */
  requests: number
  /** scans whose service time was spent (answered or not) */
  performed: number
  /** performed scans whose client had gone when the reply was written */
  wasted: number
  /** scans waiting or in service now */
  inFlight: number
  /** the most scans waiting or in service at once */
  maxInFlight: number
}

interface Job {
  id: number
  res: http.ServerResponse
  gone: boolean
  /** ps: ms of service still owed */
  remaining: number
}

export class OverloadRspamd {
  private model: ServiceModel
  private serviceMs: number
  private readonly sockets = new Set<net.Socket>()
  private readonly counts: OverloadCounts = {
    requests: 0,
    performed: 0,
    wasted: 0,
    inFlight: 0,
    maxInFlight: 0,
  }
  private seq = 0
  // fifo
  private readonly queue: Job[] = []
  private queueHead = 0
  private busy = false
  // ps
  private active: Job[] = []
  private lastAdvance = 0
  private timer: NodeJS.Timeout | undefined
  private closing: Promise<void> | undefined

  private constructor(
    private readonly server: http.Server,
    readonly port: number,
    model: ServiceModel,
    capacity: number,
  ) {
    this.model = model
    this.serviceMs = 1000 / capacity
  }

  /** Listens on 127.0.0.1 and a free port; capacity in scans per second (default 25: 40 ms a scan). */
  static async start(model: ServiceModel, capacity = 25): Promise<OverloadRspamd> {
    if (!(capacity > 0 && capacity <= 10_000)) throw new Error(`overload rspamd: bad capacity ${capacity}`)
    const server = http.createServer()
    server.requestTimeout = 0
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve())
    })
    const port = (server.address() as net.AddressInfo).port
    const fake = new OverloadRspamd(server, port, model, capacity)
    fake.attach()
    return fake
  }

  /** Counters since start (a copy). */
  snapshot(): OverloadCounts {
    return { ...this.counts }
  }

  /** Sockets open now (every reply closes its connection, as rspamd 3.4 does). */
  get openConnections(): number {
    return this.sockets.size
  }

  /** Another model or capacity from now on; only while nothing is in flight. */
  configure(model: ServiceModel, capacity = 1000 / this.serviceMs): void {
    if (this.counts.inFlight > 0) throw new Error('overload rspamd: configure() with scans in flight')
    this.model = model
    this.serviceMs = 1000 / capacity
  }

  /** Resolves once no scan is waiting or in service (or rejects after `ms`). */
  async drained(ms: number): Promise<void> {
    const deadline = performance.now() + ms
    while (this.counts.inFlight > 0 || this.sockets.size > 0) {
      if (performance.now() > deadline) {
        throw new Error(
          `overload rspamd: ${this.counts.inFlight} scans, ${this.sockets.size} sockets after ${ms} ms`,
        )
      }
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }

  close(): Promise<void> {
    if (!this.closing) {
      if (this.timer) clearTimeout(this.timer)
      this.closing = new Promise<void>((resolve) => this.server.close(() => resolve()))
      for (const s of this.sockets) s.destroy()
    }
    return this.closing
  }

  private attach(): void {
    this.server.on('connection', (socket: net.Socket) => {
      this.sockets.add(socket)
      socket.once('close', () => this.sockets.delete(socket))
    })
    this.server.on('clientError', (_err: Error, socket: net.Socket) => socket.destroy())
    this.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      res.shouldKeepAlive = false
      if (req.method !== 'POST' || !req.url?.startsWith('/checkv2')) {
        req.resume()
        res.writeHead(req.url === '/ping' ? 200 : 404, { 'Content-Type': 'text/plain' }).end('pong\r\n')
        return
      }
      const job: Job = { id: 0, res, gone: false, remaining: this.serviceMs }
      req.socket.once('close', () => {
        job.gone = true
      })
      req.resume()
      req.once('end', () => {
        if (job.gone) return // gone before its body arrived: never a scan
        job.id = ++this.seq
        this.counts.requests++
        this.counts.inFlight++
        this.counts.maxInFlight = Math.max(this.counts.maxInFlight, this.counts.inFlight)
        if (this.model === 'fifo') this.enqueue(job)
        else this.share(job)
      })
    })
  }

  private finish(job: Job): void {
    this.counts.inFlight--
    this.counts.performed++
    if (job.gone || job.res.destroyed || job.res.socket?.destroyed !== false) {
      this.counts.wasted++
      return
    }
    const reply = replyFor('add header', {
      milter: { add_headers: { [SCAN_HEADER]: String(job.id) } },
    })
    const body = JSON.stringify(reply)
    job.res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) })
    job.res.end(body)
  }

  // fifo: one at a time, each for serviceMs
  private enqueue(job: Job): void {
    this.queue.push(job)
    if (!this.busy) this.next()
  }

  private next(): void {
    if (this.queueHead >= this.queue.length) {
      this.busy = false
      this.queue.length = 0
      this.queueHead = 0
      return
    }
    this.busy = true
    const job = this.queue[this.queueHead++]
    this.timer = setTimeout(() => {
      this.finish(job)
      this.next()
    }, this.serviceMs)
  }

  // ps: every scan in flight gets serviceMs ÷ n of each ms
  private advance(): void {
    const now = performance.now()
    const n = this.active.length
    if (n > 0) {
      const each = (now - this.lastAdvance) / n
      for (const j of this.active) j.remaining -= each
    }
    this.lastAdvance = now
  }

  private share(job: Job): void {
    this.advance()
    this.active.push(job)
    this.schedule()
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    if (this.active.length === 0) return
    let least = Infinity
    for (const j of this.active) least = Math.min(least, j.remaining)
    this.timer = setTimeout(() => this.tick(), Math.max(0, least * this.active.length))
  }

  private tick(): void {
    this.advance()
    const done = this.active.filter((j) => j.remaining <= 0.05)
    this.active = this.active.filter((j) => j.remaining > 0.05)
    for (const j of done) this.finish(j)
    this.schedule()
  }
}
