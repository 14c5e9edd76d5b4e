// How one request reaches one rspamd server: node:http (and node:https) with a keep-alive Agent, or an
// undici Pool. Both carry the same request and report to the same Exchange, so timeouts, failover,
// the reply cap and error reporting live once, in client.ts. Which one a server gets: `transport`
// in rspamd.ini (auto: node:http for http:// and unix sockets, undici for https://).

import * as http from 'node:http'
import * as https from 'node:https'
import { isIP, type LookupFunction, type Socket } from 'node:net'
import type { Readable } from 'node:stream'
import type { buildConnector, Pool } from 'undici'
import {
  type Config,
  type Target,
  type TransportKind,
  targetName,
  targetOrigin,
  transportFor,
} from '../config'
import { ConnectTimeout } from '../errors'
import { forLog } from '../escape'
import { LookupCache } from './lookup'
import type { RequestHeaders } from './request'

/** What one request tells the attempt that sent it. Every call after the first end or error is ignored. */
export interface Exchange {
  /** the request is on its way; `abort` ends it and destroys its socket at once */
  started(abort: (why: Error) => void): void
  /** rspamd's status line and headers arrived */
  response(status: number, head: ReplyHead): void
  data(chunk: Buffer): void
  end(): void
  error(err: unknown): void
}

/** The reply headers the attempt reads: each as sent, or an array when rspamd sent it more than once. */
export interface ReplyHead {
  contentLength: string | string[] | undefined
  /** `Compression` (rspamd's own), else `Content-Encoding`: `zstd` when the reply is compressed */
  compression: string | string[] | undefined
  /** `Dictionary`: the zstd dictionary rspamd compressed with (its zstd_output_dictionary) */
  dictionary: string | string[] | undefined
  /** `Message-Offset`: where the rewritten message starts after the JSON (flag body_block) */
  messageOffset: string | string[] | undefined
}

type HeaderBag = Record<string, string | string[] | undefined>

/** The reply headers the attempt reads, from node:http's or undici's lower-case header object. */
export function replyHead(h: HeaderBag): ReplyHead {
  return {
    contentLength: h['content-length'],
    compression: h['compression'] ?? h['content-encoding'],
    dictionary: h['dictionary'],
    messageOffset: h['message-offset'],
  }
}

export interface Transport {
  /** 'node:http', 'node:https' or 'undici': for the log and the tests */
  readonly name: string
  send(path: string, headers: RequestHeaders, body: Buffer | Readable, x: Exchange): void
  /** waits for requests in flight, then closes the connections */
  close(): Promise<void>
  /** closes every connection now, failing requests in flight */
  destroy(): Promise<void>
}

export interface TransportOptions {
  /** connections per server; null = unlimited */
  connections?: number | null
  /** overrides the config's `transport` (tests run the same cases over both) */
  kind?: TransportKind
}

/**
 * undici, loaded when a server first needs it: with transport = auto only https:// servers do, and
 * loading it (about 110 modules) grows the process by ~19 MB of RSS.
 */
function loadUndici(): typeof import('undici') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('undici') as typeof import('undici')
}

/** rspamd closes idle keep-alive connections after a while; ours are dropped first. */
const IDLE_MS = 4_000

// how a target is named (targetName, targetOrigin) and which transport it gets (transportFor) are
// worked out in src/config/servers.ts, where they are validated: what the Pool below parses has been
// parsed there first

/** The server as logs name it: config text (a socket path may hold any byte), so escaped for them. */
export function describeTarget(target: Target): string {
  return forLog(targetName(target))
}

export function makeTransport(target: Target, cfg: Config, opts: TransportOptions = {}): Transport {
  const kind = transportFor(target, opts.kind ?? cfg.transport)
  return kind === 'node' ? new NodeTransport(target, cfg, opts) : new UndiciTransport(target, cfg, opts)
}

/** One server's cached name lookups: `lookup` for net.connect, `forget()` after a failed request. */
interface ServerLookups {
  lookup: LookupFunction
  forget(): void
}

