// The election on plain data: no sockets, no clocks. Each test drives step() with adverts and ticks at chosen
// times and checks roles and effects: start-up wait, takeover after dead_after, ties, preempt on and off,
// split-brain resolution, three nodes, the witness and leaving nodes.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { initialState, outranks, step, type Effect, type ElectionEvent, type ElectionState, type PeerAdvert, type Role, type SelfSpec } from '../ha/election.js'

const DEAD = 600 // dead_after 3 x advert_interval 200ms

function spec (nodeId: string, priority: number, extra: Partial<SelfSpec> = {}): SelfSpec {
  return { nodeId, priority, preempt: false, deadMs: DEAD, witness: false, ...extra }
}

function advert (nodeId: string, priority: number, role: Role, extra: Partial<PeerAdvert> = {}): PeerAdvert {
  return { nodeId, priority, role, preempt: false, configHash: 'h', leaving: false, ...extra }
}

/** Runs events in order, collecting every effect. */
function run (s: ElectionState, events: ElectionEvent[]): { state: ElectionState, effects: Effect[] } {
  const effects: Effect[] = []
  for (const e of events) {
    const r = step(s, e)
    s = r.state
    effects.push(...r.effects)
  }
  return { state: s, effects }
}

const heard = (at: number, a: PeerAdvert): ElectionEvent => ({ type: 'advert', at, advert: a, address: `${a.nodeId}:7946` })
const tick = (at: number): ElectionEvent => ({ type: 'tick', at })
const kinds = (effects: readonly Effect[]): string[] => effects.map(e => e.type === 'transition' ? `${e.from}->${e.to}` : e.type)

test('precedence: higher priority wins; a tie goes to the lower node_id', () => {
  assert.equal(outranks({ nodeId: 'b', priority: 150 }, { nodeId: 'a', priority: 100 }), true)
  assert.equal(outranks({ nodeId: 'a', priority: 100 }, { nodeId: 'b', priority: 150 }), false)
  assert.equal(outranks({ nodeId: 'edge-a', priority: 100 }, { nodeId: 'edge-b', priority: 100 }), true)
  assert.equal(outranks({ nodeId: 'edge-b', priority: 100 }, { nodeId: 'edge-a', priority: 100 }), false)
})

test('a lone starting node waits a full dead interval before it claims the IP', () => {
  const s = initialState(spec('a', 100), 0)
  const early = run(s, [tick(200), tick(400), tick(599)])
  assert.equal(early.state.role, 'init')
  assert.deepEqual(early.effects, [])
  const later = run(early.state, [tick(600)])
  assert.equal(later.state.role, 'active')
  assert.deepEqual(kinds(later.effects), ['acquire', 'init->active'])
})

test('a starting node that hears an active goes passive at once and never claims the IP (reboot: no second active)', () => {
  const s = initialState(spec('a', 200), 0)
  const r = run(s, [heard(100, advert('b', 100, 'active')), tick(700), heard(800, advert('b', 100, 'active')), tick(1200)])
  assert.equal(r.state.role, 'passive')
  assert.deepEqual(kinds(r.effects), ['init->passive'])
})

test('cold start of a pair: exactly one (the higher precedence) becomes active', () => {
  let a = initialState(spec('a', 100), 0)
  let b = initialState(spec('b', 100), 0)
  const effectsA: Effect[] = []
  const effectsB: Effect[] = []
  for (let t = 0; t <= 2000; t += 200) {
    const ra = step(a, heard(t, advert('b', 100, b.role)))
    const rb = step(b, heard(t, advert('a', 100, a.role)))
    a = step(ra.state, tick(t)).state
    b = step(rb.state, tick(t)).state
    effectsA.push(...ra.effects); effectsB.push(...rb.effects)
    assert.ok(!(a.role === 'active' && b.role === 'active'), `both active at ${t}`)
  }
  assert.equal(a.role, 'active', 'tie on priority: the lower node_id')
  assert.equal(b.role, 'passive')
})

test('a passive takes over after dead_after missed adverts, not before', () => {
  let s = initialState(spec('b', 100), 0)
  s = run(s, [heard(0, advert('a', 150, 'active')), tick(0)]).state
  assert.equal(s.role, 'passive')
  s = run(s, [heard(1000, advert('a', 150, 'active')), tick(1200), tick(1400), tick(1600)]).state
  assert.equal(s.role, 'passive', '600ms since the last advert: still alive')
  const r = run(s, [tick(1601)])
  assert.equal(r.state.role, 'active')
  assert.deepEqual(kinds(r.effects), ['acquire', 'passive->active'])
  assert.match(r.state.reason, /a \(active\) missed its adverts for 601ms/)
})

