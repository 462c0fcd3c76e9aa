// Active health checks for one pool's backends. Each backend is probed on its own jittered timer; `fall`
// consecutive failures take it down and `rise` consecutive passes bring it back. Verdicts leave through one
// callback, setStatus(url, up, reason) (Traefik's shape), plus an event per state change for logs and the admin API.
import type { HealthCheckConfig } from '../config/health.js'
import { probeAgents, probes, probeTarget, type ProbeAgents, type ProbeResult, type ProbeTarget } from './probe.js'

/** "pending" until the first verdict; a pending backend takes traffic (it counts as up). */
export type HealthState = 'pending' | 'up' | 'down'

export interface HealthEvent {
  readonly time: number
  readonly pool: string
  readonly backend: string
  readonly from: HealthState
  readonly to: HealthState
  readonly reason: string
}

/** What the cluster primary broadcasts to workers: enough to set Backend.healthy and compute slow start there. */
export interface HealthVerdict {
  readonly pool: string
  readonly url: string
  readonly up: boolean
  readonly reason: string
  /** When a down backend came back (ms since epoch), for slow start; 0 = no ramp (never down, or down now). */
  readonly recoveredAt: number
}

export interface HealthCheckerDeps {
  setStatus (url: string, up: boolean, reason: string): void
  onEvent?: (event: HealthEvent) => void
  /** Jitter source, [0, 1); Math.random by default. */
  random?: () => number
}

export interface BackendHealth {
  readonly url: string
  readonly state: HealthState
  /** When the state last changed (ms since epoch; the checker's start for "pending"). */
  readonly since: number
  /** The last check's result. */
  readonly reason: string
  readonly passes: number
  readonly failures: number
  readonly lastCheck: number
}

/** Slow start: a recovered backend's weight ramps linearly from 10% to 100% over `slowStart` ms. */
export function slowStartFactor (recoveredAt: number, now: number, slowStart: number): number {
  if (slowStart <= 0 || recoveredAt === 0) return 1
  const elapsed = now - recoveredAt
  if (elapsed >= slowStart) return 1
  return elapsed <= 0 ? 0.1 : 0.1 + 0.9 * (elapsed / slowStart)
}

const JITTER = 0.1

class Target {
  state: HealthState = 'pending'
  since: number
  reason = 'not checked yet'
  passes = 0
  failures = 0
  lastCheck = 0
  recoveredAt = 0
  started = 0
  timer: NodeJS.Timeout | undefined
  removed = false
  constructor (readonly probe: ProbeTarget, now: number) {
    this.since = now
  }
}

export class HealthChecker {
  readonly #targets = new Map<string, Target>()
  readonly #abort = new AbortController()
  readonly #agents: ProbeAgents = probeAgents()
  readonly #random: () => number
  #started = false
  #closed = false

  constructor (readonly pool: string, readonly config: HealthCheckConfig, backends: Iterable<string>, private readonly deps: HealthCheckerDeps) {
    this.#random = deps.random ?? Math.random
    this.update(backends)
  }

  /** Starts probing; the first round is spread over the first 10% of an interval so checks do not bunch up. */
  start (): void {
    if (this.#started || this.#closed) return
    this.#started = true
    for (const t of this.#targets.values()) this.#schedule(t, this.#random() * this.config.interval * JITTER)
  }

  /** Follows a reload: new backends start pending, removed ones stop being probed; the rest keep their state. */
  update (backends: Iterable<string>): void {
    if (this.#closed) return
    const keep = new Set(backends)
    for (const [url, t] of this.#targets) {
      if (keep.has(url)) continue
      t.removed = true
      clearTimeout(t.timer)
      this.#targets.delete(url)
    }
    for (const url of keep) {
      if (this.#targets.has(url)) continue
      const t = new Target(probeTarget(url), Date.now())
      this.#targets.set(url, t)
      if (this.#started) this.#schedule(t, this.#random() * this.config.interval * JITTER)
    }
  }

  state (url: string): HealthState | undefined {
    return this.#targets.get(url)?.state
  }

  /** Scales a backend's weight: 0 when down, ramping after a recovery, 1 otherwise (and for unknown URLs). */
  weightFactor (url: string, now: number): number {
    const t = this.#targets.get(url)
    if (t === undefined) return 1
    if (t.state === 'down') return 0
    return slowStartFactor(t.recoveredAt, now, this.config.slowStart)
  }

  /** The current verdict for one backend: what setStatus's caller broadcasts to workers. */
  verdict (url: string): HealthVerdict | undefined {
    const t = this.#targets.get(url)
    return t === undefined ? undefined : this.#verdict(t)
  }

  /** The current verdict for every backend, e.g. for a worker that has just started. */
  verdicts (): HealthVerdict[] {
    return [...this.#targets.values()].map(t => this.#verdict(t))
  }

  status (): BackendHealth[] {
    return [...this.#targets.values()].map(t => ({
      url: t.probe.url, state: t.state, since: t.since, reason: t.reason, passes: t.passes, failures: t.failures, lastCheck: t.lastCheck,
    }))
  }

  /** Stops every timer and aborts checks in flight; safe to call at any point, and more than once. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const t of this.#targets.values()) clearTimeout(t.timer)
    this.#abort.abort()
    this.#agents.http.destroy()
    this.#agents.https.destroy()
  }

  #schedule (t: Target, delay: number): void {
    t.timer = setTimeout(this.#run, delay, t)
    t.timer.unref()
  }

  readonly #run = (t: Target): void => {
    t.timer = undefined
    if (this.#closed || t.removed) return
    t.started = Date.now()
    probes[this.config.type](t.probe, this.config, this.#agents, this.#abort.signal).then(r => { this.#settle(t, r) }, noop)
  }

  #settle (t: Target, r: ProbeResult): void {
    if (this.#closed || t.removed) return
    const now = Date.now()
    // The interval runs from the start of a check, so slow answers do not stretch the fall x interval bound.
    // Scheduled before the verdict callbacks run, so a throwing callback cannot stop the checks.
    const next = this.config.interval * (1 - JITTER + 2 * JITTER * this.#random()) - (now - t.started)
    this.#schedule(t, next > 0 ? next : 0)
    t.lastCheck = now
    t.reason = r.reason
    if (r.ok) {
      t.failures = 0
      t.passes++
      if (t.state === 'pending') this.#change(t, 'up', r.reason, now)
      else if (t.state === 'down' && t.passes >= this.config.rise) {
        t.recoveredAt = now
        this.#change(t, 'up', `${r.reason}, ${t.passes} consecutive passes`, now)
      }
    } else {
      t.passes = 0
      t.failures++
      if (t.state !== 'down' && t.failures >= this.config.fall) {
        t.recoveredAt = 0
        this.#change(t, 'down', `${r.reason}, ${t.failures} consecutive failures`, now)
      }
    }
  }

  #change (t: Target, to: HealthState, reason: string, now: number): void {
    const from = t.state
    t.state = to
    t.since = now
    this.deps.setStatus(t.probe.url, to !== 'down', reason)
    this.deps.onEvent?.({ time: now, pool: this.pool, backend: t.probe.url, from, to, reason })
  }

  #verdict (t: Target): HealthVerdict {
    return { pool: this.pool, url: t.probe.url, up: t.state !== 'down', reason: t.reason, recoveredAt: t.recoveredAt }
  }
}

function noop (): void {}
