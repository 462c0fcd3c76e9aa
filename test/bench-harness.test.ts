// The bench harness's own logic: parsing wrk, medians and ratios, the generated edge-proxy config, and the
// /proc sampling that attributes CPU to a process tree. (The bench itself is run by hand: `npm run bench`.)
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { parseWrk } from '../bench/load/wrk.js'
import { median, summarize, type Cell, type RoundResult } from '../bench/report.js'
import { edgeConfig } from '../bench/targets.js'
import { TreeSampler, processTree } from '../bench/proc-stat.js'
import { parseConfigText } from '../config/load.js'

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
  assert.equal(direct?.proxyCpuUsPerReq, undefined)
  assert.equal(direct?.loadgenCpuPct, 50)
  assert.equal(nginx?.vsDirect, 0.5)
  assert.equal(edge?.vsNginx, 0.5)
  assert.equal(edge?.vsDirect, 0.25)
  assert.equal(edge?.proxyCpuUsPerReq, 4000) // 400 ms over 100 requests
  assert.equal(edge?.proxyCpuPct, 20)
  assert.equal(edge?.proxyPeakRssMb, 2)
})

test('the generated edge-proxy config is valid, has the access log off and the workers asked for', () => {
  const one = parseConfigText(edgeConfig(18080, 19090, 1))
  assert.equal(one.server.workers, 1)
  assert.equal(one.log.access, 'off')
  assert.equal(one.admin.address.port, 0)
  const auto = parseConfigText(edgeConfig(18080, 19090, 'auto'))
  assert.ok(auto.server.workers >= 1)
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
