// Upgrades through the real CLI process (issue 18): `edge-proxy upgrade --workers-only` replaces both workers of
// a workers = 2 edge one at a time under keep-alive and new-connection load with every request answered, the
// serving pids all change, and a slow request on an old worker completes; an invalid config file refuses the
// upgrade and the old workers keep serving; SIGUSR2 upgrades too; workers = 1 says what it cannot do yet.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import WebSocket, { WebSocketServer } from 'ws'
import { echoOf, request, runCli, sleep, spawnCli, startBackend, waitUntil, type CliEdge } from './helpers.js'

const edgeBody = (url: string, extra = ''): string => `
[server]
workers = 2
shutdown_timeout = "5s"
upgrade_drain = "5s"
${extra}
[[routes]]
pool = "p"
[pools.p]
backends = ["${url}"]
`

/** The serving process's pid, from the request id (base 36 after the first dash). */
function pidOf (headers: http.IncomingHttpHeaders): number {
  return parseInt(String(headers['x-request-id']).split('-')[1] ?? '', 36)
}

interface Served { readonly at: number, readonly pid: number }
interface LoadResult { readonly served: Served[], readonly failures: string[] }

/**
 * Keep-alive clients (one Agent) and new-connection clients sending requests until stop() or the bounds; every
 * answer is recorded with the pid that served it and when it arrived, every error or non-200 as a failure.
 */
function load (port: number, keepAlive = 4, fresh = 2, maxMs = 30_000): { stop: () => Promise<LoadResult>, count: () => number } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: keepAlive })
  const served: Served[] = []
  const failures: string[] = []
  const deadline = Date.now() + maxMs
  let stopped = false
  const loop = async (opts: { agent?: http.Agent }): Promise<void> => {
    while (!stopped && Date.now() < deadline) {
      try {
        const r = await request(port, opts)
        if (r.status !== 200) failures.push(`${r.status} ${r.body}`)
        else served.push({ at: Date.now(), pid: pidOf(r.headers) })
      } catch (err) {
        failures.push(`${opts.agent === undefined ? 'new connection' : 'keep-alive'}: ${String(err)} at ${Date.now()}`)
      }
    }
  }
  const loops = [
    ...Array.from({ length: keepAlive }, () => loop({ agent })),
    ...Array.from({ length: fresh }, () => loop({})),
  ]
  return {
    count: () => served.length,
    stop: async () => {
      stopped = true
      await Promise.all(loops)
      agent.destroy()
      return { served, failures }
    },
  }
}

