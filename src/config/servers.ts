// Where rspamd is: the server-address grammar of rspamd.ini. `host`/`port`/`unix_socket`/`scheme` or a
// `servers` list → Targets; which host names and IP addresses are taken (hostProblem, also used for
// redis.ini); the URL origin of a target and the HTTP client (transport) it gets; and sameTarget(), the
// rule for when a reloaded config can keep the client it has and when it needs a new one.

import { isIP } from 'node:net'
import { domainToUnicode } from 'node:url'
import { ConfigError } from './errors'
import type { Reader } from './reader'
import type { Config, Target, TransportKind } from './types'
import { CONTROLS, controlClass } from '../escape'

/** What a socket path may not hold: white space and controls. */
const SOCKET_PATH_BAD = controlClass([CONTROLS.space, CONTROLS.all])

/** rspamd's normal worker port: `port`'s default, and a `servers` entry's without one. */
const DEFAULT_PORT = 11333

/**
 * A DNS host name (RFC 1123 labels; `_` too, as container names have it; a final dot allowed), in ASCII:
 * what node:http, undici and `new URL()` all take as it is. An international name goes in its xn-- form.
 */
const HOST_NAME =
  /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/

/**
 * `host` (or a `servers` entry's host, brackets taken off) → undefined when it is a host name or an IP
 * address, else why not. An IPv6 zone index (`fe80::1%eth0`) reaches node:http only: undici takes a URL,
 * and URLs have no zone index.
 */
export function hostProblem(host: string): string | undefined {
  if (isIP(host) !== 0) return undefined
  const zone = /^([0-9A-Fa-f:.]+)%([A-Za-z0-9_.-]+)$/.exec(host)
  if (zone && isIP(zone[1] ?? '') === 6) return undefined
  if (host.length <= 254 && HOST_NAME.test(host)) {
    const bad = host.split('.').find((label) => !aLabelDecodes(label))
    return bad === undefined ? undefined : `${bad} is not a valid international (xn--, punycode) label`
  }
  if (/^[^:]+:\d*$/.test(host)) return 'expected a host name or IP address; the port goes in `port`'
  return 'expected a host name or IP address (ASCII letters, digits, - _ and .; IPv6 in [brackets] or bare)'
}

/**
 * A label is fine unless it starts with `xn--` and does not decode to an international name. Node's own
 * URL parser is no guide: Node 20 and 22 refuse `xn--a.example`, Node 24 (ada 4) takes it, so a config
 * would load on one and not the other. `domainToUnicode` gives '' (Node 20, 22) or the input unchanged
 * (Node 24) for a label that does not decode, and a name with a non-ASCII character for one that does.
 */
function aLabelDecodes(label: string): boolean {
  if (!/^xn--/i.test(label)) return true
  const decoded = domainToUnicode(label)
  return decoded !== '' && /\P{ASCII}/u.test(decoded)
}

export function parseTarget(main: Reader): Target {
  const socketPath = main.str('unix_socket')
  const scheme = (main.str('scheme') ?? 'http').toLowerCase()
  if (scheme !== 'http' && scheme !== 'https') {
    throw new ConfigError('scheme', main.raw('scheme'), 'expected http or https')
  }
  const host = main.str('host') ?? 'localhost'
  // [::1] and ::1 both name an IPv6 host; undici wants the bracketed form in a URL.
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
  const problem = hostProblem(bare)
  if (problem !== undefined) throw new ConfigError('host', main.raw('host'), problem)
  const port = main.port('port', DEFAULT_PORT)
  if (socketPath !== undefined) {
    const why = socketProblem(socketPath)
    if (why !== undefined) throw new ConfigError('unix_socket', socketPath, why)
    return { kind: 'unix', socketPath }
  }
  return { kind: 'tcp', scheme, host: bare, port }
}

/** undefined for an absolute path to a Unix socket, else why it is not one. */
function socketProblem(path: string): string | undefined {
  if (!path.startsWith('/')) return 'expected an absolute path'
  if (SOCKET_PATH_BAD.test(path)) return 'a socket path may not contain spaces or control characters'
  return undefined
}

/** The URL origin a target is reached at (undici's Pool and the log): the host in brackets when IPv6. */
export function targetOrigin(target: Target): string {
  if (target.kind === 'unix') return 'http://localhost'
  const host = target.host.includes(':') ? `[${target.host}]` : target.host
  return `${target.scheme}://${host}:${target.port}`
}

/**
 * A target as one text, `unix:/path` or its URL origin: how logs name a server (escaped where written:
 * a socket path may hold any byte), and the key by which `servers` finds an entry listed twice.
 */
export function targetName(target: Target): string {
  return target.kind === 'unix' ? `unix:${target.socketPath}` : targetOrigin(target)
}

/** The transport `kind` resolves to for this target: auto is node:http except for https. */
export function transportFor(target: Target, kind: TransportKind): 'node' | 'undici' {
  if (kind !== 'auto') return kind
  return target.kind === 'tcp' && target.scheme === 'https' ? 'undici' : 'node'
}

