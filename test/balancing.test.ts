// Balancing: weighted round robin ratios, least_conn and p2c steering away from a slow backend, hash stickiness
// and the moved-keys bound (unit tests on pick()), and sharded pools (keys stay on their shard; a dead shard
// answers 503 "shard unavailable" while the other serves; a key-less request goes to one fixed shard).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { BackendStore } from '../proxy/upstream/store.js'
import { Member } from '../proxy/upstream/member.js'
import { balancers } from '../proxy/upstream/balancers/index.js'
import { ConsistentHash } from '../proxy/upstream/balancers/hash.js'
import { RoundRobin } from '../proxy/upstream/balancers/round-robin.js'
import { hashKeyOf } from '../proxy/upstream/pool.js'
import { BASE_TOML, echoOf, request, sleep, startBackend, startEdge } from './helpers.js'

function keepAlive (t: { after (fn: () => void): void }): http.Agent {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
  t.after(() => { agent.destroy() })
  return agent
}

function count (list: string[]): Map<string, number> {
  const m = new Map<string, number>()
  for (const x of list) m.set(x, (m.get(x) ?? 0) + 1)
  return m
}

// ---------------------------------------------------------------- unit: pick() on Member objects

function members (t: { after (fn: () => Promise<void>): void }, urls: string[], weights?: number[]): Member[] {
  const store = new BackendStore({ connectTimeout: 1000, keepAliveTimeout: 1000, maxHeaderSize: 16384 })
  t.after(() => store.close())
  return urls.map((u, i) => new Member(store.get(u), weights?.[i] ?? 1))
}

const urlsN = (n: number): string[] => Array.from({ length: n }, (_, i) => `http://10.0.0.${i + 1}:8080`)
const KEYS = Array.from({ length: 10_000 }, (_, i) => `user-${i}`)

test('unit: every balancer skips an unavailable backend and the excluded one, and returns undefined when none is left', t => {
  for (const [name, make] of Object.entries(balancers)) {
    const ms = members(t, urlsN(3))
    const bal = make()
    const now = Date.now()
    ;(ms[0] as Member).backend.markUnreachable(now, 10_000)
    for (let i = 0; i < 200; i++) {
      const m = bal.pick(ms, now, `k${i}`, ms[1])
      assert.equal(m, ms[2], `${name} picked ${m?.backend.url ?? 'nothing'}`)
    }
    ;(ms[2] as Member).healthy = false
    assert.equal(bal.pick(ms, now, 'k', ms[1]), undefined, name)
    assert.equal(bal.pick([], now, 'k', undefined), undefined, name)
  }
})

test('unit: smooth weighted round robin interleaves (1:2 gives b a b, never a a)', t => {
  const [a, b] = members(t, urlsN(2), [1, 2]) as [Member, Member]
  const rr = new RoundRobin()
  const seq = Array.from({ length: 9 }, () => rr.pick([a, b], Date.now(), '', undefined) === a ? 'a' : 'b').join('')
  assert.equal(seq, 'babbabbab')
})

test('unit: hash moves at most 1/(n+1) + 5% of 10k keys when one backend is added, all of them to the newcomer', t => {
  const hash = new ConsistentHash()
  const now = Date.now()
  for (const n of [2, 3, 5, 8]) {
    const all = members(t, urlsN(n + 1))
    const before = all.slice(0, n)
    const newcomer = all[n] as Member
    let moved = 0
    const share = new Map<Member, number>()
    for (const k of KEYS) {
      const x = hash.pick(before, now, k, undefined) as Member
      const y = hash.pick(all, now, k, undefined) as Member
      share.set(x, (share.get(x) ?? 0) + 1)
      if (x !== y) {
        moved++
        assert.equal(y, newcomer, 'a key only ever moves to the new backend')
      }
    }
    const bound = 1 / (n + 1) + 0.05
    assert.ok(moved / KEYS.length <= bound, `n=${n}: moved ${moved / KEYS.length} > ${bound}`)
    assert.ok(moved / KEYS.length >= 1 / (n + 1) - 0.05, `n=${n}: the newcomer gets its share (moved ${moved})`)
    for (const [m, c] of share) assert.ok(Math.abs(c / KEYS.length - 1 / n) < 0.05, `n=${n}: ${m.backend.url} has ${c} keys`)
  }
})

test('unit: weighted hash: shares follow weights, and adding a backend moves at most its weight share + 5%', t => {
  const hash = new ConsistentHash()
  const now = Date.now()
  const all = members(t, urlsN(4), [1, 2, 3, 2])
  const before = all.slice(0, 3)
  const share = new Map<Member, number>()
  let moved = 0
  for (const k of KEYS) {
    const x = hash.pick(before, now, k, undefined) as Member
    const y = hash.pick(all, now, k, undefined) as Member
    share.set(x, (share.get(x) ?? 0) + 1)
    if (x !== y) { moved++; assert.equal(y, all[3]) }
  }
  for (const m of before) assert.ok(Math.abs((share.get(m) ?? 0) / KEYS.length - m.weight / 6) < 0.05, `${m.weight}: ${share.get(m)}`)
  assert.ok(moved / KEYS.length <= 2 / 8 + 0.05, `moved ${moved}`)
})

