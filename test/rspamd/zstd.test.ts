// [request] zstd and body_block against a fake rspamd: the message compressed both ways (a small
// one at once, a large one as a stream), the reply decompressed under the reply cap (a zstd bomb is
// refused as too-large), the reply split at Message-Offset; every hostile reply a clear failure.
// Where node:zlib has no zstd (Node 20) the same file asserts the refusal instead of the scans.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Readable, type Writable } from 'node:stream'
import * as zlib from 'node:zlib'
import { ConfigError, nodeHasZstd, parseConfig, pluginProblems, type Config } from '../../src/config'
import { MAX_REPLY_BYTES, RspamdClient, type MessageSource, type ScanOutcome } from '../../src/rspamd/client'
import { buildRequestHeaders } from '../../src/rspamd/request'
import { FakeRspamd, type RawReply } from '../support/fake-rspamd'
import { replyFor } from '../support/replies'
import { loadPlugin } from '../support/harness'

const HAS_ZSTD = nodeHasZstd()
type Z = {
  zstdCompressSync(b: Buffer): Buffer
  zstdDecompressSync(b: Buffer): Buffer
}
const z = zlib as unknown as Z

const SMALL = Buffer.from('From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello\r\n')
/** about 40 KB: under SMALL_MESSAGE_BYTES, so read whole and sent as one Buffer */
const MEDIUM = Buffer.from(
  `From: a@example.org\r\nTo: b@example.net\r\nSubject: mid\r\n\r\n${'line of text, again and again\r\n'.repeat(1300)}`,
)
/** about 300 KB: over SMALL_MESSAGE_BYTES, so streamed */
const LARGE = Buffer.from(
  `From: a@example.org\r\nTo: b@example.net\r\nSubject: big\r\n\r\n${'line of text, again and again\r\n'.repeat(10_000)}`,
)

function source(message: Buffer): MessageSource {
  let current: Readable | undefined
  const chunks: Buffer[] = []
  for (let i = 0; i < message.length; i += 16 * 1024) chunks.push(message.subarray(i, i + 16 * 1024))
  return {
    pipe(dest: Writable) {
      current = Readable.from(chunks, { objectMode: false })
      current.pipe(dest)
    },
    unpipe() {
      current?.unpipe()
      current?.destroy()
    },
  }
}

/**
 * A zstd frame of RLE blocks that inflates to `size` bytes of 'x' from about 4 bytes per 128 KiB
 * (RFC 8878 §3.1.1): written by hand, so this bomb is the same on every Node.
 */
function zstdBomb(size: number): Buffer {
  const BLOCK = 128 * 1024
  // magic; frame header descriptor 0: no content size, no checksum, window descriptor follows
  const parts = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58])]
  for (let left = size; left > 0; left -= BLOCK) {
    const n = Math.min(BLOCK, left)
    const last = left - n === 0 ? 1 : 0
    // block header: last bit, type 1 (RLE), size in the upper 21 bits; then the one byte repeated
    const h = last | (1 << 1) | (n << 3)
    parts.push(Buffer.from([h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff, 0x78]))
  }
  return Buffer.concat(parts)
}

const JSON_REPLY = Buffer.from(JSON.stringify(replyFor('add header')))

function cfgFor(port: number, request: Record<string, string> = {}): Config {
  return parseConfig({ main: { host: '127.0.0.1', port: String(port) }, request })
}

describe('[request] zstd and body_block: config', function () {
  it('body_block is read (rspamd-lda delivers the rewrite) and refused for the plugin, naming the key', () => {
    const cfg = parseConfig({ request: { body_block: 'true' } })
    assert.equal(cfg.request.bodyBlock, true)
    assert.ok(cfg.request.flags.includes('body_block'))
    const err = pluginProblems(cfg.request)
    assert.ok(err instanceof ConfigError)
    assert.equal(err.key, 'request.body_block')
    assert.match(err.message, /request\.body_block.*rspamd-lda only/)
    assert.equal(
      pluginProblems(parseConfig({ request: { flags: 'body_block' } }).request)?.key,
      'request.body_block',
    )
    assert.equal(pluginProblems(parseConfig({}).request), undefined)
  })

  it('the plugin refuses to start with body_block = true', () => {
    assert.throws(() => loadPlugin('[request]\nbody_block = true\n'), /request\.body_block/)
  })

  if (HAS_ZSTD) {
    it(`zstd = true is taken on ${process.version}, as is zstd in flags`, () => {
      assert.equal(parseConfig({ request: { zstd: 'true' } }).request.zstd, true)
      assert.equal(parseConfig({ request: { flags: 'groups, zstd' } }).request.zstd, true)
      assert.equal(parseConfig({}).request.zstd, false)
    })
  } else {
    it(`zstd = true is refused at start-up on ${process.version}, naming request.zstd and the Node versions`, () => {
      assert.throws(
        () => parseConfig({ request: { zstd: 'true' } }),
        (e: unknown) =>
          e instanceof ConfigError && e.key === 'request.zstd' && /22\.15 or later/.test(e.message),
      )
      assert.throws(
        () => parseConfig({ request: { flags: 'zstd' } }),
        (e: unknown) => e instanceof ConfigError && e.key === 'request.flags',
      )
      assert.throws(() => loadPlugin('[request]\nzstd = true\n'), /request\.zstd/)
    })
  }
})