function workerPids (cli: CliEdge): Promise<number[]> {
  return request(cli.adminPort, { path: '/api/status' }).then(r => (JSON.parse(r.body) as { pids: number[] }).pids.sort())
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

/** A backend that holds every request until `release()`; `held` has the request id each one came with. */
async function startHoldingBackend (t: Parameters<typeof spawnCli>[0]): Promise<{ url: string, held: string[], release: () => void }> {
  const waiting: http.ServerResponse[] = []
  const held: string[] = []
  const server = http.createServer((req, res) => {
    held.push(String(req.headers['x-request-id']))
    waiting.push(res)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>(resolve => { server.close(() => { resolve() }); server.closeAllConnections() }))
  const release = (): void => { for (const res of waiting.splice(0)) res.end('released\n') }
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, held, release }
}

test('upgrade --workers-only under load: every request answered, every worker replaced, a slow request on an old worker completes', async t => {
  const b = await startBackend(t, 'b')
  const hold = await startHoldingBackend(t)
  const cli = await spawnCli(t, edgeBody(b.url, `
[[routes]]
match.path_prefix = "/hold"
pool = "h"
[pools.h]
backends = ["${hold.url}"]
`), { listeningCount: 2 })
  const before = await workerPids(cli)
  assert.equal(before.length, 2)

  const running = load(cli.port)
  await waitUntil(() => running.count() >= 200, 10_000, 'load through the edge')
  // In flight on an old worker while it drains: it must still be answered in full.
  const slow = request(cli.port, { path: '/hold', timeoutMs: 60_000 })
  await waitUntil(() => hold.held.length === 1, 3000, 'the slow request to reach the backend')
  const holder = parseInt(hold.held[0]?.split('-')[1] ?? '', 36)
  assert.ok(before.includes(holder), `the slow request is on worker ${holder}`)

  const startedAt = Date.now()
  const upgrading = runCli(['upgrade', '--admin', `127.0.0.1:${cli.adminPort}`, '--workers-only'], 60_000)
  await cli.waitForEvent(e => typeof e.msg === 'string' && e.msg.includes(`draining old worker ${holder} `), 40_000, 'the slow request\'s worker to drain')
  await sleep(700)
  assert.ok(alive(holder), 'the draining worker waits for its in-flight request')
  hold.release()
  const up = await upgrading
  const doneAt = Date.now()
  assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`)
  assert.match(up.stdout, /worker 1\/2: started new worker \d+ to replace \d+/)
  assert.match(up.stdout, /worker 2\/2: old worker \d+ exited/)
  assert.match(up.stdout, /upgrade done: 2 new workers serving, the old ones gone/)
  assert.match(up.stdout, /^upgraded$/m)

  const s = await slow
  assert.equal(s.status, 200, s.body)
  assert.equal(s.body, 'released\n')
  assert.equal(pidOf(s.headers), holder)

  await sleep(300)
  const result = await running.stop()
  assert.deepEqual(result.failures, [], `${result.failures.length} of ${result.served.length + result.failures.length} requests failed`)
  const after = await workerPids(cli)
  assert.equal(after.length, 2)
  for (const p of after) assert.ok(!before.includes(p), `worker ${p} is not new`)
  for (const p of before) assert.ok(!alive(p), `old worker ${p} is still running`)
  const late = new Set(result.served.filter(r => r.at > doneAt + 50).map(r => r.pid))
  assert.ok(late.size > 0, 'requests were served after the upgrade')
  for (const p of late) assert.ok(after.includes(p), `pid ${p} served after the upgrade but is not a new worker`)
  const early = new Set(result.served.filter(r => r.at < startedAt).map(r => r.pid))
  assert.deepEqual([...early].sort(), before, 'both old workers served before the upgrade')
  t.diagnostic(`${result.served.length} requests answered, 0 failed; workers ${before.join(',')} -> ${after.join(',')}; upgrade took ${doneAt - startedAt} ms: ${up.stdout.trim().split('\n').join(' | ')}`)

  // Each step is on the status page's event list.
  const events = (JSON.parse((await request(cli.adminPort, { path: '/api/status' })).body) as { events: Array<{ type: string, message: string }> }).events
  assert.ok(events.some(e => e.type === 'upgrade' && /upgrade done/.test(e.message)), JSON.stringify(events.slice(-10)))
  // The replacements are not counted as deaths.
  const health = JSON.parse((await request(cli.adminPort, { path: '/healthz' })).body) as { workers: number }
  assert.equal(health.workers, 2)
  assert.ok(!cli.events.some(e => e.msg === 'worker died; starting a new one'), 'a retired worker was taken for a dead one')
})

test('upgrade with an invalid config file: refused, exit 1 with the reason, the old workers keep serving; SIGUSR2 upgrades once it is fixed', async t => {
  const b = await startBackend(t, 'b')
  const cli = await spawnCli(t, edgeBody(b.url), { listeningCount: 2 })
  const before = await workerPids(cli)
  await cli.rewrite(`${edgeBody(b.url)}\n[[routes]]\npool = "missing"\n`)
  const up = await runCli(['upgrade', '--admin', `127.0.0.1:${cli.adminPort}`], 30_000)
  assert.equal(up.code, 1, up.stdout)
  assert.match(up.stderr, /409: the config file is not valid, nothing was started: .*missing/)
  assert.deepEqual(await workerPids(cli), before)
  assert.equal((await request(cli.port)).status, 200)

  await cli.rewrite(edgeBody(b.url))
  cli.child.kill('SIGUSR2')
  await cli.waitForEvent(e => typeof e.msg === 'string' && e.msg.startsWith('upgrade done'), 30_000, 'the SIGUSR2 upgrade to finish')
  const after = await workerPids(cli)
  assert.equal(after.length, 2)
  for (const p of after) assert.ok(!before.includes(p))
  assert.equal(echoOf(await request(cli.port)).backend, 'b')
})

test('POST /api/upgrade: a new worker that cannot start (its port is taken) leaves the old ones serving: 409 with the steps and why', async t => {
  const b = await startBackend(t, 'b')
  const cli = await spawnCli(t, edgeBody(b.url), { listeningCount: 2 })
  const before = await workerPids(cli)
  // Valid for the primary's check, fatal for a new worker: the new listener's port is held by someone else.
  const squatter = net.createServer()
  await new Promise<void>(resolve => squatter.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>(resolve => { squatter.close(() => { resolve() }) }))
  const taken = (squatter.address() as { port: number }).port
  await cli.rewrite(`${edgeBody(b.url)}\n[[listeners]]\nname = "second"\nlisten = "127.0.0.1:${taken}"\n`)
  const r = await request(cli.adminPort, { method: 'POST', path: '/api/upgrade?workers_only=1', timeoutMs: 30_000 })
  assert.equal(r.status, 409, r.body)
  const answer = JSON.parse(r.body) as { ok: boolean, workersOnly: boolean, steps: string[], error: string }
  assert.equal(answer.ok, false)
  assert.equal(answer.workersOnly, true)
  assert.match(answer.error, /did not become ready: .*(in use|EADDRINUSE).*keeps serving/)
  assert.match(answer.steps.at(-1) ?? '', /^failed: /)
  assert.deepEqual(await workerPids(cli), before)
  assert.equal(echoOf(await request(cli.port)).backend, 'b')
  await sleep(300)
  const health = JSON.parse((await request(cli.adminPort, { path: '/healthz' })).body) as { workers: number }
  assert.equal(health.workers, 2, 'the failed new worker was not replaced by another')
  assert.ok(!cli.events.some(e => e.msg === 'worker died; starting a new one'))
})

test('workers = 1: upgrade hands the listening sockets to a new edge process under load; every request answered, the pid changes', async t => {
  const b = await startBackend(t, 'b')
  const hold = await startHoldingBackend(t)
  const cli = await spawnCli(t, `
[server]
upgrade_drain = "5s"
[[routes]]
match.path_prefix = "/hold"
pool = "h"
[pools.h]
backends = ["${hold.url}"]
[[routes]]
pool = "p"
[pools.p]
backends = ["${b.url}"]
`)
  const before = await workerPids(cli)
  assert.equal(before.length, 1)
  const running = load(cli.port)
  await waitUntil(() => running.count() >= 200, 10_000, 'load through the edge')
  const slow = request(cli.port, { path: '/hold', timeoutMs: 60_000 })
  await waitUntil(() => hold.held.length === 1, 3000, 'the slow request to reach the backend')

  const startedAt = Date.now()
  const upgrading = runCli(['upgrade', '--admin', `127.0.0.1:${cli.adminPort}`], 60_000)
  await cli.waitForEvent(e => e.msg === 'took over the listening sockets of the old edge process', 30_000, 'the new edge process to take the sockets')
  await sleep(700)
  assert.ok(alive(before[0] as number), 'the old process waits for its in-flight request')
  hold.release()
  const up = await upgrading
  const doneAt = Date.now()
  assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`)
  assert.match(up.stdout, /received 2 listening sockets/)
  assert.match(up.stdout, /old edge process \d+ exited; edge process \d+ serves/)
  const s = await slow
  assert.equal(s.status, 200, s.body)
  assert.equal(pidOf(s.headers), before[0])

  await sleep(300)
  const result = await running.stop()
  assert.deepEqual(result.failures, [], `${result.failures.length} of ${result.served.length + result.failures.length} requests failed`)
  const after = await workerPids(cli)
  assert.equal(after.length, 1)
  assert.notEqual(after[0], before[0])
  assert.ok(!alive(before[0] as number))
  const late = new Set(result.served.filter(r => r.at > doneAt + 50).map(r => r.pid))
  assert.deepEqual([...late], after)
  t.diagnostic(`${result.served.length} requests answered, 0 failed; pid ${before[0] ?? '?'} -> ${after[0] ?? '?'}; upgrade took ${doneAt - startedAt} ms: ${up.stdout.trim().split('\n').join(' | ')}`)
  // The supervisor (the process started) still runs and now forwards signals to the new one.
  assert.equal(cli.child.exitCode, null)
  cli.child.kill('SIGTERM')
  assert.deepEqual(await cli.exited, { code: 0, signal: null })
})

