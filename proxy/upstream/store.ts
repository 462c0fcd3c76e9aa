// The backends and pool members that outlive config reloads: connections, stats, health and drain state carry over.
import type { BackendTlsConfig, PoolConfig } from '../../config/types.js'
import { OutlierDetector, type OutlierEvent } from '../../health/outlier.js'
import { RetryBudget } from '../../health/retry-budget.js'
import { Backend } from './backend.js'
import { Member } from './member.js'
import { transportKey, type BackendOptions } from './transport.js'

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
