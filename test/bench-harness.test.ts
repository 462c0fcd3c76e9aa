// The bench harness's own logic: parsing wrk, medians and ratios, the soak verdict and table, the generated
// edge-proxy configs (plain, https, tunnel), the scenario list and which scenarios a run selects, the /proc sampling that attributes CPU to a process tree, and that the https and
// tunnel targets start and answer. (The bench itself is run by hand: `npm run bench`.)
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseWrk } from '../bench/load/wrk.js'
import { peerTargets, markdown, median, soakVerdict, summarize, targetsMarkdown, type Cell, type RoundResult, type SoakResult } from '../bench/report.js'
import { allTargets, edgeConfig, tunnelEdgeConfig, type TargetContext, type TlsFiles } from '../bench/targets.js'
import { SCENARIOS, TUNNEL_NAME, selected, toolFor } from '../bench/scenarios.js'
import { TreeSampler, processTree } from '../bench/proc-stat.js'
import { Children, freePorts, waitForHttp } from '../bench/procs.js'
import { parseConfigText } from '../config/load.js'
import { createLocalPki } from '../proxy/tls/demo-certs.js'

const WRK_OUTPUT = `Running 1s test @ http://127.0.0.1:40915/100b
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.43ms    1.70ms  14.09ms   89.05%
    Req/Sec     8.28k     3.82k   12.45k    50.00%
  Latency Distribution
     50%  792.00us
     75%    1.51ms
     90%    3.37ms
     99%    8.53ms
  8254 requests in 1.00s, 1.75MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:   8238.50
Transfer/sec:      1.74MB
`

test('parseWrk reads requests, rate, percentiles in ms whatever the unit, errors and non-2xx', () => {
  const r = parseWrk(WRK_OUTPUT)
  assert.equal(r.requests, 8254)
  assert.equal(r.durationS, 1)
  assert.equal(r.rps, 8238.5)
  assert.equal(r.p50, 0.792)
  assert.equal(r.p99, 8.53)
  assert.equal(r.errors, 5)
  assert.equal(r.non2xx, 7)
  assert.equal(r.bytes, Math.round(1.75 * 2 ** 20)) // wrk's "MB" is binary
  assert.throws(() => parseWrk('unable to connect to 127.0.0.1:1 Connection refused'), /cannot parse wrk output/)
})

function round (rps: number, proxyCpuMs: number | undefined): RoundResult {
  return { tool: 't', requests: rps * 2, durationS: 2, rps, p50: 1, p99: 2, errors: 0, non2xx: 0, bytes: rps * 2 * 1000, cpuMs: 1000, round: 1, proxyCpuMs, proxyPeakRssKb: proxyCpuMs === undefined ? undefined : 2048, backendCpuMs: 500 }
}

test('summaries take medians over rounds and ratios to direct and nginx of the same scenario', () => {
  assert.equal(median([3, 1, 2]), 2)
  assert.equal(median([4, 1, 2, 3]), 2.5)
  const cells: Cell[] = [
    { scenario: 's', target: 'direct', rounds: [round(100, undefined), round(300, undefined), round(200, undefined)] },
    { scenario: 's', target: 'nginx', rounds: [round(100, 200)] },
    { scenario: 's', target: 'edge-proxy', rounds: [round(50, 400)] },
    { scenario: 'other', target: 'direct', rounds: [round(1000, undefined)] },
  ]
  summarize(cells)
  const [direct, nginx, edge] = cells.map(c => c.summary)
  assert.equal(direct?.rps, 200)
  assert.equal(direct?.mbps, 0.2) // 1000 bytes per request
  assert.equal(direct?.proxyCpuUsPerReq, undefined)
  assert.equal(direct?.loadgenCpuPct, 50)
  assert.equal(nginx?.vsDirect, 0.5)
  assert.equal(edge?.vsNginx, 0.5)
  assert.equal(edge?.vsDirect, 0.25)
  assert.equal(edge?.proxyCpuUsPerReq, 4000) // 400 ms over 100 requests
  assert.equal(edge?.proxyCpuPct, 20)
  assert.equal(edge?.proxyPeakRssMb, 2)
})

