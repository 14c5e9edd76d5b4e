// rspamd-lda's command line: the usage text, the options (rspamc's spellings too) and the plugin's
// rspamd.ini of --config, read and validated as the plugin reads it, merged into the one Config
// the scan runs with (Options). A bad option is a UsageError (exit 64), a bad file a ConfigError.

import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import {
  nodeHasZstd,
  type Config,
  ConfigError,
  headerName,
  headerValue,
  parseConfig,
  parseIni,
  parseServer,
  parseStyles,
} from '../config'
import { COMMAND } from './io'

/** Without a configured timeout: rspamd's own task timeout is 8 s, so this only bounds a hung server. */
const DEFAULT_TIMEOUT_S = 30

export const USAGE = `Usage: ${COMMAND} [options] [--exec "command args"] < message

Scans the message on stdin with rspamd and adds, at the end of its header block, what
\`rspamc --mime\` adds: X-Spam-Scanner, X-Spam-Scan-Time, X-Spam: yes (for the actions above
greylist), X-Spam-Action, X-Spam-Score, X-Spam-Level, X-Spam-Symbols; then rspamd's
DKIM-Signature and milter headers. Writes the message to stdout or to the stdin of --exec's
command (run by /bin/sh), exiting with that command's exit code. When rspamd cannot be asked,
the message goes out with only X-Spam-Scanner, X-Spam-Scan-Time and X-Spam-Error (and
without any verdict header it brought), or with --tempfail not at all (exit 75). rspamc's
spellings of these options work too.

Options:
  -c, --config FILE   rspamd.ini of haraka-plugin-rspamd (host, port, unix_socket, timeout,
                      [tls], [auth], [request], [request_headers], [dkim], [rmilter_headers],
                      [spam_headers], [header], [spambar])
  -s, --server ADDR   rspamd: host:port, [v6]:port, /path/to.sock or http(s)://host:port;
                      a comma list for failover between servers
  -h, --connect ADDR  the same, rspamc's spelling (-h is not help: use --help)
  -t, --timeout SECS  total seconds for the scan (default: the ini's timeout, else ${DEFAULT_TIMEOUT_S})
  -F, --from ADDR     envelope sender (rspamd From); -f ADDR too
  -r, --rcpt ADDR     envelope recipient (rspamd Rcpt); repeat for several
  -i, --ip ADDR       IP address of the client that sent the message
      --helo NAME     its HELO name
  -u, --user NAME     authenticated user
  -d, --deliver ADDR  the mailbox it is delivered to (rspamd Deliver-To: per-user settings);
                      default: the recipient when there is exactly one
      --hostname NAME the client's resolved host name (rspamd Hostname)
      --queue-id ID   the MTA's queue ID (rspamd Queue-Id, in rspamd's log)
      --log-tag TAG   rspamd's log tag for this scan (Log-Tag)
      --settings JSON rspamd settings for this scan (Settings: JSON or UCL)
      --settings-id ID
                      rspamd settings by ID (Settings-ID)
  -p, --pass-all      ask rspamd to run every rule (Pass: all)
      --header "NAME: VALUE"
                      one more request header (NAME=VALUE too); repeat for several
      --styles LIST   more header styles besides lda: rspamd, exim, extended
  -j, --json          also add X-Spam-Result: rspamd's JSON reply, base64
  -e, --exec CMD      deliver by piping the message into CMD instead of writing stdout
  -m, --mime          accepted for rspamc's sake: writing the message is all this command does
      --no-rspamd-headers
                      leave out rspamd's DKIM-Signature and milter add/remove headers
      --tempfail      exit 75 without delivering when the scan fails, so the MTA retries
      --help          this text
  -V, --version       the version

Exit codes: CMD's own, or 0 when writing to stdout; 64 bad usage; 75 scan failed with
--tempfail (or CMD killed by a signal); 74 reading stdin or writing stdout failed;
78 bad rspamd.ini; 70 an internal error before the message was read (after it: as a
failed scan).
`

export class UsageError extends Error {}

export interface Options {
  cfg: Config
  timeoutMs: number
  envelope: { ip?: string; helo?: string; mailFrom?: string; rcpts: string[]; user?: string }
  exec?: string
  tempfail: boolean
  /** sections of the --config file only the Haraka plugin acts on */
  haraka: string[]
}

/**
 * rspamc's options that each send rspamd one request header, by the header they send. Their values
 * join the --config file's [request_headers], replacing one of the same name, so the command line wins.
 */
const HEADER_OPTIONS = [
  ['deliver', 'Deliver-To'],
  ['hostname', 'Hostname'],
  ['queue-id', 'Queue-Id'],
  ['log-tag', 'Log-Tag'],
] as const