test('a restarted active (init again) does not hold back the passive that lost it; it comes back passive', () => {
  let b = run(initialState(spec('b', 100), 0), [heard(0, advert('a', 150, 'active')), tick(0)]).state
  // a's process died and came back at once: its adverts now say init.
  const r = run(b, [heard(300, advert('a', 150, 'init')), tick(400)])
  b = r.state
  assert.equal(b.role, 'active')
  let a = run(initialState(spec('a', 150), 300), [heard(400, advert('b', 100, 'active')), tick(1000)]).state
  assert.equal(a.role, 'passive')
  a = run(a, [heard(1200, advert('b', 100, 'active')), tick(1400)]).state
  assert.equal(a.role, 'passive')
})

test('a leaving active is replaced at once, without the dead interval', () => {
  let s = run(initialState(spec('b', 100), 0), [heard(0, advert('a', 150, 'active')), tick(0)]).state
  s = run(s, [heard(100, advert('a', 150, 'passive', { leaving: true }))]).state
  assert.equal(s.role, 'active')
  assert.match(s.reason, /^a left$/)
})

test('preempt = false: a returning higher-priority node stays passive behind the active', () => {
  // a (150) comes back while b (100) is active.
  let a = initialState(spec('a', 150), 5000)
  const r = run(a, [heard(5100, advert('b', 100, 'active')), tick(5700), heard(5800, advert('b', 100, 'active')), tick(6300)])
  a = r.state
  assert.equal(a.role, 'passive')
  assert.ok(!r.effects.some(e => e.type === 'acquire'))
  // And b, hearing a passive that outranks it but does not preempt, keeps the IP.
  let b = run(initialState(spec('b', 100), 0), [tick(600)]).state
  assert.equal(b.role, 'active')
  const rb = run(b, [heard(700, advert('a', 150, 'passive')), tick(800)])
  b = rb.state
  assert.equal(b.role, 'active')
  assert.deepEqual(rb.effects, [])
})

test('preempt = true: the active yields to a passive that outranks it, which then promotes without a dead interval', () => {
  let b = run(initialState(spec('b', 100), 0), [tick(600)]).state
  const rb = run(b, [heard(700, advert('a', 150, 'passive', { preempt: true }))])
  b = rb.state
  assert.equal(b.role, 'passive')
  assert.deepEqual(kinds(rb.effects), ['release', 'active->passive'])
  let a = run(initialState(spec('a', 150, { preempt: true }), 0), [heard(100, advert('b', 100, 'active')), tick(700)]).state
  assert.equal(a.role, 'passive')
  // b's next advert says passive: a is the best live candidate and takes over at once.
  const ra = run(a, [heard(720, advert('b', 100, 'passive'))])
  a = ra.state
  assert.equal(a.role, 'active')
  assert.deepEqual(kinds(ra.effects), ['acquire', 'passive->active'])
})

test('split brain healed: the outranked active demotes at once, the other re-announces', () => {
  let a = run(initialState(spec('a', 150), 0), [tick(600)]).state
  let b = run(initialState(spec('b', 100), 0), [tick(600)]).state
  assert.equal(a.role, 'active'); assert.equal(b.role, 'active') // partitioned: each alone
  const rb = run(b, [heard(5000, advert('a', 150, 'active'))])
  b = rb.state
  assert.equal(b.role, 'passive')
  assert.deepEqual(kinds(rb.effects), ['release', 'active->passive'])
  assert.match(b.reason, /two actives/)
  const ra = run(a, [heard(5000, advert('b', 100, 'active')), heard(5200, advert('b', 100, 'active'))])
  a = ra.state
  assert.equal(a.role, 'active')
  assert.deepEqual(kinds(ra.effects), ['reannounce'], 'one re-announcement, not one per advert')
  const again = run(a, [heard(5400, advert('b', 100, 'passive')), heard(5600, advert('b', 100, 'active'))])
  assert.deepEqual(kinds(again.effects), ['reannounce'], 'a second split brain is announced again')
})

