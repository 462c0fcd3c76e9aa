// A retry budget (Finagle's and Envoy's idea): retries are allowed while they stay under `budget` of the
// requests seen over a sliding window, so a dead pool costs at most (1 + budget) x the traffic instead of
// (1 + attempts) x. A small per-second minimum lets low-traffic routes still retry a single failure.
// One budget per pool per worker; onRequest() and tryRetry() are O(1) and allocation-free.

export interface RetryBudgetOptions {
  /** Retries allowed as a fraction of requests in the window, e.g. 0.2. */
  readonly budget: number
  /** Retries always allowed per second, whatever the ratio says. */
  readonly minPerSecond?: number
  /** Sliding window in ms, kept in ten slots. */
  readonly window?: number
}

export interface RetryBudgetSnapshot {
  /** First tries in the window. */
  readonly requests: number
  /** Retries granted in the window. */
  readonly retries: number
  /** Retries refused since the budget was made. */
  readonly refused: number
  /** Whether a retry would be granted now. */
  readonly available: boolean
}

const SLOTS = 10

export class RetryBudget {
  readonly budget: number
  readonly minPerSecond: number
  readonly #slotMs: number
  readonly #requests = new Float64Array(SLOTS)
  readonly #retries = new Float64Array(SLOTS)
  /** Retries in the current one-second span, for the per-second minimum. */
  #secondRetries = 0
  #second = -1
  #sumRequests = 0
  #sumRetries = 0
  #refused = 0
  /** floor(now / slotMs) of the newest slot; -1 before the first call. */
  #current = -1

  constructor (opts: RetryBudgetOptions) {
    this.budget = opts.budget
    this.minPerSecond = opts.minPerSecond ?? 3
    this.#slotMs = Math.max(1, Math.round((opts.window ?? 10_000) / SLOTS))
  }

  /** Counts a request's first try; retries are not requests (they would fund themselves). */
  onRequest (now: number): void {
    this.#advance(now)
    this.#requests[this.#current % SLOTS]!++
    this.#sumRequests++
  }

  /** Asks to retry; a granted retry is counted against the budget, a refused one only in `refused`. */
  tryRetry (now: number): boolean {
    if (!this.#allowed(now)) {
      this.#refused++
      return false
    }
    this.#retries[this.#current % SLOTS]!++
    this.#sumRetries++
    this.#secondRetries++
    return true
  }

  snapshot (now: number): RetryBudgetSnapshot {
    const available = this.#allowed(now)
    return { requests: this.#sumRequests, retries: this.#sumRetries, refused: this.#refused, available }
  }

  #allowed (now: number): boolean {
    this.#advance(now)
    const second = Math.floor(now / 1000)
    if (second !== this.#second) {
      this.#second = second
      this.#secondRetries = 0
    }
    return this.#sumRetries < this.budget * this.#sumRequests || this.#secondRetries < this.minPerSecond
  }

  /** Moves the window to `now`, emptying the slots that fell out of it. Time going backwards stays in the newest slot. */
  #advance (now: number): void {
    const epoch = Math.floor(now / this.#slotMs)
    if (epoch <= this.#current) return
    const gap = this.#current < 0 ? SLOTS : Math.min(epoch - this.#current, SLOTS)
    for (let i = 0; i < gap; i++) {
      const s = (epoch - i) % SLOTS
      this.#sumRequests -= this.#requests[s]!
      this.#sumRetries -= this.#retries[s]!
      this.#requests[s] = 0
      this.#retries[s] = 0
    }
    this.#current = epoch
  }
}
