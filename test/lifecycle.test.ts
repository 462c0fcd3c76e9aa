// Lifecycle, through the real CLI process: reload under load (SIGHUP and POST /api/reload) with zero failed
// requests and the new config in effect at once; a bad config on reload keeps the old one; SIGTERM lets an
// in-flight request finish and exits 0; workers = 2 serve, a killed worker is replaced, SIGTERM stops them all.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { parseConfigText } from '../config/load.js'
import { BASE_TOML, echoOf, request, sleep, spawnCli, startBackend, startEdge, waitUntil, type CliEdge } from './helpers.js'

const poolTo = (url: string, extra = ''): string => `
[server]
shutdown_timeout = "5s"
${extra}
[[routes]]
pool = "p"
[pools.p]
backends = ["${url}"]
`

interface Sample { readonly startedAt: number, readonly backend: string }
interface LoadResult { readonly samples: Sample[], readonly failures: string[] }

/** `concurrency` keep-alive clients sending requests until `stop()` or the bounds (count, time) are hit. */
function load (port: number, concurrency = 4, maxRequests = 3000, maxMs = 8000): { stop: () => Promise<LoadResult> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency })
  const samples: Sample[] = []
  const failures: string[] = []
  const deadline = Date.now() + maxMs
  let sent = 0
  let stopped = false
  const loops = Array.from({ length: concurrency }, async () => {
    while (!stopped && sent < maxRequests && Date.now() < deadline) {
      sent++
      const startedAt = Date.now()
      try {
        const r = await request(port, { agent })
        if (r.status !== 200) failures.push(`${r.status} ${r.body}`)
        else samples.push({ startedAt, backend: echoOf(r).backend })
      } catch (err) {
        failures.push(String(err))
      }
    }
  })
  return {
    stop: async () => {
      stopped = true
      await Promise.all(loops)
      agent.destroy()
      return { samples, failures }
    },
  }
}

function adminPost (cli: CliEdge, path: string): Promise<{ status: number, body: string }> {
  return request(cli.adminPort, { method: 'POST', path }).then(r => ({ status: r.status, body: r.body }))
}

async function reloadUnderLoad (t: Parameters<typeof spawnCli>[0], how: 'SIGHUP' | 'POST'): Promise<void> {
  const a = await startBackend(t, 'old')
  const b = await startBackend(t, 'new')
  const cli = await spawnCli(t, poolTo(a.url))
  const running = load(cli.port)
  await waitUntil(() => a.seen.length >= 50, 5000, 'load on the old backend')
  await cli.rewrite(poolTo(b.url))
  let reloadedAt: number
  if (how === 'SIGHUP') {
    const before = cli.events.length
    cli.child.kill('SIGHUP')
    await cli.waitForEvent(e => e.msg === 'config reloaded' && cli.events.indexOf(e) >= before, 5000, '"config reloaded"')
    reloadedAt = Date.now()
  } else {
    const r = await adminPost(cli, '/api/reload')
    reloadedAt = Date.now()
    assert.equal(r.status, 200, r.body)
    const body = JSON.parse(r.body) as { ok: boolean, summary: string, generation: number, lines: string[], errors: string[] }
    assert.equal(body.ok, true)
    assert.match(body.summary, /pool p: round_robin, 1 backends/)
    // One JSON object, not a string full of newlines: the generation now running, the summary's lines, no errors.
    assert.equal(body.generation, 2)
    assert.ok(body.lines.some(l => /pool p: round_robin, 1 backends/.test(l)) && body.lines.every(l => !l.includes('\n')))
    assert.deepEqual(body.errors, [])
  }
  await waitUntil(() => b.seen.length >= 50, 5000, 'load on the new backend')
  const { samples, failures } = await running.stop()
  assert.deepEqual(failures, [], 'no request failed during the reload')
  assert.ok(samples.length >= 100, `${samples.length} requests`)
  const late = samples.filter(s => s.startedAt > reloadedAt)
  assert.ok(late.length >= 20)
  assert.deepEqual([...new Set(late.map(s => s.backend))], ['new'], 'every request started after the reload used the new config')

  // A bad file on reload: the old (here: the new) config keeps serving.
  await cli.rewrite(`${poolTo(b.url)}\n[[routes]]\npool = "missing"\n`)
  if (how === 'SIGHUP') {
    const before = cli.events.length
    cli.child.kill('SIGHUP')
    const e = await cli.waitForEvent(e => e.msg === 'config reload failed; keeping the running config' && cli.events.indexOf(e) >= before, 5000, 'the reload failure')
    assert.match(String(e.reason), /proxy\.toml:\d+: routes\[1\]\.pool: .*"missing"/)
  } else {
    const r = await adminPost(cli, '/api/reload')
    assert.equal(r.status, 400)
    const body = JSON.parse(r.body) as { ok: boolean, error: string, generation: number, errors: string[] }
    assert.equal(body.ok, false)
    assert.match(body.error, /proxy\.toml:\d+: routes\[1\]\.pool: .*"missing"/)
    assert.equal(body.generation, 2, 'the running generation stays')
    assert.equal(body.errors.length, 1)
    assert.match(body.errors[0] ?? '', /^.*proxy\.toml:\d+: routes\[1\]\.pool: .*"missing"/)
  }
  for (let i = 0; i < 5; i++) assert.equal(echoOf(await request(cli.port)).backend, 'new')
  assert.equal(cli.child.exitCode, null, 'still running')
}

