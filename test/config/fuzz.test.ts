// Config fuzz (fast-check, fixed seed): any text for any key of rspamd.ini, at start (parseConfig and the
// plugin's register()) and on reload (the callback haraka-config's file watcher calls, called at once by
// rewriteConfig()), either loads or is a ConfigError naming the key — never another exception, never one out
// of the callback; a refused reload leaves the running config and client serving. Replay with
// FUZZ_SEED=<seed>; FUZZ_RELOAD_RUNS sets how many reloads.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import type { FixturePlugin } from 'haraka-test-fixtures'
import { ConfigError, parseConfig, parseIni } from '../../src/config'
import { FakeRspamd } from '../support/fake-rspamd'
import { replyFor } from '../support/replies'
import {
  REPO,
  connectionWith,
  corpus,
  dataPost,
  iniFor,
  loadPlugin,
  logsDuring,
  rewriteConfig,
  unregister,
} from '../support/harness'

const SEED = Number(process.env.FUZZ_SEED ?? 20261202)
const RELOAD_RUNS = Number(process.env.FUZZ_RELOAD_RUNS ?? 40)

/** Every key the shipped config/rspamd.ini documents, as [section, key], and the ones only prose names. */
function documentedKeys(): Array<[string, string]> {
  const out: Array<[string, string]> = [
    ['main', 'always_add_headers'],
    ['request_headers', 'X-Api-Key'],
  ]
  let section = 'main'
  for (const line of readFileSync(join(REPO, 'config', 'rspamd.ini'), 'utf8').split('\n')) {
    const head = /^\[(\w+)\]$/.exec(line)
    if (head) section = head[1] ?? 'main'
    const key = /^(?:; )?([a-z_]+) = /.exec(line)?.[1]
    // prose lines that read like a key ("; true = answer 451 …")
    if (key !== undefined && key !== 'true' && key !== 'false' && section !== 'request_headers') {
      out.push([section, key])
    }
  }
  return out
}
const KEYS = documentedKeys()

/** The name a ConfigError gives a key. */
const nameOf = ([section, key]: [string, string]) => (section === 'main' ? key : `${section}.${key}`)

/** One line of text: pieces that break hosts, URLs, booleans and numbers, and any unicode but line ends. */
const value = fc
  .array(
    fc.oneof(
      fc.constantFrom(
        'true',
        'flase',
        'ON',
        '0',
        '1',
        '-1',
        '1e10',
        '65536',
        ':',
        '%',
        '#',
        '?',
        '[',
        ']',
        '@',
        '/',
        '\\',
        '=',
        ',',
        ';',
        ' ',
        '\t',
        '\u0000',
        '\u0007',
        '\u007f',
        'é',
        '\u2028',
        'https://',
        'http://u:p@',
        'unix:',
        '/run/r.sock',
        'rspamd.example.com:11334',
        '[::1]',
        'fe80::1%eth0',
        'xn--a',
        'redis://',
        'always',
        'lda',
        'memory',
        'redis',
        'undici',
      ),
      fc.string({ unit: 'grapheme', maxLength: 8 }),
      fc.string({ unit: 'binary', maxLength: 8 }),
    ),
    { maxLength: 6 },
  )
  // one line: no line end, and no final backslash (haraka-config would join the next line to it)
  .map((parts) =>
    parts
      .join('')
      .replace(/[\r\n]/g, '')
      .replace(/\\[ \t]*$/, ''),
  )

/** Some keys with a value each, as ini text (main keys first, then one block per section). */
const edits = fc.array(fc.tuple(fc.constantFrom(...KEYS), value), { minLength: 1, maxLength: 4 })

function iniText(pairs: Array<[[string, string], string]>, base = ''): string {
  const bySection = new Map<string, string[]>()
  for (const [[section, key], v] of pairs) {
    const lines = bySection.get(section) ?? []
    lines.push(`${key} = ${v}`)
    bySection.set(section, lines)
  }
  let text = `${base}${(bySection.get('main') ?? []).join('\n')}\n`
  for (const [section, lines] of bySection)
    if (section !== 'main') text += `[${section}]\n${lines.join('\n')}\n`
  return text
}

/** Loads, or a ConfigError naming one of the keys set (value_env names its variable after the key). */
function assertLoadsOrNamesKey(err: unknown, pairs: Array<[[string, string], string]>): void {
  if (err === undefined) return
  // the plugin's is dist/'s ConfigError class, the same code as src/'s
  const isConfigError = err instanceof ConfigError || (err instanceof Error && err.name === 'ConfigError')
  assert.ok(isConfigError, `not a ConfigError: ${err instanceof Error ? err.stack : String(err)}`)
  const { key, message } = err as ConfigError
  assert.equal(typeof key, 'string')
  const names = pairs.map(([k]) => nameOf(k))
  // value_env is named with its variable: `auth.value_env (NAME)`
  const named = names.some((n) => key === n || key.startsWith(`${n} `))
  assert.ok(named, `${key} is none of ${names.join(', ')}: ${message}`)
  assert.ok(message.includes(key), message)
}

function tryLoad(fn: () => unknown): unknown {
  try {
    fn()
    return undefined
  } catch (err) {
    return err
  }
}

