// Shadow traffic with workers = 2 (the real CLI): every worker mirrors, each writes its own store file, and the
// admin's /api/shadow, /metrics and the report see all of them.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { backend } from './edge-util.js'
import { request, runCli, spawnCli, tempDir, waitUntil } from './helpers.js'
import type { ShadowReport } from '../proxy/mirror/report.js'
import type { ShadowSummary } from '../proxy/mirror/summary.js'

test('workers = 2: both workers mirror; the store and the report see all of them', async t => {
  const primary = await backend(t, (_q, s) => { s.setHeader('content-type', 'application/json'); s.end('{"v":1}') })
  const shadow = await backend(t, (_q, s) => { s.setHeader('content-type', 'application/json'); s.end('{"v":2}') })
  const dir = await tempDir(t)
  const store = join(dir, 'shadow')
  const cli = await spawnCli(t, `
[server]
workers = 2
shutdown_timeout = "2s"
[[routes]]
pool = "api"
[pools.api]
backends = ["${primary.url}"]
[pools.api-remote1]
backends = ["${shadow.url}"]
[pools.api.shadow]
pool = "api-remote1"
store = "${store}"
`, { listeningCount: 2 })
  // A new connection per request: the cluster hands connections to both workers.
  for (let i = 0; i < 40; i++) assert.equal((await request(cli.port, { path: `/items/${i}`, headers: { connection: 'close' } })).status, 200)
  const admin = `http://127.0.0.1:${cli.adminPort}`
  let summary: ShadowSummary | undefined
  await waitUntil(async () => {
    summary = await (await fetch(`${admin}/api/shadow`)).json() as ShadowSummary
    return summary.pools[0]?.endpoints[0]?.compared === 40
  }, 10_000, '40 comparisons over both workers')
  assert.equal(summary?.pools[0]?.endpoints[0]?.endpoint, 'GET /items/:id')
  assert.equal(summary?.pools[0]?.endpoints[0]?.differing, 40)
  const metrics = await (await fetch(`${admin}/metrics`)).text()
  assert.match(metrics, /edge_shadow_mirrored_total\{pool="api"\} 40/)
  await waitUntil(async () => {
    const r = await runCli(['report', 'shadow', '--store', store, '--format', 'json'])
    return (JSON.parse(r.stdout) as ShadowReport).records === 40
  }, 10_000, 'the report to see 40 records')
  const files = await readdir(store)
  assert.equal(files.length, 2, `one file per worker: ${files.join(', ')}`)
  const r = JSON.parse((await runCli(['report', 'shadow', '--store', store, '--format', 'json'])).stdout) as ShadowReport
  assert.deepEqual(r.pools[0]?.endpoints[0]?.fields.map(f => [f.field, f.count]), [['$.v', 40]])
})
