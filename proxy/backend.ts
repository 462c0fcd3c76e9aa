// A backend is one upstream origin with its keep-alive connection pool and its live numbers.
// Backends live in a BackendStore that outlives config reloads, so connections and stats carry over.
import type { Duplex } from 'node:stream'
import type { Dispatcher } from 'undici'
import { LatencyStats } from '../health/latency.js'
import { Member } from './balancers/balancer.js'
import { OutlierDetector, type OutlierEvent } from '../health/outlier.js'
import { RetryBudget } from '../health/retry-budget.js'
import type { BackendTlsConfig, PoolConfig } from '../config/types.js'
import { createDispatcher, transportKey } from './transport.js'

export interface BackendOptions {
  readonly connectTimeout: number
  readonly keepAliveTimeout: number
  readonly maxHeaderSize: number
}

const EWMA_DECAY = 0.2

export class Backend {
  readonly url: string
  readonly host: string
  /** Stable per-URL seed for rendezvous hashing. */
  readonly seed: number
  readonly dispatcher: Dispatcher
  inflight = 0
  /** Exponentially weighted moving average of time to first byte, in ms (0 = no sample yet). */
  ewma = 0
  requests = 0
  failures = 0
  /** Passive: after a refused connection the backend is passed over until this time (ms since epoch). */
  unreachableUntil = 0
  /** p50/p95/p99 and rates over sliding windows. */
  readonly latency = new LatencyStats()

  /** Set for a member that is a tunnel session: the name it serves. Tunnel backends are owned by the tunnel side. */
  tunnel: string | undefined
  /** For tunnel backends: the client whose request opens the next stream (it travels in the stream's OPEN). */
  lastClient = ''
  /** For tunnel backends: opens a raw stream to the service (Upgrade requests, tls passthrough). */
  openRaw: ((clientIp: string, servername?: string) => Duplex) | undefined

  /** The pool `tls` settings this backend's connections use (https only). */
  readonly tls: BackendTlsConfig | undefined
  readonly transport: string

  constructor (url: string, opts: BackendOptions, tls?: BackendTlsConfig, dispatcher?: Dispatcher, host?: string) {
    this.url = url
    this.host = host ?? new URL(url).host
    this.seed = hash32(url)
    this.tls = tls
    this.transport = transportKey(tls)
    this.dispatcher = dispatcher ?? createDispatcher(url, opts, tls)
  }

  reachable (now: number): boolean {
    return this.unreachableUntil <= now
  }

  markUnreachable (now: number, cooldown: number): void {
    this.unreachableUntil = now + cooldown
  }

  observeLatency (ms: number, now: number): void {
    this.ewma = this.ewma === 0 ? ms : this.ewma + EWMA_DECAY * (ms - this.ewma)
    this.latency.record(ms, now)
  }

  close (): Promise<void> {
    return this.dispatcher.close()
  }
}

/** State of one pool that outlives reloads: passive outlier detection and the retry budget. */
export class PoolState {
  /** The settings this state was built from: a reload that changes them gets fresh state. */
  static keyOf (config: PoolConfig): string {
    return JSON.stringify([config.outlier, config.retry.budget])
  }

  readonly outlier: OutlierDetector
  readonly budget: RetryBudget
  readonly key: string
  constructor (config: PoolConfig, members: ReadonlyMap<string, Member>, onEvent: (e: OutlierEvent) => void) {
    this.key = PoolState.keyOf(config)
    this.outlier = new OutlierDetector(config.name, config.outlier, members.keys(), {
      setEjected: (url, until) => { const m = members.get(url); if (m !== undefined) m.ejectedUntil = until },
      onEvent,
    })
    this.budget = new RetryBudget({ budget: config.retry.budget })
  }
}

export class BackendStore {
  readonly #backends = new Map<string, Backend>()
  /** pool name -> url -> member */
  readonly #members = new Map<string, Map<string, Member>>()
  readonly #pools = new Map<string, PoolState>()
  #tls: ReadonlyMap<string, BackendTlsConfig> = new Map()
  constructor (private readonly opts: BackendOptions, private readonly onOutlierEvent: (e: OutlierEvent) => void = () => {}) {}