/** A check of src/config/ run on an option's value: its ConfigError becomes a UsageError naming the option. */
function asOption<T>(check: () => T): T {
  try {
    return check()
  } catch (err) {
    // an option, not a line of rspamd.ini
    if (err instanceof ConfigError) throw new UsageError(err.message.replace(/^rspamd\.ini: /, ''))
    throw err
  }
}

/** An option's value that goes into a request header: checked as [request] and [request_headers] values are. */
function optionValue(option: string, value: string): string {
  asOption(() => headerValue(option, value))
  const v = value.trim()
  if (v === '') throw new UsageError(`${option} needs a value`)
  return v
}

/**
 * The request headers of -d, --hostname, --queue-id, --log-tag and each --header, keyed by lower-case
 * name: `--header "Name: value"` (or `Name=value`, as rspamc splits it at the first `:` or `=`), the
 * name an HTTP token, the value one line; a name given twice is an error, not a silent choice.
 */
function optionHeaders(
  values: Partial<Record<(typeof HEADER_OPTIONS)[number][0], string>>,
  headers: string[],
): Map<string, { name: string; value: string; option: string }> {
  const out = new Map<string, { name: string; value: string; option: string }>()
  const add = (name: string, value: string, option: string) => {
    const had = out.get(name.toLowerCase())
    if (had !== undefined) {
      throw new UsageError(
        had.option === option
          ? `${option}: ${name} given twice`
          : `${option}: ${name} is set by ${had.option} already: give one`,
      )
    }
    out.set(name.toLowerCase(), { name, value, option })
  }
  for (const [option, name] of HEADER_OPTIONS) {
    const v = values[option]
    if (v !== undefined) add(name, optionValue(`--${option}`, v), `--${option}`)
  }
  for (const h of headers) {
    const at = h.search(/[:=]/)
    if (at === -1) throw new UsageError(`--header ${JSON.stringify(h)}: expected "Name: value"`)
    const name = asOption(() => headerName('--header', h.slice(0, at).trim()))
    add(name, optionValue(`--header ${name}`, h.slice(at + 1)), '--header')
  }
  return out
}

/** --server: one server or a comma list, checked entry by entry as `servers` in rspamd.ini is. */
function checkServers(list: string): string {
  const entries = list
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '')
  if (entries.length === 0) throw new UsageError('--server needs an address')
  for (const e of entries) {
    const t = parseServer(e)
    if (typeof t === 'string') throw new UsageError(`--server ${JSON.stringify(e)}: ${t}`)
  }
  return entries.join(', ')
}

