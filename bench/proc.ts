// What Linux says about a process: CPU time used (utime + stime of /proc/<pid>/stat) and resident
// memory (VmRSS of /proc/<pid>/status). For Haraka and rspamd, measured from outside.

import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { cpus } from 'node:os'

/** clock ticks per second of /proc/<pid>/stat's utime and stime (`getconf CLK_TCK`, almost always 100) */
export const CLK_TCK = (() => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
    return Number.isInteger(n) && n > 0 ? n : 100
  } catch {
    return 100
  }
})()

interface Stat {
  ppid: number
  /** utime + stime, in clock ticks */
  ticks: number
}

function stat(pid: number): Stat | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // the command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
  // proc(5): field 3 state, 4 ppid, … 14 utime, 15 stime
  return { ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]) }
}

/** CPU ms (user + system) a process has used so far. */
export function cpuMs(pid: number): number {
  const s = stat(pid)
  if (!s) throw new Error(`no process ${pid}`)
  return (s.ticks * 1000) / CLK_TCK
}

/** CPU ms used so far by a process and its living children (rspamd: the main process and its workers). */
export function treeCpuMs(pid: number): number {
  let ticks = stat(pid)?.ticks ?? NaN
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const s = stat(Number(name))
    if (s?.ppid === pid) ticks += s.ticks
  }
  return (ticks * 1000) / CLK_TCK
}

/** Resident memory (VmRSS) of a process now, in bytes. */
export function rssBytes(pid: number): number {
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
  if (!kb) throw new Error(`no VmRSS for process ${pid}`)
  return Number(kb) * 1024
}

/** The CPU model, for the reports. */
export function cpuModel(): string {
  const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))
  return m?.[1].trim() ?? cpus()[0]?.model ?? 'unknown CPU'
}