  /** The pool's member for `url`, kept across reloads with its health, ejection and drain state. */
  member (pool: string, url: string, weight: number): Member {
    let byUrl = this.#members.get(pool)
    if (byUrl === undefined) { byUrl = new Map(); this.#members.set(pool, byUrl) }
    let m = byUrl.get(url)
    const backend = this.get(url)
    if (m === undefined) {
      m = new Member(backend, weight)
      byUrl.set(url, m)
    } else if (m.backend !== backend) {
      m.backend = backend // replaced (new tls settings); the member keeps its health and drain state
    }
    m.weight = weight
    return m
  }

  findMember (pool: string, url: string): Member | undefined {
    return this.#members.get(pool)?.get(url)
  }

  /** The pool's outlier detector and retry budget, rebuilt only when their config changed. */
  poolState (config: PoolConfig): PoolState {
    const members = this.#members.get(config.name) ?? new Map<string, Member>()
    let st = this.#pools.get(config.name)
    const key = PoolState.keyOf(config)
    if (st === undefined || st.key !== key) {
      void st?.outlier.close()
      st = new PoolState(config, members, this.onOutlierEvent)
      this.#pools.set(config.name, st)
    } else {
      st.outlier.update(members.keys())
    }
    return st
  }

  /** TLS settings by backend URL for the next table; get() replaces a backend whose settings changed. */
  setTls (byUrl: ReadonlyMap<string, BackendTlsConfig>): void {
    this.#tls = byUrl
  }

  get (url: string): Backend {
    let b = this.#backends.get(url)
    const tls = this.#tls.get(url)
    if (b === undefined || b.transport !== transportKey(tls)) {
      // The old one finishes what it has in flight (requests of the previous table), then closes.
      if (b !== undefined) void b.close().catch(() => {})
      b = new Backend(url, this.opts, tls)
      this.#backends.set(url, b)
    }
    return b
  }

  /** Takes in a backend made elsewhere (a tunnel session); its owner closes it, reloads never do. */
  adopt (b: Backend): void {
    this.#backends.set(b.url, b)
  }

  /** Forgets an adopted backend and its memberships (the tunnel session is gone). */
  drop (url: string): void {
    this.#backends.delete(url)
    for (const byUrl of this.#members.values()) byUrl.delete(url)
  }

  get options (): BackendOptions {
    return this.opts
  }

  find (url: string): Backend | undefined {
    return this.#backends.get(url)
  }

  all (): IterableIterator<Backend> {
    return this.#backends.values()
  }

  /** Closes (gracefully: in-flight requests finish) every backend not in `keep`; forgets pools and members gone. */
  async retain (keep: ReadonlySet<string>, pools?: ReadonlyMap<string, PoolConfig>): Promise<void> {
    if (pools !== undefined) {
      for (const [name, byUrl] of this.#members) {
        const p = pools.get(name)
        if (p === undefined) {
          this.#members.delete(name)
          void this.#pools.get(name)?.outlier.close()
          this.#pools.delete(name)
          continue
        }
        const urls = new Set(p.backends.map(b => b.url))
        for (const [url, m] of byUrl) if (!urls.has(url) && m.backend.tunnel === undefined) byUrl.delete(url)
      }
    }
    const closing: Promise<void>[] = []
    for (const [url, b] of this.#backends) {
      if (!keep.has(url) && b.tunnel === undefined) {
        this.#backends.delete(url)
        closing.push(b.close().catch(() => {}))
      }
    }
    await Promise.all(closing)
  }

  /** Closes every backend: in-flight requests get `graceMs` to finish (default: as long as they take), then are cut. */
  async close (graceMs = Infinity): Promise<void> {
    for (const st of this.#pools.values()) void st.outlier.close()
    const own = [...this.#backends.values()].filter(b => b.tunnel === undefined)
    const closing = this.retain(new Set(), new Map())
    if (graceMs === Infinity) { await closing; return }
    let timer: NodeJS.Timeout | undefined
    await Promise.race([closing, new Promise<void>(resolve => { timer = setTimeout(resolve, graceMs) })])
    clearTimeout(timer)
    await Promise.all(own.map(b => b.dispatcher.destroy().catch(() => {})))
  }
}

/** FNV-1a over UTF-16 code units, finished with murmur3's fmix32 for avalanche. */
export function hash32 (s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return fmix32(h)
}

export function fmix32 (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}