test('reload under load with SIGHUP: zero failures, new config at once; a bad file keeps the old', async t => {
  await reloadUnderLoad(t, 'SIGHUP')
})

test('reload under load with POST /api/reload: zero failures, new config at once; a bad file keeps the old', async t => {
  await reloadUnderLoad(t, 'POST')
})

test('SIGTERM: an in-flight request completes, then the process exits 0', async t => {
  const slow = await startBackend(t, 'slow', { delayMs: 500 })
  const cli = await spawnCli(t, poolTo(slow.url))
  const inflight = request(cli.port, { path: '/in-flight' })
  await waitUntil(() => slow.seen.length === 1, 3000, 'the backend to get the request')
  const signalled = Date.now()
  cli.child.kill('SIGTERM')
  const r = await inflight
  assert.equal(r.status, 200)
  assert.equal(echoOf(r).url, '/in-flight')
  const exit = await cli.exited
  assert.deepEqual(exit, { code: 0, signal: null })
  assert.ok(Date.now() - signalled < 4000, 'it did not wait for the whole shutdown_timeout')
  assert.ok(cli.events.some(e => e.msg === 'stopped'))
})

test('workers = 2: both serve, a killed worker is replaced, SIGTERM stops them all', async t => {
  const b = await startBackend(t, 'b')
  const cli = await spawnCli(t, poolTo(b.url, 'workers = 2'), { listeningCount: 2 })
  const workerPids = (): number[] => cli.events.filter(e => e.msg === 'listening').map(e => Number(e.pid))
  const first = workerPids()
  assert.equal(new Set(first).size, 2)
  assert.ok(!first.includes(cli.child.pid as number), 'the primary does not serve')

  // Request ids carry the serving process's pid (base 36): fresh connections reach both workers.
  const servedBy = async (n: number): Promise<Set<number>> => {
    const pids = new Set<number>()
    for (let i = 0; i < n; i++) {
      const r = await request(cli.port)
      assert.equal(r.status, 200, r.body)
      pids.add(parseInt(String(r.headers['x-request-id']).split('-')[1] ?? '', 36))
    }
    return pids
  }
  assert.deepEqual([...await servedBy(10)].sort(), [...first].sort())

  // Kill one worker: the primary starts a replacement, which serves.
  const victim = first[0] as number
  process.kill(victim, 'SIGKILL')
  await cli.waitForEvent(e => e.msg === 'worker died; starting a new one', 5000, 'the primary to notice')
  await waitUntil(() => workerPids().length === 3, 10_000, 'a replacement worker to listen')
  const now = workerPids().filter(p => p !== victim)
  await sleep(50)
  assert.deepEqual([...await servedBy(10)].sort(), [...now].sort())
  const health = JSON.parse((await request(cli.adminPort, { path: '/healthz' })).body) as { workers: number }
  assert.equal(health.workers, 2)

  cli.child.kill('SIGTERM')
  assert.deepEqual(await cli.exited, { code: 0, signal: null })
  const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }
  await waitUntil(() => now.every(p => !alive(p)), 5000, 'every worker to be gone')
})

test('reload (in process): a request in flight to a backend the new config drops still completes', async t => {
  const a = await startBackend(t, 'old', { delayMs: 300 })
  const b = await startBackend(t, 'new')
  const toml = (url: string): string => `${BASE_TOML}
[[routes]]
pool = "p"
[pools.p]
backends = ["${url}"]
`
  const { edge, port } = await startEdge(t, toml(a.url))
  const inflight = request(port, { path: '/slow' })
  await waitUntil(() => a.seen.length === 1, 3000, 'the old backend to get the request')
  await edge.reload(parseConfigText(toml(b.url)))
  assert.equal(echoOf(await request(port)).backend, 'new')
  const r = await inflight
  assert.equal(r.status, 200, r.body)
  assert.equal(echoOf(r).backend, 'old')
})

test('workers = 2: a worker that dies while the file on disk is bad is replaced with the running config', async t => {
  const b = await startBackend(t, 'b')
  const cli = await spawnCli(t, poolTo(b.url, 'workers = 2'), { listeningCount: 2 })
  await cli.rewrite(`${poolTo(b.url, 'workers = 2')}\n[[routes]]\npool = "missing"\n`)
  const r = await adminPost(cli, '/api/reload')
  assert.equal(r.status, 400, r.body)
  const first = cli.events.filter(e => e.msg === 'listening').map(e => Number(e.pid))
  process.kill(first[0] as number, 'SIGKILL')
  await waitUntil(() => cli.events.filter(e => e.msg === 'listening').length === 3, 10_000, 'a replacement worker to listen')
  for (let i = 0; i < 6; i++) assert.equal(echoOf(await request(cli.port)).backend, 'b')
})