/**
 * What the client will build for each target, built here: undici's Pool parses the origin as a URL (a
 * name that does not parse would throw there, out of a reload), node:http takes host and port as they are.
 * `key`: the key the targets came from, for the error.
 */
export function checkTargets(targets: Target[], kind: TransportKind, key: string, value: unknown): void {
  for (const t of targets) {
    if (t.kind !== 'tcp' || transportFor(t, kind) !== 'undici') continue
    const origin = targetOrigin(t)
    let url: URL | undefined
    try {
      url = new URL(origin)
    } catch {
      url = undefined
    }
    if (url === undefined || url.origin === 'null') {
      const zone = t.host.includes('%') ? ': an IPv6 zone index needs transport = node' : ''
      throw new ConfigError(key, value, `${origin} is not a URL undici can reach${zone}`)
    }
  }
}

/**
 * `servers`: a comma list of `host`, `host:port`, `[v6]:port`, `/path.sock`, `unix:/path.sock`,
 * `http://host:port` or `https://host:port`; when set it replaces host/port/unix_socket/scheme.
 */
export function parseServers(main: Reader): Target[] | undefined {
  const raw = main.raw('servers')
  const list = Array.isArray(raw) ? raw.map(String) : (main.str('servers') ?? '').split(',')
  const entries = list.map((e) => e.trim()).filter((e) => e !== '')
  if (entries.length === 0) return undefined
  const defaultScheme = (main.str('scheme') ?? 'http').toLowerCase()
  const out: Target[] = []
  for (const entry of entries) {
    const t = parseServer(entry, defaultScheme === 'https' ? 'https' : 'http')
    if (typeof t === 'string') throw new ConfigError('servers', raw, `${JSON.stringify(entry)}: ${t}`)
    const same = out.find((o) => targetName(o) === targetName(t))
    if (same) throw new ConfigError('servers', raw, `${JSON.stringify(entry)} is listed twice`)
    out.push(t)
  }
  return out
}

/** One `servers` entry → a Target, or why it is not one. */
export function parseServer(entry: string, scheme: 'http' | 'https' = 'http'): Target | string {
  if (entry.startsWith('unix:')) entry = entry.slice(5)
  if (entry.startsWith('/')) return socketProblem(entry) ?? { kind: 'unix', socketPath: entry }
  const url = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(entry)
  let rest = entry
  if (url) {
    const s = (url[1] ?? '').toLowerCase()
    if (s !== 'http' && s !== 'https') return `unknown scheme ${s} (expected http or https)`
    scheme = s
    rest = (url[2] ?? '').replace(/\/$/, '')
    if (rest.includes('/')) return 'a URL here names a server only; set the path with `path`'
  }
  let host: string
  let portText: string | undefined
  const v6 = /^\[([0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?)\](?::(.*))?$/.exec(rest)
  if (v6) {
    host = v6[1] ?? ''
    portText = v6[2]
  } else {
    const parts = rest.split(':')
    if (parts.length > 2) return 'an IPv6 address needs brackets, as in [::1]:11333'
    host = parts[0] ?? ''
    portText = parts[1]
  }
  const problem = hostProblem(host)
  if (problem !== undefined) return problem
  // an https URL without a port is rspamd behind a TLS proxy on 443; anything else is rspamd's port
  let port = url && scheme === 'https' ? 443 : DEFAULT_PORT
  if (portText !== undefined) {
    port = Number(portText)
    if (!/^\d+$/.test(portText) || port < 1 || port > 65535) return `bad port ${JSON.stringify(portText)}`
  }
  return { kind: 'tcp', scheme, host, port }
}

/**
 * Whether a client made for `a` serves `b` as well: the same servers, path, TLS, connect and health
 * settings (a reload that changes any of them makes a new client).
 */
export function sameTarget(a: Config, b: Config): boolean {
  if (a.path !== b.path) return false
  if (a.targets.length !== b.targets.length) return false
  if (a.targets.some((t, i) => targetName(t) !== targetName(b.targets[i] ?? t))) return false
  if (a.connectTimeout !== b.connectTimeout || a.transport !== b.transport) return false
  const ua = a.upstream
  const ub = b.upstream
  if (ua.errorTime !== ub.errorTime || ua.deadTime !== ub.deadTime || ua.maxErrors !== ub.maxErrors)
    return false
  if (ua.maxInFlight !== ub.maxInFlight || ua.adaptive !== ub.adaptive) return false
  const sa = a.tls
  const sb = b.tls
  const eq = (x?: Buffer, y?: Buffer) => (x === undefined ? y === undefined : y !== undefined && x.equals(y))
  return (
    sa.rejectUnauthorized === sb.rejectUnauthorized &&
    sa.servername === sb.servername &&
    eq(sa.ca, sb.ca) &&
    eq(sa.cert, sb.cert) &&
    eq(sa.key, sb.key)
  )
}
