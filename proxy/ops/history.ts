// The status page's history: every few seconds, the control process samples the merged status (every worker's)
// into a bounded ring per pool and per member, so a page opened now draws the last 15 minutes at once instead of
// starting from nothing. Rates come from the requests/failures counters between samples; latency from each
// member's 10-second window.
import type { EdgeStatus, LatencyStatus } from './status.js'

export interface HistoryOptions {
  /** Time between samples (ms). */
  readonly intervalMs?: number
  /** How much history to keep (ms). */
  readonly spanMs?: number
}

export interface HistoryDeps {
  /** The merged status of every serving process, or undefined when none answered. */
  status (): Promise<EdgeStatus | undefined>
}

/** One series, column by column (sample times in ms since epoch); a latency of null: nothing answered in the window. */
export interface SeriesJson {
  readonly t: number[]
  readonly rps: number[]
  /** Failed tries over tries between two samples (0 to 1). */
  readonly error_rate: number[]
  readonly p50: (number | null)[]
  readonly p95: (number | null)[]
  readonly p99: (number | null)[]
}

export interface HistoryJson {
  readonly interval_ms: number
  readonly span_ms: number
  readonly pools: { name: string, series: SeriesJson, members: { url: string, series: SeriesJson }[] }[]
}

class Series implements SeriesJson {
  readonly t: number[] = []
  readonly rps: number[] = []
  readonly error_rate: number[] = []
  readonly p50: (number | null)[] = []
  readonly p95: (number | null)[] = []
  readonly p99: (number | null)[] = []

  push (t: number, rps: number, errorRate: number, lat: { p50: number, p95: number, p99: number } | undefined, max: number): void {
    this.t.push(t)
    this.rps.push(round3(rps))
    this.error_rate.push(round3(errorRate))
    this.p50.push(lat === undefined ? null : round3(lat.p50))
    this.p95.push(lat === undefined ? null : round3(lat.p95))
    this.p99.push(lat === undefined ? null : round3(lat.p99))
    while (this.t.length > max) {
      this.t.shift(); this.rps.shift(); this.error_rate.shift(); this.p50.shift(); this.p95.shift(); this.p99.shift()
    }
  }

  get last (): number { return this.t[this.t.length - 1] ?? 0 }
}

interface Tracked {
  readonly series: Series
  /** Counters at the previous sample. */
  requests: number
  failures: number
}

export class StatusHistory {
  readonly intervalMs: number
  readonly spanMs: number
  readonly #deps: HistoryDeps
  readonly #max: number
  readonly #pools = new Map<string, { series: Series, members: Map<string, Tracked> }>()
  #lastSample = 0
  #timer: NodeJS.Timeout | undefined
  #busy = false

  constructor (opts: HistoryOptions, deps: HistoryDeps) {
    this.intervalMs = opts.intervalMs ?? 5000
    this.spanMs = opts.spanMs ?? 15 * 60_000
    this.#max = Math.max(2, Math.ceil(this.spanMs / this.intervalMs))
    this.#deps = deps
  }

  start (): void {
    if (this.#timer !== undefined) return
    this.#timer = setInterval(() => { void this.sample() }, this.intervalMs)
    this.#timer.unref()
  }

  /** Takes one sample now (a sample still waiting for its status is not doubled). */
  async sample (now = Date.now()): Promise<void> {
    if (this.#busy) return
    this.#busy = true
    try {
      const st = await this.#deps.status().catch(() => undefined)
      if (st !== undefined) this.#record(st, now)
    } finally {
      this.#busy = false
    }
  }

  #record (st: EdgeStatus, now: number): void {
    const dt = this.#lastSample === 0 ? 0 : (now - this.#lastSample) / 1000
    this.#lastSample = now
    for (const p of st.pools) {
      let pool = this.#pools.get(p.name)
      if (pool === undefined) { pool = { series: new Series(), members: new Map() }; this.#pools.set(p.name, pool) }
      let rps = 0
      let tries = 0
      let failed = 0
      const lats: LatencyStatus[] = []
      for (const b of p.backends) {
        let m = pool.members.get(b.url)
        const fresh = m === undefined
        if (m === undefined) { m = { series: new Series(), requests: b.requests, failures: b.failures }; pool.members.set(b.url, m) }
        // Counters restart with a worker: a drop is a restart, not negative traffic.
        const dr = fresh ? 0 : Math.max(0, b.requests - m.requests)
        const df = fresh ? 0 : Math.max(0, b.failures - m.failures)
        m.requests = b.requests
        m.failures = b.failures
        // The first sample of a member has no previous counters: the 10-second window's rate stands in.
        const r = fresh || dt === 0 ? b.recent.rps : dr / dt
        const lat = b.recent.count > 0 ? b.recent : undefined
        m.series.push(now, r, dr === 0 ? (df > 0 ? 1 : 0) : Math.min(1, df / dr), lat, this.#max)
        rps += r
        tries += dr
        failed += df
        if (lat !== undefined) lats.push(lat)
      }
      pool.series.push(now, rps, tries === 0 ? (failed > 0 ? 1 : 0) : Math.min(1, failed / tries), poolLatency(lats), this.#max)
      // Members gone for longer than the span leave the history.
      for (const [url, m] of pool.members) if (m.series.last < now - this.spanMs) pool.members.delete(url)
    }
    for (const [name, pool] of this.#pools) if (pool.series.last < now - this.spanMs) this.#pools.delete(name)
  }

  json (): HistoryJson {
    return {
      interval_ms: this.intervalMs,
      span_ms: this.spanMs,
      pools: [...this.#pools].map(([name, p]) => ({ name, series: p.series, members: [...p.members].map(([url, m]) => ({ url, series: m.series })) })),
    }
  }

  close (): void {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
  }
}

/** A pool's percentiles from its members' windows: count-weighted p50 and p95, the slowest member's p99. */
function poolLatency (lats: readonly LatencyStatus[]): { p50: number, p95: number, p99: number } | undefined {
  let n = 0
  let p50 = 0
  let p95 = 0
  let p99 = 0
  for (const l of lats) {
    n += l.count
    p50 += l.p50 * l.count
    p95 += l.p95 * l.count
    if (l.p99 > p99) p99 = l.p99
  }
  return n === 0 ? undefined : { p50: p50 / n, p95: p95 / n, p99 }
}

function round3 (n: number): number {
  return Math.round(n * 1000) / 1000
}
