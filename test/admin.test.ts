// The operator's API: token, /metrics as Prometheus text, drain and undrain, the event stream, and (through the
// real CLI with two workers) status and metrics that cover every worker and health checks run once per pool.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { backend, client, head, parsePrometheus, startEdge, sum, until, type TestBackend } from './edge-util.js'

const MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url))

function pool (name: string, backends: readonly TestBackend[], extra = ''): string {
  return `
[[routes]]
match = { path_prefix = "/${name}" }
pool = "${name}"

[pools.${name}]
backends = [${backends.map(b => `"${b.url}"`).join(', ')}]
${extra}
`
}

async function tmp (t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'edge-admin-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

function run (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  return new Promise(resolve => child.on('exit', code => { resolve({ code, stdout, stderr }) }))
}

test('the admin token: without it 401, with it 200; off loopback without a token the config is refused', async t => {
  const b = await backend(t)
  const te = await startEdge(t, head('token = "s3cret-admin"') + pool('api', [b]))
  const get = client(t)
  for (const path of ['/', '/healthz', '/api/status', '/metrics', '/api/events']) {
    const r = await get(`${te.adminUrl}${path}`)
    assert.equal(r.status, 401, `${path} without a token`)
    assert.equal(r.headers['www-authenticate'], 'Bearer')
    assert.equal((await get(`${te.adminUrl}${path}`, { headers: { authorization: 'Bearer wrong-token!' } })).status, 401)
    assert.equal((await get(`${te.adminUrl}${path}`, { headers: { authorization: 's3cret-admin' } })).status, 401, 'the Bearer scheme is required')
  }
  const r = await get(`${te.adminUrl}/healthz`, { headers: { authorization: 'Bearer s3cret-admin' } })
  assert.equal(r.status, 200)
  assert.equal(JSON.parse(r.body).status, 'ok')
  const post = await get(`${te.adminUrl}/api/pools/api/backends/${encodeURIComponent(b.url)}/drain`, { method: 'POST' })
  assert.equal(post.status, 401)
  assert.equal(te.edge.store.findMember('api', b.url)?.draining, false, 'a refused request changes nothing')

  // A browser cannot send the header: /?token=T once trades the token for a SameSite=Strict session cookie
  // (a random value, not the token: test/admin-hostile.test.ts).
  assert.equal((await get(`${te.adminUrl}/?token=wrong`)).status, 401)
  const login = await get(`${te.adminUrl}/?token=s3cret-admin`)
  assert.equal(login.status, 303)
  assert.equal(login.headers.location, './')
  const setCookie = String(login.headers['set-cookie'])
  assert.match(setCookie, /^edge_admin=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/)
  const cookie = setCookie.split(';')[0] as string
  assert.equal((await get(`${te.adminUrl}/api/status`, { headers: { cookie } })).status, 200)
  assert.equal((await get(`${te.adminUrl}/`, { headers: { cookie: `other=1; ${cookie}` } })).status, 200)
  assert.equal((await get(`${te.adminUrl}/api/status`, { headers: { cookie: 'edge_admin=s3cret-admiN' } })).status, 401)
  assert.equal((await get(`${te.adminUrl}/api/status`, { headers: { cookie: 'edge_admin=%E0%A4%A' } })).status, 401)

  const dir = await tmp(t)
  const open = join(dir, 'open.toml')
  await writeFile(open, `[admin]\nlisten = "0.0.0.0:0"\n\n[[listeners]]\nname = "web"\nlisten = "127.0.0.1:0"\n`)
  const refused = await run(['check', '--config', open])
  assert.equal(refused.code, 2)
  assert.match(refused.stderr, /admin\.listen.*not loopback: set \[admin\] token/s)
  const guarded = join(dir, 'guarded.toml')
  await writeFile(guarded, `[admin]\nlisten = "0.0.0.0:0"\ntoken = "t0ken"\n\n[[listeners]]\nname = "web"\nlisten = "127.0.0.1:0"\n`)
  const accepted = await run(['check', '--config', guarded])
  assert.equal(accepted.code, 0, accepted.stderr)
})

test('/metrics is Prometheus text and counts what was sent', async t => {
  const a = await backend(t)
  const b = await backend(t)
  const te = await startEdge(t, head() + pool('api', [a, b]))
  const get = client(t)
  const N = 25
  for (let i = 0; i < N; i++) assert.equal((await get(`${te.url}/api/${i}`)).status, 200)
  const res = await get(`${te.adminUrl}/metrics`)
  assert.equal(res.status, 200)
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/)
  const { samples, types } = parsePrometheus(res.body)
  assert.equal(types.get('edge_requests_total'), 'counter')
  assert.equal(types.get('edge_upstream_latency_seconds'), 'histogram')
  assert.equal(sum(samples, 'edge_requests_total'), N)
  assert.equal(sum(samples, 'edge_requests_total', { code: '200' }), N)
  assert.equal(sum(samples, 'edge_upstream_latency_seconds_count'), N)
  assert.equal(sum(samples, 'edge_upstream_latency_seconds_count', { backend: a.url }), a.hits)
  assert.equal(sum(samples, 'edge_upstream_latency_seconds_bucket', { le: '+Inf' }), N)
  assert.ok(sum(samples, 'edge_upstream_latency_seconds_sum') > 0)
  assert.equal(sum(samples, 'edge_backend_up', { pool: 'api' }), 2)
  // Histogram buckets are cumulative.
  const buckets = samples.filter(s => s.name === 'edge_upstream_latency_seconds_bucket' && s.labels.backend === a.url)
  for (let i = 1; i < buckets.length; i++) assert.ok((buckets[i] as { value: number }).value >= (buckets[i - 1] as { value: number }).value)
})

