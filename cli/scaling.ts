// The scaler on the control side (the single process, or the cluster primary): every `interval` it reads a pool's
// latency merged over every serving process, counts the pool's backends that take traffic, asks health/scaler.ts
// what to do, and hands the event to the pool's provider, the log, the event log, metrics and the status page.
// Backends a provider starts join as members with source "scale", registered like the admin API's (health
// checked, replayed to late workers) and taking traffic only once their health check passes.
import type { Logger } from 'pino'
import type { Config, PoolConfig, ScaleConfig } from '../config/types.js'
import { decide, initialState, type ScaleEvent, type ScalerState } from '../health/scaler.js'
import { createScaleProvider, type ScaleProvider } from '../health/scale-providers/index.js'
import { ScaleNotifier } from '../health/scale-notify.js'
import { windowSpan, type WindowHistogram } from '../health/latency.js'
import type { EventLog } from '../proxy/ops/events.js'
import type { Serving } from './control.js'
import type { HealthControl } from './health-control.js'
import { DEFAULT_DRAIN_MS, type Registrations } from './registrations.js'
import { reasonOf } from './messages.js'

/** Decisions kept per pool for the status page's chart. */
const EVENTS_KEPT = 300
/**
 * A command or webhook provider's new backends (registered through the admin API by whatever it ran) count as
 * warming up for this long, or two windows if longer: the next decision waits for them instead of asking again.
 */
export const EXTERNAL_WARMUP_MS = 60_000

export interface ScaleControlDeps {
  readonly log: Logger
  readonly events: EventLog
  readonly registrations: Registrations
  readonly health: HealthControl
  readonly config: () => Config
  readonly serving: () => Serving | undefined
  /** How long a backend being stopped gets for its in-flight requests (default 30 s). */
  readonly drainMs?: number
}

/** One pool's scaler as the status page shows it. */
export interface PoolScaleStatus {
  readonly pool: string
  readonly provider: string
  readonly metric: string
  readonly current: number
  readonly desired: number
  readonly min: number
  readonly max: number
  readonly target: number
  readonly targetLearned: boolean | undefined
  readonly learnedFrom: string | undefined
  readonly targetCeiling: number
  readonly costPerHour: number
  readonly maxCostPerHour: number | undefined
  readonly saturated: boolean
  /** Recent decisions, oldest first (observed latency over time, with the scale events among them). */
  readonly events: readonly ScaleEvent[]
}

class PoolScaler {
  state: ScalerState
  readonly events: ScaleEvent[] = []
  readonly counts = new Map<string, number>()
  timer: NodeJS.Timeout | undefined
  busy = false
  current = 0
  desired = 0
  /** After a command/webhook scale-up: backends asked for, awaited until `until`. */
  expect: { to: number, until: number } | undefined
  /** The config with the window the latency stats really read (whole slots), so settling covers all of it. */
  readonly policy: ScaleConfig
  constructor (readonly name: string, readonly config: ScaleConfig, readonly key: string, readonly provider: ScaleProvider) {
    this.state = initialState(Date.now())
    this.policy = { ...config, window: windowSpan(config.window) }
  }
}

export class ScaleControl {
  readonly #pools = new Map<string, PoolScaler>()
  readonly #deps: ScaleControlDeps
  #notifier: ScaleNotifier
  #alertsKey: string
  #closed = false

  constructor (deps: ScaleControlDeps) {
    this.#deps = deps
    this.#notifier = new ScaleNotifier(deps.config().alerts, deps.log)
    this.#alertsKey = JSON.stringify(deps.config().alerts)
  }

