// The live shadow summary (GET /api/shadow, the status page's shadow panel) and its merge over workers: counts
// add up; latency percentiles of different workers are merged as the count-weighted mean (p99 as the max), as
// the backend latencies are in status.ts.

export interface Percentiles { p50: number, p95: number, p99: number }

export interface FieldRate { field: string, count: number, rate: number, noise_rate: number, noise: boolean }

export interface EndpointSummary {
  endpoint: string
  compared: number
  differing: number
  differing_rate: number
  fields: FieldRate[]
  primary_ms: Percentiles | undefined
  shadow_ms: Percentiles | undefined
}

export interface PoolShadowSummary {
  pool: string
  shadow_pool: string
  sample: number
  secondary: boolean
  inflight: number
  max_inflight: number
  mirrored: number
  dropped: number
  errors: number
  skipped: Record<string, number>
  endpoints: EndpointSummary[]
}

export interface ShadowSummary {
  pools: PoolShadowSummary[]
}

function round4 (n: number): number {
  return Math.round(n * 10_000) / 10_000
}

function mergePct (a: Percentiles | undefined, na: number, b: Percentiles | undefined, nb: number): Percentiles | undefined {
  if (a === undefined) return b
  if (b === undefined) return a
  const n = na + nb
  if (n === 0) return a
  return { p50: round4((a.p50 * na + b.p50 * nb) / n), p95: round4((a.p95 * na + b.p95 * nb) / n), p99: Math.max(a.p99, b.p99) }
}

export function mergeShadow (parts: readonly (ShadowSummary | undefined)[]): ShadowSummary | undefined {
  let out: ShadowSummary | undefined
  for (const part of parts) {
    if (part === undefined) continue
    if (out === undefined) { out = structuredClone(part); continue }
    for (const pool of part.pools) {
      const into = out.pools.find(p => p.pool === pool.pool)
      if (into === undefined) { out.pools.push(structuredClone(pool)); continue }
      into.inflight += pool.inflight
      into.mirrored += pool.mirrored
      into.dropped += pool.dropped
      into.errors += pool.errors
      for (const [k, v] of Object.entries(pool.skipped)) into.skipped[k] = (into.skipped[k] ?? 0) + v
      for (const e of pool.endpoints) {
        const t = into.endpoints.find(x => x.endpoint === e.endpoint)
        if (t === undefined) { into.endpoints.push(structuredClone(e)); continue }
        t.primary_ms = mergePct(t.primary_ms, t.compared, e.primary_ms, e.compared)
        t.shadow_ms = mergePct(t.shadow_ms, t.compared, e.shadow_ms, e.compared)
        const n = t.compared + e.compared
        for (const f of e.fields) {
          const g = t.fields.find(x => x.field === f.field)
          if (g === undefined) { t.fields.push({ ...f }); continue }
          g.count += f.count
          g.rate = n === 0 ? 0 : round4(g.count / n)
          g.noise_rate = round4(Math.max(g.noise_rate, f.noise_rate))
          g.noise &&= f.noise
        }
        t.compared = n
        t.differing += e.differing
        t.differing_rate = n === 0 ? 0 : round4(t.differing / n)
      }
    }
  }
  return out
}
