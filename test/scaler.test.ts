// The scale decision on plain data (health/scaler.ts): the HPA rule, the tolerance band, min/max, warm-up and
// settling, scale-down stabilization, the cost cap (scale.capped), diminishing returns (scale.saturated) and the
// learned target. No sockets: decide() is a pure function.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { costLimit, decide, initialState, LEARN_MARGIN, type ScaleEvent, type ScalePolicy, type ScalerState } from '../health/scaler.js'

const policy: ScalePolicy = {
  metric: 'p95',
  target: { kind: 'fixed', ms: 100 },
  targetCeiling: 2000,
  window: 1000,
  tolerance: 0.1,
  min: 1,
  max: 10,
  scaleDownStabilization: 3000,
  costPerBackendHour: 0,
  maxCostPerHour: undefined,
}

/** Feeds decisions every 1 s; `latency(n)` gives the observed metric at n backends. The pool follows each event at once. */
function run (p: ScalePolicy, steps: number, latency: (n: number, i: number) => number, rps: (i: number) => number = () => 50,
  start = 1): ScaleEvent[] {
  let state: ScalerState = initialState(0)
  let current = start
  const events: ScaleEvent[] = []
  for (let i = 1; i <= steps; i++) {
    const observed = latency(current, i)
    const r = decide(p, state, { now: i * 1000, pool: 'app', current, pending: 0, observed, rps: rps(i), count: observed > 0 ? 100 : 0 })
    state = r.state
    events.push(r.event)
    current = r.event.to
  }
  return events
}

test('the HPA rule: desired = ceil(current x observed / target)', () => {
  const r = decide(policy, initialState(0), { now: 5000, pool: 'app', current: 2, pending: 0, observed: 250, rps: 10, count: 50 })
  assert.equal(r.event.kind, 'scale.up')
  assert.equal(r.event.from, 2)
  assert.equal(r.event.to, 5)
  assert.equal(r.event.observed, 250)
  assert.equal(r.event.target, 100)
  assert.equal(r.event.rps, 10)
  assert.equal(r.event.pool, 'app')
  assert.equal(r.event.time, new Date(5000).toISOString())
})

test('tolerance: no action while |observed/target - 1| <= tolerance', () => {
  for (const observed of [91, 100, 109]) {
    const r = decide(policy, initialState(0), { now: 5000, pool: 'app', current: 3, pending: 0, observed, rps: 10, count: 50 })
    assert.equal(r.event.kind, 'scale.hold', `observed ${observed}`)
    assert.equal(r.event.to, 3)
  }
  const up = decide(policy, initialState(0), { now: 5000, pool: 'app', current: 3, pending: 0, observed: 112, rps: 10, count: 50 })
  assert.equal(up.event.kind, 'scale.up')
  assert.equal(up.event.to, 4)
})

test('clamped to min and max; below min scales up without waiting for latency', () => {
  const hi = decide(policy, initialState(0), { now: 5000, pool: 'app', current: 4, pending: 0, observed: 5000, rps: 10, count: 50 })
  assert.equal(hi.event.to, 10)
  const empty = decide({ ...policy, min: 2 }, initialState(0), { now: 10, pool: 'app', current: 0, pending: 0, observed: 0, rps: 0, count: 0 })
  assert.equal(empty.event.kind, 'scale.up')
  assert.equal(empty.event.to, 2)
})

test('warm-up: pending backends hold the decision, and a window of settling follows', () => {
  const s0 = initialState(0)
  const w = decide(policy, s0, { now: 5000, pool: 'app', current: 1, pending: 1, observed: 500, rps: 10, count: 50 })
  assert.equal(w.event.kind, 'scale.hold')
  assert.match(w.event.reason, /warming up/)
  const settling = decide(policy, w.state, { now: 5500, pool: 'app', current: 2, pending: 0, observed: 500, rps: 10, count: 50 })
  assert.equal(settling.event.kind, 'scale.hold')
  assert.match(settling.event.reason, /settling/)
  const after = decide(policy, settling.state, { now: 6000, pool: 'app', current: 2, pending: 0, observed: 500, rps: 10, count: 50 })
  assert.equal(after.event.kind, 'scale.up')
  assert.equal(after.event.to, 10)
})

test('scale-down stabilization: down only to the highest recommendation of the window', () => {
  // At 4 backends latency falls to 20ms (wants 1), but the window remembers a recommendation of 4.
  let state = initialState(0)
  const kinds: string[] = []
  let current = 4
  for (let i = 1; i <= 8; i++) {
    const observed = i <= 2 ? 100 : 20
    const r = decide(policy, state, { now: i * 1000, pool: 'app', current, pending: 0, observed, rps: 10, count: 50 })
    state = r.state
    kinds.push(`${r.event.kind}:${r.event.to}`)
    current = r.event.to
  }
  // Decisions at 1..2 s hold at 4 (within tolerance); 3 and 4 s still see 4 in the 3 s window; 5 s is the first
  // whose window holds only recommendations of 1.
  assert.deepEqual(kinds.slice(0, 4), ['scale.hold:4', 'scale.hold:4', 'scale.hold:4', 'scale.hold:4'])
  assert.equal(kinds[4], 'scale.down:1')
})

