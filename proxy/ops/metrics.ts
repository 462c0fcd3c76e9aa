// Prometheus metrics (prom-client) for one process. The two per-request metrics are cells (metric-cells.ts),
// cached per route / member, so the hot path does an array index and an add, never a label lookup. Gauges are
// read from live objects at scrape time.
import { Counter, Gauge, Registry } from 'prom-client'
import { CellCounter, CellHistogram, type CounterCell, type HistogramCell } from './metric-cells.js'
import type { EdgeTable } from '../route/table.js'
import type { Member } from '../upstream/member.js'

export interface TunnelSessionStats {
  readonly sub: string
  readonly streams_open: number
  readonly streams_total: number
  readonly bytes_in: number
  readonly bytes_out: number
  readonly window_stalls: number
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export class EdgeMetrics {
  readonly registry = new Registry()
  readonly requests: CellCounter
  readonly upstreamLatency: CellHistogram
  readonly upstreamErrors: Counter<'pool' | 'backend' | 'kind'>
  readonly retries: Counter<'pool'>
  readonly ejections: Counter<'pool' | 'backend'>
  readonly internalErrors: Counter<'where'>
  readonly #byRoute = new Map<string, (CounterCell | undefined)[]>()
  readonly #latencyByMember = new WeakMap<Member, HistogramCell>()
  #table: () => EdgeTable | undefined

  constructor (table: () => EdgeTable | undefined) {
    this.#table = table
    const registers = [this.registry]
    this.requests = new CellCounter('edge_requests_total', 'Requests answered, by route and status code', this.registry)
    this.upstreamLatency = new CellHistogram('edge_upstream_latency_seconds', 'Time to the backend response head, by pool and backend', LATENCY_BUCKETS, this.registry)
    this.upstreamErrors = new Counter({ name: 'edge_upstream_errors_total', help: 'Upstream failures by kind (connect, timeout, response, reset)', labelNames: ['pool', 'backend', 'kind'], registers })
    this.retries = new Counter({ name: 'edge_retries_total', help: 'Requests retried on another backend', labelNames: ['pool'], registers })
    this.ejections = new Counter({ name: 'edge_ejections_total', help: 'Outlier ejections', labelNames: ['pool', 'backend'], registers })
    this.internalErrors = new Counter({ name: 'edge_internal_errors_total', help: 'Exceptions caught while handling a request, an upgrade or a connection (each is a bug: the log has its stack)', labelNames: ['where'], registers })
    const self = this
    new Gauge({
      name: 'edge_backend_inflight', help: 'Requests in flight to a backend', labelNames: ['pool', 'backend'], registers,
      collect () {
        this.reset()
        const t = self.#table()
        if (t === undefined) return
        for (const p of t.pools.values()) for (const m of p.members) this.set({ pool: p.name, backend: m.backend.url }, m.backend.inflight)
      },
    })
    new Gauge({
      name: 'edge_backend_up', help: '1 when a backend is available (healthy, not ejected, not draining), else 0', labelNames: ['pool', 'backend'], registers,
      aggregator: 'min',
      collect () {
        this.reset()
        const t = self.#table()
        if (t === undefined) return
        const now = Date.now()
        for (const p of t.pools.values()) for (const m of p.members) this.set({ pool: p.name, backend: m.backend.url }, m.available(now) ? 1 : 0)
      },
    })
  }

  /** edge_certificate_expiry_seconds{listener,name}: seconds until each served name's certificate expires. */
  watchCertificates (rows: () => Iterable<{ readonly listener: string, readonly names: readonly string[], readonly not_after: string }>): void {
    new Gauge({
      name: 'edge_certificate_expiry_seconds', help: 'Seconds until the certificate serving a name expires (negative: expired)', labelNames: ['listener', 'name'],
      registers: [this.registry],
      aggregator: 'min',
      collect () {
        this.reset()
        const now = Date.now()
        for (const r of rows()) for (const name of r.names) this.set({ listener: r.listener, name }, Math.round((Date.parse(r.not_after) - now) / 1000))
      },
    })
  }

  /** Tunnel sessions, streams, bytes and window stalls, read from the live sessions at scrape time. */
  watchTunnels (sessions: () => Iterable<TunnelSessionStats>): void {
    const registers = [this.registry]
    const gauge = (name: string, help: string, pick: (s: TunnelSessionStats) => number): void => {
      new Gauge({
        name, help, labelNames: ['client'], registers,
        collect () {
          this.reset()
          for (const s of sessions()) this.inc({ client: s.sub }, pick(s))
        },
      })
    }
    gauge('edge_tunnel_sessions', 'Live tunnel sessions by client (token subject)', () => 1)
    gauge('edge_tunnel_streams_open', 'Streams open over tunnel sessions', s => s.streams_open)
    gauge('edge_tunnel_streams_opened', 'Streams opened over the live sessions since they connected', s => s.streams_total)
    gauge('edge_tunnel_received_bytes', 'Bytes received over the live sessions (from tunnel clients)', s => s.bytes_in)
    gauge('edge_tunnel_sent_bytes', 'Bytes sent over the live sessions (to tunnel clients)', s => s.bytes_out)
    gauge('edge_tunnel_window_stalls', 'Times a stream had data but no flow-control window, over the live sessions', s => s.window_stalls)
  }

  countRequest (route: string, status: number): void {
    let arr = this.#byRoute.get(route)
    if (arr === undefined) { arr = []; this.#byRoute.set(route, arr) }
    let c = arr[status]
    if (c === undefined) { c = this.requests.cell({ route, code: String(status) }); arr[status] = c }
    c.value++
  }

  observeUpstream (pool: string, m: Member, seconds: number): void {
    let h = this.#latencyByMember.get(m)
    if (h === undefined) { h = this.upstreamLatency.cell({ pool, backend: m.backend.url }); this.#latencyByMember.set(m, h) }
    this.upstreamLatency.observe(h, seconds)
  }

  countUpstreamError (pool: string, backend: string, kind: string): void {
    this.upstreamErrors.labels(pool, backend, kind).inc()
  }

  text (): Promise<string> {
    return this.registry.metrics()
  }
}

export function errorKind (code: string | undefined): string {
  switch (code) {
    case 'EP_ERR_UPSTREAM_CONNECT': return 'connect'
    case 'EP_ERR_UPSTREAM_TIMEOUT': return 'timeout'
    case 'EP_ERR_UPSTREAM_RESPONSE': return 'response'
    case 'EP_ERR_UPSTREAM_RESET': return 'reset'
    default: return 'other'
  }
}
