// The scale decision, as a pure function over plain data: decide(policy, state, input) -> { event, state }.
// No clocks, timers or sockets here; cli/scaling.ts feeds it every `interval` and acts on the event.
//
// The rule is the Kubernetes HPA's: desired = ceil(current x observed / target), nothing while
// |observed/target - 1| <= tolerance, clamped to min/max and the cost cap; a scale-down goes only to the highest
// recommendation of the stabilization window. Two things are ours:
// - Warm-up and settling: after a step nothing is decided until the new backends passed their health check and
//   a whole `window` of latency was measured with them (the step's cool-down).
// - Diminishing returns: after a scale-up, if latency improved by less than SATURATION_GAIN per added backend on
//   two settled decisions (at about the same load), scaling up stops with scale.saturated: the bottleneck is
//   elsewhere. It resumes only when load (req/s) rises beyond the tolerance.
// - target = "auto": the target is learned from the pool's baseline: the metric over the first `window`s with
//   traffic while settled and not saturated, times LEARN_MARGIN, clamped to target_ceiling; re-learned after each
//   step settles, never above the ceiling.
import type { ScaleConfig } from '../config/scale.js'

/** Latency must improve by at least this fraction per added backend, or more backends stopped helping. */
export const SATURATION_GAIN = 0.05
/** Settled decisions that must show too little gain before scale.saturated. */
export const SATURATION_CHECKS = 2
/** A learned target is the baseline times this. */
export const LEARN_MARGIN = 1.2
/** Windows of baseline a learned target reads (after a settled window with traffic). */
export const LEARN_WINDOWS = 1

export type ScaleKind = 'scale.up' | 'scale.down' | 'scale.hold' | 'scale.saturated' | 'scale.capped'

export interface ScaleEvent {
  /** ISO time of the decision. */
  readonly time: string
  readonly pool: string
  readonly kind: ScaleKind
  readonly from: number
  readonly to: number
  readonly reason: string
  /** The metric over the window, ms (0 = no traffic). */
  readonly observed: number
  /** The target in force, ms (0 while an auto target is being learned). */
  readonly target: number
  readonly rps: number
  /** Whether `target` was learned (target = "auto"), and how. */
  readonly learned?: boolean
  readonly learnedFrom?: string
  /** Spend per hour at `to` backends, and the cap (when costs are configured). */
  readonly costPerHour?: number
  readonly maxCostPerHour?: number
}

export type ScalePolicy = Pick<ScaleConfig, 'target' | 'targetCeiling' | 'window' | 'tolerance' | 'min' | 'max' |
  'scaleDownStabilization' | 'costPerBackendHour' | 'maxCostPerHour' | 'metric'>

/** What the control side measured for one decision. */
export interface ScaleInput {
  /** ms since epoch. */
  readonly now: number
  readonly pool: string
  /** Backends that take traffic now (healthy, not draining). */
  readonly current: number
  /** Backends started or asked for but not yet healthy: the decision waits for them (warm-up). */
  readonly pending: number
  /** The metric over the window, ms; 0 when there was no traffic. */
  readonly observed: number
  readonly rps: number
  /** Requests the window held. */
  readonly count: number
}

interface Step {
  readonly from: number
  readonly to: number
  /** Latency and load before the step. */
  readonly latency: number
  readonly rps: number
  /** Settled decisions since that showed too little gain. */
  readonly weak: number
}

export interface ScalerState {
  /** When the pool last changed size or had pending backends: decisions wait a window after it. */
  readonly settledSince: number
  /** Recent desired counts for scale-down stabilization. */
  readonly recommendations: readonly { readonly time: number, readonly desired: number }[]
  /** The last scale-up being judged for diminishing returns. */
  readonly step: Step | undefined
  /** Set by scale.saturated: at this many backends and this load more backends stopped helping. */
  readonly saturated: { readonly backends: number, readonly rps: number, readonly latency: number } | undefined
  /** Whether the last decision was held by the cost cap (scale.capped is emitted on entering it). */
  readonly capped: boolean
  /** target = "auto": the learned target (ms), how it was reached, and the baseline samples being gathered. */
  readonly learned: { readonly ms: number, readonly from: string } | undefined
  readonly baseline: readonly { readonly time: number, readonly value: number }[]
  /** (backends, latency, rps) of recent decisions, newest last, bounded. */
  readonly history: readonly { readonly time: number, readonly backends: number, readonly latency: number, readonly rps: number }[]
}

