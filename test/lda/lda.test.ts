// The rspamd-lda command (src/lda/index.ts through bin/rspamd-lda, built) as a child process against
// the fake rspamd: every action, every failure and every option. Against real rspamd (scripts/rspamd.sh):
// test/integration/lda.test.ts.

import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FakeRspamd } from '../support/fake-rspamd'
import { corpus, REPO } from '../support/harness'
import { addedHeaders, fieldsOf, lda, namesFor } from '../support/lda'
import { DKIM_SIGNATURE_EXAMPLE, type RspamdAction, replyFor, withMilter } from '../support/replies'
import { withoutFields } from '../../src/lda'
import * as zlib from 'node:zlib'

/** zstd in this Node's node:zlib (22.15+, 24): rspamd-lda's -z compresses; without it, -z is refused. */
const HAS_ZSTD = typeof (zlib as { zstdCompress?: unknown }).zstdCompress === 'function'
/** rspamc --mime writes X-Spam: yes for every action more severe than greylist, and no X-Spam otherwise. */
const ACTIONS: Array<[RspamdAction, 'yes' | undefined]> = [
  ['no action', undefined],
  ['greylist', undefined],
  ['add header', 'yes'],
  ['rewrite subject', 'yes'],
  ['soft reject', 'yes'],
  ['reject', 'yes'],
]

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
    [
      'not a continuation line the block starts with',
      ' x-spam: no\nA: 1\n',
      ['x-spam'],
      ' x-spam: no\nA: 1\n',
    ],
  ]
  for (const [label, head, drop, expected] of CASES) {
    it(`drops ${label}`, () => {
      assert.equal(withoutFields(Buffer.from(head), new Set(drop)).toString(), expected)
    })
  }

  const AR = 'A-R: one\r\nX: 1\r\na-r: two\r\n  folded\r\nA-R: three\r\n'
  const NUMBERED: Array<[label: string, positions: number[], drop: string[], expected: string]> = [
    ['the first, by 1', [1], [], 'X: 1\r\na-r: two\r\n  folded\r\nA-R: three\r\n'],
    ['the last, by -1', [-1], [], 'A-R: one\r\nX: 1\r\na-r: two\r\n  folded\r\n'],
    ['the second with its continuation line, by [2]', [2], [], 'A-R: one\r\nX: 1\r\nA-R: three\r\n'],
    ['nothing past the instances there are', [4, -4], [], AR],
    ['every instance when the name is dropped whole anyway', [1], ['a-r'], 'X: 1\r\n'],
  ]
  for (const [label, positions, drop, expected] of NUMBERED) {
    it(`drops rspamd's numbered instances: ${label}`, () => {
      const out = withoutFields(Buffer.from(AR), new Set(drop), [{ name: 'A-R', positions }])
      assert.equal(out.toString(), expected)
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
    it(`adds ${spam ? 'X-Spam: yes' : 'no X-Spam'} and X-Spam-Action: ${action} at the end of the header block and keeps the message byte for byte`, async () => {
      const reply = replyFor(action)
      server.setReply(reply)
      const r = await lda(at(), ham)
      assert.equal(r.code, 0, r.stderr)
      const h = addedHeaders(r.stdout, ham)
      assert.deepEqual([...h.keys()], namesFor(spam))
      assert.match(h.get('X-Spam-Scanner') ?? '', /^rspamd-lda \d+\.\d+\.\d+$/)
      assert.match(h.get('X-Spam-Scan-Time') ?? '', /^\d+(\.\d+)?(e-\d+)?$/)
      assert.equal(h.get('X-Spam'), spam)
      assert.equal(h.get('X-Spam-Action'), action)
      assert.equal(
        h.get('X-Spam-Score'),
        `${reply.score.toFixed(2)} / ${(reply.required_score ?? 0).toFixed(2)}`,
      )
      assert.equal(h.get('X-Spam-Level'), '*'.repeat(Math.ceil(Math.max(0, reply.score))))
      assert.equal(h.get('X-Spam-Symbols'), Object.keys(reply.symbols ?? {}).join(',\t'))
      assert.ok(server.requests.at(-1)?.body.equals(ham), 'rspamd got the message exactly')
      assert.deepEqual(r.leftovers, [], 'spool removed')
    })
  }

  it("says once on stderr that rspamd's envelope changes are not applied, and delivers the message", async () => {
    server.setReply(
      replyFor('no action', {
        milter: {
          change_from: 'new@example.org',
          add_rcpt: ['a@example.org', 'b@example.org'],
          del_rcpt: ['c@x.y'],
        },
      }),
    )
    const r = await lda([...at(), '-r', 'c@x.y'], ham)
    assert.equal(r.code, 0, r.stderr)
    const lines = r.stderr.split('\n').filter((l) => l.includes('envelope'))
    assert.deepEqual(lines, [
      'rspamd-lda: envelope changes not applied (rspamd-lda passes no envelope on): milter.change_from, milter.add_rcpt (2), milter.del_rcpt (1)',
    ])
    server.setReply(replyFor('no action'))
    const plain = await lda(at(), ham)
    assert.ok(!plain.stderr.includes('envelope'), plain.stderr)
  })

  it('sends the envelope options as rspamd request headers', async () => {
    const args = [...at(), '-F', 'alice@example.org', '-r', 'bob@example.net', '--rcpt', 'carol@example.net']
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

  it("takes the options of an rspamc --mime line in rspamc's spellings", async () => {
    server.setReply(replyFor('add header'))
    const dir = mkdtempSync(join(tmpdir(), 'lda-exec-'))
    try {
      const got = join(dir, 'got.eml')
      const args = ['-h', `127.0.0.1:${server.port}`, '--mime', '-m', '-F', 'alice@example.org']
      args.push('-r', 'bob@example.net', '-i', '192.0.2.9', '-u', 'alice', '--helo', 'mail.example.org')
      args.push('-t', '5', '-j', '-e', `cat > '${got}'`)
      const r = await lda(args, ham)
      assert.equal(r.code, 0, r.stderr)
      const req = server.requests.at(-1)
      assert.ok(req)
      assert.equal(req.headers.from, 'alice@example.org')
      assert.equal(req.headers.rcpt, 'bob@example.net')
      assert.equal(req.headers.ip, '192.0.2.9')
      assert.equal(req.headers.user, 'alice')
      assert.equal(req.headers.helo, 'mail.example.org')
      const h = addedHeaders(readFileSync(got), ham)
      assert.equal(h.get('X-Spam'), 'yes')
      assert.ok(h.has('X-Spam-Result'), '-j')
      const long = await lda(['--connect', `127.0.0.1:${server.port}`, '--from', 'a@example.org'], ham)
      assert.equal(long.code, 0, long.stderr)
      assert.equal(server.requests.at(-1)?.headers.from, 'a@example.org')
      const f = await lda([...at(), '-f', 'b@example.org'], ham)
      assert.equal(f.code, 0, f.stderr)
      assert.equal(server.requests.at(-1)?.headers.from, 'b@example.org', '-f of 2.0.0 still works')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  /** Every value the server got for a header name, in order, however it was spelled. */
  const sent = (name: string) => {
    const raw = server.requests.at(-1)?.rawHeaders ?? []
    return raw.filter((_, i) => i % 2 === 1 && raw[i - 1]?.toLowerCase() === name.toLowerCase())
  }

  it("sends rspamc's request-header options of delivery lines as rspamd's request headers", async () => {
    const settings = '{"symbols_disabled": ["MISSING_DATE"], "actions": {"reject": 20}}'
    const args = [...at(), '-r', 'bob@example.net', '-r', 'carol@example.net', '-d', 'bob@example.net']
    args.push('--hostname', 'mx.example.org', '--queue-id', '4Xyz1', '--log-tag', 'lda-42')
    args.push('--settings', settings, '--settings-id', 'inbound', '-p')
    args.push('--header', 'X-Tenant: acme', '--header', 'X-Route=b:c=d', '--header', 'Rule:  spaced ')
    const r = await lda(args, ham)
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(sent('Deliver-To'), ['bob@example.net'], '-d, though there are two recipients')
    assert.deepEqual(sent('Hostname'), ['mx.example.org'])
    assert.deepEqual(sent('Queue-Id'), ['4Xyz1'])
    assert.deepEqual(sent('Log-Tag'), ['lda-42'])
    assert.deepEqual(sent('Settings'), [settings])
    assert.deepEqual(sent('Settings-ID'), ['inbound'])
    assert.deepEqual(sent('Pass'), ['all'])
    assert.deepEqual(sent('X-Tenant'), ['acme'])
    assert.deepEqual(sent('X-Route'), ['b:c=d'], 'split at the first : or =, as rspamc does')
    assert.deepEqual(sent('Rule'), ['spaced'])
    assert.ok(server.requests.at(-1)?.body.equals(ham))

    // the long spellings; and without them none of these headers
    const long = await lda([...at(), '--deliver', 'dave@example.net', '--pass-all'], ham)
    assert.equal(long.code, 0, long.stderr)
    assert.deepEqual(sent('Deliver-To'), ['dave@example.net'])
    assert.deepEqual(sent('Pass'), ['all'])
    const none = await lda([...at(), '-r', 'bob@example.net', '-r', 'carol@example.net'], ham)
    assert.equal(none.code, 0, none.stderr)
    for (const name of ['Deliver-To', 'Hostname', 'Queue-Id', 'Log-Tag', 'Settings', 'Settings-ID', 'Pass'])
      assert.deepEqual(sent(name), [], name)
  })

  it('-d replaces the Deliver-To of a single recipient', async () => {
    const one = await lda([...at(), '-r', 'bob@example.net'], ham)
    assert.equal(one.code, 0, one.stderr)
    assert.deepEqual(sent('Deliver-To'), ['bob@example.net'])
    const d = await lda([...at(), '-r', 'bob@example.net', '-d', 'bob+lists@example.net'], ham)
    assert.equal(d.code, 0, d.stderr)
    assert.deepEqual(sent('Deliver-To'), ['bob+lists@example.net'])
    assert.deepEqual(sent('Rcpt'), ['bob@example.net'])
  })

  it("the options win over --config's [request] and [request_headers], whatever the name's case", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lda-ini-'))
    try {
      const ini = join(dir, 'rspamd.ini')
      writeFileSync(
        ini,
        `host = 127.0.0.1\nport = ${server.port}\n[request]\nsettings_id = from-ini\nsettings = {}\n[request_headers]\nhostname = ini.example\nX-Tenant = ini\nX-Keep = kept\n`,
      )
      const file = await lda(['--config', ini], ham)
      assert.equal(file.code, 0, file.stderr)
      assert.deepEqual(sent('Settings-ID'), ['from-ini'])
      assert.deepEqual(sent('Hostname'), ['ini.example'])
      assert.deepEqual(sent('Pass'), [])
      const args = ['--config', ini, '--settings-id', 'cli', '--hostname', 'cli.example', '-p']
      const r = await lda([...args, '--header', 'x-tenant: cli'], ham)
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(sent('Settings-ID'), ['cli'])
      assert.deepEqual(sent('Settings'), ['{}'], "the file's other [request] keys stay")
      assert.deepEqual(sent('Hostname'), ['cli.example'])
      assert.deepEqual(sent('X-Tenant'), ['cli'])
      assert.deepEqual(sent('X-Keep'), ['kept'])
      assert.deepEqual(sent('Pass'), ['all'])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  for (const transport of ['node', 'undici']) {
    it(`--header replaces the header of -r or -F of the same name in any case, sent once (transport = ${transport})`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'lda-ini-'))
      try {
        const ini = join(dir, 'rspamd.ini')
        writeFileSync(ini, `host = 127.0.0.1\nport = ${server.port}\ntransport = ${transport}\n`)
        const args = ['--config', ini, '-r', 'bob@example.net', '-F', 'alice@example.org']
        const r = await lda(
          [...args, '--header', 'deliver-to: bob+x@example.net', '--header', 'FROM: a@b'],
          ham,
        )
        assert.equal(r.code, 0, r.stderr)
        assert.deepEqual(sent('Deliver-To'), ['bob+x@example.net'])
        assert.deepEqual(sent('From'), ['a@b'])
        assert.deepEqual(sent('Rcpt'), ['bob@example.net'])
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    })
  }

  const BAD_OPTIONS: Array<[label: string, args: string[], stderr: RegExp]> = [
    ['--header without a colon', ['--header', 'X-Tenant'], /--header "X-Tenant": expected "Name: value"/],
    ['--header with no value', ['--header', 'X-Tenant: '], /--header X-Tenant needs a value/],
    [
      '--header with a bad name',
      ['--header', 'X Tenant: a'],
      /--header = "X Tenant": not a valid HTTP header name/,
    ],
    ['--header with an empty name', ['--header', ': a'], /--header = "": not a valid HTTP header name/],
    [
      '--header with CR LF in its value (redacted, as [request_headers])',
      ['--header', 'X-Key: s3cret\r\nInjected: 1'],
      // its size as given after the colon, not what it holds
      /--header X-Key = "<redacted, 20 bytes>": CR, LF or NUL in a header value/,
    ],
    ['--header with LF', ['--header', 'X-Key: a\nb'], /--header X-Key = "<redacted, 4 bytes>": CR, LF/],
    ['--header twice', ['--header', 'X-A: 1', '--header', 'x-a=2'], /--header: x-a given twice/],
    [
      '--header and the option of that header',
      ['-d', 'a@b', '--header', 'deliver-to: c@d'],
      /--header: deliver-to is set by --deliver already/,
    ],
    [
      '-d with LF',
      ['-d', 'bob@example.net\nInjected: 1'],
      /--deliver = "bob@example\.net\\nInjected: 1": CR, LF or NUL/,
    ],
    ['--hostname with CR', ['--hostname', 'mx\r.example'], /--hostname = "mx\\r\.example": CR, LF or NUL/],
    ['--hostname empty', ['--hostname', ''], /--hostname needs a value/],
    ['--queue-id with NUL', ['--queue-id', 'a\u0001b'], /--queue-id = "a\\u0001b": a control character/],
    [
      '--log-tag past U+00FF',
      ['--log-tag', 'tag\u2603'],
      /--log-tag = "tag☃": a control character or one past U\+00FF/,
    ],
    ['--settings with LF', ['--settings', '{"a":\n1}'], /--settings = "\{\\"a\\":\\n1\}": CR, LF or NUL/],
    ['--settings blank', ['--settings', '  '], /--settings needs a value/],
    ['--settings-id with CR', ['--settings-id', 'a\rb'], /--settings-id = "a\\rb": CR, LF or NUL/],
    ['-d without its value', ['-d'], /Option '-d, --deliver <value>' argument missing/],
    // without zstd in node:zlib (Node 20), -z is a usage error naming the option; with it, see below
    ...(HAS_ZSTD
      ? []
      : ([
          ['-z', ['-z'], /-z \(--compressed\): zstd compression needs zstd in node:zlib \(Node 22\.15\+/],
          ['--compressed', ['--compressed'], /-z \(--compressed\): zstd compression needs zstd in node:zlib/],
          [
            '--zstd',
            ['--zstd'],
            /--zstd: zstd compression needs zstd in node:zlib \(Node 22\.15\+, 23\.8\+ or 24\)/,
          ],
        ] as Array<[string, string[], RegExp]>)),
    // rspamc's other options stay unknown here: named, with the usage text
    ["rspamc's -P (password)", ['-P', 'secret'], /Unknown option '-P'/],
    ["rspamc's --bind", ['--bind', '127.0.0.1'], /Unknown option '--bind'/],
    ["rspamc's --key", ['--key', 'k'], /Unknown option '--key'/],
    ["rspamc's --metadata-header", ['--metadata-header', 'a=b'], /Unknown option '--metadata-header'/],
    ["rspamc's --profile", ['--profile'], /Unknown option '--profile'/],
    ["rspamc's -w (fuzzy weight)", ['-w', '1'], /Unknown option '-w'/],
  ]
  for (const [label, args, stderr] of BAD_OPTIONS) {
    it(`exits 64 naming the option for ${label}, reading no message`, async () => {
      const before = server.requests.length
      const r = await lda([...at(), ...args], ham)
      assert.equal(r.code, 64, r.stderr)
      assert.match(r.stderr.split('\n')[0] ?? '', stderr)
      assert.match(r.stderr, /\nUsage: rspamd-lda /)
      assert.doesNotMatch(r.stderr, /s3cret/)
      assert.doesNotMatch(r.stderr.split('\n')[0] ?? '', /rspamd\.ini/)
      assert.doesNotMatch(r.stderr, /^Injected/m, 'no forged line on stderr')
      assert.equal(r.stdout.length, 0)
      assert.equal(server.requests.length, before)
    })
  }

  if (HAS_ZSTD) {
    for (const flag of ['-z', '--compressed', '--zstd']) {
      it(`${flag}: the message goes zstd-compressed (Compression: zstd), as [request] zstd = true sends it`, async () => {
        const r = await lda([...at(), flag], ham)
        assert.equal(r.code, 0, r.stderr)
        const req = server.requests.at(-1)
        assert.equal(req?.headers['compression'], 'zstd')
        assert.match(String(req?.headers['flags'] ?? ''), /zstd/)
        assert.match(r.stdout.toString(), /^X-Spam-Action: /m)
      })
    }
  }

  it("removes only the instance rspamd's milter block numbers", async () => {
    server.setReply(withMilter(replyFor('no action'), { remove_headers: { 'X-Old': -1 } }))
    const msg = Buffer.concat([Buffer.from('X-Old: first\r\nX-Keep: 1\r\nX-Old: last\r\n'), ham])
    const r = await lda(at(), msg)
    assert.equal(r.code, 0, r.stderr)
    const out = r.stdout.toString('latin1')
    const head = out.slice(0, out.indexOf('\r\n\r\n') + 2)
    assert.deepEqual(head.match(/^X-Old: [^\r]*/gm), ['X-Old: first'])
    assert.ok(head.startsWith('X-Old: first\r\nX-Keep: 1\r\n'), 'the rest stays in place')
  })

  it("applies rspamd's DKIM-Signature and milter headers, refusing protected ones; --no-rspamd-headers leaves them out", async () => {
    server.setReply(
      withMilter(replyFor('add header', { 'dkim-signature': DKIM_SIGNATURE_EXAMPLE }), {
        add_headers: { 'X-Virus': 'no', From: 'evil@example.com', Received: 'from rspamd' },
        remove_headers: { 'X-Old': 0, 'Message-ID': 0 },
      }),
    )
    const msg = Buffer.concat([Buffer.from('X-Old: drop me\r\nX-Virus: yes\r\n'), ham])
    const r = await lda(at(), msg)
    assert.equal(r.code, 0, r.stderr)
    const out = r.stdout.toString('latin1')
    const head = out.slice(0, out.indexOf('\r\n\r\n') + 2)
    assert.doesNotMatch(head, /^X-Old:/m, 'removed as rspamd asked')
    assert.equal(head.match(/^X-Virus:/gm)?.length, 1, "rspamd's replaces the message's")
    assert.match(head, /^X-Virus: no\r$/m)
    assert.match(head, /^Received: from rspamd\r$/m, 'trace headers stack')
    // sanitised and refolded as every header we write (the plugin does the same)
    assert.equal(
      fieldsOf(head).get('DKIM-Signature')?.replace(/\s+/g, ' '),
      DKIM_SIGNATURE_EXAMPLE.replace(/\s+/g, ' '),
    )
    assert.equal(head.match(/^From:/gm)?.length, 1, 'a protected header is not replaced')
    assert.match(head, /^Message-ID: /m, 'a protected header is not removed')
    assert.match(r.stderr, /header left out: add of protected header From/)
    assert.match(r.stderr, /header left out: remove of protected header Message-ID/)
    // the lda set first, then rspamd's headers, all after the message's own
    const names = [...fieldsOf(head).keys()]
    assert.ok(names.indexOf('X-Spam-Symbols') < names.indexOf('DKIM-Signature'))
    assert.ok(names.indexOf('Content-Transfer-Encoding') < names.indexOf('X-Spam-Scanner'))

    const off = await lda([...at(), '--no-rspamd-headers'], msg)
    assert.equal(off.code, 0, off.stderr)
    const h = addedHeaders(off.stdout, msg)
    assert.deepEqual([...h.keys()], namesFor('yes'))
    assert.equal(off.stderr, '')
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
    const h = addedHeaders(r.stdout, ham)
    // exim's X-Spam-Score is the lda style's name too: lda, listed first, writes it
    assert.deepEqual(
      [...h.keys()],
      [...namesFor('yes'), 'X-Spam-Report', 'X-Rspamd-Bar', 'X-Rspamd-Report', 'X-Rspamd-Score'],
    )
    assert.match(h.get('X-Spam-Score') ?? '', /^\d+\.\d\d \/ \d+\.\d\d$/)
  })

  it("--config: [spam_headers] styles and lda_json are the config's (after the lda style), --styles overrides them", async () => {
    server.setReply(replyFor('add header'))
    const dir = mkdtempSync(join(tmpdir(), 'lda-ini-'))
    try {
      const ini = join(dir, 'rspamd.ini')
      writeFileSync(
        ini,
        `host = 127.0.0.1\nport = ${server.port}\n[spam_headers]\nstyles = exim, rspamd\nlda_json = true\n`,
      )
      const r = await lda(['--config', ini], ham)
      assert.equal(r.code, 0, r.stderr)
      const h = addedHeaders(r.stdout, ham)
      assert.deepEqual(
        [...h.keys()],
        [
          ...namesFor('yes'),
          'X-Spam-Result',
          'X-Spam-Report',
          'X-Rspamd-Bar',
          'X-Rspamd-Report',
          'X-Rspamd-Score',
        ],
      )
      const over = await lda(['--config', ini, '--styles', 'extended'], ham)
      assert.equal(over.code, 0, over.stderr)
      const ho = addedHeaders(over.stdout, ham)
      assert.ok(
        ho.has('X-Spamd-Result') && !ho.has('X-Spam-Report') && !ho.has('X-Rspamd-Score'),
        [...ho.keys()].join(),
      )
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('--config: a bad [spam_headers] styles exits 78 naming the key; a bad --styles is a usage error (64) naming the option', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lda-ini-'))
    try {
      const ini = join(dir, 'rspamd.ini')
      writeFileSync(
        ini,
        `host = 127.0.0.1\nport = ${server.port}\n[spam_headers]\nstyles = rspamd, extnded\n`,
      )
      const r = await lda(['--config', ini], ham)
      assert.equal(r.code, 78, r.stderr)
      assert.match(
        r.stderr,
        /^rspamd-lda: rspamd\.ini: spam_headers\.styles = "rspamd, extnded": unknown style "extnded"/m,
      )
      assert.equal(r.stdout.length, 0)
      const opt = await lda([...at(), '--styles', 'extnded'], ham)
      assert.equal(opt.code, 64)
      assert.match(opt.stderr, /^rspamd-lda: --styles = "extnded": unknown style/m)
      assert.doesNotMatch(opt.stderr.split('\n')[0] ?? '', /rspamd\.ini/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('--config: the sections only Haraka acts on are said once, with the keys nobody reads', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lda-ini-'))
    try {
      const ini = join(dir, 'rspamd.ini')
      writeFileSync(
        ini,
        `host = 127.0.0.1\nport = ${server.port}\ntimout = 3\n[check]\nlocal_ip = true\n[greylist]\nenabled = true\n[defer]\nerror = true\n`,
      )
      const r = await lda(['--config', ini], ham)
      assert.equal(r.code, 0, r.stderr)
      const warnings = r.stderr.split('\n').filter((l) => /not used/.test(l))
      assert.deepEqual(warnings, [
        "rspamd-lda: warning: --config: not used: timout, [check], [defer], [greylist] (Haraka's only)",
      ])
      // still checked as the plugin checks them: one file serves both
      writeFileSync(ini, `host = 127.0.0.1\nport = ${server.port}\n[defer]\nerror = ture\n`)
      const bad = await lda(['--config', ini], ham)
      assert.equal(bad.code, 78)
      assert.match(bad.stderr, /defer\.error = "ture"/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
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
    assert.equal(text.match(/^X-Spam-Score:/gim)?.length, 1, "exim's forged one is gone")
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
    // the forged X-Spam goes; ours start on a line of their own after the last one
    assert.match(
      r.stdout.toString(),
      /^Subject: only headers\r\nX-Spam-Scanner: rspamd-lda \S+\r\nX-Spam-Scan-Time: \S+\r\nX-Spam: yes\r\nX-Spam-Action: add header\r\n/,
    )
    assert.ok(r.stdout.toString().endsWith('\r\n'))
  })

  it('says so on stderr, and still delivers byte for byte, when the header block is over 1 MiB', async () => {
    server.setReply(replyFor('add header'))
    const msg = Buffer.from(`X-Spam: no\r\nX-Big: ${'a'.repeat(1100 * 1024)}\r\n\r\nbody\r\n`)
    const r = await lda(at(), msg)
    assert.equal(r.code, 0, r.stderr)
    assert.ok(r.stdout.subarray(r.stdout.length - msg.length).equals(msg))
    // the end of the header block is not known: ours go on top
    const top = r.stdout.subarray(0, r.stdout.length - msg.length).toString('latin1')
    assert.deepEqual([...fieldsOf(top).keys()], namesFor('yes'))
    assert.match(
      r.stderr,
      /header block over 1048576 bytes: ours go on top, and headers of the names we add are not removed/,
    )
  })

  it('keeps an mbox From_ line first and writes LF when the message uses LF', async () => {
    server.setReply(replyFor('reject'))
    const msg = Buffer.from('From alice@example.org Tue Nov 24 10:15:00 2026\nSubject: hi\n\nbody\n')
    const r = await lda(at(), msg)
    assert.equal(r.code, 0, r.stderr)
    const lines = r.stdout.toString().split('\n')
    assert.equal(lines[0], 'From alice@example.org Tue Nov 24 10:15:00 2026')
    assert.equal(lines[1], 'Subject: hi')
    assert.match(lines[2] ?? '', /^X-Spam-Scanner: rspamd-lda /)
    assert.equal(lines[4], 'X-Spam: yes')
    assert.ok(!r.stdout.includes('\r'), 'no CR added to an LF message')
    assert.ok(r.stdout.toString().endsWith('\n\nbody\n'))
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
    // the MTA's log shows why a server was passed over
    assert.match(
      r.stderr,
      new RegExp(`^rspamd-lda: failed over from http://127\\.0\\.0\\.1:${refusing}: connect: `, 'm'),
    )
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
    it(`delivers the message unmodified but for X-Spam-Error saying why, as rspamc, when rspamd ${label}`, async () => {
      server.setMode(mode)
      const r = await lda([...at(), ...extra], ham)
      assert.equal(r.code, 0, r.stderr)
      const h = addedHeaders(r.stdout, ham)
      assert.deepEqual([...h.keys()], ['X-Spam-Scanner', 'X-Spam-Scan-Time', 'X-Spam-Error'])
      assert.match(h.get('X-Spam-Scan-Time') ?? '', /^\d+\.\d{3}$/)
      assert.match(`scan failed: ${h.get('X-Spam-Error')}`, kind)
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
    assert.match(addedHeaders(r.stdout, ham).get('X-Spam-Error') ?? '', /^connect: /)
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

  it('--exec killed before it read the message: one line on stderr, not a second false one', async () => {
    // the command dies at once; run() removes the spool as soon as it has gone, and a read of the
    // spool not yet started then failed with ENOENT ("reading the spooled message"), a false second
    // reason in the MTA's deferral (about one run in three)
    for (let i = 0; i < 10; i++) {
      const r = await lda([...at(), '--exec', 'kill -KILL $$'], ham)
      assert.equal(r.code, 75)
      assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr)
      assert.match(r.stderr, /killed by SIGKILL; exiting 75/)
    }
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
    ['an unknown option', ['--bogus'], 64, /Unknown option '--bogus'[^]*\nUsage: rspamd-lda /],
    ["-h without rspamc's host:port", ['-h'], 64, /argument missing/],
    [
      'both --server and --connect',
      ['--server', 'a:1', '-h', 'b:1'],
      64,
      /--server and --connect \(-h\) are the same option/,
    ],
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
      // by its number: the line's text may be a password
      assert.match(bad.stderr, /rspamd\.ini.*: line 3 is not key = value/)
      assert.doesNotMatch(bad.stderr, /this is not ini/)
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
      '--connect',
      '--mime',
      '--no-rspamd-headers',
      '--deliver',
      '--hostname',
      '--queue-id',
      '--log-tag',
      '--settings',
      '--settings-id',
      '--pass-all',
      '--header',
    ])
      assert.ok(h.stdout.toString().includes(opt), opt)
    const v = await lda(['-V'], '')
    assert.equal(v.code, 0)
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }
    assert.equal(v.stdout.toString(), `rspamd-lda (haraka-plugin-rspamd) ${pkg.version}\n`)
  })
})