test('split brain on a priority tie: the higher node_id demotes', () => {
  const b = run(run(initialState(spec('edge-b', 100), 0), [tick(600)]).state, [heard(900, advert('edge-a', 100, 'active'))])
  assert.equal(b.state.role, 'passive')
  const a = run(run(initialState(spec('edge-a', 100), 0), [tick(600)]).state, [heard(900, advert('edge-b', 100, 'active'))])
  assert.equal(a.state.role, 'active')
})

test('three nodes: when the active dies exactly one takes over (by priority), the third stays next in line', () => {
  const nodes = [spec('a', 150), spec('b', 120), spec('c', 100)]
  let states = nodes.map(n => run(initialState(n, 0), [heard(0, advert('a', 150, 'active')), tick(0)]).state)
  const adverts = (t: number, except: string): ElectionEvent[] => states
    .filter(s => s.self.nodeId !== except && s.self.nodeId !== 'a')
    .map(s => heard(t, advert(s.self.nodeId, s.self.priority, s.role)))
  // a dies at 0; b and c keep advertising to each other.
  for (let t = 200; t <= 2000; t += 200) {
    states = states.map(s => s.self.nodeId === 'a' ? s : run(s, [...adverts(t, s.self.nodeId), tick(t)]).state)
  }
  const roles = Object.fromEntries(states.filter(s => s.self.nodeId !== 'a').map(s => [s.self.nodeId, s.role]))
  assert.deepEqual(roles, { b: 'active', c: 'passive' })
})

test('a node that joins later waits as passive, even with the highest priority', () => {
  const r = run(initialState(spec('z', 255), 10_000), [heard(10_050, advert('b', 100, 'active')), heard(10_250, advert('b', 100, 'active')), tick(10_700), heard(10_750, advert('b', 100, 'active')), tick(11_000)])
  assert.equal(r.state.role, 'passive')
})

test('witness: a promotion waits for the probe; unreachable puts the node in fault, reachable later promotes', () => {
  let s = run(initialState(spec('b', 100, { witness: true }), 0), [heard(0, advert('a', 150, 'active')), tick(0)]).state
  let r = run(s, [tick(700)])
  assert.equal(r.state.role, 'passive')
  assert.deepEqual(kinds(r.effects), ['probe-witness'])
  r = run(r.state, [tick(800)])
  assert.deepEqual(r.effects, [], 'one probe at a time')
  r = run(r.state, [{ type: 'witness', at: 850, ok: false, detail: 'ECONNREFUSED' }])
  assert.equal(r.state.role, 'fault')
  assert.match(r.state.reason, /witness unreachable \(ECONNREFUSED\)/)
  assert.ok(!r.effects.some(e => e.type === 'acquire'))
  r = run(r.state, [tick(1000)])
  assert.deepEqual(kinds(r.effects), ['probe-witness'], 'fault keeps probing')
  r = run(r.state, [{ type: 'witness', at: 1050, ok: true }])
  s = r.state
  assert.equal(s.role, 'active')
  assert.deepEqual(kinds(r.effects), ['acquire', 'fault->active'])
})

test('witness answer that comes after an active reappeared does not promote', () => {
  let r = run(initialState(spec('b', 100, { witness: true }), 0), [heard(0, advert('a', 150, 'active')), tick(700)])
  assert.deepEqual(kinds(r.effects), ['init->passive', 'probe-witness'])
  r = run(r.state, [heard(720, advert('a', 150, 'active')), { type: 'witness', at: 730, ok: true }])
  assert.equal(r.state.role, 'passive')
  assert.deepEqual(r.effects, [])
})

test('stop: an active releases the IP; a passive releases nothing', () => {
  const active = run(initialState(spec('a', 100), 0), [tick(600)]).state
  assert.deepEqual(kinds(step(active, { type: 'stop', at: 700 }).effects), ['release', 'active->passive'])
  const passive = run(initialState(spec('b', 100), 0), [heard(0, advert('a', 150, 'active')), tick(0)]).state
  assert.ok(!step(passive, { type: 'stop', at: 700 }).effects.some(e => e.type === 'release'))
})

test('own adverts (a looped-back packet) are ignored', () => {
  const s = initialState(spec('a', 100), 0)
  const r = step(s, heard(10, advert('a', 100, 'active')))
  assert.equal(r.state.peers.size, 0)
})
