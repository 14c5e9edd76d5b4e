// zstd from node:zlib (Node 22.15+, 23.8+, 24), for `[request] zstd`: the message compressed on its
// way to rspamd (a stream, or a small message at once), rspamd's reply decompressed. @types/node of
// Node 20 does not know these functions, and Node 20 does not have them: they are looked up here,
// once, and the config refuses `zstd` where they are missing (nodeHasZstd()).

import type { Transform } from 'node:stream'
import * as zlib from 'node:zlib'
import { nodeHasZstd } from '../config'

/** What rspamc sends with a compressed message, and what rspamd sends with a compressed reply. */
export const ZSTD_REQUEST_HEADERS = { Compression: 'zstd', 'Content-Encoding': 'zstd' } as const

/** How hard the message is compressed: zstd's level 1, rspamc's; it costs ~1/3 the CPU of level 3. */
const LEVEL = 1
/** ZSTD_c_compressionLevel in zstd.h (node:zlib's constants.ZSTD_c_compressionLevel) */
const ZSTD_C_COMPRESSION_LEVEL = 100
/** the decompressor's output chunk: a JSON reply fits one or two */
const OUT_CHUNK = 64 * 1024

interface ZstdZlib {
  createZstdCompress(opts?: object): Transform
  createZstdDecompress(opts?: object): Transform
  zstdCompress(buf: Buffer, opts: object, cb: (err: Error | null, out: Buffer) => void): void
}

function lib(): ZstdZlib {
  if (!nodeHasZstd()) throw new Error(`node:zlib of Node ${process.version} has no zstd`)
  return zlib as unknown as ZstdZlib
}

const compressOpts = () => ({ params: { [ZSTD_C_COMPRESSION_LEVEL]: LEVEL } })

/** A stream that compresses what is written to it (the message, as it is read). */
export function zstdCompressor(): Transform {
  return lib().createZstdCompress(compressOpts())
}

/** A small message compressed at once, off the main thread. */
export function zstdCompressed(buf: Buffer): Promise<Buffer | Error> {
  return new Promise((resolve) => {
    lib().zstdCompress(buf, compressOpts(), (err, out) => resolve(err ?? out))
  })
}

/** A stream that decompresses rspamd's reply; the caller counts and caps what comes out. */
export function zstdDecompressor(): Transform {
  return lib().createZstdDecompress({ chunkSize: OUT_CHUNK })
}