test('drain: a drained backend gets no new requests; undrain brings it back', async t => {
  const a = await backend(t)
  const b = await backend(t)
  const te = await startEdge(t, head() + pool('api', [a, b]))
  const get = client(t)
  const enc = encodeURIComponent(a.url)
  const r = await get(`${te.adminUrl}/api/pools/api/backends/${enc}/drain`, { method: 'POST' })
  assert.equal(r.status, 200)
  assert.deepEqual(JSON.parse(r.body), { ok: true, message: `draining ${a.url} in pool api` })
  let before = a.hits
  for (let i = 0; i < 10; i++) assert.equal((await get(`${te.url}/api/x`)).status, 200)
  assert.equal(a.hits - before, 0)
  const st = JSON.parse((await get(`${te.adminUrl}/api/status`)).body) as { pools: { backends: { url: string, draining: boolean, available: boolean }[] }[] }
  const row = st.pools[0]?.backends.find(x => x.url === a.url)
  assert.deepEqual([row?.draining, row?.available], [true, false])
  assert.ok(te.events.recent().some(e => e.type === 'drain' && e.backend === a.url))

  assert.equal((await get(`${te.adminUrl}/api/pools/api/backends/${enc}/undrain`, { method: 'POST' })).status, 200)
  before = a.hits
  for (let i = 0; i < 10; i++) await get(`${te.url}/api/x`)
  assert.equal(a.hits - before, 5)
  assert.equal((await get(`${te.adminUrl}/api/pools/api/backends/${encodeURIComponent('http://127.0.0.1:1')}/drain`, { method: 'POST' })).status, 404)
  assert.equal((await get(`${te.adminUrl}/api/pools/nope/backends/${enc}/drain`, { method: 'POST' })).status, 404)
  assert.equal((await get(`${te.adminUrl}/api/pools/api/backends/${enc}/drain`)).status, 405)
})

test('/api/events streams events as SSE, including a health change', async t => {
  const a = await backend(t)
  const te = await startEdge(t, head() + pool('api', [a], `
[pools.api.health]
path = "/healthz"
interval = "100ms"
timeout = "50ms"
fall = 2
`))
  await until(() => a.checks >= 1, 2000, 'first check')
  const req = http.get(`${te.adminUrl}/api/events`)
  t.after(() => { req.destroy() })
  const [res] = await once(req, 'response') as [http.IncomingMessage]
  assert.equal(res.statusCode, 200)
  assert.equal(res.headers['content-type'], 'text/event-stream')
  res.setEncoding('utf8')
  const seen: Array<Record<string, unknown>> = []
  let buf = ''
  res.on('data', (c: string) => {
    buf += c
    let i
    while ((i = buf.indexOf('\n\n')) !== -1) {
      const frame = buf.slice(0, i)
      buf = buf.slice(i + 2)
      for (const line of frame.split('\n')) if (line.startsWith('data: ')) seen.push(JSON.parse(line.slice(6)) as Record<string, unknown>)
    }
  })
  a.healthStatus = 500
  await until(() => seen.some(e => e.type === 'unhealthy'), 3000, 'an unhealthy event on the stream')
  const e = seen.find(x => x.type === 'unhealthy') as Record<string, unknown>
  assert.equal(e.backend, a.url)
  assert.equal(e.pool, 'api')
  assert.match(String(e.message), /up -> down/)
  assert.ok(!Number.isNaN(Date.parse(String(e.time))))
  a.healthStatus = 200
  await until(() => seen.some(x => x.type === 'healthy' && x.from === 'down'), 3000, 'a healthy event on the stream')
  // Events pushed by the edge itself (not only health) reach the stream too.
  te.events.push('reload', 'test event')
  await until(() => seen.some(x => x.type === 'reload' && x.message === 'test event'), 1000, 'a pushed event')
})