describe('config fuzz', function () {
  this.timeout(300_000)
  let server: FakeRspamd
  before(async () => {
    server = await FakeRspamd.start()
    server.setReply(replyFor('no action'))
  })
  after(() => server.close())

  it(`finds the documented keys (${KEYS.length})`, () => {
    assert.ok(KEYS.length > 60, `only ${KEYS.length}`)
  })

  it('parseConfig: any text for any key loads or names the key', () => {
    fc.assert(
      fc.property(edits, fc.boolean(), (pairs, https) => {
        const text = iniText(pairs, https ? 'scheme = https\n' : '')
        const err = tryLoad(() => parseConfig(parseIni(text).sections, { RSPAMD_AUTH_HEADER: 'x' }))
        // scheme is set by the base text: an error may name it only when the fuzz set it too
        assertLoadsOrNamesKey(err, https ? [...pairs, [['main', 'scheme'], 'https']] : pairs)
      }),
      { seed: SEED, numRuns: 3000 },
    )
  })

  it('register(): the https host:port typo stops start-up with a ConfigError naming host, not a bare Invalid URL', async () => {
    const plugin = loadPlugin(`${iniFor(server)}scheme = https\nhost = rspamd.example.com:11334\n`, {
      register: false,
    })
    try {
      assert.throws(
        () => plugin.register(),
        (err: Error) =>
          err.name === 'ConfigError' &&
          /^rspamd\.ini: host = "rspamd\.example\.com:11334": /.test(err.message),
      )
    } finally {
      await unregister(plugin)
    }
  })

  it('register(): any text for any key starts, or stops start-up with a ConfigError naming the key', async () => {
    const samples = fc.sample(edits, { seed: SEED, numRuns: 40 })
    for (const pairs of samples) {
      const plugin = loadPlugin(iniText(pairs, iniFor(server)), { register: false })
      const err = tryLoad(() => plugin.register())
      assertLoadsOrNamesKey(err, pairs)
      await unregister(plugin)
    }
  })

  describe("on reload, through the callback haraka-config's watcher calls", function () {
    let plugin: FixturePlugin
    afterEach(() => unregister(plugin))

    interface State {
      cfg?: unknown
      client?: unknown
    }
    const state = (p: FixturePlugin) => p as unknown as State

    /** Rewrites and reloads rspamd.ini; the plugin's answer: the reload's info line or its refusal. */
    function rewrite(p: FixturePlugin, text: string): { ok: boolean; line: string } {
      const logged = logsDuring(p, () => rewriteConfig(p, text), ['loginfo', 'logerror'])
      const answer = logged.find(
        (l) =>
          (l.level === 'loginfo' && /rspamd\.ini reloaded/.test(l.line)) ||
          (l.level === 'logerror' && /rspamd\.ini reload/.test(l.line)),
      )
      if (!answer) throw new Error('the reload logged neither "reloaded" nor a refusal')
      return { ok: answer.level === 'loginfo', line: answer.line }
    }

    async function assertServing(p: FixturePlugin): Promise<void> {
      const before = server.requests.length
      const res = await dataPost(p, await connectionWith(corpus('ham.eml')))
      assert.equal(res.code, undefined)
      assert.equal(server.requests.length, before + 1, 'the running config scanned with the running client')
    }

    const TYPOS: Array<[label: string, extra: string, key: string]> = [
      ['an https host with its port', 'scheme = https\nhost = rspamd.example.com:11334', 'host'],
      ['a host with %, over undici', 'transport = undici\nhost = rspamd%1', 'host'],
      ['a boolean typo', '[reject]\nspam = flase', 'reject.spam'],
    ]
    for (const [label, extra, key] of TYPOS) {
      it(`refuses ${label}, names ${key}, keeps config and client together and scanning`, async () => {
        plugin = loadPlugin(iniFor(server))
        const { cfg, client } = state(plugin)
        // the bad key after the good ones: the last host wins in haraka-config
        const answer = rewrite(plugin, `${iniFor(server)}${extra}\n`)
        assert.equal(answer.ok, false, answer.line)
        assert.match(answer.line, new RegExp(`reload refused.*${key.replace('.', '\\.')}`))
        assert.equal(state(plugin).cfg, cfg)
        assert.equal(state(plugin).client, client)
        await assertServing(plugin)
      })
    }

    it(`any text for any key, ${RELOAD_RUNS} reloads: applied, or refused with the old config serving`, async () => {
      plugin = loadPlugin(iniFor(server))
      // only the keys that do not move the plugin off the fake rspamd when they load
      const samples = fc.sample(edits, { seed: SEED, numRuns: RELOAD_RUNS })
      for (const pairs of samples) {
        const { cfg, client } = state(plugin)
        const answer = rewrite(plugin, iniText(pairs, iniFor(server)))
        if (answer.ok) {
          assert.notEqual(state(plugin).cfg, cfg)
          // back to the base config for the next round
          const back = rewrite(plugin, iniFor(server))
          assert.equal(back.ok, true, back.line)
        } else {
          const names = pairs.map(([k]) => nameOf(k))
          assert.ok(
            names.some((n) => answer.line.includes(n)),
            `${answer.line} names none of ${names.join(', ')}`,
          )
          assert.equal(state(plugin).cfg, cfg)
          assert.equal(state(plugin).client, client)
        }
        await assertServing(plugin)
      }
    })
  })
})
