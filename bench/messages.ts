// Benchmark messages of a given size: the captured spam message with a base64 attachment (76-character
// lines, as mail clients write them) padding it to the size, so rspamd's reply fits every size alike.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { prng } from '../test/support/prng'

const SPAM = readFileSync(join(__dirname, 'fixtures', 'spam-message.eml'))
const CLOSE = Buffer.from('--b1--\r\n')

export const SIZES = [
  { label: '5 KB', bytes: 5 * 1024 },
  { label: '100 KB', bytes: 100 * 1024 },
  { label: '1 MB', bytes: 1024 * 1024 },
  { label: '25 MB', bytes: 25 * 1024 * 1024 },
] as const

/** A CRLF message of exactly `bytes` bytes (at least the size of the spam message itself). */
export function benchMessage(bytes: number, seed = 1): Buffer {
  const end = SPAM.lastIndexOf(CLOSE)
  if (end === -1) throw new Error('fixtures/spam-message.eml has no closing --b1-- boundary')
  const head = Buffer.concat([
    SPAM.subarray(0, end),
    Buffer.from(
      '--b1\r\nContent-Type: application/octet-stream; name="data.bin"\r\n' +
        'Content-Transfer-Encoding: base64\r\n\r\n',
    ),
  ])
  const room = bytes - head.length - CLOSE.length
  if (room < 0) throw new Error(`a benchmark message is at least ${head.length + CLOSE.length} bytes`)
  const out = Buffer.alloc(bytes)
  head.copy(out)
  const rand = prng(seed)
  const raw = Buffer.alloc(57)
  let at = head.length
  const stop = head.length + room
  while (at < stop) {
    for (let i = 0; i < raw.length; i++) raw[i] = Math.floor(rand() * 256)
    const line = `${raw.toString('base64')}\r\n`
    // the last line is cut short to hit the size exactly, always ending with CRLF: never leave
    // a single byte for after a full line
    const left = stop - at
    const take = left - line.length === 1 ? line.length - 1 : Math.min(line.length, left)
    if (take < line.length && take >= 2) {
      out.write(line.slice(0, take - 2), at, 'latin1')
      out.write('\r\n', at + take - 2, 'latin1')
    } else {
      out.write(line.slice(0, take), at, 'latin1')
    }
    at += take
  }
  CLOSE.copy(out, stop)
  return out
}
