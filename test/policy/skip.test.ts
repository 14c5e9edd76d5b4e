// src/policy/skip.ts: which messages are not scanned. The [check] rules of 1.6.x, whitelist, skip_ports and
// max_size as a table of plain facts × config, and the address matching of the whitelist.

import assert from 'node:assert/strict'
import { parseConfig } from '../../src/config'
import { inRanges, type ScanFacts, type SkipReason, skipReasons } from '../../src/policy/skip'

const PLAIN: ScanFacts = {
  authenticated: false,
  relaying: false,
  isLocal: false,
  isPrivate: false,
  remoteIp: '203.0.113.9',
  localPort: 25,
  size: 2000,
}

const POLICY = {
  check: { whitelist: '192.0.2.0/24, 2001:db8:1::/48, 198.51.100.7', skip_ports: '587, 465' },
  main: { max_size: '1M' },
}

// [label, ini, facts, expected reason]
const CASES: Array<
  [label: string, ini: Record<string, unknown>, facts: Partial<ScanFacts>, skip?: SkipReason]
> = [
  ['a plain sender with the defaults', {}, {}, undefined],
  ['a plain sender with the policy keys set', POLICY, {}, undefined],
  ['an authenticated sender', {}, { authenticated: true }, 'authed'],
  [
    'an authenticated sender with authenticated=true',
    { check: { authenticated: true } },
    { authenticated: true },
  ],
  ['a relaying client', {}, { relaying: true }, 'relay'],
  ['a relaying client with relay=true', { check: { relay: true } }, { relaying: true }],
  ['a local IP', {}, { isLocal: true, isPrivate: true, remoteIp: '127.0.0.1' }, 'local_ip'],
  [
    'a local IP with local_ip=true (private_ip=false does not skip it)',
    { check: { local_ip: true } },
    { isLocal: true, isPrivate: true, remoteIp: '127.0.0.1' },
  ],
  ['a private IP', {}, { isPrivate: true, remoteIp: '10.1.2.3' }, 'private_ip'],
  [
    'a private IP with private_ip=true',
    { check: { private_ip: true } },
    { isPrivate: true, remoteIp: '10.1.2.3' },
  ],
  ['an address inside a whitelisted /24', POLICY, { remoteIp: '192.0.2.200' }, 'whitelist'],
  ['an address just outside the /24', POLICY, { remoteIp: '192.0.3.1' }],
  ['a whitelisted single address', POLICY, { remoteIp: '198.51.100.7' }, 'whitelist'],
  ['the neighbour of a whitelisted single address', POLICY, { remoteIp: '198.51.100.8' }],
  ['an IPv6 address inside a whitelisted /48', POLICY, { remoteIp: '2001:db8:1:ffff::25' }, 'whitelist'],
  ['an IPv6 address written in upper case', POLICY, { remoteIp: '2001:DB8:1::A' }, 'whitelist'],
  ['an IPv6 address outside the /48', POLICY, { remoteIp: '2001:db8:2::25' }],
  ['an IPv4-mapped IPv6 address of a whitelisted /24', POLICY, { remoteIp: '::ffff:192.0.2.5' }, 'whitelist'],
  ['no remote IP known', POLICY, { remoteIp: undefined }],
  ['a remote IP that is not an address', POLICY, { remoteIp: 'unknown' }],
  ['everything whitelisted with 0.0.0.0/0', { check: { whitelist: '0.0.0.0/0' } }, {}, 'whitelist'],
  [
    'an IPv6 sender and an IPv4-only 0.0.0.0/0',
    { check: { whitelist: '0.0.0.0/0' } },
    { remoteIp: '2001:db8::1' },
  ],
  ['every IPv6 sender with ::/0', { check: { whitelist: '::/0' } }, { remoteIp: '2001:db8::1' }, 'whitelist'],
  ['mail to a skipped port (587)', POLICY, { localPort: 587 }, 'port'],
  ['mail to the other skipped port (465)', POLICY, { localPort: 465 }, 'port'],
  ['mail to port 25 when 587 is skipped', POLICY, { localPort: 25 }],
  ['no local port known', POLICY, { localPort: undefined }],
  ['a message over max_size', POLICY, { size: 1024 * 1024 + 1 }, 'size'],
  ['a message of exactly max_size', POLICY, { size: 1024 * 1024 }],
  ['a huge message with max_size=0 (no limit)', {}, { size: 2 ** 40 }],
  ['a message of unknown size', POLICY, { size: undefined }],
  // the first rule that applies names the reason
  [
    'an authenticated sender from a whitelisted IP',
    POLICY,
    { authenticated: true, remoteIp: '192.0.2.1' },
    'authed',
  ],
  ['a whitelisted IP on a skipped port', POLICY, { remoteIp: '192.0.2.1', localPort: 587 }, 'whitelist'],
  ['a big message on a skipped port', POLICY, { localPort: 587, size: 2 ** 30 }, 'port'],
]

describe('policy', function () {
  describe('skipReasons(): the first reason', function () {
    for (const [label, ini, facts, skip] of CASES) {
      it(`${skip === undefined ? 'scans' : `skips (${skip})`} ${label}`, () => {
        assert.equal(skipReasons({ ...PLAIN, ...facts }, parseConfig(ini, {}))[0], skip)
      })
    }
  })

  describe('inRanges()', function () {
    it('is false for an empty list', () => {
      assert.equal(inRanges('192.0.2.1', []), false)
    })

    it('gives the same answers on repeated lookups of one parsed list', () => {
      const list = parseConfig({ check: { whitelist: '192.0.2.0/25' } }, {}).check.whitelist
      for (let i = 0; i < 3; i++) {
        assert.equal(inRanges('192.0.2.127', list), true)
        assert.equal(inRanges('192.0.2.128', list), false)
      }
    })

    it('matches by prefix when the entry has host bits set (192.0.2.77/24)', () => {
      const list = parseConfig({ check: { whitelist: '192.0.2.77/24' } }, {}).check.whitelist
      assert.equal(inRanges('192.0.2.1', list), true)
      assert.equal(inRanges('192.0.1.255', list), false)
    })
  })
})