function readIni(path: string): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError('--config', path, `cannot read: ${(err as Error).message}`)
  }
  // no declared booleans, as in the plugin: parseConfig reads their text and refuses an unknown word
  const { sections, problems } = parseIni(text)
  // Haraka only logs such lines; a command run by an MTA has no log, so they are errors here. The line's
  // number, not its text, which may be a password.
  if (problems.length > 0) {
    const said = problems.map(
      (p) => `line ${p.line} ${p.reason === 'not key = value' ? 'is not key = value' : `has an ${p.reason}`}`,
    )
    throw new ConfigError('--config', path, said.join('; '))
  }
  return sections
}

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv): Options | 'help' | 'version' {
  let values
  try {
    ;({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: 'string', short: 'c' },
        server: { type: 'string', short: 's' },
        // rspamc's spelling of the server: an mda line written for rspamc keeps working (help is --help, as there)
        connect: { type: 'string', short: 'h' },
        timeout: { type: 'string', short: 't' },
        from: { type: 'string', short: 'F' },
        // -f: the sender's option in 2.0.0 (and sendmail's); rspamc's -f is a fuzzy flag, never in an LDA line
        f: { type: 'string' },
        rcpt: { type: 'string', short: 'r', multiple: true },
        ip: { type: 'string', short: 'i' },
        helo: { type: 'string' },
        user: { type: 'string', short: 'u' },
        deliver: { type: 'string', short: 'd' },
        hostname: { type: 'string' },
        'queue-id': { type: 'string' },
        'log-tag': { type: 'string' },
        header: { type: 'string', multiple: true },
        settings: { type: 'string' },
        'settings-id': { type: 'string' },
        'pass-all': { type: 'boolean', short: 'p' },
        // rspamc's -z (its default anyway); --zstd, the name of the [request] key
        compressed: { type: 'boolean', short: 'z' },
        zstd: { type: 'boolean' },
        styles: { type: 'string' },
        json: { type: 'boolean', short: 'j' },
        exec: { type: 'string', short: 'e' },
        mime: { type: 'boolean', short: 'm' },
        'no-rspamd-headers': { type: 'boolean' },
        tempfail: { type: 'boolean' },
        help: { type: 'boolean' },
        version: { type: 'boolean', short: 'V' },
      },
    }))
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  if (values.help) return 'help'
  if (values.version) return 'version'

  if (values.server !== undefined && values.connect !== undefined) {
    throw new UsageError('--server and --connect (-h) are the same option: give one')
  }
  const server = values.server ?? values.connect
  const zstd = values.compressed === true || values.zstd === true
  if (zstd && !nodeHasZstd()) {
    throw new UsageError(
      `${values.zstd === true ? '--zstd' : '-z (--compressed)'}: zstd compression needs zstd in node:zlib (Node 22.15+, 23.8+ or 24); this is Node ${process.versions.node}`,
    )
  }
  const extraHeaders = optionHeaders(values, values.header ?? [])
  const settings = values.settings === undefined ? undefined : optionValue('--settings', values.settings)
  const settingsId =
    values['settings-id'] === undefined ? undefined : optionValue('--settings-id', values['settings-id'])
  const ini = values.config !== undefined ? readIni(values.config) : {}
  const main = { ...((ini.main as Record<string, unknown> | undefined) ?? {}) }
  if (server !== undefined) {
    // --server replaces every address key of the ini
    for (const k of ['host', 'port', 'unix_socket', 'scheme', 'servers']) delete main[k]
    main.servers = checkServers(server)
  }
  // rspamd's own headers: on unless the ini's [dkim] / [rmilter_headers] or the flag say no
  const section = (name: string) => (ini[name] as Record<string, unknown> | undefined) ?? {}
  const rspamdHeaders = values['no-rspamd-headers']
    ? {
        dkim: { ...section('dkim'), enabled: false },
        rmilter_headers: { ...section('rmilter_headers'), enabled: false },
      }
    : {}
  if (values.timeout !== undefined) main.timeout = values.timeout
  // the options' request headers and [request] keys replace the file's
  const fromOptions: Record<string, unknown> = {}
  if (extraHeaders.size > 0) {
    const headers: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(section('request_headers'))) {
      if (!extraHeaders.has(k.toLowerCase())) headers[k] = v
    }
    for (const { name, value } of extraHeaders.values()) headers[name] = value
    fromOptions.request_headers = headers
  }
  if (settings !== undefined || settingsId !== undefined || values['pass-all'] === true || zstd) {
    const request = { ...section('request') }
    // as [request] zstd = true: the message goes compressed, and rspamd's compressed reply is read
    if (zstd) request.zstd = true
    if (settings !== undefined) request.settings = settings
    if (settingsId !== undefined) request.settings_id = settingsId
    if (values['pass-all'] === true) request.pass_all = true
    fromOptions.request = request
  }
  // the lda style always (this is rspamc --mime), first; then --styles, else the config's [spam_headers]
  // styles (checked as the plugin checks them); X-Spam-Result with --json or the config's lda_json
  const fromIni = (ini.spam_headers as Record<string, unknown> | undefined) ?? {}
  let styles: string[] = []
  if (values.styles !== undefined) {
    const list = values.styles
    styles = asOption(() => parseStyles('--styles', list))
  } else if (fromIni.styles !== undefined) {
    styles = parseStyles('spam_headers.styles', fromIni.styles)
  }
  const spamHeaders: Record<string, unknown> = {
    ...fromIni,
    styles: ['lda', ...styles.filter((s) => s !== 'lda')].join(','),
  }
  if (values.json === true) spamHeaders.lda_json = true
  const cfg = parseConfig({ ...ini, ...rspamdHeaders, ...fromOptions, main, spam_headers: spamHeaders }, env)

  if (values.exec !== undefined && values.exec.trim() === '') throw new UsageError('--exec needs a command')
  return {
    cfg,
    timeoutMs: Math.round((cfg.timeout ?? DEFAULT_TIMEOUT_S) * 1000),
    envelope: {
      ip: values.ip,
      helo: values.helo,
      mailFrom: values.from ?? values.f,
      rcpts: values.rcpt ?? [],
      user: values.user,
    },
    exec: values.exec,
    tempfail: values.tempfail === true,
    haraka: HARAKA_ONLY.filter((name) => ini[name] !== undefined),
  }
}

/**
 * Sections of rspamd.ini only the Haraka plugin acts on: rspamd-lda answers no SMTP client, so it
 * does not skip, reject, defer, greylist or rewrite (its --tempfail is what [defer] error is there).
 * Checked as the plugin checks them all the same, so one file serves both.
 */
const HARAKA_ONLY = [
  'check',
  'reject',
  'soft_reject',
  'defer',
  'greylist',
  'redis',
  'ham',
  'thresholds',
  'rewrite_subject',
  'smtp_message',
  'milter_envelope',
] as const