interface Cli { child: ChildProcess, admin: string, stderr: () => string }

async function startCli (t: TestContext, file: string): Promise<Cli> {
  const child = spawn(process.execPath, [MAIN, '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => { stderr += c.toString() })
  t.after(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await once(child, 'exit')
    clearTimeout(timer)
  })
  await until(() => /all workers ready/.test(stderr) && /admin listening/.test(stderr), 10_000, `CLI start (stderr so far: ${stderr})`)
  const line = stderr.split('\n').find(l => l.includes('admin listening')) as string
  const address = (JSON.parse(line) as { address: string }).address
  return { child, admin: `http://${address}`, stderr: () => stderr }
}

interface Status {
  pids: number[]
  workers: number
  listeners: { address: string }[]
  pools: { name: string, backends: { url: string, requests: number, healthy: boolean }[] }[]
}

test('two workers (the real CLI): status and metrics sum over both; checks run once per pool; verdicts reach both', async t => {
  const a = await backend(t)
  const b = await backend(t)
  const dir = await tmp(t)
  const file = join(dir, 'proxy.toml')
  const INTERVAL = 200
  await writeFile(file, `
[server]
workers = 2
shutdown_timeout = "1s"

[log]
access = "off"
level = "info"

[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "web"
listen = "127.0.0.1:0"
${pool('api', [a, b], `
[pools.api.health]
path = "/healthz"
interval = "${INTERVAL}ms"
timeout = "100ms"
fall = 2
rise = 1
`)}`)
  const cli = await startCli(t, file)
  const get = client(t, { keepAlive: false })
  const status = async (): Promise<Status> => JSON.parse((await get(`${cli.admin}/api/status`)).body) as Status
  const st0 = await status()
  assert.equal(st0.workers, 2)
  assert.equal(st0.pids.length, 2)
  assert.equal(new Set(st0.pids).size, 2)
  const url = `http://${st0.listeners[0]?.address as string}`

  // A fresh connection per request: the cluster spreads connections over both workers.
  const N = 40
  for (let i = 0; i < N; i++) assert.equal((await get(`${url}/api/${i}`)).status, 200)
  const st = await status()
  const requests = st.pools[0]?.backends.reduce((n, x) => n + x.requests, 0)
  assert.equal(requests, N, 'status sums the requests of both workers')
  assert.equal(a.hits + b.hits, N)
  // Each worker keeps its own keep-alive connection to a backend: two connections mean both workers served.
  assert.ok(a.peers.size >= 2 && b.peers.size >= 2, `connections from the edge: ${a.peers.size} to a, ${b.peers.size} to b`)
  const { samples } = parsePrometheus((await get(`${cli.admin}/metrics`)).body)
  assert.equal(sum(samples, 'edge_requests_total'), N, 'metrics sum over both workers')
  assert.equal(sum(samples, 'edge_upstream_latency_seconds_count'), N)

  // Health checks: one checker per pool (in the primary), not one per worker.
  const c0 = a.checks
  await sleep(10 * INTERVAL)
  const checks = a.checks - c0
  assert.ok(checks >= 7 && checks <= 13, `${checks} checks of one backend in ${10 * INTERVAL} ms at interval ${INTERVAL} ms (two checkers would make about 20)`)

  // A verdict from the primary reaches both workers: no request reaches the unhealthy backend.
  a.healthStatus = 503
  await until(() => cli.stderr().includes('"to":"down"'), 3000, 'a marked down')
  await sleep(50)
  const before = a.hits
  for (let i = 0; i < 20; i++) assert.equal((await get(`${url}/api/x`)).status, 200)
  assert.equal(a.hits, before, 'neither worker sends to the unhealthy backend')
  const down = (await status()).pools[0]?.backends.find(x => x.url === a.url)
  assert.equal(down?.healthy, false)

  // Drain through the primary reaches both workers as well.
  a.healthStatus = 200
  const encB = encodeURIComponent(b.url)
  assert.equal((await get(`${cli.admin}/api/pools/api/backends/${encB}/drain`, { method: 'POST' })).status, 200)
  await until(() => cli.stderr().includes('"from":"down","to":"up"'), 3000, 'a back up')
  await sleep(50)
  const bBefore = b.hits
  for (let i = 0; i < 20; i++) assert.equal((await get(`${url}/api/x`)).status, 200)
  assert.equal(b.hits, bBefore, 'neither worker sends to the drained backend')

  // The status page's history: the primary samples both workers' numbers every 5 s.
  type History = { pools: { name: string, series: { rps: number[] }, members: { url: string, series: { p50: (number | null)[] } }[] }[] }
  let history: History | undefined
  for (let i = 0; i < 40; i++) {
    history = JSON.parse((await get(`${cli.admin}/api/history`)).body) as History
    if (history.pools.find(p => p.name === 'api')?.series.rps.some(r => r > 0) === true) break
    await sleep(200)
  }
  assert.ok(history?.pools.find(p => p.name === 'api')?.series.rps.some(r => r > 0), 'a history sample with traffic')
  const member = history?.pools.find(p => p.name === 'api')?.members.find(m => m.url === a.url)
  assert.ok(member?.series.p50.some(v => v !== null && v > 0), 'member latency from the workers in the history')

  cli.child.kill('SIGTERM')
  const [code] = await once(cli.child, 'exit')
  assert.equal(code, 0)
})

test('/metrics follows Prometheus conventions: counters end in _total; process, request duration, bytes, connections', async t => {
  const a = await backend(t)
  const te = await startEdge(t, head() + pool('api', [a]) + `
[[routes]]
name = "hello"
match = { path_prefix = "/hello" }
respond = { status = 200, body = "hello, edge\\n" }
`)
  const get = client(t) // keep-alive: its connection stays open on the listener
  for (let i = 0; i < 5; i++) assert.equal((await get(`${te.url}/api/${i}`, { method: 'POST', body: 'x'.repeat(100) })).status, 200)
  for (let i = 0; i < 3; i++) assert.equal((await get(`${te.url}/hello`)).body, 'hello, edge\n')
  assert.equal((await get(`${te.url}/nowhere`)).status, 404)
  const text = (await get(`${te.adminUrl}/metrics`)).body
  const { samples, types } = parsePrometheus(text)
  for (const [name, type] of types) {
    if (type === 'counter') assert.match(name, /_total$/, `counter ${name} is named *_total`)
  }
  // prom-client's default collectors.
  assert.ok(samples.some(s => s.name === 'process_cpu_user_seconds_total'), 'process_* metrics')
  assert.ok(samples.some(s => s.name.startsWith('nodejs_heap_size')), 'nodejs_* metrics')
  // The client's view: duration by route and status class, for proxied and edge-made answers alike.
  assert.equal(types.get('edge_request_duration_seconds'), 'histogram')
  const apiRoute = samples.find(s => s.name === 'edge_requests_total' && s.labels.code === '200' && s.labels.route !== 'hello')?.labels.route
  assert.equal(sum(samples, 'edge_request_duration_seconds_count', { route: apiRoute ?? '', code_class: '2xx' }), 5)
  assert.equal(sum(samples, 'edge_request_duration_seconds_count', { route: 'hello', code_class: '2xx' }), 3)
  assert.equal(sum(samples, 'edge_request_duration_seconds_count', { code_class: '4xx' }), 1)
  assert.ok(sum(samples, 'edge_request_duration_seconds_sum') > 0)
  // Bytes each way: 5 bodies of 100 in; the edge's own answers count their bytes out too (head and body).
  assert.equal(sum(samples, 'edge_received_bytes_total', { route: apiRoute ?? '' }), 500)
  assert.ok(sum(samples, 'edge_sent_bytes_total', { route: 'hello' }) > 3 * 'hello, edge\n'.length, 'edge answers count their bytes')
  assert.ok(sum(samples, 'edge_sent_bytes_total', { route: apiRoute ?? '' }) > 0)
  // The keep-alive connection of `get` is open on the listener.
  assert.ok(sum(samples, 'edge_listener_connections', { listener: 'web' }) >= 1)
})

test('a backend URL left unencoded in a drain path gets 400 saying how to encode it', async t => {
  const a = await backend(t)
  const te = await startEdge(t, head() + pool('api', [a]))
  const get = client(t)
  const r = await get(`${te.adminUrl}/api/pools/api/backends/${a.url}/drain`, { method: 'POST' })
  assert.equal(r.status, 400, r.body)
  const body = JSON.parse(r.body) as { ok: boolean, error: string }
  assert.equal(body.ok, false)
  assert.ok(body.error.includes('must be URL-encoded'), body.error)
  assert.ok(body.error.includes(`/api/pools/api/backends/${encodeURIComponent(a.url)}/drain`), body.error)
  // The encoded form it names works.
  assert.equal((await get(`${te.adminUrl}/api/pools/api/backends/${encodeURIComponent(a.url)}/drain`, { method: 'POST' })).status, 200)
})
