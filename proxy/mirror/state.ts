// The shadow's state per pool: counts and learned noise that outlive reloads (PoolStats), the per-generation
// rules and metric cells (PoolShadow), and per endpoint the field statistics and latency samples.
import type { ShadowConfig } from '../../config/types.js'
import type { CellCounter, CounterCell } from '../ops/metric-cells.js'
import { FieldStats, round4, type CompareRules } from './compare.js'
import { EndpointMatcher } from './endpoints.js'
import type { RecordStore } from './store.js'

/** Endpoints kept per pool; further ones count together as "(other)" (bounded memory and metric labels). */
export const MAX_ENDPOINTS = 200
/** Latency samples kept per endpoint and side for the live percentiles. */
const RING = 512
/** Bytes of each body kept in a record. */
export const BODY_SAMPLE = 2048
/** Response bodies are compared up to this many bytes (or max_body, if larger); beyond, by length. */
const MIN_RESPONSE_CAP = 1024 * 1024

export type SkipReason = 'sampled_out' | 'method' | 'body_too_large' | 'body_aborted' | 'no_backend' | 'primary_failed'


export class Ring {
  readonly values = new Float64Array(RING)
  n = 0
  add (v: number): void { this.values[this.n++ % RING] = v }
  percentiles (): { p50: number, p95: number, p99: number } | undefined {
    const k = Math.min(this.n, RING)
    if (k === 0) return undefined
    const s = this.values.slice(0, k).sort()
    const at = (q: number): number => round4(s[Math.min(k - 1, Math.floor(q * k))] as number)
    return { p50: at(0.5), p95: at(0.95), p99: at(0.99) }
  }
}

export class EndpointState {
  readonly stats = new FieldStats()
  differing = 0
  readonly primaryMs = new Ring()
  readonly shadowMs = new Ring()
  constructor (readonly name: string, readonly compared: CounterCell, readonly differ: CounterCell) {}
}

/** What a pool's shadow has done since the edge started; outlives reloads (keyed by pool name). */
export class PoolStats {
  /** Cases holding a slot, across config generations (a reload must not forget the copies still out). */
  inflight = 0
  mirrored = 0
  dropped = 0
  errors = 0
  readonly skipped = new Map<SkipReason, number>()
  readonly endpoints = new Map<string, EndpointState>()
}

/** Counted per request, so cells (metric-cells.ts): an add, no label hashing. */
export interface Metrics {
  readonly mirrored: CellCounter
  readonly skipped: CellCounter
  readonly dropped: CellCounter
  readonly compared: CellCounter
  readonly differing: CellCounter
  readonly errors: CellCounter
}

/** One pool's shadow for one config generation. */
export class PoolShadow {
  readonly matcher: EndpointMatcher
  readonly rules: CompareRules
  readonly responseCap: number
  readonly sampleBar: number
  readonly #skip = new Map<SkipReason, CounterCell>()
  readonly mirroredC: CounterCell
  readonly droppedC: CounterCell

  constructor (readonly pool: string, readonly config: ShadowConfig, readonly stats: PoolStats, readonly metrics: Metrics, readonly store: RecordStore | undefined) {
    this.matcher = new EndpointMatcher(config.endpoints)
    this.rules = { ignoreHeaders: config.ignoreHeaders, ignoreJson: config.ignoreJson }
    this.responseCap = Math.max(config.maxBody, MIN_RESPONSE_CAP)
    this.sampleBar = config.sample * 0x1_0000_0000
    this.mirroredC = metrics.mirrored.cell({ pool })
    this.droppedC = metrics.dropped.cell({ pool })
  }

  get inflight (): number { return this.stats.inflight }
  set inflight (n: number) { this.stats.inflight = n }

  skip (reason: SkipReason): void {
    let c = this.#skip.get(reason)
    if (c === undefined) { c = this.metrics.skipped.cell({ pool: this.pool, reason }); this.#skip.set(reason, c) }
    c.value++
    this.stats.skipped.set(reason, (this.stats.skipped.get(reason) ?? 0) + 1)
  }

  endpoint (method: string, path: string): EndpointState {
    let name = `${method} ${this.matcher.match(path)}`
    let e = this.stats.endpoints.get(name)
    if (e !== undefined) return e
    if (this.stats.endpoints.size >= MAX_ENDPOINTS) {
      name = '(other)'
      e = this.stats.endpoints.get(name)
      if (e !== undefined) return e
    }
    e = new EndpointState(name, this.metrics.compared.cell({ pool: this.pool, endpoint: name }), this.metrics.differing.cell({ pool: this.pool, endpoint: name }))
    this.stats.endpoints.set(name, e)
    return e
  }
}

/** One sampled request: the primary's answer as the client got it, the shadow's and the secondary's. */