test('unit: hash: removing or cooling down a backend moves only its own keys, and they come back', t => {
  const hash = new ConsistentHash()
  const ms = members(t, urlsN(4))
  const now = Date.now()
  const first = KEYS.slice(0, 2000).map(k => hash.pick(ms, now, k, undefined))
  const down = ms[1] as Member
  down.backend.markUnreachable(now, 1000)
  KEYS.slice(0, 2000).forEach((k, i) => {
    const m = hash.pick(ms, now, k, undefined)
    if (first[i] === down) assert.notEqual(m, down)
    else assert.equal(m, first[i])
  })
  KEYS.slice(0, 2000).forEach((k, i) => { assert.equal(hash.pick(ms, now + 2000, k, undefined), first[i]) })
})

test('unit: hash keys from header, cookie, query, path segment and ip', () => {
  const req = (headers: Record<string, string | string[]>): { headers: Record<string, string | string[]> } => ({ headers })
  assert.equal(hashKeyOf({ kind: 'header', name: 'x-tenant' }, req({ 'x-tenant': 't1' }), '/', ''), 't1')
  assert.equal(hashKeyOf({ kind: 'header', name: 'x-tenant' }, req({}), '/', ''), '', 'absent key is the empty string')
  const cookie = (c: string): string => hashKeyOf({ kind: 'cookie', name: 'sid' }, req({ cookie: c }), '/', '')
  assert.equal(cookie('sid=abc'), 'abc')
  assert.equal(cookie('a=1; sid=abc; b=2'), 'abc')
  assert.equal(cookie('xsid=1; sid=abc'), 'abc', 'names match whole')
  assert.equal(cookie('flag; sid=abc'), 'abc', 'a pair without "=" does not hide the next one')
  assert.equal(cookie('a=1'), '')
  const query = (p: string): string => hashKeyOf({ kind: 'query', name: 'u' }, req({}), p, '')
  assert.equal(query('/x?t=1&u=2'), '2')
  assert.equal(query('/x?u=a%20b'), 'a b')
  assert.equal(query('/x'), '')
  const seg = (p: string, index: number): string => hashKeyOf({ kind: 'path', index }, req({}), p, '')
  assert.equal(seg('/a/b/c', 2), 'b')
  assert.equal(seg('//a//b', 2), 'b')
  assert.equal(seg('/a/b?x', 2), 'b')
  assert.equal(seg('/a?x=/b', 2), '', 'the query is not part of the path')
  assert.equal(hashKeyOf({ kind: 'ip' }, req({}), '/', '10.1.2.3'), '10.1.2.3')
})

// ---------------------------------------------------------------- through the proxy

test('round_robin: weights 1:2 over 300 requests within 10%', async t => {
  const a = await startBackend(t, 'a')
  const b = await startBackend(t, 'b')
  const { port } = await startEdge(t, `${BASE_TOML}
[[routes]]
pool = "p"
[pools.p]
balance = "round_robin"
backends = [ { url = "${a.url}", weight = 1 }, { url = "${b.url}", weight = 2 } ]
`)
  const agent = keepAlive(t)
  const got: string[] = []
  for (let i = 0; i < 300; i++) got.push(echoOf(await request(port, { agent })).backend)
  const c = count(got)
  assert.ok(Math.abs((c.get('a') ?? 0) - 100) <= 10, `a: ${c.get('a')}`)
  assert.ok(Math.abs((c.get('b') ?? 0) - 200) <= 20, `b: ${c.get('b')}`)
})

/** `loops` concurrent sequential clients sending `total` requests; returns the backend of each. */
async function concurrentLoad (port: number, agent: http.Agent, loops: number, total: number): Promise<string[]> {
  const got: string[] = []
  let next = 0
  await Promise.all(Array.from({ length: loops }, async () => {
    while (next < total) {
      next++
      got.push(echoOf(await request(port, { agent })).backend)
    }
  }))
  return got
}

test('least_conn: prefers the idle backend when the other is slow', async t => {
  const slow = await startBackend(t, 'slow', { delayMs: 300 })
  const fast = await startBackend(t, 'fast')
  const { port } = await startEdge(t, `${BASE_TOML}
[[routes]]
pool = "p"
[pools.p]
balance = "least_conn"
backends = [ "${slow.url}", "${fast.url}" ]
`)
  const got = await concurrentLoad(port, keepAlive(t), 4, 60)
  const c = count(got)
  // Round robin would give the slow one 30; least_conn gives it only what arrives while it is idle.
  assert.ok((c.get('slow') ?? 0) <= 8, `slow got ${c.get('slow')} of 60`)
  assert.ok((c.get('slow') ?? 0) >= 1, 'an idle slow backend still gets traffic')
})

