// The status snapshot of one process, and the merge of several (one per worker) into the edge's view.
import type { Edge } from '../edge.js'
import { formatAddress } from '../../config/address.js'
import { WINDOWS } from '../../health/latency.js'
import type { CertificateRow } from '../tls/edge-tls.js'
import type { MemberSource } from '../upstream/members.js'
import { mergeShadow, type ShadowSummary } from '../mirror/summary.js'

export interface BackendStatus {
  url: string
  weight: number
  /** Who added the member: config, api, tunnel, scale or cluster. */
  source: MemberSource
  /**
   * What the status page shows: "healthy", "unhealthy" (active check), "unreachable" (a refused connection, for
   * the cooldown), "draining", "failing" (no check, and every try so far failed) or "unknown" (no check, no try yet).
   */
  state: MemberState
  healthy: boolean
  available: boolean
  draining: boolean
  ejected: boolean
  inflight: number
  requests: number
  failures: number
  ewma_ms: number
  /** Over the last minute, through this pool (not the backend's other pools): requests, req/s and time-to-first-byte percentiles (ms). */
  latency: LatencyStatus
  /** The same over the last 10 s (what the history samples). */
  recent: LatencyStatus
}

export type MemberState = 'healthy' | 'unhealthy' | 'unreachable' | 'draining' | 'failing' | 'unknown'

/** A member's state from its flags and counters; `checked`: its pool has an active health check. */
export function memberState (b: Pick<BackendStatus, 'draining' | 'healthy' | 'available' | 'requests' | 'failures'>, checked: boolean): MemberState {
  if (b.draining) return 'draining'
  if (!b.healthy) return 'unhealthy'
  if (!b.available) return 'unreachable'
  if (!checked && b.requests === 0) return 'unknown'
  if (!checked && b.failures >= b.requests) return 'failing'
  return 'healthy'
}

export interface LatencyStatus { window: string, count: number, rps: number, p50: number, p95: number, p99: number }

export interface PoolStatus {
  name: string
  balance: string
  /** Whether the pool has an active health check ([pools.NAME.health]); without one, a member nothing went to yet is "unknown". */
  checked: boolean
  shards: { name: string, backends: string[] }[] | undefined
  backends: BackendStatus[]
}

export interface EdgeStatus {
  pids: number[]
  config: string
  /** Each listener's open client connections now and bytes from and to clients since start. */
  listeners: { name: string, protocol: string, address: string, connections: number, bytes_in: number, bytes_out: number }[]
  /** Each route's answers since start (errors: 5xx, the edge's own included) and body bytes each way (edge_*_total by route). */
  routes: { name: string, listeners: string[] | undefined, match: Record<string, unknown>, action: string, requests: number, errors: number, bytes_in: number, bytes_out: number }[]
  pools: PoolStatus[]
  tunnels?: unknown
  /** This edge's HA role: "standalone" until an HA pair is configured. */
  ha: { role: string }
  /** Certificates of the https listeners (every worker serves the same files, so the first worker's view). */
  certificates: CertificateRow[]
  /** Shadow traffic per pool and endpoint; present when some pool has [pools.NAME.shadow]. */
  shadow?: ShadowSummary
}