  /** Starts, replaces or stops pool scalers to match `config` (a scaler whose settings changed starts afresh). */
  sync (config: Config): void {
    if (this.#closed) return
    if (JSON.stringify(config.alerts) !== this.#alertsKey) {
      void this.#notifier.close()
      this.#notifier = new ScaleNotifier(config.alerts, this.#deps.log)
      this.#alertsKey = JSON.stringify(config.alerts)
    }
    const keep = new Map<string, ScaleProvider>()
    for (const [name, s] of this.#pools) {
      const pool = config.pools.get(name)
      if (pool?.scale !== undefined && JSON.stringify(pool.scale) === s.key) continue
      this.#pools.delete(name)
      clearInterval(s.timer)
      // Only the policy changed: the same provider (and the backends it runs) goes on under the new one.
      if (pool?.scale !== undefined && JSON.stringify(pool.scale.provider) === JSON.stringify(s.config.provider)) keep.set(name, s.provider)
      else void this.#stop(s)
    }
    for (const pool of config.pools.values()) {
      if (pool.scale === undefined || this.#pools.has(pool.name)) continue
      this.#start(pool, pool.scale, keep.get(pool.name))
    }
  }

  #start (pool: PoolConfig, cfg: ScaleConfig, kept?: ScaleProvider): void {
    const { log } = this.#deps
    const name = pool.name
    const provider = kept ?? createScaleProvider(cfg.provider, {
      pool: name,
      log,
      drainMs: this.#deps.drainMs ?? DEFAULT_DRAIN_MS,
      addMember: url => { this.#addMember(name, url) },
      removeMember: (url, drainMs) => this.#removeMember(name, url, drainMs),
      onEvent: (type, message, fields) => { this.#deps.events.push(type, message, fields) },
    })
    const s = new PoolScaler(name, cfg, JSON.stringify(cfg), provider)
    this.#pools.set(name, s)
    if (cfg.target.kind === 'fixed' && cfg.target.ms > cfg.targetCeiling) {
      log.warn({ pool: name, target_ms: cfg.target.ms, target_ceiling_ms: cfg.targetCeiling }, 'scale: target above target_ceiling, let through by override = true')
    }
    log.info({ pool: name, provider: cfg.provider.kind, metric: cfg.metric, target: cfg.target.kind === 'auto' ? 'auto' : cfg.target.ms, interval_ms: cfg.interval }, 'scaler started')
    if (kept === undefined) provider.start().catch((err: unknown) => { log.error({ pool: name, reason: reasonOf(err) }, 'scale provider failed to start') })
    s.timer = setInterval(() => { void this.#tick(s) }, cfg.interval)
    // The first decision at once: a pool below min gets its backends without waiting an interval.
    void this.#tick(s)
  }

  async #stop (s: PoolScaler): Promise<void> {
    clearInterval(s.timer)
    await s.provider.close().catch(() => {})
  }

  /** Members of the pool: the file's and those registered at run time (API and scaler). */
  #count (pool: PoolConfig, s: PoolScaler): { current: number, pending: number, others: number } {
    const { health, registrations } = this.#deps
    const up = (url: string): boolean => health.up(pool.name, url) ?? true
    const owned = new Set(s.provider.urls())
    let current = 0
    let ownUp = 0
    let ownDown = 0
    const urls = new Set([...pool.backends.map(b => b.url), ...registrations.urls(pool.name)])
    for (const url of urls) {
      const isUp = up(url)
      if (isUp) current++
      if (owned.has(url)) { if (isUp) ownUp++; else ownDown++ }
    }
    let pending = s.provider.starting() + ownDown
    if (s.expect !== undefined) {
      if (Date.now() >= s.expect.until || current >= s.expect.to) s.expect = undefined
      else pending += s.expect.to - current
    }
    return { current, pending, others: current - ownUp }
  }

  async #tick (s: PoolScaler): Promise<void> {
    const serving = this.#deps.serving()
    if (s.busy || this.#closed || serving === undefined || this.#pools.get(s.name) !== s) return
    s.busy = true
    try {
      const pool = this.#deps.config().pools.get(s.name)
      if (pool === undefined) return
      const h = await serving.latency(s.name, s.config.window)
      if (this.#pools.get(s.name) !== s || this.#closed) return
      const { current, pending, others } = this.#count(pool, s)
      const observed = metricOf(h, s.config.metric)
      const r = decide(s.policy, s.state, { now: Date.now(), pool: s.name, current, pending, observed, rps: h.rps, count: h.count })
      s.state = r.state
      this.#record(s, r.event)
      s.current = current
      s.desired = r.event.to
      if (r.event.kind !== 'scale.hold') s.provider.apply(r.event, Math.max(0, r.event.to - others))
      if (s.provider.kind !== 'process' && r.event.to > r.event.from) {
        s.expect = { to: r.event.to, until: Date.now() + Math.max(EXTERNAL_WARMUP_MS, 2 * s.policy.window) }
      }
      this.#notifier.notify(r.event, s.config.notify)
    } catch (err) {
      this.#deps.log.error({ pool: s.name, reason: reasonOf(err) }, 'scale decision failed')
    } finally {
      s.busy = false
    }
  }

  #record (s: PoolScaler, e: ScaleEvent): void {
    s.events.push(e)
    if (s.events.length > EVENTS_KEPT) s.events.splice(0, s.events.length - EVENTS_KEPT)
    s.counts.set(e.kind, (s.counts.get(e.kind) ?? 0) + 1)
    const { log } = this.#deps
    const fields = { pool: e.pool, kind: e.kind, from: e.from, to: e.to, observed_ms: e.observed, target_ms: e.target, rps: e.rps, reason: e.reason }
    if (e.kind === 'scale.hold') { log.debug(fields, 'scale decision'); return }
    log[e.kind === 'scale.capped' || e.kind === 'scale.saturated' ? 'warn' : 'info'](fields, 'scale decision')
    const { time: _t, ...rest } = e
    this.#deps.events.push(e.kind, `pool ${e.pool}: ${e.from} -> ${e.to} backends (${e.reason})`, rest)
  }

  #addMember (pool: string, url: string): void {
    const serving = this.#deps.serving()
    const config = this.#deps.config()
    const p = config.pools.get(pool)
    if (serving === undefined || p === undefined || this.#closed) return
    const r = { pool, url, weight: 1, source: 'scale' as const }
    this.#deps.registrations.set(r)
    this.#deps.health.sync(config)
    serving.addMember(r, p.healthCheck === undefined)
    this.#deps.events.push('member-added', `${url} started by the scaler joins pool ${pool}${p.healthCheck === undefined ? '' : ' once its health check passes'}`, { pool, backend: url, source: 'scale' })
  }

  /** Takes a member out of every serving process and waits until none lists it (its in-flight requests finished). */
  async #removeMember (pool: string, url: string, drainMs: number): Promise<void> {
    const serving = this.#deps.serving()
    if (!this.#deps.registrations.has(pool, url)) return
    this.#deps.registrations.delete(pool, url)
    this.#deps.health.sync(this.#deps.config())
    if (serving === undefined) return
    serving.removeMember(pool, url, drainMs)
    this.#deps.events.push('member-removed', `draining ${url} in pool ${pool} before the scaler stops it`, { pool, backend: url, source: 'scale' })
    const deadline = Date.now() + drainMs + 1000
    while (Date.now() < deadline) {
      const st = await serving.status().catch(() => undefined)
      if (st?.pools.find(p => p.name === pool)?.backends.some(b => b.url === url) !== true) return
      await new Promise(resolve => { setTimeout(resolve, 50) })
    }
  }

  status (): PoolScaleStatus[] {
    return [...this.#pools.values()].map(s => {
      const c = s.config
      const last = s.events.at(-1)
      return {
        pool: s.name,
        provider: c.provider.kind,
        metric: c.metric,
        current: s.current,
        desired: s.desired,
        min: c.min,
        max: c.max,
        target: c.target.kind === 'fixed' ? c.target.ms : (s.state.learned?.ms ?? 0),
        targetLearned: c.target.kind === 'auto' ? s.state.learned !== undefined : undefined,
        learnedFrom: s.state.learned?.from,
        targetCeiling: c.targetCeiling,
        costPerHour: Math.round(s.current * c.costPerBackendHour * 1e6) / 1e6,
        maxCostPerHour: c.maxCostPerHour,
        saturated: s.state.saturated !== undefined,
        events: last === undefined ? [] : [...s.events],
      }
    })
  }

  /** Prometheus text: decisions by kind, backends now and desired, the target and the observed latency. */
  metricsText (): string {
    if (this.#pools.size === 0) return ''
    const lines = [
      '# HELP edge_scale_events_total Scale decisions by pool and kind.',
      '# TYPE edge_scale_events_total counter',
    ]
    for (const s of this.#pools.values()) for (const [kind, n] of s.counts) lines.push(`edge_scale_events_total{pool=${q(s.name)},kind=${q(kind)}} ${n}`)
    const gauge = (name: string, help: string, value: (s: PoolScaler) => number): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`)
      for (const s of this.#pools.values()) lines.push(`${name}{pool=${q(s.name)}} ${value(s)}`)
    }
    gauge('edge_scale_backends', 'Backends taking traffic at the last decision.', s => s.current)
    gauge('edge_scale_desired_backends', 'Backends the last decision asked for.', s => s.desired)
    gauge('edge_scale_target_seconds', 'The latency target in force (learned or configured).', s => (s.config.target.kind === 'fixed' ? s.config.target.ms : (s.state.learned?.ms ?? 0)) / 1000)
    gauge('edge_scale_observed_seconds', 'The metric the last decision read.', s => (s.events.at(-1)?.observed ?? 0) / 1000)
    return `${lines.join('\n')}\n`
  }

  /** Stops every scaler; the process provider's backends get SIGTERM. Safe at any point. */
  async close (): Promise<void> {
    this.#closed = true
    const all = [...this.#pools.values()]
    this.#pools.clear()
    await Promise.all(all.map(s => this.#stop(s)))
    await this.#notifier.close()
  }
}

function metricOf (h: WindowHistogram, metric: ScaleConfig['metric']): number {
  switch (metric) {
    case 'p50': return h.quantile(0.5)
    case 'p95': return h.quantile(0.95)
    case 'p99': return h.quantile(0.99)
    case 'mean': return h.mean
  }
}

function q (s: string): string {
  return JSON.stringify(s)
}
