// Latency statistics: bucket precision, percentiles against a known distribution, window roll-off, rates.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { BUCKETS, bucketOf, bucketRange, LatencyStats, WINDOWS } from '../health/latency.js'

const T0 = 1_700_000_000_000

/** Deterministic PRNG (mulberry32) so the distribution is the same on every run. */
function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function exact (sorted: number[], q: number): number {
  return sorted[Math.ceil(q * sorted.length) - 1] as number
}

function near (actual: number, expected: number, rel: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= expected * rel, `${what}: ${actual} not within ${rel * 100}% of ${expected}`)
}

test('every value falls in a bucket whose midpoint is within 3.2% of it', () => {
  for (const us of [0, 1, 15, 16, 17, 31, 32, 33, 100, 999, 1000, 12_345, 987_654, 2 ** 30, 2 ** 31 - 1]) {
    const b = bucketOf(us)
    assert.ok(b >= 0 && b < BUCKETS, `bucket ${b} for ${us}`)
    const [lo, width] = bucketRange(b)
    assert.ok(us >= lo && us < lo + width, `${us} outside [${lo}, ${lo + width})`)
    const mid = lo + (width - 1) / 2
    assert.ok(Math.abs(mid - us) <= Math.max(0.5, us * 0.032), `${us} -> midpoint ${mid}`)
  }
  // Buckets tile the range without gaps or overlaps.
  for (let b = 1; b < BUCKETS; b++) {
    const [lo, w] = bucketRange(b - 1)
    assert.equal(bucketRange(b)[0], lo + w, `gap before bucket ${b}`)
  }
})

test('percentiles of a uniform 1..1000 ms distribution', () => {
  const s = new LatencyStats({ now: T0 })
  for (let v = 1; v <= 1000; v++) s.record(v, T0 + 500)
  const snap = s.snapshot(WINDOWS['10s'], T0 + 900)
  assert.equal(snap.count, 1000)
  near(snap.p50, 500, 0.032, 'p50')
  near(snap.p95, 950, 0.032, 'p95')
  near(snap.p99, 990, 0.032, 'p99')
  assert.equal(snap.max, 1000)
  near(snap.mean, 500.5, 1e-9, 'mean')
})

test('percentiles of a long-tailed (log-normal) distribution match the exact ones within the precision', () => {
  const r = rng(42)
  const s = new LatencyStats({ now: T0 })
  const values: number[] = []
  for (let i = 0; i < 20_000; i++) {
    // Box-Muller: median e^3 ~ 20 ms, a heavy tail into seconds.
    const z = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r())
    const ms = Math.exp(3 + 1.2 * z)
    values.push(ms)
    s.record(ms, T0 + (i % 1000))
  }
  values.sort((a, b) => a - b)
  const snap = s.snapshot(WINDOWS['10s'], T0 + 999)
  near(snap.p50, exact(values, 0.5), 0.035, 'p50')
  near(snap.p95, exact(values, 0.95), 0.035, 'p95')
  near(snap.p99, exact(values, 0.99), 0.035, 'p99')
  assert.equal(snap.max, values[values.length - 1])
  assert.ok(s.ewma > 0)
})

test('sub-millisecond latencies keep microsecond resolution', () => {
  const s = new LatencyStats({ now: T0 })
  for (let i = 0; i < 100; i++) s.record(0.25, T0)
  const snap = s.snapshot(WINDOWS['10s'], T0)
  near(snap.p99, 0.25, 0.032, 'p99 of 250 µs')
})

test('windows roll off old data: 10 s, then 1 m, then 5 m', () => {
  const s = new LatencyStats({ now: T0 })
  for (let i = 0; i < 100; i++) s.record(1000, T0)
  for (let i = 0; i < 100; i++) s.record(10, T0 + 20_000)
  // At T0+35s: both batches are out of the 10 s window but inside 1 m.
  const at35 = T0 + 35_000
  assert.equal(s.snapshot(WINDOWS['10s'], at35).count, 0)
  const m1 = s.snapshot(WINDOWS['1m'], at35)
  assert.equal(m1.count, 200)
  near(m1.p99, 1000, 0.032, '1m p99 sees the slow batch')
  near(m1.p50, 10, 0.032, '1m p50')
  // At T0+2m: only the 5 m window remembers either batch.
  const at120 = T0 + 120_000
  assert.equal(s.snapshot(WINDOWS['1m'], at120).count, 0)
  assert.equal(s.snapshot(WINDOWS['5m'], at120).count, 200)
  // At T0+6m everything is gone, and a new sample does not resurrect old slots sharing its ring position.
  const at360 = T0 + 360_000
  assert.equal(s.snapshot(WINDOWS['5m'], at360).count, 0)
  s.record(5, at360)
  const after = s.snapshot(WINDOWS['5m'], at360)
  assert.equal(after.count, 1)
  near(after.p99, 5, 0.032, 'only the new sample')
  assert.equal(s.total, 201)
})

test('requests per second over each window', () => {
  const s = new LatencyStats({ now: T0 })
  // 50 req/s for 5 minutes, each at a distinct time.
  for (let i = 0; i < 300 * 50; i++) s.record(3, T0 + i * 20)
  const now = T0 + 300_000
  for (const w of [WINDOWS['10s'], WINDOWS['1m'], WINDOWS['5m']]) {
    near(s.snapshot(w, now).rps, 50, 0.06, `rps over ${w.name}`)
  }
  // A young stats object is not diluted by time before it existed.
  const young = new LatencyStats({ now: T0 })
  for (let i = 0; i < 40; i++) young.record(3, T0 + i * 50)
  near(young.snapshot(WINDOWS['1m'], T0 + 2000).rps, 20, 0.01, 'rps after 2 s')
})