/** For a server named by a host name; none for an IP address or a UNIX socket. */
function lookupsFor(target: Target): ServerLookups | undefined {
  if (target.kind !== 'tcp' || isIP(target.host) !== 0) return undefined
  const cache = new LookupCache()
  const host = target.host
  return { lookup: cache.lookup, forget: () => cache.forget(host) }
}

const connectMs = (cfg: Config) => Math.max(1, Math.round(cfg.connectTimeout * 1000))

function tlsOptions(target: Target, cfg: Config) {
  if (target.kind !== 'tcp' || target.scheme !== 'https') return {}
  const tls = cfg.tls
  return {
    rejectUnauthorized: tls.rejectUnauthorized,
    servername: tls.servername,
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
  }
}

/**
 * node:http's client with a keep-alive Agent. rspamd answers every scan with `Connection: close`, so
 * each scan is a new connection, and node:http's per-connection cost is about half of undici's
 * (bench/README.md, "undici or node:http"); a proxy that keeps connections open gets them reused.
 */
class NodeTransport implements Transport {
  readonly name: string
  private readonly agent: http.Agent
  private readonly request: typeof http.request
  private readonly base: http.RequestOptions
  private readonly server: string
  private readonly connectMs: number
  private readonly secure: boolean
  private readonly lookups: ServerLookups | undefined
  private active = 0
  private idle: (() => void)[] = []

  constructor(target: Target, cfg: Config, opts: TransportOptions) {
    this.secure = target.kind === 'tcp' && target.scheme === 'https'
    this.name = this.secure ? 'node:https' : 'node:http'
    const agentOpts = {
      keepAlive: true,
      // a free socket idle this long is closed (an active one is governed by the scan's own timers)
      timeout: IDLE_MS,
      maxSockets: opts.connections ?? Infinity,
      // TCP keep-alive probes of a pooled socket would start after this; it is closed by then
      keepAliveMsecs: IDLE_MS,
    }
    this.agent = this.secure
      ? new https.Agent({ ...agentOpts, ...tlsOptions(target, cfg) })
      : new http.Agent(agentOpts)
    this.request = this.secure ? https.request : http.request
    this.lookups = lookupsFor(target)
    this.base =
      target.kind === 'unix'
        ? { socketPath: target.socketPath, agent: this.agent }
        : {
            host: target.host,
            port: target.port,
            agent: this.agent,
            ...(this.lookups ? { lookup: this.lookups.lookup } : {}),
          }
    this.server = describeTarget(target)
    this.connectMs = connectMs(cfg)
  }

  send(path: string, headers: RequestHeaders, body: Buffer | Readable, x: Exchange): void {
    const whole = Buffer.isBuffer(body) ? body : undefined
    this.active++
    let counted = true
    const done = () => {
      if (!counted) return
      counted = false
      if (--this.active === 0) for (const f of this.idle.splice(0)) f()
    }
    let req: http.ClientRequest
    try {
      req = this.request({
        ...this.base,
        method: 'POST',
        path,
        headers: whole ? { ...headers, 'Content-Length': String(whole.length) } : headers,
      })
    } catch (err) {
      // node:http throws at once on a header it will not write (a control character, say)
      done()
      return x.error(err)
    }
    // after the exchange ended, errors still come (a socket destroyed on abort): heard, ignored
    req.on('error', (err) => {
      done()
      // the name may point elsewhere now: the next try looks it up again
      this.lookups?.forget()
      x.error(err)
    })
    req.on('close', done)
    req.on('socket', (socket: Socket) => {
      // a reused keep-alive socket is connected already; a new one gets connect_timeout for TCP + TLS
      if (!socket.connecting) return
      const timer = setTimeout(
        () => req.destroy(new ConnectTimeout(this.server, this.connectMs)),
        this.connectMs,
      )
      const clear = () => clearTimeout(timer)
      socket.once(this.secure ? 'secureConnect' : 'connect', clear)
      socket.once('close', clear)
    })
    req.on('response', (res: http.IncomingMessage) => {
      x.response(res.statusCode ?? 0, replyHead(res.headers))
      res.on('data', (chunk: Buffer) => x.data(chunk))
      res.on('error', (err) => x.error(err))
      res.on('end', () => {
        x.end()
        // rspamd answered before it had all of the message (an error status): nothing more to send
        if (!req.writableFinished) req.destroy()
      })
    })
    // without an error: the attempt has settled already, and an error would only build a stack trace
    x.started(() => req.destroy())
    if (Buffer.isBuffer(body)) req.end(body)
    else body.pipe(req)
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      const finish = () => {
        this.agent.destroy()
        resolve()
      }
      if (this.active === 0) finish()
      else this.idle.push(finish)
    })
  }

  destroy(): Promise<void> {
    this.agent.destroy()
    return Promise.resolve()
  }
}

