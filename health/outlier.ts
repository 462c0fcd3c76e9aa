// Passive outlier detection on real traffic: a backend that fails `consecutiveFailures` requests in a row
// (5xx answers or connect errors) is ejected for base_ejection, doubled on each repeated ejection up to 5 minutes,
// while never more than max_ejected_percent of the pool is out at once. Runs per worker, beside the forwarder.
import type { OutlierConfig } from '../config/health.js'

export const MAX_EJECTION = 5 * 60_000

export type OutlierState = 'serving' | 'ejected'

export interface OutlierEvent {
  readonly time: number
  readonly pool: string
  readonly backend: string
  /** from === to === 'serving' when an ejection was due but the pool's cap held it back. */
  readonly from: OutlierState
  readonly to: OutlierState
  readonly reason: string
  /** End of the ejection (ms since epoch); 0 unless to === 'ejected'. */
  readonly until: number
}

export interface OutlierDeps {
  /** Ejection starts (until > now) and ends (until = 0); the caller keeps the backend out of balancing meanwhile. */
  setEjected (url: string, until: number, reason: string): void
  onEvent?: (event: OutlierEvent) => void
}

/** The n-th ejection (0-based) lasts base x 2^n, capped at MAX_EJECTION. */
export function ejectionTime (base: number, n: number): number {
  return Math.min(base * 2 ** n, MAX_EJECTION)
}

/** What counts as a failure: connect errors (status 0 here) and 5xx answers. */
export function countsAsFailure (status: number): boolean {
  return status === 0 || status >= 500
}

class Entry {
  consecutive = 0
  /** Ejections so far; decays by one for every base_ejection spent serving. */
  ejections = 0
  ejectedUntil = 0
  restoredAt = 0
  timer: NodeJS.Timeout | undefined
  constructor (readonly url: string) {}
}

export class OutlierDetector {
  readonly #entries = new Map<string, Entry>()
  #ejected = 0
  #closed = false

  constructor (readonly pool: string, readonly config: OutlierConfig, backends: Iterable<string>, private readonly deps: OutlierDeps) {
    this.update(backends)
  }

  /** Hot path: one map lookup and a counter reset. */
  success (url: string): void {
    const e = this.#entries.get(url)
    if (e !== undefined) e.consecutive = 0
  }

  /** Hot path: counts a 5xx or connect error; ejects at the threshold if the pool's cap allows. */
  failure (url: string, now: number, reason: string): void {
    const e = this.#entries.get(url)
    if (e === undefined || this.#closed || this.config.consecutiveFailures === 0 || e.ejectedUntil !== 0) return
    if (++e.consecutive < this.config.consecutiveFailures) return
    const cap = Math.floor(this.#entries.size * this.config.maxEjectedPercent / 100)
    if (this.#ejected >= cap) {
      // Report the hold-back once, when the threshold is first reached, not on every failure after it.
      if (e.consecutive === this.config.consecutiveFailures) {
        this.#emit(e, now, 'serving', 'serving', `${reason}; ${e.consecutive} consecutive failures, but ${this.#ejected} of ${this.#entries.size} backends are already ejected (max_ejected_percent ${this.config.maxEjectedPercent})`, 0)
      }
      return
    }
    this.#eject(e, now, reason)
  }

  /** Records one response by status (0 = connect error). */
  observe (url: string, status: number, now: number): void {
    if (countsAsFailure(status)) this.failure(url, now, status === 0 ? 'connect error' : `HTTP ${status}`)
    else this.success(url)
  }

  ejectedUntil (url: string): number {
    return this.#entries.get(url)?.ejectedUntil ?? 0
  }

  get ejectedCount (): number {
    return this.#ejected
  }

  /** Follows a reload: removed backends are forgotten (and released if ejected), new ones start clean. */
  update (backends: Iterable<string>): void {
    if (this.#closed) return
    const keep = new Set(backends)
    for (const [url, e] of this.#entries) {
      if (keep.has(url)) continue
      clearTimeout(e.timer)
      if (e.ejectedUntil !== 0) this.#ejected--
      this.#entries.delete(url)
    }
    for (const url of keep) if (!this.#entries.has(url)) this.#entries.set(url, new Entry(url))
  }

  status (): Array<{ url: string, consecutive: number, ejections: number, ejectedUntil: number }> {
    return [...this.#entries.values()].map(e => ({ url: e.url, consecutive: e.consecutive, ejections: e.ejections, ejectedUntil: e.ejectedUntil }))
  }

  /** Stops the restore timers; ejections in force simply lapse with the detector. Safe to call twice. */
  async close (): Promise<void> {
    this.#closed = true
    for (const e of this.#entries.values()) clearTimeout(e.timer)
  }

  #eject (e: Entry, now: number, reason: string): void {
    if (e.restoredAt !== 0) e.ejections = Math.max(0, e.ejections - Math.floor((now - e.restoredAt) / this.config.baseEjection))
    const length = ejectionTime(this.config.baseEjection, e.ejections)
    e.ejections++
    e.ejectedUntil = now + length
    e.consecutive = 0
    this.#ejected++
    e.timer = setTimeout(this.#restore, length, e)
    e.timer.unref()
    const why = `${reason}; ${this.config.consecutiveFailures} consecutive failures, ejected for ${length}ms (ejection ${e.ejections})`
    this.deps.setEjected(e.url, e.ejectedUntil, why)
    this.#emit(e, now, 'serving', 'ejected', why, e.ejectedUntil)
  }

  readonly #restore = (e: Entry): void => {
    if (this.#closed || this.#entries.get(e.url) !== e) return
    const now = Date.now()
    e.timer = undefined
    e.ejectedUntil = 0
    e.restoredAt = now
    e.consecutive = 0
    this.#ejected--
    this.deps.setEjected(e.url, 0, 'ejection over')
    this.#emit(e, now, 'ejected', 'serving', 'ejection over', 0)
  }

  #emit (e: Entry, time: number, from: OutlierState, to: OutlierState, reason: string, until: number): void {
    this.deps.onEvent?.({ time, pool: this.pool, backend: e.url, from, to, reason, until })
  }
}
