// Shadow traffic ([pools.NAME.shadow]): an exchange observer that sends a copy of sampled requests to a member of
// the shadow pool (and, with `secondary`, a second copy to another member of the primary pool), then compares
// the answers off the client's path. It never sits in the path: the copy is dispatched fire-and-forget from
// onRequest, the request body is teed as it streams to the primary (forward/tee.ts), the primary's answer is
// watched by reference as it goes to the client (Exchange.watchResponse), and a slow or dead shadow only fills
// the pool's `max_inflight` slots, past which copies are dropped and counted (Traefik's mirror, Envoy's shadow).
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { CellCounter } from '../ops/metric-cells.js'
import type { Dispatcher } from 'undici'
import type { ShadowConfig } from '../../config/types.js'
import type { Exchange } from '../forward/exchange.js'
import type { ExchangeObserver } from '../forward/hooks.js'
import type { BodyCopy } from '../forward/tee.js'
import type { EdgeTable } from '../route/table.js'
import { hash32 } from '../upstream/backend.js'
import type { Member } from '../upstream/member.js'
import { hashKeyOf } from '../upstream/pool.js'
import { ShadowCall } from './call.js'
import { ShadowCase, callSide, copyHeaders, kCase, onCopyAborted, onCopyData, onCopyEnd, onCopyTruncated, primarySide, sample, withHost, type TaggedCopy } from './case.js'
import { compare, round4, type FieldDiff } from './compare.js'
import { PoolShadow, PoolStats, type Metrics } from './state.js'
import { RecordStore } from './store.js'
import type { ShadowSummary } from './summary.js'

export { MAX_ENDPOINTS, BODY_SAMPLE, type SkipReason } from './state.js'

export interface ShadowDeps {
  readonly log: Logger
  readonly table: () => EdgeTable
  readonly registry: Registry
}

export class ShadowMirror implements ExchangeObserver {
  readonly name = 'shadow'
  readonly #deps: ShadowDeps
  readonly #metrics: Metrics
  readonly #byPool = new Map<string, PoolShadow>()
  readonly #stats = new Map<string, PoolStats>()
  readonly #stores = new Map<string, RecordStore>()
  /** Cases holding a slot (their calls are cancelled on close). */
  readonly live = new Set<ShadowCase>()
  #closed = false
  #faultLogged = false

