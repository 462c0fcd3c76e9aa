// Hot-path metrics as plain numbers, turned into prom-client samples only at scrape time.
//
// prom-client's own label children hash their label set and allocate on every inc()/observe() (about 0.3 µs per
// call, measured): fine for rare events, a cost on every proxied request. A cell here is an object holding
// numbers; counting is an add. Each metric implements what a prom-client Registry reads of a metric (`name` and
// `get()`), so /metrics text and the cluster AggregatorRegistry (which sums worker values by name and labels)
// treat it like a built-in Counter or Histogram.
import type { Metric, Registry } from 'prom-client'

type Labels = Readonly<Record<string, string>>

interface Sample {
  readonly labels: Labels
  readonly value: number
  readonly metricName?: string
}

interface MetricJson {
  readonly name: string
  readonly help: string
  readonly type: 'counter' | 'histogram'
  readonly aggregator: 'sum'
  readonly values: Sample[]
}

export interface CounterCell {
  value: number
}

export interface HistogramCell {
  /** Per bucket (upper bounds as given, then +Inf), not cumulative. */
  readonly counts: Float64Array
  sum: number
  count: number
}

function register (registry: Registry, metric: { readonly name: string, get (): Promise<MetricJson> }): void {
  // The Registry reads only `name` and `get()` of a metric; its type names prom-client's classes.
  registry.registerMetric(metric as unknown as Metric)
}

function keyOf (labels: Labels): string {
  return JSON.stringify(labels)
}

export class CellCounter {
  readonly #cells = new Map<string, { readonly labels: Labels, readonly cell: CounterCell }>()

  constructor (readonly name: string, readonly help: string, registry: Registry) {
    register(registry, this)
  }

  /** The cell for a label set (created at zero); callers cache it and add to `value`. */
  cell (labels: Labels): CounterCell {
    const key = keyOf(labels)
    let e = this.#cells.get(key)
    if (e === undefined) { e = { labels: { ...labels }, cell: { value: 0 } }; this.#cells.set(key, e) }
    return e.cell
  }

  get (): Promise<MetricJson> {
    const values: Sample[] = []
    for (const { labels, cell } of this.#cells.values()) values.push({ labels, value: cell.value })
    return Promise.resolve({ name: this.name, help: this.help, type: 'counter', aggregator: 'sum', values })
  }
}

export class CellHistogram {
  readonly #cells = new Map<string, { readonly labels: Labels, readonly cell: HistogramCell }>()
  readonly #bounds: Float64Array

  constructor (readonly name: string, readonly help: string, bounds: readonly number[], registry: Registry) {
    this.#bounds = Float64Array.from(bounds)
    register(registry, this)
  }

  cell (labels: Labels): HistogramCell {
    const key = keyOf(labels)
    let e = this.#cells.get(key)
    if (e === undefined) {
      e = { labels: { ...labels }, cell: { counts: new Float64Array(this.#bounds.length + 1), sum: 0, count: 0 } }
      this.#cells.set(key, e)
    }
    return e.cell
  }

  /** Adds one observation (a bucket's bound is inclusive, as in Prometheus: le = "less than or equal"). */
  observe (cell: HistogramCell, value: number): void {
    const bounds = this.#bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]!) i++
    cell.counts[i]!++
    cell.sum += value
    cell.count++
  }

  get (): Promise<MetricJson> {
    const values: Sample[] = []
    const bucket = `${this.name}_bucket`
    for (const { labels, cell } of this.#cells.values()) {
      let acc = 0
      for (let i = 0; i < cell.counts.length; i++) {
        acc += cell.counts[i]!
        const le = i < this.#bounds.length ? String(this.#bounds[i]) : '+Inf'
        values.push({ labels: { le, ...labels }, value: acc, metricName: bucket })
      }
      values.push({ labels, value: cell.sum, metricName: `${this.name}_sum` })
      values.push({ labels, value: cell.count, metricName: `${this.name}_count` })
    }
    return Promise.resolve({ name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values })
  }
}