export const HISTORY = 120

export function initialState (now: number): ScalerState {
  return { settledSince: now, recommendations: [], step: undefined, saturated: undefined, capped: false, learned: undefined, baseline: [], history: [] }
}

/** The most backends the cost cap allows (Infinity without a cap). */
export function costLimit (p: ScalePolicy): number {
  if (p.maxCostPerHour === undefined || p.costPerBackendHour <= 0) return Infinity
  return Math.floor(p.maxCostPerHour / p.costPerBackendHour + 1e-9)
}

export function decide (p: ScalePolicy, s: ScalerState, input: ScaleInput): { event: ScaleEvent, state: ScalerState } {
  const { now, current, observed, rps } = input
  const history = [...s.history, { time: now, backends: current, latency: observed, rps }].slice(-HISTORY)
  let state: ScalerState = { ...s, history }
  const target = p.target.kind === 'fixed' ? p.target.ms : (s.learned?.ms ?? 0)
  const cost = (n: number): Partial<ScaleEvent> => p.costPerBackendHour > 0
    ? { costPerHour: round(n * p.costPerBackendHour), ...(p.maxCostPerHour === undefined ? {} : { maxCostPerHour: p.maxCostPerHour }) }
    : {}
  const event = (kind: ScaleKind, to: number, reason: string, t = target): { event: ScaleEvent, state: ScalerState } => ({
    event: {
      time: new Date(now).toISOString(),
      pool: input.pool,
      kind,
      from: current,
      to,
      reason,
      observed: round(observed),
      target: round(t),
      rps: round(rps),
      ...(p.target.kind === 'auto' ? { learned: state.learned !== undefined, ...(state.learned === undefined ? {} : { learnedFrom: state.learned.from }) } : {}),
      ...cost(to),
    },
    state: to === current ? state : { ...state, settledSince: now },
  })

  // Below min (at start, or after a crash): no latency needed to know that.
  if (current + input.pending < p.min) return event('scale.up', p.min, `below min = ${p.min}`)
  if (input.pending > 0) {
    state = { ...state, settledSince: now }
    return event('scale.hold', current, `warming up: ${input.pending} backend${input.pending === 1 ? '' : 's'} not healthy yet`)
  }
  if (current > p.max) return event('scale.down', p.max, `above max = ${p.max}`)
  const limit = costLimit(p)
  if (current > limit && limit >= p.min) return event('scale.down', limit, `above the cost cap: ${limit} backends cost at most ${p.maxCostPerHour} per hour`)
  if (now - s.settledSince < p.window) return event('scale.hold', current, 'settling: the latency window still holds time before the last change')

  // target = "auto": learn the baseline first, over a settled window with traffic.
  if (p.target.kind === 'auto' && state.learned === undefined && state.saturated === undefined && input.count > 0) {
    const baseline = [...state.baseline.filter(b => b.time >= s.settledSince), { time: now, value: observed }]
    const span = now - baseline[0]!.time
    if (span < p.window * LEARN_WINDOWS) {
      state = { ...state, baseline }
      return event('scale.hold', current, `learning the target: ${round(span)}ms of baseline of ${p.window * LEARN_WINDOWS}ms`, 0)
    }
    const values = baseline.map(b => b.value).sort((a, b) => a - b)
    const base = values[Math.floor((values.length - 1) / 2)]!
    state = { ...state, learned: learn(p, base, `${p.metric} baseline ${round(base)}ms (median of ${baseline.length} decisions at ${current} backend${current === 1 ? '' : 's'})`), baseline: [] }
    return event('scale.hold', current, `learned target ${round(state.learned!.ms)}ms from ${state.learned!.from}`, state.learned!.ms)
  }
  if (p.target.kind === 'auto' && state.learned === undefined) return event('scale.hold', current, 'learning the target: no traffic yet', 0)
  const t = p.target.kind === 'fixed' ? p.target.ms : state.learned!.ms

  // Diminishing returns: judge the last scale-up now that it settled.
  if (state.step !== undefined && current === state.step.to) {
    const st = state.step
    // Only at the load the step was taken for does its latency say whether it helped.
    const sameLoad = Math.abs(rps / Math.max(st.rps, 1e-9) - 1) <= p.tolerance
    const gain = st.latency > 0 ? (st.latency - observed) / st.latency / (st.to - st.from) : 1
    if (!sameLoad || gain >= SATURATION_GAIN) {
      state = { ...state, step: undefined }
      // The step helped and settled: an auto target is re-learned from where the pool now meets it.
      if (p.target.kind === 'auto' && sameLoad && observed > 0 && observed <= t) {
        state = { ...state, learned: learn(p, observed, `${p.metric} ${round(observed)}ms re-learned after ${st.from} -> ${st.to} backends settled`) }
      }
    } else if (st.weak + 1 >= SATURATION_CHECKS) {
      state = { ...state, step: undefined, saturated: { backends: current, rps, latency: observed } }
      return event('scale.saturated', current,
        `more backends stopped helping: ${st.from} -> ${st.to} backends moved ${p.metric} from ${round(st.latency)}ms to ${round(observed)}ms ` +
        `(${round(gain * 100)}% per added backend, under ${SATURATION_GAIN * 100}%) at ${round(rps)} req/s; holding until load rises`, t)
    } else {
      state = { ...state, step: { ...st, weak: st.weak + 1 } }
      return event('scale.hold', current, `judging the last step: ${round(gain * 100)}% better per added backend so far`, t)
    }
  } else if (state.step !== undefined) {
    state = { ...state, step: undefined }
  }

  const ratio = observed / t
  let desired = Math.abs(ratio - 1) <= p.tolerance ? current : Math.ceil(current * ratio - 1e-9)
  desired = Math.max(p.min, Math.min(p.max, desired))
  // Scale-down stabilization: the highest recommendation of the window.
  const recommendations = [...state.recommendations.filter(r => now - r.time < p.scaleDownStabilization), { time: now, desired }]
  state = { ...state, recommendations }
  // The last change (or the start) counts as a recommendation of the size it left, so a pool never shrinks
  // sooner than the window after it grew or started.
  if (desired < current) desired = now - state.settledSince < p.scaleDownStabilization ? current : Math.min(current, Math.max(...recommendations.map(r => r.desired)))

  if (desired > current && state.saturated !== undefined) {
    if (rps <= state.saturated.rps * (1 + p.tolerance)) {
      return event('scale.hold', current, `saturated at ${state.saturated.backends} backends (${round(state.saturated.rps)} req/s); load is ${round(rps)} req/s`, t)
    }
    state = { ...state, saturated: undefined }
  }
  if (desired > current && desired > limit) {
    const to = Math.max(current, limit)
    const wasCapped = state.capped
    state = { ...state, capped: true }
    const why = `the cost cap allows ${limit} backend${limit === 1 ? '' : 's'} (${round(limit * p.costPerBackendHour)} of ${p.maxCostPerHour} per hour); ${desired} wanted for ${p.metric} ${round(observed)}ms over target ${round(t)}ms`
    if (to > current) state = { ...state, step: { from: current, to, latency: observed, rps, weak: 0 } }
    if (!wasCapped || to > current) return event('scale.capped', to, why, t)
    return event('scale.hold', current, `at the cost cap: ${why}`, t)
  }
  state = { ...state, capped: false }
  if (desired > current) {
    state = { ...state, step: { from: current, to: desired, latency: observed, rps, weak: 0 } }
    return event('scale.up', desired, `${p.metric} ${round(observed)}ms is ${round(ratio)}x the target ${round(t)}ms at ${round(rps)} req/s`, t)
  }
  if (desired < current) {
    if (state.saturated !== undefined && desired < state.saturated.backends) state = { ...state, saturated: undefined }
    return event('scale.down', desired, `${p.metric} ${round(observed)}ms is ${round(ratio)}x the target ${round(t)}ms; highest recommendation of the last ${p.scaleDownStabilization}ms is ${desired}`, t)
  }
  const why = Math.abs(ratio - 1) <= p.tolerance
    ? `${p.metric} ${round(observed)}ms within ${p.tolerance * 100}% of the target ${round(t)}ms`
    : ratio < 1 ? `waiting out scale_down_stabilization (${p.scaleDownStabilization}ms)` : `at max = ${p.max}`
  return event('scale.hold', current, why, t)
}

function learn (p: ScalePolicy, base: number, how: string): { ms: number, from: string } {
  const ms = Math.round(Math.max(1, Math.min(base * LEARN_MARGIN, p.targetCeiling)) * 100) / 100
  return { ms, from: `${how} x ${LEARN_MARGIN}${base * LEARN_MARGIN > p.targetCeiling ? `, clamped to target_ceiling ${p.targetCeiling}ms` : ''}` }
}

function round (n: number): number {
  return Math.round(n * 100) / 100
}