test('the cost cap stops growth with scale.capped (once), then holds', () => {
  const p: ScalePolicy = { ...policy, costPerBackendHour: 0.05, maxCostPerHour: 0.2 }
  assert.equal(costLimit(p), 4)
  const events = run(p, 8, n => 400 / n * 2) // never reaches the target
  const capped = events.filter(e => e.kind === 'scale.capped')
  assert.equal(capped.length, 1)
  assert.equal(capped[0]?.to, 4)
  assert.equal(capped[0]?.costPerHour, 0.2)
  assert.equal(capped[0]?.maxCostPerHour, 0.2)
  assert.match(capped[0]?.reason ?? '', /cost cap allows 4 backends/)
  assert.ok(events.every(e => e.to <= 4))
  assert.equal(events.at(-1)?.kind, 'scale.hold')
})

test('diminishing returns: a shared bottleneck ends with scale.saturated before max', () => {
  // Latency barely moves with more backends (all wait on one lock): 1 -> 5 wanted, then no gain.
  const events = run(policy, 10, n => 500 - n)
  const sat = events.find(e => e.kind === 'scale.saturated')
  assert.ok(sat !== undefined, JSON.stringify(events.map(e => `${e.kind}:${e.to}`)))
  assert.ok(sat.to < policy.max)
  assert.match(sat.reason, /stopped helping/)
  assert.ok(events.every(e => e.to < policy.max))
  // Holding afterwards at the same load...
  assert.equal(events.at(-1)?.kind, 'scale.hold')
  assert.equal(events.at(-1)?.to, sat.to)
})

test('after scale.saturated, scaling up resumes only when load rises beyond the tolerance', () => {
  const events = run(policy, 16, (n, i) => i > 10 ? 400 : 500 - n, i => i > 10 ? 100 : 50)
  const satAt = events.findIndex(e => e.kind === 'scale.saturated')
  assert.ok(satAt !== -1 && satAt < 10)
  const later = events.slice(10)
  assert.ok(later.some(e => e.kind === 'scale.up'), JSON.stringify(later.map(e => `${e.kind}:${e.to}`)))
})

test('scaling that helps is not called saturated: a serial backend reaches the target and stays', () => {
  // One request at a time each: latency ~ load / backends.
  const events = run(policy, 12, n => 450 / n)
  assert.ok(!events.some(e => e.kind === 'scale.saturated'))
  assert.equal(events.at(-1)?.to, 5)
})

test('target = "auto" learns baseline x margin over a window, then scales when load doubles', () => {
  const p: ScalePolicy = { ...policy, target: { kind: 'auto' } }
  const events = run(p, 10, (n, i) => (i > 5 ? 40 : 20) / n)
  const learned = events.find(e => e.learned === true)
  assert.ok(learned !== undefined)
  assert.ok(Math.abs(learned.target - 20 * LEARN_MARGIN) < 0.01, String(learned.target))
  assert.match(learned.learnedFrom ?? '', /baseline 20ms/)
  const up = events.find(e => e.kind === 'scale.up')
  assert.ok(up !== undefined)
  assert.equal(up.to, 2)
})

test('a learned target never exceeds target_ceiling', () => {
  const p: ScalePolicy = { ...policy, target: { kind: 'auto' }, targetCeiling: 50 }
  const events = run(p, 4, () => 200)
  const learned = events.find(e => e.learned === true)
  assert.equal(learned?.target, 50)
  assert.match(learned?.learnedFrom ?? '', /clamped to target_ceiling/)
})

test('no traffic scales down to min after stabilization', () => {
  const events = run(policy, 8, () => 0, () => 0, 3)
  assert.equal(events.at(-1)?.to, 1)
  assert.ok(events.slice(0, 2).every(e => e.to === 3))
})

test('latency merged over backends and workers reads the same percentiles as one histogram of every sample', async () => {
  const { LatencyStats, WindowHistogram } = await import('../health/latency.js')
  const now = 1_000_000
  const a = new LatencyStats({ now: now - 5000 })
  const b = new LatencyStats({ now: now - 5000 })
  const all = new LatencyStats({ now: now - 5000 })
  for (let i = 0; i < 400; i++) {
    const ms = i % 2 === 0 ? 10 + (i % 7) : 80 + (i % 13)
    const at = now - 900 + (i % 800)
    ;(i % 2 === 0 ? a : b).record(ms, at)
    all.record(ms, at)
  }
  // Worker a's histogram crosses IPC as JSON; worker b's is added in place.
  const merged = new WindowHistogram()
  const fromA = new WindowHistogram()
  a.addTo(fromA, 1000, now)
  merged.merge(JSON.parse(JSON.stringify(fromA.toJSON())))
  b.addTo(merged, 1000, now)
  const one = new WindowHistogram()
  all.addTo(one, 1000, now)
  assert.equal(merged.count, 400)
  for (const q of [0.5, 0.95, 0.99]) assert.equal(merged.quantile(q), one.quantile(q))
  assert.equal(merged.mean, one.mean)
  // Each worker alone would see a very different p50.
  const onlyA = new WindowHistogram()
  a.addTo(onlyA, 1000, now)
  assert.ok(onlyA.quantile(0.5) < 20 && merged.quantile(0.95) > 80)
})

test('a step is not judged at another load: load falling after a scale-up does not call that step saturated', () => {
  // 2 -> 3 at 60 req/s; then load falls to 13 req/s while the (mixed) window still reads the same p95.
  const events = run({ ...policy, target: { kind: 'fixed', ms: 60 } }, 3, () => 67, i => i <= 1 ? 60 : 13, 2)
  assert.equal(events[0]?.kind, 'scale.up')
  assert.equal(events[0]?.to, 3)
  assert.ok(!events.some(e => e.kind === 'scale.saturated' && e.to === 3), JSON.stringify(events.map(e => `${e.kind}:${e.to}`)))
})
