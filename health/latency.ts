// Per-backend latency statistics: an EWMA for balancers, and sliding-window percentiles and request rates
// for the admin API and metrics. record() runs once per request, so it only touches preallocated typed arrays.

/**
 * Log-linear buckets (HdrHistogram-like) over integer microseconds: values below 16 µs get one bucket each,
 * above that every power of two is split into 16 equal sub-buckets. A bucket is at most 1/16 of its lower
 * bound wide, so reporting its midpoint is within ±3.2% of the true value. 448 buckets reach 2^31 µs (~35 min).
 */
const SUB_BITS = 4
const SUB = 1 << SUB_BITS
const MAX_US = 2 ** 31 - 1
export const BUCKETS = (31 - SUB_BITS) * SUB + SUB

export function bucketOf (us: number): number {
  if (us < SUB) return us
  const e = 31 - Math.clz32(us)
  return (e - SUB_BITS) * SUB + (us >>> (e - SUB_BITS))
}

/** The bucket's lower bound and width, in µs. */
export function bucketRange (i: number): [lo: number, width: number] {
  if (i < 2 * SUB) return [i, 1]
  const shift = Math.floor(i / SUB) - 1
  return [((i % SUB) + SUB) * 2 ** shift, 2 ** shift]
}

export interface Window {
  readonly name: string
  /** Nominal span in ms. */
  readonly span: number
}

/** The three windows we report. 10 s reads 1-second slots; 1 m and 5 m read 10-second slots. */
export const WINDOWS = {
  '10s': { name: '10s', span: 10_000 },
  '1m': { name: '1m', span: 60_000 },
  '5m': { name: '5m', span: 300_000 },
} as const satisfies Record<string, Window>

export interface LatencySnapshot {
  readonly window: string
  /** Requests recorded in the window. */
  readonly count: number
  /** Requests per second over the part of the window the stats have existed for. */
  readonly rps: number
  readonly mean: number
  readonly p50: number
  readonly p95: number
  readonly p99: number
  readonly max: number
}

/**
 * A ring of time slots, each a full histogram plus count/sum/max. The current slot is whichever one
 * floor(now / slotMs) maps to; moving into a slot clears it first, so old data rolls off without a timer.
 */
class SlotRing {
  readonly counts: Uint32Array
  readonly totals: Float64Array
  readonly sums: Float64Array
  readonly maxes: Float64Array
  /** floor(t / slotMs) of the data each slot holds; -1 = empty. */
  readonly epochs: Float64Array
  current = -1

  constructor (readonly slotMs: number, readonly slots: number) {
    this.counts = new Uint32Array(slots * BUCKETS)
    this.totals = new Float64Array(slots)
    this.sums = new Float64Array(slots)
    this.maxes = new Float64Array(slots)
    this.epochs = new Float64Array(slots).fill(-1)
  }

  record (bucket: number, ms: number, now: number): void {
    const epoch = Math.floor(now / this.slotMs)
    const s = epoch % this.slots
    if (this.epochs[s] !== epoch) this.#reset(s, epoch)
    this.counts[s * BUCKETS + bucket]!++
    this.totals[s]!++
    this.sums[s]! += ms
    if (ms > this.maxes[s]!) this.maxes[s] = ms
  }

  #reset (s: number, epoch: number): void {
    this.counts.fill(0, s * BUCKETS, (s + 1) * BUCKETS)
    this.totals[s] = 0
    this.sums[s] = 0
    this.maxes[s] = 0
    this.epochs[s] = epoch
  }

  /** Adds the last `n` slots (current one included) into `into`; returns [count, sum, max]. */
  collect (n: number, now: number, into: Uint32Array, clear = true): [number, number, number] {
    const newest = Math.floor(now / this.slotMs)
    if (clear) into.fill(0)
    let count = 0
    let sum = 0
    let max = 0
    for (let epoch = newest - n + 1; epoch <= newest; epoch++) {
      const s = epoch % this.slots
      if (epoch < 0 || this.epochs[s] !== epoch) continue
      const base = s * BUCKETS
      for (let b = 0; b < BUCKETS; b++) into[b]! += this.counts[base + b]!
      count += this.totals[s]!
      sum += this.sums[s]!
      if (this.maxes[s]! > max) max = this.maxes[s]!
    }
    return [count, sum, max]
  }
}

export interface LatencyOptions {
  /** Weight of the newest sample in the EWMA (the Backend's own uses 0.2). */
  readonly ewmaDecay?: number
  /** Creation time, ms since epoch; rates are not diluted by time before it. */
  readonly now?: number
}

/** Latency and rate statistics for one backend. Memory is fixed (~72 KB); record() is O(1) and allocation-free. */
export class LatencyStats {
  /** EWMA of recorded latencies in ms (0 = no sample yet). */
  ewma = 0
  /** Every request ever recorded. */
  total = 0
  readonly #fine = new SlotRing(1000, 10)
  readonly #coarse = new SlotRing(10_000, 30)
  readonly #scratch = new Uint32Array(BUCKETS)
  readonly #decay: number
  readonly #since: number

  constructor (opts: LatencyOptions = {}) {
    this.#decay = opts.ewmaDecay ?? 0.2
    this.#since = opts.now ?? Date.now()
  }