  constructor (deps: ShadowDeps) {
    this.#deps = deps
    const r = deps.registry
    this.#metrics = {
      mirrored: new CellCounter('edge_shadow_mirrored_total', 'Requests copied to the shadow pool, by primary pool', r),
      skipped: new CellCounter('edge_shadow_skipped_total', 'Requests not mirrored, by reason (sampled_out, method, body_too_large, body_aborted, no_backend, primary_failed)', r),
      dropped: new CellCounter('edge_shadow_dropped_total', 'Copies dropped because max_inflight shadow requests were in flight', r),
      compared: new CellCounter('edge_shadow_compared_total', 'Primary and shadow answers compared, by endpoint', r),
      differing: new CellCounter('edge_shadow_differing_total', 'Compared answers that differ beyond ignore rules and learned noise, by endpoint', r),
      errors: new CellCounter('edge_shadow_errors_total', 'Shadow requests that got no full answer, by kind (timeout, connect, reset, ...)', r),
    }
  }

  /** Whether any pool of the current table has a shadow (the status page shows the panel then). */
  get active (): boolean {
    for (const p of this.#deps.table().config.pools.values()) if (p.shadow !== undefined) return true
    return false
  }

  #runtime (pool: string, config: ShadowConfig): PoolShadow {
    const rt = this.#byPool.get(pool)
    if (rt !== undefined && rt.config === config) return rt
    // A new config generation: counts and learned noise carry over, the rules are the new ones.
    let stats = this.#stats.get(pool)
    if (stats === undefined) { stats = new PoolStats(); this.#stats.set(pool, stats) }
    const fresh = new PoolShadow(pool, config, stats, this.#metrics, config.store === undefined ? undefined : this.#store(config.store))
    this.#byPool.set(pool, fresh)
    return fresh
  }

  #store (dir: string): RecordStore {
    let s = this.#stores.get(dir)
    if (s === undefined) { s = new RecordStore(dir); this.#stores.set(dir, s) }
    return s
  }

  onRequest (x: Exchange): void {
    const config = x.pool.config.shadow
    if (config === undefined || x.retries !== 0 || this.#closed) return
    const rt = this.#runtime(x.pool.name, config)
    if (!config.methods.has(x.method)) { rt.skip('method'); return }
    if (!this.#sampled(rt, x)) { rt.skip('sampled_out'); return }
    if (rt.inflight >= config.maxInflight) { rt.droppedC.value++; rt.stats.dropped++; return }
    let body: BodyCopy | undefined
    if (x.hasBody) {
      const declared = Number(x.req.headers['content-length'] ?? 0)
      if (declared > config.maxBody) { rt.skip('body_too_large'); return }
      body = x.teeBody(config.maxBody)
      if (body === undefined) { rt.skip('body_aborted'); return }
    }
    const c = new ShadowCase(this, rt, x)
    if (!x.watchResponse(c)) { rt.skip('primary_failed'); return }
    rt.inflight++
    this.live.add(c)
    const headers = copyHeaders(x, config.header)
    if (body === undefined) { this.#send(c, x, headers, null); return }
    // The copy fills while the primary streams; the shadow goes out once the whole body is in. The listeners
    // are module functions (`this` is the copy), so no closure is made per request.
    c.pending = { x, headers, chunks: [] }
    const tagged = body as TaggedCopy
    tagged[kCase] = c
    body.on('data', onCopyData)
    body.once('end', onCopyEnd)
    body.once('truncated', onCopyTruncated)
    body.once('aborted', onCopyAborted)
  }

  /** @internal the request body copy is complete: send the copies. */
  bodyDone (c: ShadowCase): void {
    const p = c.pending
    if (p === undefined) return
    c.pending = undefined
    const buf = Buffer.concat(p.chunks)
    c.requestBytes = buf.length
    this.#send(c, p.x, p.headers, buf)
  }

  #sampled (rt: PoolShadow, x: Exchange): boolean {
    const s = rt.config.sample
    if (s >= 1) return true
    if (s <= 0) return false
    const key = rt.config.sampleKey
    if (key !== undefined) {
      const k = hashKeyOf(key, x.req, x.req.url ?? '/', x.clientIp)
      // Requests without the key are sampled at random.
      if (k !== '') return hash32(k, 0x5bd1e995) < rt.sampleBar
    }
    return Math.random() < s
  }

  #send (c: ShadowCase, x: Exchange, headers: string[], body: Buffer | null): void {
    if (c.abandoned || this.#closed) { c.abandon('body_aborted'); return }
    const rt = c.rt
    const now = Date.now()
    const shadowPool = this.#deps.table().pool(rt.config.pool)
    const m = shadowPool?.select(x.req, x.req.url ?? '/', x.clientIp, now, undefined).member
    if (m === undefined) { c.abandon('no_backend'); return }
    rt.mirroredC.value++
    rt.stats.mirrored++
    const method = x.method as Dispatcher.HttpMethod
    const cap = rt.responseCap
    c.calls++
    c.shadow = new ShadowCall(c, m, cap, rt.config.timeout)
    let second: Member | undefined
    if (rt.config.secondary) {
      second = x.pool.select(x.req, x.req.url ?? '/', x.clientIp, now, x.member).member ?? x.pool.select(x.req, x.req.url ?? '/', x.clientIp, now, undefined).member
      if (second !== undefined) { c.calls++; c.secondary = new ShadowCall(c, second, cap, rt.config.timeout) }
    }
    const opts = { path: x.path, method, body, headersTimeout: 0, bodyTimeout: 0, idempotent: false }
    c.shadow.send({ ...opts, headers: withHost(headers, x, m) })
    if (c.secondary !== undefined && second !== undefined) c.secondary.send({ ...opts, headers: withHost(headers, x, second) })
  }

  /** Both answers are in (and the primary's): compare, count, record. Runs on its own turn. */
  compareCase (c: ShadowCase): void {
    const rt = c.rt
    const shadow = c.shadow as ShadowCall
    if (c.primaryComplete !== true) { rt.skip('primary_failed'); return }
    if (shadow.error !== undefined) {
      rt.stats.errors++
      rt.metrics.errors.cell({ pool: rt.pool, kind: shadow.error }).value++
    }
    const p = primarySide(c)
    const s = callSide(shadow)
    const diffs = compare(p, s, rt.rules)
    let noise: FieldDiff[] | undefined
    const sec = c.secondary
    // A secondary that failed teaches nothing about noise.
    if (sec !== undefined && sec.error === undefined) noise = compare(p, callSide(sec), rt.rules)
    const e = rt.endpoint(c.method, c.url)
    e.stats.add(diffs, noise)
    const significant = diffs.filter(d => e.stats.significant(d.field))
    e.compared.value++
    if (significant.length > 0) { e.differing++; e.differ.value++ }
    if (c.primaryMs >= 0) e.primaryMs.add(c.primaryMs)
    if (shadow.ms >= 0) e.shadowMs.add(shadow.ms)
    // Answers alike (no field differs, not even noise) are recorded without their headers and bodies: most
    // comparisons are alike, and the record is most of the mirror's cost per request.
    const full = diffs.length !== 0 || (noise !== undefined && noise.length !== 0)
    rt.store?.append({
      v: 1,
      time: new Date(c.start).toISOString(),
      pool: rt.pool,
      shadow_pool: rt.config.pool,
      endpoint: e.name,
      request: { id: c.requestId, method: c.method, path: c.url, body_bytes: c.requestBytes },
      primary: full ? { status: p.status, ms: round4(c.primaryMs), bytes: p.bytes, headers: p.headers, body: sample(p.body) } : { status: p.status, ms: round4(c.primaryMs), bytes: p.bytes },
      shadow: full
        ? { status: s.status, ms: round4(shadow.ms), bytes: s.bytes, headers: s.headers, body: sample(s.body), ...(s.error === undefined ? {} : { error: s.error }), backend: shadow.member.backend.url }
        : { status: s.status, ms: round4(shadow.ms), bytes: s.bytes, backend: shadow.member.backend.url },
      ...(sec === undefined ? {} : { secondary: { status: sec.status, ms: round4(sec.ms), ...(sec.error === undefined ? {} : { error: sec.error }) } }),
      diffs,
      ...(noise === undefined ? {} : { noise: noise.map(d => d.field) }),
      differs: significant.length > 0,
    })
  }

  fault (err: unknown): void {
    if (this.#faultLogged) return
    this.#faultLogged = true
    this.#deps.log.error({ err }, 'shadow comparison failed (logged once; the client was not affected)')
  }

  summary (): ShadowSummary {
    const pools: ShadowSummary['pools'] = []
    for (const [pool, p] of this.#deps.table().config.pools) {
      const config = p.shadow
      if (config === undefined) continue
      const stats = this.#stats.get(pool) ?? new PoolStats()
      pools.push({
        pool,
        shadow_pool: config.pool,
        sample: config.sample,
        secondary: config.secondary,
        inflight: stats.inflight,
        max_inflight: config.maxInflight,
        mirrored: stats.mirrored,
        dropped: stats.dropped,
        errors: stats.errors,
        skipped: Object.fromEntries(stats.skipped),
        endpoints: [...stats.endpoints.values()].map(e => ({
          endpoint: e.name,
          compared: e.stats.compared,
          differing: e.differing,
          differing_rate: e.stats.compared === 0 ? 0 : round4(e.differing / e.stats.compared),
          fields: e.stats.fields(10),
          primary_ms: e.primaryMs.percentiles(),
          shadow_ms: e.shadowMs.percentiles(),
        })),
      })
    }
    return { pools }
  }

  /** Cancels the copies in flight and writes out the records queued so far. */
  async close (): Promise<void> {
    this.#closed = true
    for (const c of [...this.live]) { c.shadow?.cancel(); c.secondary?.cancel(); c.release() }
    await Promise.all([...this.#stores.values()].map(s => s.close()))
  }

  /** Resolves once queued records are on disk (tests, the report after a run). */
  async flush (): Promise<void> {
    await new Promise(resolve => setImmediate(resolve))
    await Promise.all([...this.#stores.values()].map(s => s.flush()))
  }
}
