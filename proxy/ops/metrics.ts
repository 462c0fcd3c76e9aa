// Prometheus metrics (prom-client) for one process. The per-request metrics are cells (metric-cells.ts), cached
// per route / member, so the hot path does an array index and an add, never a label lookup. Gauges are read from
// live objects at scrape time. Every monotonic count is a counter named *_total; prom-client's default process_*
// and nodejs_* collectors run in each process (with workers, the primary sums them over the workers).
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
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
const CODE_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx']

/** A route's cells: requests by status, duration by status class, bytes each way. */
interface RouteCells {
  readonly codes: (CounterCell | undefined)[]
  readonly durations: (HistogramCell | undefined)[]
  readonly bytesIn: CounterCell
  readonly bytesOut: CounterCell
}

/** Cumulative numbers of one tunnel client (token subject): live sessions plus those that closed. */
export interface TunnelClientTotals {
  readonly sub: string
  readonly streams_total: number
  readonly bytes_in: number
  readonly bytes_out: number
  readonly window_stalls: number
}

export class EdgeMetrics {
  readonly registry = new Registry()
  readonly requests: CellCounter
  readonly requestDuration: CellHistogram
  readonly receivedBytes: CellCounter
  readonly sentBytes: CellCounter
  readonly upstreamLatency: CellHistogram
  readonly upstreamErrors: Counter<'pool' | 'backend' | 'kind'>
  readonly retries: Counter<'pool'>
  readonly ejections: Counter<'pool' | 'backend'>
  readonly internalErrors: Counter<'where'>
  readonly #byRoute = new Map<string, RouteCells>()
  readonly #latencyByMember = new WeakMap<Member, HistogramCell>()
  #table: () => EdgeTable | undefined

  constructor (table: () => EdgeTable | undefined) {
    this.#table = table
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry })
    this.requests = new CellCounter('edge_requests_total', 'Requests answered, by route and status code', this.registry)
    this.requestDuration = new CellHistogram('edge_request_duration_seconds', 'Time from the request to the end of the answer, as the client saw it, by route and status class', LATENCY_BUCKETS, this.registry)
    this.receivedBytes = new CellCounter('edge_received_bytes_total', 'Request body bytes received from clients, by route', this.registry)
    this.sentBytes = new CellCounter('edge_sent_bytes_total', 'Response bytes sent to clients (HTTP/1.1: head included), by route', this.registry)
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

  /**
   * Tunnel sessions and open streams (gauges, from the live sessions), and per client the streams, bytes and window
   * stalls since the edge started (counters: sessions that closed still count).
   */
  watchTunnels (sessions: () => Iterable<TunnelSessionStats>, totals: () => Iterable<TunnelClientTotals>): void {
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
    const counter = (name: string, help: string, pick: (s: TunnelClientTotals) => number): void => {
      new Counter({
        name, help, labelNames: ['client'], registers,
        collect () {
          this.reset()
          for (const s of totals()) this.inc({ client: s.sub }, pick(s))
        },
      })
    }
    gauge('edge_tunnel_sessions', 'Live tunnel sessions by client (token subject)', () => 1)
    gauge('edge_tunnel_streams_open', 'Streams open over tunnel sessions', s => s.streams_open)
    counter('edge_tunnel_streams_opened_total', 'Streams opened over tunnel sessions, by client', s => s.streams_total)
    counter('edge_tunnel_received_bytes_total', 'Bytes received from tunnel clients', s => s.bytes_in)
    counter('edge_tunnel_sent_bytes_total', 'Bytes sent to tunnel clients', s => s.bytes_out)
    counter('edge_tunnel_window_stalls_total', 'Times a stream had data but no flow-control window', s => s.window_stalls)
  }

  /** edge_listener_connections{listener}: client connections open on each listener, at scrape time. */
  watchListeners (listeners: () => Iterable<{ readonly config: { readonly name: string }, openConnections (): Promise<number> }>): void {
    new Gauge({
      name: 'edge_listener_connections', help: 'Client connections open on a listener (upgraded and spliced ones included)', labelNames: ['listener'],
      registers: [this.registry],
      async collect () {
        this.reset()
        for (const l of listeners()) this.set({ listener: l.config.name }, await l.openConnections())
      },
    })
  }

  /** One answered request: its status, how long the client waited (s), and the bytes each way. */
  countRequest (route: string, status: number, seconds: number, bytesIn: number, bytesOut: number): void {
    let r = this.#byRoute.get(route)
    if (r === undefined) {
      r = { codes: [], durations: [], bytesIn: this.receivedBytes.cell({ route }), bytesOut: this.sentBytes.cell({ route }) }
      this.#byRoute.set(route, r)
    }
    let c = r.codes[status]
    if (c === undefined) { c = this.requests.cell({ route, code: String(status) }); r.codes[status] = c }
    c.value++
    const k = status >= 100 && status < 600 ? ((status / 100) | 0) - 1 : 4
    let h = r.durations[k]
    if (h === undefined) { h = this.requestDuration.cell({ route, code_class: CODE_CLASSES[k] as string }); r.durations[k] = h }
    this.requestDuration.observe(h, seconds)
    r.bytesIn.value += bytesIn
    r.bytesOut.value += bytesOut
  }

  /** What the status page shows per route: requests, 5xx answers and bytes each way, since this process started. */
  routeTotals (route: string): { requests: number, errors: number, bytes_in: number, bytes_out: number } {
    const r = this.#byRoute.get(route)
    if (r === undefined) return { requests: 0, errors: 0, bytes_in: 0, bytes_out: 0 }
    let requests = 0
    let errors = 0
    for (let code = 0; code < r.codes.length; code++) {
      const c = r.codes[code]
      if (c === undefined) continue
      requests += c.value
      if (code >= 500) errors += c.value
    }
    return { requests, errors, bytes_in: r.bytesIn.value, bytes_out: r.bytesOut.value }
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
