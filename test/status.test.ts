// /api/status counts requests and latency per pool member: two pools naming one backend each see only their own
// traffic and their own time to first byte, while in-flight stays the backend's (what the backend itself carries).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { edgeStatus } from '../proxy/ops/status.js'
import { BASE_TOML, request, startBackend, startEdge } from './helpers.js'

test('status: request counts are per pool, for a backend shared by two pools', async t => {
  const b = await startBackend(t, 'shared')
  const { edge, port } = await startEdge(t, `${BASE_TOML}
[[routes]]
match.path_prefix = "/a/"
pool = "a"
[[routes]]
pool = "b"
[pools.a]
backends = ["${b.url}"]
[pools.b]
backends = ["${b.url}"]
`)
  for (let i = 0; i < 5; i++) assert.equal((await request(port, { path: '/a/x' })).status, 200)
  for (let i = 0; i < 2; i++) assert.equal((await request(port, { path: '/other' })).status, 200)
  const st = await edgeStatus(edge)
  const count = (pool: string): number => st.pools.find(p => p.name === pool)?.backends[0]?.requests ?? -1
  assert.equal(count('a'), 5)
  assert.equal(count('b'), 2)
  assert.equal(st.pools.find(p => p.name === 'a')?.backends[0]?.latency.count, 5, 'latency is the member\'s, not the backend\'s over both pools')
  assert.equal(st.pools.find(p => p.name === 'b')?.backends[0]?.latency.count, 2)
  assert.deepEqual(st.ha, { role: 'standalone' })
})

test('status: latency percentiles are per pool member, for a backend shared by a slow and a fast pool', async t => {
  const b = await startBackend(t, 'shared')
  const { edge, port } = await startEdge(t, `${BASE_TOML}
[[routes]]
match.path_prefix = "/slow/"
pool = "slow"
[[routes]]
pool = "fast"
[pools.slow]
backends = ["${b.url}"]
[pools.fast]
backends = ["${b.url}"]
`)
  b.delayMs = 60
  for (let i = 0; i < 4; i++) assert.equal((await request(port, { path: '/slow/x' })).status, 200)
  b.delayMs = 0
  for (let i = 0; i < 8; i++) assert.equal((await request(port, { path: '/fast' })).status, 200)
  const st = await edgeStatus(edge)
  const lat = (pool: string) => st.pools.find(p => p.name === pool)?.backends[0]?.latency
  const slow = lat('slow')
  const fast = lat('fast')
  assert.equal(slow?.count, 4)
  assert.equal(fast?.count, 8)
  assert.ok((slow?.p50 ?? 0) >= 50, `the slow pool's p50 is its own (${slow?.p50} ms)`)
  assert.ok((fast?.p99 ?? Infinity) < 40, `the fast pool's p99 is not the slow pool's (${fast?.p99} ms)`)
  assert.equal(st.pools.find(p => p.name === 'slow')?.backends[0]?.recent.count, 4, 'the 10 s window too')
  // Per route: requests and bytes; per listener: bytes and connections.
  const route = st.routes.find(r => r.action === 'pool fast')
  assert.equal(route?.requests, 8)
  assert.equal(route?.errors, 0)
  assert.ok((route?.bytes_out ?? 0) > 0)
  const listener = st.listeners[0]
  assert.ok((listener?.bytes_in ?? 0) > 0 && (listener?.bytes_out ?? 0) > 0, 'bytes per listener')
  assert.equal(typeof listener?.connections, 'number')
})

test('status: a member of a pool without a health check is "unknown" until a try reaches it', async t => {
  const b = await startBackend(t, 'idle')
  const { edge, port } = await startEdge(t, `${BASE_TOML}
[[routes]]
pool = "idle"
[pools.idle]
backends = ["${b.url}"]
`)
  const state = async (): Promise<string | undefined> => (await edgeStatus(edge)).pools[0]?.backends[0]?.state
  assert.equal(await state(), 'unknown')
  assert.equal((await edgeStatus(edge)).pools[0]?.checked, false)
  assert.equal((await request(port, { path: '/x' })).status, 200)
  assert.equal(await state(), 'healthy')
})