for (const transport of ['node', 'undici'] as const) {
  describe(`[request] zstd and body_block over ${transport}: the fake rspamd`, function () {
    this.timeout(30_000)
    let fake: FakeRspamd
    const clients: RspamdClient[] = []
    beforeEach(async () => {
      fake = await FakeRspamd.start({ reply: replyFor('add header') })
    })
    afterEach(async () => {
      await Promise.all(clients.splice(0).map((c) => c.destroy()))
      await fake.close()
    })
    const scan = (request: Record<string, string>, message = SMALL): Promise<ScanOutcome> => {
      const cfg = cfgFor(fake.port, request)
      const c = new RspamdClient(cfg, { transport })
      clients.push(c)
      const headers = buildRequestHeaders({ rcpts: ['b@example.net'] }, cfg)
      return c.scan({ headers, source: source(message), timeoutMs: 10_000, sizeHint: message.length })
    }
    const raw = (reply: RawReply) => fake.setRawReply(() => reply)
    const failsWith = (out: ScanOutcome, kind: string, re: RegExp) => {
      assert.equal(out.ok, false, 'the scan fails')
      if (out.ok) return
      assert.equal(out.error.kind, kind)
      assert.match(out.error.message, re)
    }

    it('a reply split at Message-Offset: the JSON, then the rewritten message as `body`', async () => {
      const rewritten = Buffer.from('Subject: rewritten\r\n\r\nnew body\r\n')
      raw({
        headers: { 'Message-Offset': String(JSON_REPLY.length) },
        body: Buffer.concat([JSON_REPLY, rewritten]),
      })
      const out = await scan({ body_block: 'true' })
      assert.equal(out.ok, true)
      if (!out.ok) return
      assert.equal(out.reply.action, 'add header')
      assert.deepEqual(out.body, rewritten)
      assert.match(String(fake.requests[0]?.headers.flags), /body_block/)
    })

    it('no Message-Offset: no body, the JSON as before', async () => {
      const out = await scan({ body_block: 'true' })
      assert.equal(out.ok, true)
      if (out.ok) assert.equal(out.body, undefined)
    })

    const OFFSETS: Array<[label: string, header: string | string[], re: RegExp]> = [
      ['past the end', String(JSON_REPLY.length + 10), /Message-Offset \d+ is not inside the \d+ byte reply/],
      ['at the very end', String(JSON_REPLY.length), /not inside/],
      ['not a number', '12abc', /Message-Offset "12abc" is not a byte offset/],
      ['negative', '-5', /is not a byte offset/],
      ['0: a body block with no JSON', '0', /body block with no JSON/],
      ['sent twice', ['5', '6'], /Message-Offset/],
    ]
    for (const [label, header, re] of OFFSETS) {
      it(`Message-Offset ${label}: a parse failure that says so`, async () => {
        raw({ headers: { 'Message-Offset': header }, body: JSON_REPLY })
        failsWith(await scan({ body_block: 'true' }), 'parse', re)
      })
    }

    it('Compression: gzip (not zstd): a parse failure naming it', async () => {
      raw({ headers: { Compression: 'gzip' }, body: zlib.gzipSync(JSON_REPLY) })
      failsWith(await scan({}), 'parse', /compressed with "gzip", which is not zstd/)
    })

    if (!HAS_ZSTD) {
      it(`a zstd reply on ${process.version}: a parse failure naming the Node version, not a crash`, async () => {
        raw({ headers: { Compression: 'zstd' }, body: zstdBomb(1000) })
        failsWith(await scan({}), 'parse', /cannot decompress.*Node 22\.15/)
      })
      return
    }

    for (const [label, message] of [
      ['a 40 KB message (sent whole)', MEDIUM],
      ['a 300 KB message (streamed)', LARGE],
    ] as const) {
      it(`zstd = true: ${label} goes compressed, with Compression: zstd, and the compressed reply is read`, async () => {
        fake.setRawReply(() => ({
          headers: { Compression: 'zstd' },
          body: z.zstdCompressSync(JSON_REPLY),
          chunked: true,
        }))
        const out = await scan({ zstd: 'true' }, message)
        assert.equal(out.ok, true, out.ok ? '' : out.error.message)
        if (!out.ok) return
        assert.equal(out.reply.action, 'add header')
        const req = fake.requests[0]
        assert.ok(req)
        assert.equal(req.headers.compression, 'zstd')
        assert.equal(req.headers['content-encoding'], 'zstd')
        assert.ok(req.bodyBytes < message.length, `${req.bodyBytes} bytes on the wire for ${message.length}`)
        assert.deepEqual(z.zstdDecompressSync(req.body), message)
        assert.equal(out.bytesSent, message.length)
      })
    }

    it('a compressed reply with a body block: Message-Offset counts in the decompressed reply', async () => {
      const rewritten = Buffer.from('Subject: rewritten\r\n\r\nnew body\r\n')
      raw({
        headers: { Compression: 'zstd', 'Message-Offset': String(JSON_REPLY.length) },
        body: z.zstdCompressSync(Buffer.concat([JSON_REPLY, rewritten])),
      })
      const out = await scan({ zstd: 'true', body_block: 'true' })
      assert.equal(out.ok, true)
      if (out.ok) assert.deepEqual(out.body, rewritten)
    })

    it(`a zstd bomb (a few KB inflating past the ${MAX_REPLY_BYTES} byte cap) is refused as too-large`, async () => {
      const bomb = zstdBomb(MAX_REPLY_BYTES + 1024 * 1024)
      assert.ok(bomb.length < 1000)
      raw({ headers: { Compression: 'zstd' }, body: bomb })
      const before = process.memoryUsage().arrayBuffers
      failsWith(await scan({ zstd: 'true' }), 'too-large', /decompressed reply is over the 16777216 byte cap/)
      // not inflated whole and kept: what is held is under the cap
      assert.ok(process.memoryUsage().arrayBuffers - before < MAX_REPLY_BYTES + 4 * 1024 * 1024)
    })

    it('a bomb under a lowered cap fails the same way (the cap is the reply cap)', async () => {
      raw({ headers: { Compression: 'zstd' }, body: zstdBomb(2 * 1024 * 1024) })
      const c = new RspamdClient(cfgFor(fake.port, { zstd: 'true' }), { transport, maxReplyBytes: 64 * 1024 })
      clients.push(c)
      const out = await c.scan({ headers: {}, source: source(SMALL), timeoutMs: 10_000 })
      failsWith(out, 'too-large', /decompressed reply is over the 65536 byte cap/)
    })

    it('corrupt zstd (a frame with garbage after the magic): a parse failure, not a crash', async () => {
      raw({
        headers: { Compression: 'zstd' },
        body: Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(200, 0xee)]),
      })
      failsWith(await scan({ zstd: 'true' }), 'parse', /reply is not valid zstd/)
    })

    it('a truncated zstd reply: a parse failure', async () => {
      const whole = z.zstdCompressSync(Buffer.concat([JSON_REPLY, Buffer.alloc(50_000, 'y')]))
      raw({ headers: { Compression: 'zstd' }, body: whole.subarray(0, Math.floor(whole.length / 2)) })
      const out = await scan({ zstd: 'true' })
      assert.equal(out.ok, false)
      if (!out.ok) assert.equal(out.error.kind, 'parse')
    })

    it('Compression: zstd on a body that is plain JSON: a parse failure, not the JSON taken as is', async () => {
      raw({ headers: { Compression: 'zstd' }, body: JSON_REPLY })
      failsWith(await scan({ zstd: 'true' }), 'parse', /reply is not valid zstd/)
    })

    it("a reply compressed with a zstd dictionary: a parse failure naming rspamd's zstd_output_dictionary", async () => {
      raw({ headers: { Compression: 'zstd', Dictionary: '12345' }, body: z.zstdCompressSync(JSON_REPLY) })
      failsWith(await scan({ zstd: 'true' }), 'parse', /dictionary "12345".*zstd_output_dictionary/)
    })

    it('a compressed reply over the cap before decompression is too-large', async () => {
      // random bytes do not compress: 200 KB on the wire as well
      raw({
        headers: { Compression: 'zstd' },
        body: z.zstdCompressSync(randomBytes(200 * 1024)),
        chunked: true,
      })
      const c = new RspamdClient(cfgFor(fake.port, { zstd: 'true' }), { transport, maxReplyBytes: 64 * 1024 })
      clients.push(c)
      const out = await c.scan({ headers: {}, source: source(SMALL), timeoutMs: 10_000 })
      failsWith(out, 'too-large', /reply is over the 65536 byte cap/)
    })
  })
}
