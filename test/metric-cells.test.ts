import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AggregatorRegistry, Registry } from 'prom-client'
import { CellCounter, CellHistogram } from '../proxy/ops/metric-cells.js'

test('cell histogram: inclusive upper bounds, cumulative buckets, sum and count in Prometheus text', async () => {
  const registry = new Registry()
  const h = new CellHistogram('lat_seconds', 'latency', [0.01, 0.1, 1], registry)
  const a = h.cell({ pool: 'p', backend: 'http://a' })
  for (const v of [0.005, 0.01, 0.05, 0.5, 2]) h.observe(a, v)
  assert.equal(h.cell({ pool: 'p', backend: 'http://a' }), a, 'one cell per label set')
  const text = await registry.metrics()
  assert.match(text, /^# TYPE lat_seconds histogram$/m)
  const lines = text.split('\n').filter(l => l.startsWith('lat_seconds'))
  assert.deepEqual(lines, [
    'lat_seconds_bucket{le="0.01",pool="p",backend="http://a"} 2',
    'lat_seconds_bucket{le="0.1",pool="p",backend="http://a"} 3',
    'lat_seconds_bucket{le="1",pool="p",backend="http://a"} 4',
    'lat_seconds_bucket{le="+Inf",pool="p",backend="http://a"} 5',
    'lat_seconds_sum{pool="p",backend="http://a"} 2.565',
    'lat_seconds_count{pool="p",backend="http://a"} 5',
  ])
})

test('cells: counter and histogram values summed over processes by the cluster aggregator', async () => {
  const regs = [new Registry(), new Registry()]
  for (const [i, r] of regs.entries()) {
    const c = new CellCounter('reqs_total', 'requests', r)
    c.cell({ route: 'r', code: '200' }).value += 10 * (i + 1)
    c.cell({ route: 'r', code: '502' }).value += 1
    const h = new CellHistogram('lat_seconds', 'latency', [0.1], r)
    const cell = h.cell({ pool: 'p' })
    h.observe(cell, 0.05)
    h.observe(cell, 0.5 * (i + 1))
  }
  const merged = AggregatorRegistry.aggregate(await Promise.all(regs.map(r => r.getMetricsAsJSON())))
  const text = await merged.metrics()
  assert.match(text, /^# TYPE reqs_total counter$/m)
  assert.match(text, /^reqs_total\{route="r",code="200"\} 30$/m)
  assert.match(text, /^reqs_total\{route="r",code="502"\} 2$/m)
  assert.match(text, /^lat_seconds_bucket\{le="0.1",pool="p"\} 2$/m)
  assert.match(text, /^lat_seconds_bucket\{le="\+Inf",pool="p"\} 4$/m)
  assert.match(text, /^lat_seconds_sum\{pool="p"\} 1.6$/m)
  assert.match(text, /^lat_seconds_count\{pool="p"\} 4$/m)
})