export async function edgeStatus (edge: Edge): Promise<EdgeStatus> {
  const table = edge.table()
  const config = table.config
  const now = Date.now()
  for (const p of table.pools.values()) p.refresh()
  const listeners = await Promise.all(edge.listeners().map(async l => {
    const bytes = l.bytes()
    return { name: l.config.name, protocol: l.config.protocol, address: l.address() || formatAddress(l.config.address), connections: await l.openConnections(), bytes_in: bytes.in, bytes_out: bytes.out }
  }))
  const st: EdgeStatus = {
    pids: [process.pid],
    config: config.file,
    listeners,
    routes: config.routes.map(r => ({
      name: r.name,
      listeners: r.listeners === undefined ? undefined : [...r.listeners],
      match: {
        ...(r.match.host === undefined ? {} : { host: r.match.host }),
        ...(r.match.pathPrefix === undefined ? {} : { path_prefix: r.match.pathPrefix }),
        ...(r.match.methods === undefined ? {} : { methods: [...r.match.methods] }),
        ...(r.match.headers === undefined ? {} : { headers: Object.fromEntries(r.match.headers.map(h => [h.name, h.value ?? '*'])) }),
        ...(r.match.sni === undefined ? {} : { sni: r.match.sni }),
      },
      action: r.action.kind === 'pool' ? `pool ${r.action.pool.name}` : r.action.kind === 'redirect' ? `redirect ${r.action.status} ${r.action.to}` : `respond ${r.action.status}`,
      ...edge.metrics.routeTotals(r.name),
    })),
    ...(edge.tunnels === undefined ? {} : { tunnels: edge.tunnels.status() }),
    ha: { role: 'standalone' },
    pools: [...table.pools.values()].map(p => ({
      name: p.name,
      balance: p.config.balance,
      checked: p.config.healthCheck !== undefined,
      shards: p.shards?.map(s => ({ name: s.name, backends: s.members.map(m => m.backend.url) })),
      backends: p.members.map((m): BackendStatus => ({
        state: 'unknown',
        url: m.backend.url,
        weight: m.weight,
        source: m.source,
        healthy: m.healthy,
        available: m.available(now),
        draining: m.draining,
        ejected: m.ejectedUntil > now,
        inflight: m.backend.inflight,
        requests: m.requests,
        failures: m.failures,
        ewma_ms: Math.round(m.backend.ewma * 1000) / 1000,
        latency: latencyOf(m.latency.snapshot(WINDOWS['1m'], now)),
        recent: latencyOf(m.latency.snapshot(WINDOWS['10s'], now)),
      })),
    })),
    certificates: edge.certificates(),
    ...(edge.mirror.active ? { shadow: edge.mirror.summary() } : {}),
  }
  for (const p of st.pools) for (const b of p.backends) b.state = memberState(b, p.checked)
  return st
}

/** Sums per-worker snapshots: counters add up, flags hold only if they hold everywhere, EWMA is request-weighted. */
export function mergeStatus (parts: readonly EdgeStatus[]): EdgeStatus | undefined {
  const first = parts[0]
  if (first === undefined) return undefined
  const merged: EdgeStatus = structuredClone(first)
  const shadow = mergeShadow(parts.map(p => p.shadow))
  if (shadow !== undefined) merged.shadow = shadow
  for (const part of parts.slice(1)) {
    merged.pids.push(...part.pids)
    for (const l of part.listeners) {
      const into = merged.listeners.find(x => x.name === l.name)
      if (into === undefined) continue
      into.connections += l.connections
      into.bytes_in += l.bytes_in
      into.bytes_out += l.bytes_out
    }
    for (const r of part.routes) {
      const into = merged.routes.find(x => x.name === r.name)
      if (into === undefined) continue
      into.requests += r.requests
      into.errors += r.errors
      into.bytes_in += r.bytes_in
      into.bytes_out += r.bytes_out
    }
    for (const pool of part.pools) {
      const into = merged.pools.find(p => p.name === pool.name)
      if (into === undefined) { merged.pools.push(structuredClone(pool)); continue }
      for (const b of pool.backends) {
        const t = into.backends.find(x => x.url === b.url)
        if (t === undefined) { into.backends.push({ ...b }); continue }
        const total = t.requests + b.requests
        t.ewma_ms = total === 0 ? Math.max(t.ewma_ms, b.ewma_ms) : Math.round(((t.ewma_ms * t.requests + b.ewma_ms * b.requests) / total) * 1000) / 1000
        mergeLatency(t.latency, b.latency)
        mergeLatency(t.recent, b.recent)
        t.inflight += b.inflight
        t.requests = total
        t.failures += b.failures
        t.healthy &&= b.healthy
        t.available &&= b.available
        t.draining ||= b.draining
        t.ejected ||= b.ejected
      }
    }
  }
  if (parts.length > 1) for (const p of merged.pools) for (const b of p.backends) b.state = memberState(b, p.checked)
  return merged
}

/**
 * Percentiles of different workers cannot be merged exactly; the count-weighted mean is close when the workers
 * see similar traffic (they share one listener), and the max keeps a slow worker visible.
 */
function mergeLatency (lt: LatencyStatus, lb: LatencyStatus): void {
  const n = lt.count + lb.count
  if (n > 0) {
    lt.p50 = round3((lt.p50 * lt.count + lb.p50 * lb.count) / n)
    lt.p95 = round3((lt.p95 * lt.count + lb.p95 * lb.count) / n)
    lt.p99 = round3(Math.max(lt.p99, lb.p99))
  }
  lt.count = n
  lt.rps = round3(lt.rps + lb.rps)
}

function round3 (n: number): number {
  return Math.round(n * 1000) / 1000
}

function latencyOf (s: LatencyStatus): LatencyStatus {
  return { window: s.window, count: s.count, rps: round3(s.rps), p50: round3(s.p50), p95: round3(s.p95), p99: round3(s.p99) }
}