  /** Records one request's latency in milliseconds at time `now` (ms since epoch). */
  record (ms: number, now: number): void {
    const v = ms > 0 ? ms : 0
    this.ewma = this.ewma === 0 ? v : this.ewma + this.#decay * (v - this.ewma)
    this.total++
    const us = Math.round(v * 1000)
    const b = bucketOf(us < MAX_US ? us : MAX_US)
    this.#fine.record(b, v, now)
    this.#coarse.record(b, v, now)
  }

  /**
   * Statistics over a window. The window is made of whole slots, the current one partly filled, so "10s"
   * covers between 9 and 10 s of history and "1m" between 50 and 60 s.
   */
  snapshot (window: Window, now: number): LatencySnapshot {
    const fine = window.span <= this.#fine.slotMs * this.#fine.slots
    const ring = fine ? this.#fine : this.#coarse
    const n = Math.min(ring.slots, Math.ceil(window.span / ring.slotMs))
    const [count, sum, max] = ring.collect(n, now, this.#scratch)
    const covered = (n - 1) * ring.slotMs + (now % ring.slotMs)
    const seconds = Math.max(Math.min(covered, now - this.#since), 1000) / 1000
    return {
      window: window.name,
      count,
      rps: count / seconds,
      mean: count === 0 ? 0 : sum / count,
      p50: this.#quantile(0.5, count, max),
      p95: this.#quantile(0.95, count, max),
      p99: this.#quantile(0.99, count, max),
      max,
    }
  }

  /**
   * Adds the last `windowMs` (in whole slots: between windowMs and windowMs plus one slot of history) into a
   * histogram that merges several backends (or workers) before reading a percentile: the scaler's pool latency.
   */
  addTo (h: WindowHistogram, windowMs: number, now: number): void {
    const fine = windowMs < this.#fine.slotMs * this.#fine.slots
    const ring = fine ? this.#fine : this.#coarse
    const n = Math.min(ring.slots, Math.floor(windowMs / ring.slotMs) + 1)
    const [count, sum, max] = ring.collect(n, now, h.counts, false)
    h.count += count
    h.sum += sum
    if (max > h.max) h.max = max
    const covered = Math.max(Math.min((n - 1) * ring.slotMs + (now % ring.slotMs), now - this.#since), 1000)
    if (covered > h.spanMs) h.spanMs = covered
  }

  /** All three windows, for the admin API. */
  snapshots (now: number): LatencySnapshot[] {
    return [this.snapshot(WINDOWS['10s'], now), this.snapshot(WINDOWS['1m'], now), this.snapshot(WINDOWS['5m'], now)]
  }

  /** The value (ms) at quantile q of what collect() left in the scratch histogram: the bucket's midpoint. */
  #quantile (q: number, count: number, max: number): number {
    if (count === 0) return 0
    const rank = Math.ceil(q * count)
    let seen = 0
    for (let b = 0; b < BUCKETS; b++) {
      seen += this.#scratch[b]!
      if (seen >= rank) {
        const [lo, width] = bucketRange(b)
        const mid = (lo + (width - 1) / 2) / 1000
        return mid < max ? mid : max
      }
    }
    return max
  }
}

/** The most history addTo() may read for a window of `windowMs`: a decision waits this long after a change. */
export function windowSpan (windowMs: number): number {
  const slot = windowMs < 10_000 ? 1000 : 10_000
  return (Math.floor(windowMs / slot) + 1) * slot
}

/** A latency histogram merged over backends and workers (the scaler reads a pool's percentile from it). */
export class WindowHistogram {
  readonly counts = new Uint32Array(BUCKETS)
  count = 0
  sum = 0
  max = 0
  /** The longest span of history a part covered, ms (for req/s). */
  spanMs = 0

  get rps (): number { return this.spanMs === 0 ? 0 : this.count / (this.spanMs / 1000) }
  get mean (): number { return this.count === 0 ? 0 : this.sum / this.count }

  /** The value (ms) at quantile q: the bucket's midpoint, at most the maximum seen. */
  quantile (q: number): number {
    if (this.count === 0) return 0
    const rank = Math.ceil(q * this.count)
    let seen = 0
    for (let b = 0; b < BUCKETS; b++) {
      seen += this.counts[b]!
      if (seen >= rank) {
        const [lo, width] = bucketRange(b)
        const mid = (lo + (width - 1) / 2) / 1000
        return mid < this.max ? mid : this.max
      }
    }
    return this.max
  }

  /** Plain data for IPC: the non-empty buckets as [index, count] pairs. */
  toJSON (): WindowHistogramJson {
    const buckets: [number, number][] = []
    for (let b = 0; b < BUCKETS; b++) if (this.counts[b] !== 0) buckets.push([b, this.counts[b]!])
    return { buckets, count: this.count, sum: this.sum, max: this.max, spanMs: this.spanMs }
  }

  /** Adds another process's histogram. */
  merge (j: WindowHistogramJson): void {
    for (const [b, c] of j.buckets) if (b >= 0 && b < BUCKETS) this.counts[b]! += c
    this.count += j.count
    this.sum += j.sum
    if (j.max > this.max) this.max = j.max
    if (j.spanMs > this.spanMs) this.spanMs = j.spanMs
  }
}

export interface WindowHistogramJson {
  readonly buckets: readonly (readonly [number, number])[]
  readonly count: number
  readonly sum: number
  readonly max: number
  readonly spanMs: number
}