test('workers = 1: SIGKILL of the new edge process in the middle of the hand-over leaves the old one serving (409, the reason); the next one carries API members', async t => {
  const b = await startBackend(t, 'b')
  const cli = await spawnCli(t, `[[routes]]\npool = "p"\n[pools.p]\nbackends = ["${b.url}"]\n`)
  const before = await workerPids(cli)
  const answer = request(cli.adminPort, { method: 'POST', path: '/api/upgrade', timeoutMs: 30_000 })
  const started = await cli.waitForEvent(e => /^new edge process \d+ started/.test(String(e.msg)), 20_000, 'the new edge process')
  const pid = Number(/^new edge process (\d+)/.exec(String(started.msg))?.[1])
  process.kill(pid, 'SIGKILL')
  const r = await answer
  assert.equal(r.status, 409, r.body)
  assert.match((JSON.parse(r.body) as { error: string }).error, /exited before it was ready \(SIGKILL\)/)
  assert.deepEqual(await workerPids(cli), before)
  for (let i = 0; i < 20; i++) assert.equal(echoOf(await request(cli.port)).backend, 'b')
  // And the next upgrade goes through, carrying a member registered through the API.
  const extra = await startBackend(t, 'extra')
  const added = await request(cli.adminPort, { method: 'POST', path: '/api/pools/p/backends', body: JSON.stringify({ url: extra.url, weight: 2 }) })
  assert.equal(added.status, 201, added.body)
  const up = await runCli(['upgrade', '--admin', `127.0.0.1:${cli.adminPort}`], 30_000)
  assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`)
  assert.notDeepEqual(await workerPids(cli), before)
  const list = JSON.parse((await request(cli.adminPort, { path: '/api/pools/p/backends' })).body) as Array<{ url: string, weight: number, source: string }>
  assert.ok(list.some(m => m.url === extra.url && m.weight === 2 && m.source === 'api'), JSON.stringify(list))
  const seen = new Set<string>()
  for (let i = 0; i < 12; i++) seen.add(echoOf(await request(cli.port)).backend)
  assert.deepEqual([...seen].sort(), ['b', 'extra'])
})

test('workers = 1: a WebSocket opened before the hand-over keeps exchanging messages until upgrade_drain, then closes with 1001', async t => {
  const b = await startBackend(t, 'b')
  const wss = new WebSocketServer({ server: b.server })
  const backendCloses: number[] = []
  wss.on('connection', ws => {
    ws.on('message', (d: Buffer) => { ws.send(`echo ${d.toString()}`) })
    ws.on('close', code => { backendCloses.push(code) })
  })
  t.after(() => { wss.close() })
  const cli = await spawnCli(t, `[server]\nupgrade_drain = "2s"\n[[routes]]\npool = "p"\n[pools.p]\nbackends = ["${b.url}"]\n`)
  const ws = new WebSocket(`ws://127.0.0.1:${cli.port}/chat`)
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  const echoes: number[] = []
  ws.on('message', () => { echoes.push(Date.now()) })
  const closed = new Promise<{ code: number, at: number }>(resolve => { ws.once('close', code => { resolve({ code, at: Date.now() }) }) })
  let i = 0
  const ticker = setInterval(() => { if (ws.readyState === WebSocket.OPEN) ws.send(String(i++)) }, 50)
  t.after(() => { clearInterval(ticker) })
  const upgrading = runCli(['upgrade', '--admin', `127.0.0.1:${cli.adminPort}`], 30_000)
  const draining = await cli.waitForEvent(e => /drains for up to 2000 ms/.test(String(e.msg)), 20_000, 'the old process to drain')
  const drainAt = Date.parse(String(draining.time))
  const c = await closed
  clearInterval(ticker)
  assert.equal(c.code, 1001)
  assert.ok(echoes.some(at => at > drainAt + 1500), 'messages kept flowing during the drain')
  assert.ok(c.at - drainAt >= 1800 && c.at - drainAt < 5000, `closed ${c.at - drainAt} ms after the drain began`)
  const up = await upgrading
  assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`)
  await waitUntil(() => backendCloses.length === 1, 3000, 'the backend to see the close')
  assert.equal(backendCloses[0], 1001)
  t.diagnostic(`${echoes.length} echoes; closed 1001 ${c.at - drainAt} ms after the drain began`)
})

test('workers = 1: --workers-only is refused with what to do; a bad body is 400; the edge keeps serving', async t => {
  const b = await startBackend(t, 'b')
  const cli = await spawnCli(t, `[[routes]]\npool = "p"\n[pools.p]\nbackends = ["${b.url}"]\n`)
  const r = await request(cli.adminPort, { method: 'POST', path: '/api/upgrade', body: '{"workers_only": true}' })
  assert.equal(r.status, 409, r.body)
  assert.match((JSON.parse(r.body) as { error: string }).error, /workers > 1/)
  const bad = await request(cli.adminPort, { method: 'POST', path: '/api/upgrade', body: '{"workers_only": "yes"}' })
  assert.equal(bad.status, 400, bad.body)
  assert.equal(echoOf(await request(cli.port)).backend, 'b')
})
