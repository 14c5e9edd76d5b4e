// The rspamd-lda command (src/lda.ts through bin/rspamd-lda, built) as a child process: against
// the fake rspamd for every action, every failure and every option; against real rspamd
// (scripts/rspamd.sh) for each action and a 25 MB message reproduced byte for byte.

import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  watch,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { FakeRspamd } from './support/fake-rspamd'
import { CORPUS, corpus, REPO } from './support/harness'
import { RealRspamd, RSPAMD_PORT } from './support/real-rspamd'
import { type RspamdAction, replyFor } from './support/replies'
import { withoutFields } from '../src/lda'

const BIN = join(REPO, 'bin', 'rspamd-lda')
const RSS_PRELOAD = join(REPO, 'test', 'support', 'report-rss.cjs')
const ACTIONS: Array<[RspamdAction, 'yes' | 'no']> = [
  ['no action', 'no'],
  ['greylist', 'no'],
  ['add header', 'yes'],
  ['rewrite subject', 'no'],
  ['soft reject', 'no'],
  ['reject', 'yes'],
]

interface LdaRun {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: Buffer
  stderr: string
  /** files left in the command's TMPDIR after it ended */
  leftovers: string[]
  /** the command's peak RSS, KiB */
  maxRssKb: number
}

interface LdaOptions {
  /** stdin from this file instead of `input` */
  inputFile?: string
  /** stdout to this file instead of a buffer */
  outputFile?: string
  /** called with the child once it runs (to signal it) */
  started?: (child: ReturnType<typeof spawn>) => void
}

/** Run bin/rspamd-lda with a private TMPDIR; resolves when it has exited. */
function lda(args: string[], input: Buffer | string, opts: LdaOptions = {}): Promise<LdaRun> {
  const tmp = mkdtempSync(join(tmpdir(), 'lda-test-'))
  const spoolDir = join(tmp, 'spool')
  const rssFile = join(tmp, 'rss')
  const fds: number[] = []
  const fd = (path: string, flags: string) => {
    const n = openSync(path, flags)
    fds.push(n)
    return n
  }
  mkdirSync(spoolDir)
  const child = spawn(process.execPath, ['-r', RSS_PRELOAD, BIN, ...args], {
    env: { ...process.env, TMPDIR: spoolDir, REPORT_RSS_FILE: rssFile },
    stdio: [
      opts.inputFile ? fd(opts.inputFile, 'r') : 'pipe',
      opts.outputFile ? fd(opts.outputFile, 'w') : 'pipe',
      'pipe',
    ],
  })
  const out: Buffer[] = []
  let err = ''
  child.stdout?.on('data', (c: Buffer) => out.push(c))
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()))
  child.stdin?.on('error', () => undefined)
  child.stdin?.end(input)
  opts.started?.(child)
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, signal) => {
      for (const n of fds) closeSync(n)
      let maxRssKb = 0
      try {
        maxRssKb = Number(readFileSync(rssFile, 'utf8'))
      } catch {
        // killed before its exit handler ran
      }
      const leftovers = readdirSync(spoolDir)
      rmSync(tmp, { recursive: true, force: true })
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: err, leftovers, maxRssKb })
    })
  })
}

/** The header fields the command put on top: `Name: value` unfolded, up to the original's first line. */
function addedHeaders(output: Buffer, original: Buffer): Map<string, string> {
  assert.ok(output.length >= original.length, 'output shorter than the input')
  const text = output.subarray(0, output.length - original.length).toString('latin1')
  const out = new Map<string, string>()
  for (const m of text.replace(/\r?\n[ \t]+/g, ' ').matchAll(/^([!-9;-~]+): ?(.*?)\r?$/gm)) {
    out.set(m[1] ?? '', m[2] ?? '')
  }
  return out
}

