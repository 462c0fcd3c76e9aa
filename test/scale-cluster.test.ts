// workers = 2, through the real CLI: the primary makes one decision per pool per interval from both workers'
// latency histograms, the backend it starts serves through every worker, and SIGTERM stops the backends too.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { freePort, spawnCli, waitUntil } from './helpers.js'
import { backendScript, load } from './scale-util.js'

test('workers = 2: one scaler in the primary over both workers\' latency; started backends stop with the edge', async (t) => {
  const command = await backendScript(t, 'serial', 20)
  const lo = await freePort()
  const cli = await spawnCli(t, `
[server]
workers = 2
shutdown_timeout = "3s"

[[routes]]
pool = "app"

[pools.app]
balance = "least_conn"

[pools.app.scale]
target = "60ms"
interval = "200ms"
window = "1s"
min = 1
max = 3
provider = "process"
command = ${JSON.stringify(command)}
ports = "${lo}-${lo + 20}"
`, { listeningCount: 2 })
  const decisions = (): Record<string, unknown>[] => cli.events.filter(e => e.msg === 'scale decision')
  await cli.waitForEvent(e => e.msg === 'scale: backend up, joining the pool', 15_000, 'the first backend')
  const l = load(t, `http://127.0.0.1:${cli.port}`, 6)
  await cli.waitForEvent(e => e.msg === 'scale decision' && e.kind === 'scale.up' && e.from === 1, 20_000, 'a scale-up from 1')
  await waitUntil(() => [...l.byPort.keys()].filter(p => p !== '?').length >= 2, 10_000, 'two backends serving')
  const clientRps = l.latencies.length
  await l.stop()
  const up = decisions().find(e => e.kind === 'scale.up' && e.from === 1)!
  t.diagnostic(`decisions: ${decisions().map(e => `${String(e.kind)} ${String(e.from)}->${String(e.to)} (${String(e.observed_ms)}ms @${String(e.rps)}rps)`).join(' | ')}`)
  // One scaler: the primary logs every decision once (no decision per worker).
  const starts = cli.events.filter(e => e.msg === 'scaler started')
  assert.equal(starts.length, 1)
  const pids = new Set(cli.events.filter(e => e.msg === 'listening').map(e => e.pid))
  assert.equal(pids.size, 2)
  assert.ok(Number(up.rps) > 0 && Number(up.observed_ms) > 60 && clientRps > 0)
  // The primary's status counts the started backends (a third may still be joining: wait a little for two).
  let current = 0
  await waitUntil(async () => {
    const st = JSON.parse(await (await fetch(`http://127.0.0.1:${cli.adminPort}/api/status`)).text()) as { scaling: { pool: string, current: number }[] }
    current = st.scaling[0]?.current ?? 0
    return current >= 2
  }, 5000, 'the status to count two started backends').catch(() => {})
  assert.ok(current >= 2, `status counts ${current} backends`)
  const ports = [...l.byPort.keys()].filter(p => p !== '?')
  cli.child.kill('SIGTERM')
  const exit = await cli.exited
  assert.equal(exit.code, 0)
  for (const p of ports) {
    const answers = await fetch(`http://127.0.0.1:${p}/healthz`).then(() => true, () => false)
    assert.equal(answers, false, `backend on ${p} outlived the edge`)
  }
})
