// A TCP port on 127.0.0.1 that drops connection attempts, as a firewall or a vanished host does:
// a child process listens with the smallest backlog and is then stopped (SIGSTOP), filler
// connections fill its accept queue, and Linux drops every later SYN, so a connect neither
// succeeds nor fails until the client gives up. Loopback only; close() kills the child.

import { spawn } from 'node:child_process'
import { connect, type Socket } from 'node:net'

export interface BlackHole {
  port: number
  close(): void
}

const LISTENER = `
const server = require('node:net').createServer(() => {})
server.listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => console.log(server.address().port))`

export async function blackHole(): Promise<BlackHole> {
  const child = spawn(process.execPath, ['-e', LISTENER], { stdio: ['ignore', 'pipe', 'inherit'] })
  const fillers: Socket[] = []
  const close = () => {
    for (const s of fillers) s.destroy()
    child.kill('SIGKILL')
  }
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('error', reject)
      child.once('exit', (code) => reject(new Error(`black hole listener exited with ${code}`)))
      child.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim())))
    })
    child.kill('SIGSTOP')
    // the stopped child accepts nothing more: a few connections fill its queue (backlog 1 holds 2)
    for (let i = 0; i < 4; i++) {
      const s = connect({ host: '127.0.0.1', port })
      s.on('error', () => undefined)
      fillers.push(s)
    }
    await new Promise((r) => setTimeout(r, 100))
    return { port, close }
  } catch (err) {
    close()
    throw err
  }
}