function withTestHeaders(file: string, headers: Record<string, string>): Buffer {
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`)
  return Buffer.concat([Buffer.from(lines.join('')), corpus(file)])
}

const ham = corpus('ham.eml')

describe('rspamd-lda: withoutFields()', function () {
  const HEAD =
    'From: a@example.org\r\nX-Spam: no\r\nx-spam-action: no action\r\n  continued\r\n\tmore\r\nSubject: X-Spam: yes\r\nX-Spam-Flag: YES\r\n'
  const CASES: Array<[label: string, head: string, drop: string[], expected: string]> = [
    ['nothing to drop', HEAD, [], HEAD],
    [
      'names case-insensitively, with their continuation lines',
      HEAD,
      ['x-spam', 'x-spam-action'],
      'From: a@example.org\r\nSubject: X-Spam: yes\r\nX-Spam-Flag: YES\r\n',
    ],
    ['not a name that only starts the same, nor a value', HEAD, ['x-spam-fla'], HEAD],
    ['LF line ends', 'X-Spam: no\nA: 1\n', ['x-spam'], 'A: 1\n'],
    ['a last line without a line end', 'A: 1\nX-Spam: no', ['x-spam'], 'A: 1\n'],
    ['a name with space before the colon', 'X-Spam : no\nA: 1\n', ['x-spam'], 'A: 1\n'],
    ['an empty block', '', ['x-spam'], ''],
  ]
  for (const [label, head, drop, expected] of CASES) {
    it(`drops ${label}`, () => {
      assert.equal(withoutFields(Buffer.from(head), new Set(drop)).toString(), expected)
    })
  }
})

describe('rspamd-lda with the fake rspamd', function () {
  this.timeout(30_000)
  let server: FakeRspamd
  const at = () => ['--server', `127.0.0.1:${server.port}`]

  before(async () => {
    server = await FakeRspamd.start()
  })
  after(async () => {
    await server.close()
  })
  beforeEach(() => {
    server.setMode('ok')
    server.setReply(undefined)
  })

  for (const [action, spam] of ACTIONS) {
    it(`adds X-Spam: ${spam} and X-Spam-Action: ${action} on top and keeps the message byte for byte`, async () => {
      server.setReply(replyFor(action))
      const r = await lda(at(), ham)
      assert.equal(r.code, 0, r.stderr)
      assert.ok(r.stdout.subarray(r.stdout.length - ham.length).equals(ham), 'the original follows unchanged')
      const h = addedHeaders(r.stdout, ham)
      assert.deepEqual([...h.keys()], ['X-Spam-Scanner', 'X-Spam', 'X-Spam-Action'])
      assert.match(h.get('X-Spam-Scanner') ?? '', /^rspamd-lda \d+\.\d+\.\d+$/)
      assert.equal(h.get('X-Spam'), spam)
      assert.equal(h.get('X-Spam-Action'), action)
      assert.ok(server.requests.at(-1)?.body.equals(ham), 'rspamd got the message exactly')
      assert.deepEqual(r.leftovers, [], 'spool removed')
    })
  }

  it('sends the envelope options as rspamd request headers', async () => {
    const args = [...at(), '-f', 'alice@example.org', '-r', 'bob@example.net', '--rcpt', 'carol@example.net']
    const r = await lda([...args, '--ip', '192.0.2.9', '--helo', 'mail.example.org', '--user', 'alice'], ham)
    assert.equal(r.code, 0, r.stderr)
    const req = server.requests.at(-1)
    assert.ok(req)
    assert.equal(req.headers.from, 'alice@example.org')
    assert.equal(req.headers.ip, '192.0.2.9')
    assert.equal(req.headers.helo, 'mail.example.org')
    assert.equal(req.headers.user, 'alice')
    const rcpts = req.rawHeaders.filter((_, i) => i % 2 === 0 && req.rawHeaders[i]?.toLowerCase() === 'rcpt')
    assert.equal(rcpts.length, 2)
    assert.equal(req.headers['deliver-to'], undefined, 'Deliver-To only for one recipient')
  })

  it('--json adds X-Spam-Result, the reply in base64', async () => {
    const reply = replyFor('add header')
    server.setReply(reply)
    const r = await lda([...at(), '--json'], ham)
    assert.equal(r.code, 0, r.stderr)
    const b64 = addedHeaders(r.stdout, ham).get('X-Spam-Result') ?? ''
    assert.deepEqual(JSON.parse(Buffer.from(b64.replace(/\s+/g, ''), 'base64').toString('utf8')), reply)
  })

  it('--styles adds other styles after the lda one', async () => {
    server.setReply(replyFor('add header'))
    const r = await lda([...at(), '--styles', 'exim,rspamd'], ham)
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(
      [...addedHeaders(r.stdout, ham).keys()],
      ['X-Spam-Scanner', 'X-Spam', 'X-Spam-Action', 'X-Spam-Score', 'X-Spam-Report'].concat([
        'X-Rspamd-Bar',
        'X-Rspamd-Report',
        'X-Rspamd-Score',
      ]),
    )
  })

  it('removes forged verdict headers of every style, and with remove_foreign=false only those it writes', async () => {
    server.setReply(replyFor('add header'))
    const spoofed = corpus('spoofed-verdict-headers.eml')
    const body = spoofed.subarray(spoofed.indexOf('\r\n\r\n'))
    const r = await lda(at(), spoofed)
    assert.equal(r.code, 0, r.stderr)
    const text = r.stdout.toString('latin1')
    assert.equal(text.match(/^X-Spam:/gim)?.length, 1)
    assert.equal(text.match(/^X-Spam-Action:/gim)?.length, 1)
    assert.match(text, /^X-Spam: yes\r$/m)
    assert.doesNotMatch(text, /^X-Spamd-Result:/im, 'a forged verdict of another style is gone')
    assert.doesNotMatch(text, /^X-Rspamd-Score:/im)
    assert.ok(r.stdout.subarray(r.stdout.length - body.length).equals(body), 'body unchanged')

    const dir = mkdtempSync(join(tmpdir(), 'lda-ini-'))
    try {
      const ini = join(dir, 'rspamd.ini')
      writeFileSync(ini, '[spam_headers]\nremove_foreign = false\n')
      const kept = await lda(['--config', ini, ...at()], spoofed)
      assert.equal(kept.code, 0, kept.stderr)
      const t2 = kept.stdout.toString('latin1')
      assert.equal(t2.match(/^X-Spam:/gim)?.length, 1, 'ours still replace theirs')
      // not ours in this style: left as they were
      assert.match(t2, /^X-Spamd-Result: default: False \[-42\.00 \/ 15\.00\]\r$/m)
      assert.match(t2, /^X-Rspamd-Score: -42\.0\r$/m)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('adds its headers to a message that is all header block (no empty line, no body)', async () => {
    server.setReply(replyFor('add header'))
    const msg = Buffer.from('Subject: only headers\r\nX-Spam: no')
    const r = await lda(at(), msg)
    assert.equal(r.code, 0, r.stderr)
    assert.match(
      r.stdout.toString(),
      /^X-Spam-Scanner: rspamd-lda \S+\r\nX-Spam: yes\r\nX-Spam-Action: add header\r\nSubject: only headers\r\n$/,
    )
  })

  it('says so on stderr, and still delivers byte for byte, when the header block is over 1 MiB', async () => {
    server.setReply(replyFor('add header'))
    const msg = Buffer.from(`X-Spam: no\r\nX-Big: ${'a'.repeat(1100 * 1024)}\r\n\r\nbody\r\n`)
    const r = await lda(at(), msg)
    assert.equal(r.code, 0, r.stderr)
    assert.ok(r.stdout.subarray(r.stdout.length - msg.length).equals(msg))
    assert.deepEqual([...addedHeaders(r.stdout, msg).keys()], ['X-Spam-Scanner', 'X-Spam', 'X-Spam-Action'])
    assert.match(r.stderr, /header block over 1048576 bytes: headers of the names we add are not removed/)
  })

  it('keeps an mbox From_ line first and writes LF when the message uses LF', async () => {
    server.setReply(replyFor('reject'))
    const msg = Buffer.from('From alice@example.org Tue Nov 24 10:15:00 2026\nSubject: hi\n\nbody\n')
    const r = await lda(at(), msg)
    assert.equal(r.code, 0, r.stderr)
    const lines = r.stdout.toString().split('\n')
    assert.equal(lines[0], 'From alice@example.org Tue Nov 24 10:15:00 2026')
    assert.match(lines[1] ?? '', /^X-Spam-Scanner: rspamd-lda /)
    assert.equal(lines[2], 'X-Spam: yes')
    assert.ok(!r.stdout.includes('\r'), 'no CR added to an LF message')
    assert.ok(r.stdout.toString().endsWith('X-Spam-Action: reject\nSubject: hi\n\nbody\n'))
  })

  it('reads host, port and [request_headers] from --config, and --server overrides the address', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lda-ini-'))
    try {
      const ini = join(dir, 'rspamd.ini')
      writeFileSync(ini, `host = 127.0.0.1\nport = ${server.port}\n[request_headers]\nX-Tenant = acme\n`)
      const r = await lda(['--config', ini], ham)
      assert.equal(r.code, 0, r.stderr)
      assert.equal(server.requests.at(-1)?.headers['x-tenant'], 'acme')
      writeFileSync(ini, 'host = 127.0.0.1\nport = 1\ntimout = 3\n')
      const r2 = await lda(['--config', ini, ...at()], ham)
      assert.equal(r2.code, 0, r2.stderr)
      assert.match(r2.stderr, /warning: --config: not used: timout/, 'a typo in the ini is reported')
      assert.equal(addedHeaders(r2.stdout, ham).get('X-Spam-Action'), 'no action')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('takes a comma list in --server and fails over to the next server when one refuses', async () => {
    const refusing = await FakeRspamd.unusedPort()
    server.setReply(replyFor('add header'))
    const r = await lda(['--server', `127.0.0.1:${refusing}, 127.0.0.1:${server.port}`], ham)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(addedHeaders(r.stdout, ham).get('X-Spam-Action'), 'add header')
    assert.ok(server.requests.at(-1)?.body.equals(ham), 'the second server got the message exactly')
  })

  for (const bad of ['::1', 'host:0', 'ftp://host', ' , ']) {
    it(`refuses --server ${JSON.stringify(bad)} with a usage error (64)`, async () => {
      const r = await lda(['--server', bad], ham)
      assert.equal(r.code, 64)
      assert.match(r.stderr, /--server/)
      assert.equal(r.stdout.length, 0, 'nothing delivered')
    })
  }

  const FAILURES: Array<
    [label: string, mode: Parameters<FakeRspamd['setMode']>[0], extra: string[], kind: RegExp]
  > = [
    ['answers garbage', 'garbage', [], /scan failed: parse: /],
    ['answers HTTP 500', 'status:500', [], /scan failed: http: HTTP 500/],
    ['resets the connection', 'reset-on-body:10', [], /scan failed: (network|connect): /],
    ['does not answer within --timeout', 'hang', ['--timeout', '0.5'], /scan failed: timeout: /],
  ]
  for (const [label, mode, extra, kind] of FAILURES) {
    it(`delivers the message unmodified, X-Spam-Scanner saying why, when rspamd ${label}`, async () => {
      server.setMode(mode)
      const r = await lda([...at(), ...extra], ham)
      assert.equal(r.code, 0, r.stderr)
      assert.ok(r.stdout.subarray(r.stdout.length - ham.length).equals(ham))
      const h = addedHeaders(r.stdout, ham)
      assert.deepEqual([...h.keys()], ['X-Spam-Scanner'])
      assert.match(h.get('X-Spam-Scanner') ?? '', kind)
      assert.match(r.stderr, /scan failed, delivering unscanned/)
      assert.deepEqual(r.leftovers, [])
    })
    it(`exits 75 without delivering with --tempfail when rspamd ${label}`, async () => {
      server.setMode(mode)
      const r = await lda([...at(), ...extra, '--tempfail'], ham)
      assert.equal(r.code, 75)
      assert.equal(r.stdout.length, 0)
      assert.match(r.stderr, /scan failed, not delivering \(--tempfail\)/)
      assert.deepEqual(r.leftovers, [])
    })
  }

  it('delivers unscanned, or exits 75 with --tempfail, when nothing listens', async () => {
    const closed = await FakeRspamd.start()
    const port = closed.port
    await closed.close()
    const r = await lda(['--server', `127.0.0.1:${port}`], ham)
    assert.equal(r.code, 0)
    assert.match(addedHeaders(r.stdout, ham).get('X-Spam-Scanner') ?? '', /scan failed: connect: /)
    const t = await lda(['--server', `127.0.0.1:${port}`, '--tempfail'], ham)
    assert.equal(t.code, 75)
    assert.equal(t.stdout.length, 0)
  })

  it('--exec pipes the message into the command and exits with its code', async () => {
    server.setReply(replyFor('add header'))
    const dir = mkdtempSync(join(tmpdir(), 'lda-exec-'))
    try {
      const got = join(dir, 'got.eml')
      const r = await lda([...at(), '--exec', `cat > '${got}'; exit 3`], ham)
      assert.equal(r.code, 3, 'exit code of the command passed through')
      assert.equal(r.stdout.length, 0, 'nothing on stdout with --exec')
      const delivered = readFileSync(got)
      assert.ok(delivered.subarray(delivered.length - ham.length).equals(ham))
      assert.equal(addedHeaders(delivered, ham).get('X-Spam'), 'yes')
      const ok = await lda([...at(), '-e', `cat > '${got}'`], ham)
      assert.equal(ok.code, 0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('--exec passes through the code of a command that fails without reading the message', async () => {
    const r = await lda([...at(), '--exec', 'exit 67'], ham)
    assert.equal(r.code, 67)
    const notFound = await lda([...at(), '--exec', '/nonexistent/deliver -d bob'], ham)
    assert.equal(notFound.code, 127, 'the shell says: command not found')
  })

  it('--exec exits 75 when a signal kills the command (delivery not confirmed: retry)', async () => {
    const r = await lda([...at(), '--exec', 'kill -KILL $$'], ham)
    assert.equal(r.code, 75)
    assert.match(r.stderr, /killed by SIGKILL/)
  })

  it('removes its spool and exits 75 when SIGTERM arrives mid-scan', async () => {
    server.setMode('hang')
    const seen = server.requests.length
    const r = await lda(at(), ham, {
      started: (child) => {
        void server.waitForRequests(seen + 1).then(() => child.kill('SIGTERM'))
      },
    })
    assert.equal(r.code, 75)
    assert.equal(r.stdout.length, 0)
    assert.deepEqual(r.leftovers, [])
  })

  it('passes SIGTERM on to a running --exec command and exits with what became of it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lda-exec-'))
    try {
      const marker = join(dir, 'reading')
      const running = new Promise<void>((resolve) => {
        const w = watch(dir, () => {
          w.close()
          resolve()
        })
      })
      const r = await lda([...at(), '--exec', `touch '${marker}'; exec sleep 60`], ham, {
        started: (child) => void running.then(() => child.kill('SIGTERM')),
      })
      assert.equal(r.code, 75)
      assert.match(r.stderr, /--exec command killed by SIGTERM; exiting 75/)
      assert.deepEqual(r.leftovers, [])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  const USAGE: Array<[label: string, args: string[], code: number, stderr: RegExp]> = [
    ['an unknown option', ['--bogus'], 64, /Unknown option '--bogus'/],
    ['a positional argument', ['file.eml'], 64, /positional argument/],
    [
      '--server with two colons',
      ['--server', 'host:port:x'],
      64,
      /--server "host:port:x": an IPv6 address needs brackets/,
    ],
    [
      'an unknown --styles entry',
      ['--styles', 'spamassassin'],
      64,
      /--styles = "spamassassin": unknown style/,
    ],
    ['an empty --exec', ['--exec', ' '], 64, /--exec needs a command/],
    ['--timeout -1', ['--timeout=-1'], 78, /timeout = "-1": expected a positive number/],
    [
      '--server with port 70000',
      ['--server', '127.0.0.1:70000'],
      64,
      /--server "127.0.0.1:70000": bad port "70000"/,
    ],
    [
      'a missing --config file',
      ['--config', '/nonexistent/rspamd.ini'],
      78,
      /--config = "\/nonexistent\/rspamd\.ini": cannot read/,
    ],
  ]
  for (const [label, args, code, stderr] of USAGE) {
    it(`exits ${code} with a message on stderr for ${label}, reading no message`, async () => {
      const before = server.requests.length
      const r = await lda(args, ham)
      assert.equal(r.code, code, r.stderr)
      assert.match(r.stderr, stderr)
      assert.equal(r.stdout.length, 0)
      assert.equal(server.requests.length, before)
    })
  }

  it('exits 78 naming the key for a bad value in --config', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lda-ini-'))
    try {
      const ini = join(dir, 'rspamd.ini')
      writeFileSync(ini, 'add_headers = often\n')
      const r = await lda(['--config', ini], ham)
      assert.equal(r.code, 78)
      assert.match(r.stderr, /rspamd\.ini: add_headers = "often": expected always, never or sometimes/)
      // Haraka would only log a line it cannot read; the command has no log, so it refuses
      writeFileSync(ini, `host = 127.0.0.1\nport = ${server.port}\nthis is not ini\n`)
      const bad = await lda(['--config', ini], ham)
      assert.equal(bad.code, 78)
      assert.match(bad.stderr, /Invalid line in config file .*: this is not ini/)
      assert.equal(bad.stdout.length, 0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('--help prints the usage to stdout and exits 0; --version prints the version', async () => {
    const h = await lda(['--help'], '')
    assert.equal(h.code, 0)
    assert.match(h.stdout.toString(), /^Usage: rspamd-lda /)
    for (const opt of [
      '--config',
      '--server',
      '--timeout',
      '--from',
      '--rcpt',
      '--ip',
      '--helo',
      '--user',
      '--json',
      '--exec',
      '--tempfail',
    ])
      assert.ok(h.stdout.toString().includes(opt), opt)
    const v = await lda(['-V'], '')
    assert.equal(v.code, 0)
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }
    assert.equal(v.stdout.toString(), `rspamd-lda (haraka-plugin-rspamd) ${pkg.version}\n`)
  })
})

describe('rspamd-lda with real rspamd', function () {
  this.timeout(300_000)
  const at = ['--server', `127.0.0.1:${RSPAMD_PORT}`]

  // never skipped: an rspamd that cannot start fails the suite
  let rspamd: RealRspamd | undefined
  before(async () => {
    rspamd = await RealRspamd.start()
  })
  after(() => rspamd?.restore())

  const REAL: Array<[header: string | undefined, file: string, action: string, spam: string]> = [
    [undefined, 'gtube.eml', 'reject', 'yes'],
    ['no action', 'ham.eml', 'no action', 'no'],
    ['greylist', 'ham.eml', 'greylist', 'no'],
    ['add header', 'ham.eml', 'add header', 'yes'],
    ['rewrite subject', 'ham.eml', 'rewrite subject', 'no'],
    ['soft reject', 'ham.eml', 'soft reject', 'no'],
    ['reject', 'ham.eml', 'reject', 'yes'],
  ]
  for (const [test, file, action, spam] of REAL) {
    it(`marks ${test ? `X-Test-Action: ${test}` : file} as X-Spam-Action: ${action}, X-Spam: ${spam}`, async () => {
      const msg = test ? withTestHeaders(file, { 'X-Test-Action': test }) : corpus(file)
      const r = await lda([...at, '--json', '-f', 'alice@example.org', '-r', 'bob@example.net'], msg)
      assert.equal(r.code, 0, r.stderr)
      assert.ok(r.stdout.subarray(r.stdout.length - msg.length).equals(msg))
      const h = addedHeaders(r.stdout, msg)
      assert.equal(h.get('X-Spam-Action'), action)
      assert.equal(h.get('X-Spam'), spam)
      const json = JSON.parse(
        Buffer.from((h.get('X-Spam-Result') ?? '').replace(/\s+/g, ''), 'base64').toString(),
      ) as {
        action: string
      }
      assert.equal(json.action, action)
    })
  }

  it('reproduces a 25 MB message byte for byte, streaming (peak RSS printed)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lda-large-'))
    try {
      const input = join(dir, 'large.eml')
      const output = join(dir, 'out.eml')
      await promisify(execFile)(process.execPath, [join(CORPUS, 'make-large.mjs'), '25', input])
      const r = await lda([...at, '--timeout', '60'], '', { inputFile: input, outputFile: output })
      assert.equal(r.code, 0, r.stderr)
      const original = readFileSync(input)
      const out = readFileSync(output)
      assert.ok(original.length > 25 * 1024 * 1024)
      assert.ok(out.subarray(out.length - original.length).equals(original), 'byte for byte')
      const h = addedHeaders(out, original)
      assert.deepEqual([...h.keys()], ['X-Spam-Scanner', 'X-Spam', 'X-Spam-Action'], r.stderr)
      assert.deepEqual(r.leftovers, [])
      console.log(
        `      rspamd-lda, ${(original.length / 1048576).toFixed(1)} MB message: peak RSS ${(r.maxRssKb / 1024).toFixed(1)} MiB`,
      )
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
