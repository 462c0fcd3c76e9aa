// Scaling end to end with real processes and short intervals: a shared bottleneck ends with scale.saturated before
// max; the cost cap ends growth with scale.capped, POSTed to the notify URL and mailed to a loopback SMTP sink;
// a webhook provider receives the events; target = "auto" learns a target from the baseline and scales when load
// doubles. Each prints its scale timeline.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import type { ScaleEvent } from '../health/scaler.js'
import { LEARN_MARGIN } from '../health/scaler.js'
import { freePort } from './helpers.js'
import { backendScript, head, load, receiver, smtpSink, startScaleEdge, timeline, until } from './scale-util.js'

/** One request at a time for everyone, `ms` each: the bottleneck behind every backend. */
async function serialServer (t: TestContext, ms: number): Promise<string> {
  let queue = Promise.resolve()
  const server = http.createServer((req, res) => {
    req.resume()
    if (req.url === '/healthz') { res.end('ok'); return }
    queue = queue.then(() => new Promise(resolve => setTimeout(() => { res.end('port 0'); resolve() }, ms)))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => { resolve() }) }))
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`
}

const fast = `interval = "200ms"
window = "1s"
tolerance = 0.1
scale_down_stabilization = "5s"`

test('a shared bottleneck: more backends stop helping and it ends with scale.saturated before max', async (t) => {
  const lock = await serialServer(t, 20)
  const command = await backendScript(t, 'proxyTo', 0, `${lock}/`)
  const lo = await freePort()
  const e = await startScaleEdge(t, `${head()}
[pools.app]
balance = "least_conn"

[pools.app.scale]
target = "50ms"
${fast}
min = 1
max = 8
provider = "process"
command = ${JSON.stringify(command)}
ports = "${lo}-${lo + 20}"
`)
  await until('the first backend', () => e.scaling().current === 1)
  // Four at a time through one lock of 20 ms: ~80 ms whatever the number of backends, over the 50 ms target.
  const l = load(t, e.url, 4)
  await until('scale.saturated', () => e.scaling().events.some(x => x.kind === 'scale.saturated'), 25_000)
  // It holds there at the same load.
  await new Promise(resolve => setTimeout(resolve, 1500))
  await l.stop()
  const s = e.scaling()
  t.diagnostic(`timeline: ${timeline(s).join(' | ')}`)
  const sat = s.events.find(x => x.kind === 'scale.saturated')!
  t.diagnostic(`saturated: ${sat.reason}`)
  assert.ok(sat.to < 8, `saturated at ${sat.to}`)
  assert.ok(s.events.every(x => x.to < 8))
  assert.equal(s.saturated, true)
  assert.ok(e.control.events.recent().some(x => x.type === 'scale.saturated'))
})

test('the cost cap stops growth with scale.capped, POSTed to the notify URL and mailed', async (t) => {
  const smtp = await smtpSink(t)
  const hook = await receiver(t)
  const command = await backendScript(t, 'serial', 20)
  const lo = await freePort()
  const e = await startScaleEdge(t, `${head()}
[alerts]
smtp = "smtp://127.0.0.1:${smtp.port}"

[pools.app]
balance = "least_conn"

[pools.app.scale]
target = "25ms"
${fast}
min = 1
max = 8
cost_per_backend_hour = 0.05
max_cost_per_hour = 0.10
provider = "process"
command = ${JSON.stringify(command)}
ports = "${lo}-${lo + 20}"
notify = ["${hook.url}", "mailto:budget@example.com"]
`)
  await until('the first backend', () => e.scaling().current === 1)
  const l = load(t, e.url, 6)
  await until('scale.capped', () => e.scaling().events.some(x => x.kind === 'scale.capped'), 20_000)
  await until('the POST and the mail', () => hook.bodies.length >= 1 && smtp.mails.length >= 1, 10_000)
  await new Promise(resolve => setTimeout(resolve, 1500))
  await l.stop()
  const s = e.scaling()
  t.diagnostic(`timeline: ${timeline(s).join(' | ')}`)
  assert.ok(s.events.every(x => x.to <= 2), 'grew past the cap')
  const capped = hook.bodies.find(b => (b as ScaleEvent).kind === 'scale.capped') as ScaleEvent
  assert.equal(capped.pool, 'app')
  assert.equal(capped.maxCostPerHour, 0.1)
  assert.equal(capped.costPerHour, 0.1)
  const mail = smtp.mails[0]!
  assert.match(mail.to.join(), /budget@example\.com/)
  assert.match(mail.data, /pool: app/)
  assert.match(mail.data, /spend: 0\.1 per hour/)
  assert.match(mail.data, /cap: 0\.1 per hour/)
  const metrics = await fetch(`http://127.0.0.1:${e.control.adminPort}/metrics`).then(r => r.text())
  assert.match(metrics, /edge_scale_events_total\{pool="app",kind="scale.capped"\} 1/)
})

test('provider = "webhook": a pool of fixed backends posts its scale events', async (t) => {
  const hook = await receiver(t)
  const slow = await serialServer(t, 20)
  const e = await startScaleEdge(t, `${head()}
[pools.app]
backends = ["${slow}"]

[pools.app.scale]
target = "30ms"
${fast}
min = 1
max = 4
provider = "webhook"
url = "${hook.url}"
`)
  const l = load(t, e.url, 4)
  await until('a scale.up POSTed', () => hook.bodies.some(b => (b as ScaleEvent).kind === 'scale.up'), 15_000)
  await l.stop()
  const up = hook.bodies.find(b => (b as ScaleEvent).kind === 'scale.up') as ScaleEvent
  t.diagnostic(`webhook got: ${JSON.stringify(up)}`)
  assert.equal(up.pool, 'app')
  assert.equal(up.from, 1)
  assert.ok(up.to >= 2)
  for (const k of ['time', 'reason', 'observed', 'target', 'rps']) assert.ok(k in up, k)
  assert.ok(!hook.bodies.some(b => (b as ScaleEvent).kind === 'scale.hold'))
})

test('target = "auto" learns a target within 20% of the measured baseline, then scales when load doubles', async (t) => {
  const command = await backendScript(t, 'serial', 20)
  const lo = await freePort()
  const e = await startScaleEdge(t, `${head()}
[pools.app]
balance = "least_conn"

[pools.app.scale]
target = "auto"
${fast}
min = 1
max = 3
provider = "process"
command = ${JSON.stringify(command)}
ports = "${lo}-${lo + 20}"
`)
  await until('the first backend', () => e.scaling().current === 1)
  const base = load(t, e.url, 1)
  await until('a learned target', () => e.scaling().targetLearned === true, 15_000)
  const learned = e.scaling()
  const lat = [...base.latencies].sort((a, b) => a - b)
  const clientP95 = lat[Math.floor(lat.length * 0.95)]!
  const learnedBaseline = learned.target / LEARN_MARGIN
  t.diagnostic(`learned ${learned.target}ms (${learned.learnedFrom}); client-measured baseline p95 ${clientP95.toFixed(1)}ms`)
  assert.ok(Math.abs(learnedBaseline / clientP95 - 1) <= 0.2, `baseline ${learnedBaseline} vs measured ${clientP95}`)
  const more = load(t, e.url, 1) // load doubles
  await until('a scale-up', () => e.scaling().events.some(x => x.kind === 'scale.up' && x.from === 1), 15_000)
  await base.stop()
  await more.stop()
  t.diagnostic(`timeline: ${timeline(e.scaling()).join(' | ')}`)
})
