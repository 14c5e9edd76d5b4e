// The layout of the spooled message: where its header block ends (after an mbox From_ line, if
// any), how it writes its line ends, and whether the block was too long to read (readLayout());
// and the block without the fields a scan removes (withoutFields()), continuation lines included.

import { closeSync, openSync, readSync } from 'node:fs'
import { type FieldName, fieldNameOf } from '../message/fields'
import { instancesAt, type RemoveAt } from '../message/milter'

/** The header block is read into memory to drop forged headers; past this it is left as it is. */
export const MAX_HEADER_BLOCK = 1024 * 1024

/** Where the original header block ends and how the message writes its line ends. */
export interface Layout {
  /** an mbox `From ` line (procmail, some fetchmail setups): our headers go after it */
  fromLine: Buffer
  /** the header block after fromLine, blank line excluded, as read */
  head: Buffer
  /** offset in the file where the rest (blank line and body) starts */
  restAt: number
  eol: '\r\n' | '\n'
  /** the header block is longer than MAX_HEADER_BLOCK: nothing was removed from it */
  oversized: boolean
}

export function readLayout(file: string): Layout {
  const fd = openSync(file, 'r')
  let buf: Buffer
  try {
    const chunk = Buffer.alloc(MAX_HEADER_BLOCK + 2)
    const n = readSync(fd, chunk, 0, chunk.length, 0)
    buf = chunk.subarray(0, n)
  } finally {
    closeSync(fd)
  }
  const firstLf = buf.indexOf(0x0a)
  const eol = firstLf > 0 && buf[firstLf - 1] === 0x0d ? '\r\n' : '\n'
  let start = 0
  if (buf.subarray(0, 5).toString('latin1') === 'From ' && firstLf !== -1) start = firstLf + 1
  // the header block ends at the first empty line (RFC 5322 §2.1), or with the message
  let end = -1
  for (let i = start; i < buf.length;) {
    const lf = buf.indexOf(0x0a, i)
    const lineEnd = lf === -1 ? buf.length : lf
    const line = buf.subarray(i, lineEnd)
    if (line.length === 0 || (line.length === 1 && line[0] === 0x0d)) {
      end = i
      break
    }
    if (lf === -1) {
      // the last line of a message without a body; past the cap it is only where reading stopped
      if (buf.length <= MAX_HEADER_BLOCK) end = buf.length
      break
    }
    i = lf + 1
  }
  if (end === -1 && buf.length <= MAX_HEADER_BLOCK) end = buf.length
  if (end === -1) {
    // no end of headers within the cap: add ours on top and leave the rest untouched
    return { fromLine: buf.subarray(0, start), head: Buffer.alloc(0), restAt: start, eol, oversized: true }
  }
  return {
    fromLine: buf.subarray(0, start),
    head: buf.subarray(start, end),
    restAt: end,
    eol,
    oversized: false,
  }
}

/**
 * The header block without the fields named in `drop` and the instances `numbered` names (rspamd's
 * positions, counted in this block as it was scanned); continuation lines go with their field.
 */
export function withoutFields(head: Buffer, drop: Set<string>, numbered: readonly RemoveAt[] = []): Buffer {
  if ((drop.size === 0 && numbered.length === 0) || head.length === 0) return head
  // each field: where it starts and its name by the plugin's rule (none for a line that is not a field)
  const starts: number[] = []
  const names: (FieldName | undefined)[] = []
  for (let i = 0; i < head.length;) {
    const lf = head.indexOf(0x0a, i)
    const next = lf === -1 ? head.length : lf + 1
    const continued = head[i] === 0x20 || head[i] === 0x09
    if (!continued || starts.length === 0) {
      const line = head.subarray(i, next)
      const colon = continued ? -1 : line.indexOf(0x3a)
      starts.push(i)
      names.push(colon > 0 ? fieldNameOf(line.subarray(0, colon + 1).toString('latin1')) : undefined)
    }
    i = next
  }
  const gone = names.map((n) => n !== undefined && drop.has(n.lower))
  // the fields of each numbered name, in one pass (not one pass per name); rspamd's numbers count
  // the fields it parsed: `Name:`, never `Name :`
  const fieldsOf = new Map<string, number[]>()
  for (const r of numbered) fieldsOf.set(r.name.toLowerCase(), [])
  if (fieldsOf.size > 0) {
    names.forEach((n, f) => {
      if (n !== undefined && !n.obsolete) fieldsOf.get(n.lower)?.push(f)
    })
  }
  for (const r of numbered) {
    const fields = fieldsOf.get(r.name.toLowerCase()) ?? []
    for (const k of instancesAt(r.positions, fields.length)) gone[fields[k] as number] = true
  }
  const keep: Buffer[] = []
  for (let f = 0; f < starts.length; f++) {
    if (!gone[f]) keep.push(head.subarray(starts[f], starts[f + 1] ?? head.length))
  }
  return Buffer.concat(keep)
}
