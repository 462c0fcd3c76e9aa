// /api/status counts requests per pool member: two pools naming one backend each see only their own traffic,
// while in-flight and latency stay the backend's (they are what the backend itself carries).
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
  assert.equal(st.pools.find(p => p.name === 'a')?.backends[0]?.latency.count, 7, 'latency is the backend\'s own, over both pools')
  assert.deepEqual(st.ha, { role: 'standalone' })
})