/**
 * undici's connector, with sockets that undici closes on purpose closed without an error.
 *
 * rspamd answers every scan with `Connection: close`, and undici then destroys the socket with an
 * InformationalError (code UND_ERR_INFO, 'reset'; 'aborted' when a scan is cancelled). Node's
 * stream destroy() formats that error's stack at once (lib/internal/streams/destroy.js, checkError),
 * which cost ~0.08 ms of CPU per message — more than all of our own reply handling. Closing without
 * the error is what undici's own close handler expects too: it takes UND_ERR_INFO as "nothing went
 * wrong". A side effect we want: a cancelled scan's request is then dropped instead of being queued
 * again, so undici opens no spare connection for it (nodejs/undici#5845). Real errors (resets,
 * timeouts, TLS) pass through unchanged.
 */
function quietCloseConnector(
  undici: typeof import('undici'),
  opts: buildConnector.BuildOptions,
): buildConnector.connector {
  const connect = undici.buildConnector(opts)
  return (options, callback) => {
    connect(options, (err, socket) => {
      if (socket) {
        const destroy = socket.destroy
        socket.destroy = function (this: typeof socket, error?: Error) {
          return destroy.call(this, error instanceof undici.errors.InformationalError ? undefined : error)
        }
      }
      ;(callback as (e: Error | null, s: typeof socket) => void)(err, socket)
    })
  }
}

/** An undici keep-alive Pool: dispatch() with a handler of our own (no response stream, no iteration). */
class UndiciTransport implements Transport {
  readonly name = 'undici'
  private readonly pool: Pool
  private readonly origin: string
  private readonly lookups: ServerLookups | undefined

  constructor(target: Target, cfg: Config, opts: TransportOptions) {
    this.origin = targetOrigin(target)
    this.lookups = lookupsFor(target)
    const undici = loadUndici()
    this.pool = new undici.Pool(this.origin, {
      connections: opts.connections ?? null,
      keepAliveTimeout: IDLE_MS,
      keepAliveMaxTimeout: 30_000,
      // our own timeouts govern; these only stop undici's 300 s defaults from mattering
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: quietCloseConnector(undici, {
        // no TCP keep-alive probes (a setsockopt per connection): rspamd closes after each reply, and
        // an idle pooled connection is dropped after IDLE_MS, long before a probe would go
        keepAlive: false,
        ...(target.kind === 'unix' ? { socketPath: target.socketPath } : {}),
        ...(this.lookups ? { lookup: this.lookups.lookup } : {}),
        timeout: connectMs(cfg),
        ...tlsOptions(target, cfg),
      }),
    })
  }

  send(path: string, headers: RequestHeaders, body: Buffer | Readable, x: Exchange): void {
    const lookups = this.lookups
    this.pool.dispatch(
      { origin: this.origin, method: 'POST', path, headers, body },
      {
        onRequestStart(c) {
          x.started((why) => c.abort(why))
        },
        onResponseStart(_c, statusCode, headers) {
          x.response(statusCode, replyHead(headers as HeaderBag))
        },
        onResponseData(_c, chunk) {
          x.data(chunk)
        },
        onResponseEnd() {
          x.end()
        },
        onResponseError(_c, err) {
          lookups?.forget()
          x.error(err)
        },
      },
    )
  }

  close(): Promise<void> {
    return this.pool.close()
  }

  destroy(): Promise<void> {
    return this.pool.destroy()
  }
}
