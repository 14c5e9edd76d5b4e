// The plugin's one info line per message, as fields: a plain object Haraka's logger renders as
// `key=value` pairs in its default format, as fields of their own under `format=logfmt` and `json`.
// Also the start-up line that says which clients [check] leaves unscanned.

import type { Config } from '../config'
import type { InternalError, ScanError } from '../errors'
import type { SkipReason } from '../policy/skip'

/** A log line's fields, in the order they are written; a field left undefined is not written. */
export type LogFields = Record<string, string | number | boolean | undefined>

/** What a first-time operator needs to know about a skip: the [check] key that would scan the message. */
const SKIP_HINTS: Record<SkipReason, string> = {
  authed: 'authenticated sender; [check] authenticated = true scans it',
  relay: 'relaying client; [check] relay = true scans it',
  local_ip: 'client on this machine; [check] local_ip = true scans it',
  private_ip: 'client on a private network; [check] private_ip = true scans it',
  whitelist: 'client in [check] whitelist',
  port: 'local port in [check] skip_ports',
  size: 'message over max_size',
}

/** The line of a message not scanned: every reason, each with what would scan it. */
export function skipFields(reasons: readonly SkipReason[], size: number | undefined, cfg: Config): LogFields {
  const hints: string[] = []
  for (const r of reasons)
    hints.push(r === 'size' ? `${SKIP_HINTS.size} (${cfg.maxSize} bytes)` : SKIP_HINTS[r])
  return { skip: reasons.join(','), size, why: hints.join('; ') }
}

/** The kinds of client [check] leaves unscanned in this config, for the start-up line; undefined when none. */
export function unscannedClients(cfg: Config): string | undefined {
  const c = cfg.check
  const kinds: string[] = []
  if (!c.localIp) kinds.push('clients on this machine (local_ip = false)')
  if (!c.privateIp) kinds.push('clients on private networks (private_ip = false)')
  if (!c.authenticated) kinds.push('authenticated senders (authenticated = false)')
  if (!c.relay) kinds.push('relaying clients (relay = false)')
  if (c.whitelist.length > 0) kinds.push(`${c.whitelist.length} whitelisted network(s) (whitelist)`)
  if (c.skipPorts.length > 0) kinds.push(`connections to port(s) ${c.skipPorts.join(', ')} (skip_ports)`)
  if (kinds.length === 0) return undefined
  return `not scanned, per [check] in rspamd.ini: ${kinds.join(', ')}`
}

/** A score as rspamd prints it: at most 3 decimals, no float noise. */
function score(n: number | undefined): number | undefined {
  return n === undefined ? undefined : Math.round(n * 1000) / 1000
}

/** A failover list as one field: `server (kind)` for each server that failed before the last. */
export function failoverField(
  attempts: readonly { server: string; error: Pick<ScanError, 'kind'> }[],
): string | undefined {
  if (attempts.length === 0) return undefined
  let out = ''
  for (const a of attempts) out += `${out === '' ? '' : ','}${a.server}(${a.error.kind})`
  return out
}

/** The line of a scanned message; `code` and `reply` only when the plugin answers (550, 451). */
export function scanFields(f: {
  action: string
  localAction?: string
  score: number
  required?: number
  skipped: boolean
  verdict: string
  code?: number
  reply?: string
  greylist?: string
  server: string
  ms: number
  size?: number
  failover?: string
  symbols: string
}): LogFields {
  return {
    action: f.action,
    local_action: f.localAction,
    score: score(f.score),
    required: score(f.required),
    is_skipped: f.skipped ? true : undefined,
    verdict: f.verdict,
    code: f.code,
    reply: f.reply,
    greylist: f.greylist,
    server: f.server,
    ms: f.ms,
    size: f.size,
    failover: f.failover,
    symbols: f.symbols,
  }
}

/**
 * The line of a message whose scan failed: the failure and what the [defer] policy made of it. The
 * `error` field is the failure's kind (connect, timeout, http, …, internal), as logs have always had it.
 */
export function failureFields(f: {
  error: (ScanError | InternalError)['kind']
  verdict: string
  code?: number
  server?: string
  ms?: number
  size?: number
  failover?: string
}): LogFields {
  return {
    error: f.error,
    verdict: f.verdict,
    code: f.code,
    server: f.server,
    ms: f.ms,
    size: f.size,
    failover: f.failover,
  }
}

/** Fields without the undefined ones, so no logger writes `key=""` for a field that does not apply. */
export function defined(fields: LogFields): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {}
  for (const k in fields) {
    const v = fields[k]
    if (v !== undefined) out[k] = v
  }
  return out
}