test('targets against peers are checked from the run: ratios, CPU, p99, workers, idle memory; unmeasured ones say so', () => {
  const cell = (scenario: string, target: string, rps: number, cpuMs: number | undefined): Cell => ({ scenario, target, rounds: [round(rps, cpuMs)] })
  const cells: Cell[] = [
    cell('wrk-100b-c50', 'direct', 80_000, undefined),
    cell('wrk-100b-c50', 'edge-proxy', 19_700, 1000), // 2 s rounds: 39,400 requests
    cell('wrk-100b-c50', 'edge-proxy-auto', 20_000, 1200),
    cell('wrk-100b-c50', 'http-proxy-3', 10_000, 1000),
    cell('wrk-100b-c50', 'undici-min', 21_000, 900),
    cell('wrk-100b-c50', 'nginx', 30_000, 500),
  ]
  summarize(cells)
  const checks = peerTargets(cells, [{ target: 'edge-proxy', connections: 3000, opened: 3000, failed: 0, stillOpen: 3000, rssBeforeKb: 0, rssAfterKb: 0, bytesPerConnection: 9 * 1024, slopeBytesPerConnection: 9 * 1024 }], [])
  const verdict = (prefix: string): boolean | undefined => checks.find(c => c.target.includes(prefix))?.met
  assert.equal(verdict('2.0x http-proxy-3'), false) // 1.97x is not 2.0x
  assert.equal(verdict('<= undici-min'), false) // 1000 ms / 39,400 requests vs 900 / 42,000: 25.4 vs 21.4 µs
  assert.equal(verdict('p99'), true)
  assert.equal(verdict('0.6x nginx'), true) // 0.66x
  assert.equal(verdict('wrk-100b-c50: workers'), true)
  assert.equal(verdict('wrk-16k-c50: workers'), undefined)
  assert.equal(verdict('12 KiB'), true)
  assert.equal(verdict('soak'), undefined)
  const md = targetsMarkdown(checks)
  assert.match(md, /\| wrk-100b-c50: edge-proxy req\/s >= 2\.0x http-proxy-3 \| 1\.97x \(19,700 vs 10,000\) \| NOT met \|/)
  assert.match(md, /not measured/)
  assert.equal(targetsMarkdown(peerTargets([], [], [])), '')
})

test('the soak verdict is "flat" within the tolerance of round 1, else grew or shrank; missing rounds are incomplete', () => {
  assert.deepEqual(soakVerdict([100_000, 104_000, 110_000], 3, 10), { changePct: 10, verdict: 'flat' })
  assert.deepEqual(soakVerdict([100_000, 90_000, 90_000], 3, 10), { changePct: -10, verdict: 'flat' })
  const grew = soakVerdict([100_000, 105_000, 110_001], 3, 10)
  assert.equal(grew.verdict, 'grew')
  assert.ok(grew.changePct > 10 && grew.changePct < 10.01)
  assert.equal(soakVerdict([100_000, 50_000, 85_000], 3, 10).verdict, 'shrank')
  // Round 1 is the baseline, not the RSS before it; a spike in round 2 alone does not decide.
  assert.equal(soakVerdict([100_000, 150_000, 101_000], 3, 10).verdict, 'flat')
  assert.equal(soakVerdict([100_000, 200_000], 3, 10).verdict, 'incomplete') // a round failed
  assert.equal(soakVerdict([0, 0, 0], 3, 10).verdict, 'incomplete') // the process was gone
  assert.ok(Number.isNaN(soakVerdict([], 3, 10).changePct))
})

