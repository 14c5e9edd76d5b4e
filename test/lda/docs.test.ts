// docs/lda.md's command lines (the shell examples, fetchmail's mda, procmail's filter, Postfix's
// mailbox_command) run as written, with only the operator's parts swapped for this test's: the
// server's address, the paths of rspamd-lda, of the delivery agent and of the config file. A doc
// line that stops working, or goes missing, fails here.

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FakeRspamd } from '../support/fake-rspamd'
import { corpus, REPO } from '../support/harness'
import { replyFor } from '../support/replies'

/** The rspamd-lda command lines of docs/lda.md, each with where it was found. */
function docLines(): { where: string; cmd: string }[] {
  const text = readFileSync(join(REPO, 'docs', 'lda.md'), 'utf8')
  const out: { where: string; cmd: string }[] = []
  let fence: string | undefined
  for (const line of text.split('\n')) {
    const t = line.trim()
    const opens = /^```(\w*)/.exec(t)
    if (opens) {
      fence = fence === undefined ? opens[1] : undefined
      continue
    }
    if (fence === 'sh' && /^rspamd-lda /.test(t))
      out.push({ where: 'shell example', cmd: t.replace(/\s+#.*$/, '') })
    const mda = /^mda "(.*rspamd-lda.*)"$/.exec(t)
    if (mda?.[1]) out.push({ where: 'fetchmail mda', cmd: mda[1] })
    const filter = /^\| (\S*rspamd-lda.*)$/.exec(t)
    if (filter?.[1]) out.push({ where: 'procmail filter', cmd: filter[1] })
    const postfix = /`mailbox_command = ([^`]*rspamd-lda[^`]*)`/.exec(t)
    if (postfix?.[1]) out.push({ where: 'Postfix mailbox_command', cmd: postfix[1] })
  }
  return out
}

function sh(
  cmd: string,
  env: NodeJS.ProcessEnv,
  input: Buffer,
): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', cmd], { env, stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    let err = ''
    child.stdout.on('data', (c: Buffer) => out.push(c))
    child.stderr.on('data', (c: Buffer) => (err += c.toString()))
    child.stdin.on('error', () => undefined)
    child.stdin.end(input)
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }))
  })
}

describe('docs/lda.md: the command lines run as written', function () {
  this.timeout(60_000)
  let server: FakeRspamd
  let dir: string
  before(async () => {
    server = await FakeRspamd.start({ reply: replyFor('add header') })
    dir = mkdtempSync(join(tmpdir(), 'lda-docs-'))
    // the operator's programs: rspamd-lda as installed (on this test's Node), and a delivery agent
    // that keeps what it was given
    writeFileSync(
      join(dir, 'rspamd-lda'),
      `#!/bin/sh\nexec "${process.execPath}" "${join(REPO, 'bin', 'rspamd-lda')}" "$@"\n`,
    )
    writeFileSync(join(dir, 'deliver'), '#!/bin/sh\nprintf "%s\\n" "$*" > "$OUT.args"\ncat > "$OUT"\n')
    for (const f of ['rspamd-lda', 'deliver']) chmodSync(join(dir, f), 0o755)
    writeFileSync(join(dir, 'rspamd.ini'), `host = 127.0.0.1\nport = ${server.port}\n`)
    writeFileSync(join(dir, 'message.eml'), corpus('ham.eml'))
  })
  after(async () => {
    await server.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('finds every kind of line the page shows', () => {
    assert.deepEqual([...new Set(docLines().map((l) => l.where))].sort(), [
      'Postfix mailbox_command',
      'fetchmail mda',
      'procmail filter',
      'shell example',
    ])
  })

  for (const { where, cmd } of docLines()) {
    it(`${where}: ${cmd}`, async () => {
      const local = cmd
        .replace(
          /(^|[\s|])(\/usr\/local\/bin\/)?rspamd-lda /g,
          (_m, lead: string) => `${lead}${join(dir, 'rspamd-lda')} `,
        )
        .replaceAll('/usr/lib/dovecot/deliver', join(dir, 'deliver'))
        .replaceAll('/etc/haraka/config/rspamd.ini', join(dir, 'rspamd.ini'))
        .replaceAll('127.0.0.1:11333', `127.0.0.1:${server.port}`)
        .replaceAll('message.eml', join(dir, 'message.eml'))
        // fetchmail's %T is the recipient
        .replaceAll('%T', 'bob@example.net')
      const out = join(dir, `delivered-${where.replace(/\W+/g, '-')}`)
      const env = {
        ...process.env,
        OUT: out,
        TMPDIR: dir,
        // what Postfix sets for mailbox_command
        SENDER: 'alice@example.org',
        RECIPIENT: 'bob@example.net',
      }
      const before = server.requests.length
      const r = await sh(local, env, corpus('ham.eml'))
      assert.equal(r.code, 0, `${local}\n${r.stderr}`)
      assert.equal(server.requests.length, before + 1, 'scanned by the server the line names')
      const delivered = /--exec|-e /.test(cmd) ? readFileSync(out) : r.stdout
      assert.match(delivered.toString('latin1'), /^X-Spam-Scanner: rspamd-lda /m)
      assert.match(delivered.toString('latin1'), /^X-Spam-Action: add header$/m)
      if (cmd.includes('%T')) assert.match(readFileSync(`${out}.args`, 'utf8'), /-d bob@example\.net/)
      // rspamd-lda's own -d (rspamc's), before --exec: rspamd's Deliver-To
      if (/\s-d %T\s/.test(cmd.split('--exec')[0] ?? ''))
        assert.equal(server.requests.at(-1)?.headers['deliver-to'], 'bob@example.net')
      if (cmd.includes('$SENDER')) assert.equal(server.requests.at(-1)?.headers.from, 'alice@example.org')
      if (!/--exec|-e /.test(cmd)) assert.ok(!existsSync(out), 'no delivery agent ran')
    })
  }
})
