// A small SMTP client for the integration tests: one message per connection, every reply recorded.

import { connect, type Socket } from 'node:net'

export interface SmtpReply {
  code: number
  text: string
}

export interface SendOptions {
  port: number
  from: string
  to: string[]
  data: Buffer
  helo?: string
  /** AUTH PLAIN user and password (needs an auth plugin in Haraka) */
  auth?: { user: string; pass: string }
  /** close the socket right after the final dot, without waiting for the reply */
  dropAfterData?: boolean
  /** ms for the whole session */
  timeoutMs?: number
}

export interface SendResult {
  /** the reply to the end of DATA: what the sender is told about the message */
  final: SmtpReply
  replies: SmtpReply[]
  /** ms from the final dot to its reply */
  dataMs: number
}

/** RFC 5321 §4.5.2: a line starting with a dot gets another dot. */
export function dotStuff(data: Buffer): Buffer {
  const text = data.toString('latin1')
  const stuffed = text.replace(/(^|\r\n)\./g, '$1..')
  const ended = stuffed.endsWith('\r\n') ? stuffed : `${stuffed}\r\n`
  return Buffer.from(`${ended}.\r\n`, 'latin1')
}

class ReplyReader {
  private buf = ''
  private waiting: ((r: SmtpReply) => void)[] = []
  private ready: SmtpReply[] = []
  private lines: string[] = []
  failure: Error | undefined

  constructor(socket: Socket) {
    socket.setEncoding('latin1')
    socket.on('data', (s: string) => this.push(s))
  }

  private push(s: string): void {
    this.buf += s
    let i: number
    while ((i = this.buf.indexOf('\r\n')) !== -1) {
      const line = this.buf.slice(0, i)
      this.buf = this.buf.slice(i + 2)
      this.lines.push(line.slice(4))
      if (line[3] !== '-') {
        const reply = { code: Number(line.slice(0, 3)), text: this.lines.join('\n') }
        this.lines = []
        const w = this.waiting.shift()
        if (w) w(reply)
        else this.ready.push(reply)
      }
    }
  }

  next(): Promise<SmtpReply> {
    const r = this.ready.shift()
    if (r) return Promise.resolve(r)
    if (this.failure) return Promise.reject(this.failure)
    return new Promise((resolve) => this.waiting.push(resolve))
  }
}

export async function sendMail(o: SendOptions): Promise<SendResult> {
  const socket = connect({ host: '127.0.0.1', port: o.port })
  const reader = new ReplyReader(socket)
  const replies: SmtpReply[] = []
  const timeoutMs = o.timeoutMs ?? 60_000
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`SMTP session over ${timeoutMs} ms`)), timeoutMs)
  })
  const closed = new Promise<never>((_, reject) => {
    socket.once('error', reject)
    socket.once('close', () => reject(new Error(`connection closed after ${replies.length} replies`)))
  })
  const expect = async (ok: (code: number) => boolean, what: string): Promise<SmtpReply> => {
    const r = await Promise.race([reader.next(), timeout, closed])
    replies.push(r)
    if (!ok(r.code)) throw Object.assign(new Error(`${what}: ${r.code} ${r.text}`), { reply: r })
    return r
  }
  const send = (line: string) => socket.write(`${line}\r\n`)
  try {
    await expect((c) => c === 220, 'greeting')
    send(`EHLO ${o.helo ?? 'client.example.org'}`)
    await expect((c) => c === 250, 'EHLO')
    if (o.auth) {
      send(`AUTH PLAIN ${Buffer.from(`\0${o.auth.user}\0${o.auth.pass}`).toString('base64')}`)
      await expect((c) => c === 235, 'AUTH')
    }
    send(`MAIL FROM:<${o.from}>`)
    await expect((c) => c === 250, 'MAIL FROM')
    for (const rcpt of o.to) {
      send(`RCPT TO:<${rcpt}>`)
      await expect((c) => c === 250, 'RCPT TO')
    }
    send('DATA')
    await expect((c) => c === 354, 'DATA')
    const t0 = performance.now()
    socket.write(dotStuff(o.data))
    if (o.dropAfterData) {
      socket.destroy()
      return { final: { code: 0, text: 'dropped' }, replies, dataMs: 0 }
    }
    const final = await expect(() => true, 'end of DATA')
    const dataMs = performance.now() - t0
    send('QUIT')
    await Promise.race([reader.next(), timeout, closed]).catch(() => undefined)
    return { final, replies, dataMs }
  } finally {
    clearTimeout(timer)
    socket.destroy()
  }
}

/** The queue id Haraka puts in a 250 reply of our test queue plugin ("queued as <uuid>"). */
export function queuedId(reply: SmtpReply): string | undefined {
  return /queued as ([0-9A-F.-]+)/i.exec(reply.text)?.[1]
}