test('the soak table shows RSS after each round, the change and the verdict', () => {
  const soakRound = (n: number, rssAfterKb: number): SoakResult['rounds'][number] => ({ ...round(1000, 100), round: n, rssAfterKb, proxyPeakRssKb: rssAfterKb + 1024 })
  const results: SoakResult[] = [
    { scenario: 'soak', target: 'edge-proxy', roundS: 60, settleMs: 2000, tolerancePct: 10, rssBeforeKb: 51_200, rounds: [soakRound(1, 102_400), soakRound(2, 104_448), soakRound(3, 107_520)], changePct: 5, verdict: 'flat' },
    { scenario: 'soak', target: 'nginx', roundS: 60, settleMs: 2000, tolerancePct: 10, rssBeforeKb: 10_240, rounds: [soakRound(1, 10_240)], changePct: Number.NaN, verdict: 'incomplete', error: 'wrk failed | boom' },
  ]
  const soak = SCENARIOS.find(s => s.name === 'soak')
  assert.ok(soak !== undefined)
  const text = markdown([soak], [], [], [], results)
  assert.match(text, /^### soak: .* \[t\]$/m) // the tool the rounds ran with
  assert.match(text, /^\| edge-proxy \| 1,000 \/ 1,000 \/ 1,000 \| 0 \| 50\.0 \| 100\.0 \/ 102\.0 \/ 105\.0 \| 106\.0 \| \+5\.0 % \| flat \|$/m)
  assert.match(text, /^\| nginx \| 1,000 \| 0 \| 10\.0 \| 10\.0 \| 11\.0 \| – \| incomplete: wrk failed \/ boom \|$/m)
})

test('soak is opt-in: the default run leaves it out, BENCH_SCENARIOS=soak selects it, with autocannon when wrk is missing', () => {
  const soak = SCENARIOS.filter(s => s.soak !== undefined)
  assert.deepEqual(soak.map(s => s.name), ['soak'])
  const s = soak[0] as (typeof soak)[number]
  assert.deepEqual(s.soak, { rounds: 3, tolerancePct: 10 })
  assert.equal(selected(s, undefined), false)
  assert.equal(selected(s, new Set(['soak'])), true)
  assert.equal(selected(s, new Set(['100b-c50'])), false)
  assert.ok(SCENARIOS.filter(x => x.soak === undefined).every(x => selected(x, undefined)))
  assert.equal(toolFor(s, '/usr/bin/wrk'), 'wrk')
  assert.equal(toolFor(s, undefined), 'autocannon')
  const plainWrk = SCENARIOS.find(x => x.name === 'wrk-100b-c50')
  assert.ok(plainWrk !== undefined)
  assert.equal(toolFor(plainWrk, undefined), undefined) // no fallback: skipped
})

test('the generated edge-proxy config is valid, has the access log off and the workers asked for', () => {
  const one = parseConfigText(edgeConfig(18080, 19090, 1))
  assert.equal(one.server.workers, 1)
  assert.equal(one.log.access, 'off')
  assert.equal(one.admin.address.port, 0)
  const auto = parseConfigText(edgeConfig(18080, 19090, 'auto'))
  assert.ok(auto.server.workers >= 1)
  assert.equal(one.server.http1Server, 'edge')
  assert.equal(parseConfigText(edgeConfig(18080, 19090, 1, undefined, 'node')).server.http1Server, 'node')
})

test('TreeSampler attributes a child process\'s CPU to the tree of its parent', async t => {
  const child = spawn(process.execPath, ['-e', 'const end = Date.now() + 400; while (Date.now() < end); setTimeout(() => {}, 5000)'], { stdio: 'ignore' })
  t.after(() => { child.kill('SIGKILL') })
  const sampler = new TreeSampler(process.pid, 50)
  await new Promise(resolve => setTimeout(resolve, 700))
  assert.ok(processTree(process.pid).includes(child.pid as number))
  const { cpuMs, peakRssKb } = sampler.stop()
  assert.ok(cpuMs >= 200, `tree CPU ${cpuMs} ms should include the child's busy loop`)
  assert.ok(peakRssKb > 10_000, `peak RSS ${peakRssKb} KiB should include both processes`)
})

async function tlsFiles (t: TestContext): Promise<TlsFiles> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-harness-'))
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  const pki = await createLocalPki(['localhost', '127.0.0.1'])
  const files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem'), pem: join(dir, 'both.pem'), servername: 'localhost' }
  await writeFile(files.ca, pki.ca.cert)
  await writeFile(files.cert, pki.leaf.cert)
  await writeFile(files.key, pki.leaf.key)
  await writeFile(files.pem, pki.leaf.cert + pki.leaf.key)
  return files
}

test('the https and tunnel edge-proxy configs are valid', async t => {
  const tls = await tlsFiles(t)
  const https = parseConfigText(edgeConfig(18080, 19090, 1, { port: 18443, cert: tls.cert, key: tls.key }))
  assert.deepEqual(https.listeners.map(l => l.protocol), ['http', 'https'])
  const old = process.env.EDGE_TUNNEL_SECRET
  process.env.EDGE_TUNNEL_SECRET = 'bench-test-secret-0123456789abcdef'
  t.after(() => { if (old === undefined) delete process.env.EDGE_TUNNEL_SECRET; else process.env.EDGE_TUNNEL_SECRET = old })
  const tunnel = parseConfigText(tunnelEdgeConfig(18080, 17000))
  assert.equal(tunnel.server.workers, 1)
  assert.equal(tunnel.log.access, 'off')
  assert.equal(tunnel.tunnel?.address.port, 17000)
  assert.equal(tunnel.pools.get('tunnel')?.tunnel, TUNNEL_NAME)
})

