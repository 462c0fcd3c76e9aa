// Shadow traffic ([pools.NAME.shadow]): an exchange observer that sends a copy of sampled requests to a member of
// the shadow pool (and, with `secondary`, a second copy to another member of the primary pool), then compares
// the answers off the client's path. It never sits in the path: the copy is dispatched fire-and-forget from
// onRequest, the request body is teed as it streams to the primary (forward/tee.ts), the primary's answer is
// watched by reference as it goes to the client (Exchange.watchResponse), and a slow or dead shadow only fills
// the pool's `max_inflight` slots, past which copies are dropped and counted (Traefik's mirror, Envoy's shadow).
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { CellCounter, type CounterCell } from '../ops/metric-cells.js'
import type { Dispatcher } from 'undici'
import type { ShadowConfig } from '../../config/types.js'
import type { Exchange, ResponseWatcher } from '../forward/exchange.js'
import type { ExchangeObserver } from '../forward/hooks.js'
import type { BodyCopy } from '../forward/tee.js'
import type { EdgeTable } from '../route/table.js'
import { hash32 } from '../upstream/backend.js'
import type { Member } from '../upstream/member.js'
import { hashKeyOf } from '../upstream/pool.js'
import { ShadowCall, type CallOwner } from './call.js'
import { compare, FieldStats, headerRecord, round4, type CompareRules, type FieldDiff, type Side } from './compare.js'
import { EndpointMatcher } from './endpoints.js'
import { RecordStore } from './store.js'
import type { ShadowSummary } from './summary.js'

/** Endpoints kept per pool; further ones count together as "(other)" (bounded memory and metric labels). */
export const MAX_ENDPOINTS = 200
/** Latency samples kept per endpoint and side for the live percentiles. */
const RING = 512
/** Bytes of each body kept in a record. */
export const BODY_SAMPLE = 2048
/** Response bodies are compared up to this many bytes (or max_body, if larger); beyond, by length. */
const MIN_RESPONSE_CAP = 1024 * 1024

export type SkipReason = 'sampled_out' | 'method' | 'body_too_large' | 'body_aborted' | 'no_backend' | 'primary_failed'

export interface ShadowDeps {
  readonly log: Logger
  readonly table: () => EdgeTable
  readonly registry: Registry
}

class Ring {
  readonly values = new Float64Array(RING)
  n = 0
  add (v: number): void { this.values[this.n++ % RING] = v }
  percentiles (): { p50: number, p95: number, p99: number } | undefined {
    const k = Math.min(this.n, RING)
    if (k === 0) return undefined
    const s = this.values.slice(0, k).sort()
    const at = (q: number): number => round4(s[Math.min(k - 1, Math.floor(q * k))] as number)
    return { p50: at(0.5), p95: at(0.95), p99: at(0.99) }
  }
}

class EndpointState {
  readonly stats = new FieldStats()
  differing = 0
  readonly primaryMs = new Ring()
  readonly shadowMs = new Ring()
  constructor (readonly name: string, readonly compared: CounterCell, readonly differ: CounterCell) {}
}

/** What a pool's shadow has done since the edge started; outlives reloads (keyed by pool name). */
class PoolStats {
  /** Cases holding a slot, across config generations (a reload must not forget the copies still out). */
  inflight = 0
  mirrored = 0
  dropped = 0
  errors = 0
  readonly skipped = new Map<SkipReason, number>()
  readonly endpoints = new Map<string, EndpointState>()
}

/** Counted per request, so cells (metric-cells.ts): an add, no label hashing. */
interface Metrics {
  readonly mirrored: CellCounter
  readonly skipped: CellCounter
  readonly dropped: CellCounter
  readonly compared: CellCounter
  readonly differing: CellCounter
  readonly errors: CellCounter
}

/** One pool's shadow for one config generation. */
class PoolShadow {
  readonly matcher: EndpointMatcher
  readonly rules: CompareRules
  readonly responseCap: number
  readonly sampleBar: number
  readonly #skip = new Map<SkipReason, CounterCell>()
  readonly mirroredC: CounterCell
  readonly droppedC: CounterCell

  constructor (readonly pool: string, readonly config: ShadowConfig, readonly stats: PoolStats, readonly metrics: Metrics, readonly store: RecordStore | undefined) {
    this.matcher = new EndpointMatcher(config.endpoints)
    this.rules = { ignoreHeaders: config.ignoreHeaders, ignoreJson: config.ignoreJson }
    this.responseCap = Math.max(config.maxBody, MIN_RESPONSE_CAP)
    this.sampleBar = config.sample * 0x1_0000_0000
    this.mirroredC = metrics.mirrored.cell({ pool })
    this.droppedC = metrics.dropped.cell({ pool })
  }

  get inflight (): number { return this.stats.inflight }
  set inflight (n: number) { this.stats.inflight = n }