test('p2c: prefers a fast backend over a slow one', async t => {
  const slow = await startBackend(t, 'slow', { delayMs: 80 })
  const fast = await startBackend(t, 'fast')
  const fast2 = await startBackend(t, 'fast2')
  const { port } = await startEdge(t, `${BASE_TOML}
[[routes]]
pool = "p"
[pools.p]
balance = "p2c"
backends = [ "${slow.url}", "${fast.url}", "${fast2.url}" ]
`)
  const agent = keepAlive(t)
  const got: string[] = []
  for (let i = 0; i < 60; i++) got.push(echoOf(await request(port, { agent })).backend)
  const c = count(got)
  // Random choice would give the slow one ~20 of 60; p2c gives it only its first (unmeasured) picks.
  assert.ok((c.get('slow') ?? 0) <= 4, `slow got ${c.get('slow')} of 60`)
  assert.ok((c.get('fast') ?? 0) >= 10 && (c.get('fast2') ?? 0) >= 10, `fast ones share: ${JSON.stringify([...c])}`)
})

test('hash: the same key always reaches the same backend, and keys spread over all', async t => {
  const bs = [await startBackend(t, 'h1'), await startBackend(t, 'h2'), await startBackend(t, 'h3')]
  const { port } = await startEdge(t, `${BASE_TOML}
[[routes]]
pool = "p"
[pools.p]
balance = "hash"
hash_key = "header:X-User"
backends = [ ${bs.map(b => `"${b.url}"`).join(', ')} ]
`)
  const agent = keepAlive(t)
  const owner = new Map<string, string>()
  for (let round = 0; round < 3; round++) {
    for (let u = 0; u < 40; u++) {
      const key = `u${u}`
      const be = echoOf(await request(port, { agent, headers: { 'x-user': key } })).backend
      if (round === 0) owner.set(key, be)
      else assert.equal(be, owner.get(key), `key ${key} moved`)
    }
  }
  assert.equal(new Set(owner.values()).size, 3)
})

test('sharded pool: keys stay on their shard; a dead shard answers 503 while the other serves; no key -> one shard', async t => {
  const a1 = await startBackend(t, 'a1')
  const a2 = await startBackend(t, 'a2')
  const b1 = await startBackend(t, 'b1')
  const b2 = await startBackend(t, 'b2')
  const shardOf: Record<string, string> = { a1: 'a', a2: 'a', b1: 'b', b2: 'b' }
  const { port } = await startEdge(t, `${BASE_TOML}
[[routes]]
pool = "users"
[pools.users]
balance = "hash"
hash_key = "header:x-tenant"
[pools.users.shards]
a = ["${a1.url}", "${a2.url}"]
b = ["${b1.url}", "${b2.url}"]
`)
  const agent = keepAlive(t)
  const owner = new Map<string, string>()
  for (let i = 0; i < 60; i++) {
    const key = `tenant-${i}`
    owner.set(key, echoOf(await request(port, { agent, headers: { 'x-tenant': key } })).backend)
  }
  const used = new Set(owner.values())
  assert.equal(used.size, 4, `every backend of both shards serves some tenants: ${[...used].join(',')}`)

  // No key: always the same shard (and backend).
  const keyless = new Set<string>()
  for (let i = 0; i < 10; i++) keyless.add(echoOf(await request(port, { agent })).backend)
  assert.equal(keyless.size, 1)
  const keylessShard = shardOf[[...keyless][0] as string]

  // One backend of shard a goes down: its tenants move within shard a only.
  await a1.close()
  await sleep(50)
  for (const [key, was] of owner) {
    if (shardOf[was] !== 'a') continue
    const r = echoOf(await request(port, { agent, headers: { 'x-tenant': key } }))
    assert.equal(r.backend, was === 'a1' ? 'a2' : was, `tenant ${key} of shard a`)
  }

  // All of shard b goes down: its tenants get 503 "shard unavailable", shard a's still served.
  await b1.close()
  await b2.close()
  await sleep(50)
  for (let pass = 0; pass < 2; pass++) { // first pass meets refused connections, the second the cooldown
    for (const [key, was] of owner) {
      const r = await request(port, { agent, headers: { 'x-tenant': key, 'x-request-id': `rid-${key}` } })
      if (shardOf[was] === 'b') {
        assert.equal(r.status, 503, `tenant ${key} of the dead shard: ${r.body}`)
        assert.match(r.body, /shard "b" unavailable/)
        assert.match(r.body, /EP_ERR_SHARD_UNAVAILABLE/)
        assert.match(r.body, new RegExp(`request-id: rid-${key}`))
      } else {
        assert.equal(r.status, 200, `tenant ${key} of shard a: ${r.body}`)
        assert.equal(echoOf(r).backend, 'a2')
      }
    }
  }
  const r = await request(port, { agent })
  assert.equal(r.status, keylessShard === 'b' ? 503 : 200, 'the key-less request stays on its shard')
})