test('scenarios name only known targets; the tunnel and node:http targets run only where named', () => {
  const names = new Set(allTargets().map(x => x.name))
  const dedicated = allTargets().filter(x => x.dedicated === true).map(x => x.name)
  assert.deepEqual(dedicated, ['edge-proxy-node', 'edge-proxy-tunnel', 'edge-proxy-shadow'])
  assert.deepEqual(SCENARIOS.filter(s => s.targets?.includes('edge-proxy-node') === true).map(s => s.name), ['http1-100b-c50'])
  for (const s of SCENARIOS) for (const name of s.targets ?? []) assert.ok(names.has(name), `${s.name} names unknown target ${name}`)
  const tunnel = SCENARIOS.filter(s => s.targets?.includes('edge-proxy-tunnel') === true && s.pending === undefined).map(s => s.name)
  assert.deepEqual(tunnel, ['tunnel-100b-c50', 'tunnel-64m-c1'])
  assert.deepEqual(SCENARIOS.filter(s => s.scheme === 'https' && s.pending === undefined).map(s => s.tool), ['autocannon', 'close'])
  assert.deepEqual(SCENARIOS.filter(s => s.targets?.includes('edge-proxy-shadow') === true).map(s => [s.name, s.pending]), [['shadow-100b-c50', undefined], ['shadow-100b-c50-r1000', undefined]])
})

/** Starts the bench backend (with its https side) and returns the context targets start with. */
async function benchBackend (t: TestContext): Promise<TargetContext> {
  const tls = await tlsFiles(t)
  const children = new Children()
  t.after(async () => { await children.stopAll() })
  const [backendPort, backendHttpsPort] = await freePorts(2) as [number, number]
  const script = new URL('../bench/backend.js', import.meta.url).pathname
  const backend = children.spawn('backend', process.execPath, [script, String(backendPort), String(backendHttpsPort), tls.cert, tls.key])
  await waitForHttp(backendPort, '/100b', backend)
  await waitForHttp(backendHttpsPort, '/100b', backend, 10_000, tls)
  return { children, backendPort, backendHttpsPort, tls, dir: tls.ca.slice(0, tls.ca.lastIndexOf('/')), nproc: 1 }
}

function get (port: number, path: string, host: string): Promise<{ status: number, bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, res => {
      let bytes = 0
      res.on('data', (b: Buffer) => { bytes += b.length })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, bytes }) })
    })
    req.on('error', reject)
    req.end()
  })
}

test('the edge-proxy target serves https too when the bench has TLS files', async t => {
  const ctx = await benchBackend(t)
  const edge = allTargets().find(x => x.name === 'edge-proxy')
  const r = await edge?.start(ctx)
  assert.ok(r?.httpsPort !== undefined)
  // start() already waited for a verified https 200 (see started()); one more, to be explicit.
  await waitForHttp(r.httpsPort, '/100b', undefined, 5000, ctx.tls)
  await r.stop()
})

test('the tunnel target reaches the backend through a tunnel client, measured with the edge', async t => {
  const ctx = await benchBackend(t)
  const target = allTargets().find(x => x.name === 'edge-proxy-tunnel')
  const r = await target?.start(ctx)
  assert.ok(r !== undefined)
  t.after(async () => { await r.stop() })
  assert.equal(r.alsoMeasure?.length, 1)
  assert.ok(processTree(r.alsoMeasure[0] as number).length >= 1, 'the tunnel client is alive')
  assert.deepEqual(await get(r.port, '/100b', TUNNEL_NAME), { status: 200, bytes: 100 })
  assert.deepEqual(await get(r.port, '/64m', TUNNEL_NAME), { status: 200, bytes: 64 * 2 ** 20 })
  // Without the tunnel client the edge has no backend left: proof that the requests went through it.
  const client = r.alsoMeasure[0] as number
  process.kill(client, 'SIGTERM')
  const deadline = Date.now() + 5000
  while (alive(client) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
  assert.ok((await get(r.port, '/100b', TUNNEL_NAME)).status >= 500)
})

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}