  skip (reason: SkipReason): void {
    let c = this.#skip.get(reason)
    if (c === undefined) { c = this.metrics.skipped.cell({ pool: this.pool, reason }); this.#skip.set(reason, c) }
    c.value++
    this.stats.skipped.set(reason, (this.stats.skipped.get(reason) ?? 0) + 1)
  }

  endpoint (method: string, path: string): EndpointState {
    let name = `${method} ${this.matcher.match(path)}`
    let e = this.stats.endpoints.get(name)
    if (e !== undefined) return e
    if (this.stats.endpoints.size >= MAX_ENDPOINTS) {
      name = '(other)'
      e = this.stats.endpoints.get(name)
      if (e !== undefined) return e
    }
    e = new EndpointState(name, this.metrics.compared.cell({ pool: this.pool, endpoint: name }), this.metrics.differing.cell({ pool: this.pool, endpoint: name }))
    this.stats.endpoints.set(name, e)
    return e
  }
}

/** One sampled request: the primary's answer as the client got it, the shadow's and the secondary's. */
class ShadowCase implements ResponseWatcher, CallOwner {
  readonly rt: PoolShadow
  readonly mirror: ShadowMirror
  readonly method: string
  readonly url: string
  readonly requestId: string
  readonly start = Date.now()
  primaryStatus = 0
  primaryHeaders: readonly Buffer[] = []
  primaryMs = -1
  primaryChunks: Buffer[] = []
  primaryBytes = 0
  primaryOver = false
  /** undefined until the exchange ends. */
  primaryComplete: boolean | undefined
  shadow: ShadowCall | undefined
  secondary: ShadowCall | undefined
  requestBytes = 0
  /** Calls not done yet; the slot is held until 0. */
  calls = 0
  /** Slot given back (the calls are over, or the case was given up before sending). */
  released = false
  abandoned = false
  /** While the request body copy fills: what the send needs, and the chunks so far. */
  pending: { readonly x: Exchange, readonly headers: string[], readonly chunks: Buffer[] } | undefined

  constructor (mirror: ShadowMirror, rt: PoolShadow, x: Exchange) {
    this.mirror = mirror
    this.rt = rt
    this.method = x.method
    this.url = x.req.url ?? '/'
    this.requestId = x.requestId
  }

  onPrimaryHead (status: number, rawHeaders: readonly Buffer[], ms: number): void {
    this.primaryStatus = status
    this.primaryHeaders = rawHeaders
    this.primaryMs = ms
  }

  onPrimaryData (chunk: Buffer): void {
    this.primaryBytes += chunk.byteLength
    if (this.primaryOver) return
    if (this.primaryBytes > this.rt.responseCap) { this.primaryOver = true; this.primaryChunks = []; return }
    this.primaryChunks.push(chunk)
  }

  onPrimaryEnd (complete: boolean): void {
    this.primaryComplete = complete
    if (!complete) this.primaryChunks = []
    this.maybeDone()
  }

  callDone (_call: ShadowCall): void {
    this.calls--
    if (this.calls === 0) this.release()
    this.maybeDone()
  }

  release (): void {
    if (this.released) return
    this.released = true
    this.rt.inflight--
    this.mirror.live.delete(this)
  }

  /** Gives the case up before anything was sent (its body was too large, or the client went away). */
  abandon (reason: SkipReason): void {
    if (this.abandoned) return
    this.abandoned = true
    this.rt.skip(reason)
    this.release()
  }

  maybeDone (): void {
    if (this.abandoned || this.primaryComplete === undefined || this.calls !== 0 || this.shadow === undefined) return
    // The comparison runs on its own turn: never inside the exchange's finish or an undici callback.
    setImmediate(runCompare, this)
  }
}

const kCase = Symbol('shadowCase')
type TaggedCopy = BodyCopy & { [kCase]?: ShadowCase }

function onCopyData (this: TaggedCopy, chunk: Buffer): void {
  this[kCase]?.pending?.chunks.push(chunk)
}
function onCopyEnd (this: TaggedCopy): void {
  const c = this[kCase]
  if (c !== undefined) c.mirror.bodyDone(c)
}
function onCopyTruncated (this: TaggedCopy): void {
  const c = this[kCase]
  if (c !== undefined) { c.pending = undefined; c.abandon('body_too_large') }
}
function onCopyAborted (this: TaggedCopy): void {
  const c = this[kCase]
  if (c !== undefined) { c.pending = undefined; c.abandon('body_aborted') }
}

function runCompare (c: ShadowCase): void {
  try {
    c.mirror.compareCase(c)
  } catch (err) {
    c.mirror.fault(err)
  }
}

function primarySide (c: ShadowCase): Side {
  return { status: c.primaryStatus, headers: headerRecord(c.primaryHeaders), body: c.primaryOver ? undefined : Buffer.concat(c.primaryChunks), bytes: c.primaryBytes }
}

function callSide (call: ShadowCall): Side {
  return { status: call.status, headers: headerRecord(call.headers), body: call.body(), bytes: call.bytes, ...(call.error === undefined ? {} : { error: call.error }) }
}

function sample (body: Buffer | undefined): string | undefined {
  if (body === undefined || body.length === 0) return undefined
  return body.subarray(0, BODY_SAMPLE).toString('utf8')
}

/** The request headers for a copy: the primary's upstream headers, the member's host where the route asks, and the mark. */
function copyHeaders (x: Exchange, header: string): string[] {
  const out: string[] = []
  const src = x.upstreamHeaders
  for (let i = 0; i + 1 < src.length; i += 2) {
    const n = (src[i] as string).toLowerCase()
    // The copy carries its body as one buffer: undici sets its length.
    if (n === 'content-length' || n === 'transfer-encoding' || n === 'expect' || n === header) continue
    out.push(src[i] as string, src[i + 1] as string)
  }
  out.push(header, '1')
  return out
}

function withHost (headers: readonly string[], x: Exchange, m: Member): string[] {
  const mode = x.action.hostHeader
  if (mode !== 'backend') return [...headers]
  const out = [...headers]
  for (let i = 0; i < out.length; i += 2) if ((out[i] as string).toLowerCase() === 'host') out[i + 1] = m.backend.host
  return out
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
