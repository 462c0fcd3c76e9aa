// The backends and pool members that outlive config reloads: connections, stats, health and drain state carry over.
import type { BackendTlsConfig, PoolConfig } from '../../config/types.js'
import { OutlierDetector, type OutlierEvent } from '../../health/outlier.js'
import { RetryBudget } from '../../health/retry-budget.js'
import { Backend } from './backend.js'
import type { Member } from './member.js'
import { MemberRegistry } from './members.js'
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
  constructor (config: PoolConfig, members: MemberRegistry, onEvent: (e: OutlierEvent) => void) {
    this.key = PoolState.keyOf(config)
    const pool = config.name
    this.outlier = new OutlierDetector(pool, config.outlier, members.urls(pool), {
      setEjected: (url, until) => { members.setStatus(pool, url, { ejectedUntil: until }) },
      onEvent,
    })
    this.budget = new RetryBudget({ budget: config.retry.budget })
  }
}

export class BackendStore {
  readonly #backends = new Map<string, Backend>()
  /** Pool membership and member state (health, ejection, drain), kept across reloads. */
  readonly members: MemberRegistry
  readonly #pools = new Map<string, PoolState>()
  #tls: ReadonlyMap<string, BackendTlsConfig> = new Map()
  #connectTimeouts: ReadonlyMap<string, number> = new Map()
  constructor (private readonly opts: BackendOptions, private readonly onOutlierEvent: (e: OutlierEvent) => void = () => {}) {
    this.members = new MemberRegistry(url => this.get(url))
  }

  findMember (pool: string, url: string): Member | undefined {
    return this.members.get(pool, url)
  }

  /** The pool's outlier detector and retry budget, rebuilt only when their config changed. */
  poolState (config: PoolConfig): PoolState {
    let st = this.#pools.get(config.name)
    const key = PoolState.keyOf(config)
    if (st === undefined || st.key !== key) {
      void st?.outlier.close()
      st = new PoolState(config, this.members, this.onOutlierEvent)
      this.#pools.set(config.name, st)
    } else {
      st.outlier.update(this.members.urls(config.name))
    }
    return st
  }

  /** TLS settings by backend URL for the next table (config and API members); get() replaces a backend whose settings changed. */
  setTls (byUrl: ReadonlyMap<string, BackendTlsConfig>): void {
    this.#tls = byUrl
  }

  /**
   * Connect timeouts by backend URL for the next table: the connect_timeout of the routes that send to the
   * backend's pools (the largest, when routes with different ones share a backend); others get the default.
   */
  setConnectTimeouts (byUrl: ReadonlyMap<string, number>): void {
    this.#connectTimeouts = byUrl
  }

  get tlsSettings (): ReadonlyMap<string, BackendTlsConfig> {
    return this.#tls
  }

  get (url: string): Backend {
    let b = this.#backends.get(url)
    const tls = this.#tls.get(url)
    const connectTimeout = this.#connectTimeouts.get(url) ?? this.opts.connectTimeout
    if (b === undefined || b.transport !== transportKey(tls, connectTimeout)) {
      // The old one finishes what it has in flight (requests of the previous table), then closes.
      if (b !== undefined) void b.close().catch(() => {})
      b = new Backend(url, connectTimeout === this.opts.connectTimeout ? this.opts : { ...this.opts, connectTimeout }, tls)
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
    this.members.removeEverywhere(url)
  }

  /** Closes a backend no member uses any more (an API member was removed), after its in-flight requests. */
  release (url: string): void {
    const b = this.#backends.get(url)
    if (b === undefined || b.opener !== undefined || this.members.uses(url)) return
    this.#backends.delete(url)
    void b.close().catch(() => {})
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
      // A reload replaces the config's members only: API, tunnel (and later scaler) members stay.
      for (const name of [...this.members.pools()]) {
        const p = pools.get(name)
        if (p === undefined && !name.startsWith('tunnel:')) {
          this.members.removePool(name)
          void this.#pools.get(name)?.outlier.close()
          this.#pools.delete(name)
          continue
        }
        const urls = new Set(p?.backends.map(b => b.url))
        for (const url of [...this.members.urls(name)]) if (!urls.has(url)) this.members.remove(name, url, 'config')
      }
    }
    const kept = new Set(keep)
    for (const name of this.members.pools()) for (const url of this.members.urls(name)) kept.add(url)
    const closing: Promise<void>[] = []
    for (const [url, b] of this.#backends) {
      if (!kept.has(url) && b.opener === undefined) {
        this.#backends.delete(url)
        closing.push(b.close().catch(() => {}))
      }
    }
    await Promise.all(closing)
  }

  /** Closes every backend: in-flight requests get `graceMs` to finish (default: as long as they take), then are cut. */
  async close (graceMs = Infinity): Promise<void> {
    for (const st of this.#pools.values()) void st.outlier.close()
    const own = [...this.#backends.values()].filter(b => b.opener === undefined)
    const closing = this.retain(new Set(), new Map())
    if (graceMs === Infinity) { await closing; return }
    let timer: NodeJS.Timeout | undefined
    await Promise.race([closing, new Promise<void>(resolve => { timer = setTimeout(resolve, graceMs) })])
    clearTimeout(timer)
    await Promise.all(own.map(b => b.dispatcher.destroy().catch(() => {})))
  }
}
