// The edge in one process: backend store, current table, HTTP listeners and logs. start() / reload() / close().
import type net from 'node:net'
import type { Logger } from 'pino'
import type { BackendTlsConfig, Config } from '../config/types.js'
import { formatAddress } from '../config/address.js'
import { listenError } from '../config/errors.js'
import { BackendStore } from './upstream/store.js'
import { EdgeTable } from './route/table.js'
import { HttpListener } from './listen/http-listener.js'
import { HttpsListener } from './listen/https-listener.js'
import { TlsListener } from './listen/tls-listener.js'
import { certificateRows, logCertEvent, type CertificateRow } from './tls/edge-tls.js'
import { createAccessLog, type AccessLog } from './ops/log.js'
import { EdgeMetrics } from './ops/metrics.js'
import { defaultRoute } from '../config/load.js'
import { AccessLogObserver, MetricsObserver } from './ops/observers.js'
import { ExchangeHooks } from './forward/hooks.js'
import { PassiveHealth } from './forward/passive-health.js'
import { ShadowMirror } from './mirror/shadow.js'
import { TunnelMembers } from './upstream/tunnels.js'
import type { Member } from './upstream/member.js'
import { WindowHistogram } from '../health/latency.js'
import type { MemberPatch, MemberRegistry } from './upstream/members.js'

export interface EdgeDeps {
  readonly log: Logger
  /** Operational events (outlier ejections...) for the event log; in a worker they go to the primary. */
  readonly onEvent?: (type: string, message: string, fields: Record<string, unknown>) => void
  /**
   * Listening sockets an older edge process handed over (an upgrade), by listen address ("127.0.0.1:8080"): a
   * listener on one of them takes it over instead of binding, so the port is never closed.
   */
  readonly inherited?: ReadonlyMap<string, net.Server>
}

export type { MemberPatch } from './upstream/members.js'

/** A member the admin API registers (the control process has validated it against the config). */
export interface AddedMember {
  readonly url: string
  readonly weight: number
  readonly healthy: boolean
  /** 'scale': a backend the scaler started (default 'api'). */
  readonly source?: 'api' | 'scale'
}

/** Backend defaults: connections no route names (tunnel auto routes, health probes) get the route default. */
function backendOptions (config: Config): { connectTimeout: number, keepAliveTimeout: number, maxHeaderSize: number } {
  return { connectTimeout: defaultRoute.connectTimeout, keepAliveTimeout: 4000, maxHeaderSize: config.server.maxHeaderBytes }
}

/**
 * Each backend's connect timeout is the connect_timeout of the routes that send to its pools, not the largest of
 * all routes. A backend shared by routes with different values (one undici pool serves them all) takes the largest
 * of those, so no route's connections are cut sooner than it asked.
 */
function connectTimeouts (config: Config, members: MemberRegistry, adding?: { pool: string, url: string }): Map<string, number> {
  const byPool = new Map<string, number>()
  for (const r of config.routes) {
    if (r.action.kind !== 'pool') continue
    const name = r.action.pool.name
    byPool.set(name, Math.max(byPool.get(name) ?? 0, r.action.connectTimeout))
  }
  const byUrl = new Map<string, number>()
  for (const [pool, timeout] of byPool) {
    const p = config.pools.get(pool)
    const urls = new Set([...(p?.backends.map(b => b.url) ?? []), ...members.urls(pool)])
    if (adding?.pool === pool) urls.add(adding.url)
    for (const url of urls) byUrl.set(url, Math.max(byUrl.get(url) ?? 0, timeout))
  }
  return byUrl
}

function listenerKey (l: Config['listeners'][number]): string {
  // ALPN and whether client certificates are asked are server options, so changing them restarts the listener;
  // certificates themselves are swapped in place (HttpsListener.reconfigure).
  const tls = l.tls === undefined ? '' : `|${l.tls.alpn.join(',')}|${l.tls.clientCa === undefined ? '' : 'mtls'}`
  return `${l.name}|${l.protocol}|${formatAddress(l.address)}${tls}`
}

export type EdgeListener = HttpListener | TlsListener

export class Edge {
  readonly store: BackendStore
  readonly log: Logger
  readonly metrics: EdgeMetrics
  /** Every exchange's named moments; observers subscribe here (passive health, metrics, access log, the mirror). */
  readonly hooks: ExchangeHooks
  /** Shadow traffic of the pools with [pools.NAME.shadow]: copies, comparisons, records. */
  readonly mirror: ShadowMirror
  #table: EdgeTable
  #accessLog: AccessLog | undefined
  #tunnels: TunnelMembers | undefined
  readonly #deps: EdgeDeps
  readonly #listeners = new Map<string, EdgeListener>()
  /** Handed-over sockets not taken yet (each is taken once, by the first start). */
  readonly #inherited: Map<string, net.Server>
  #closed = false

  constructor (config: Config, deps: EdgeDeps) {
    this.log = deps.log
    this.store = new BackendStore(backendOptions(config), (e) => {
      const type = e.to === 'ejected' ? 'ejected' : e.from === 'ejected' ? 'restored' : 'ejection-held'
      this.log.warn({ pool: e.pool, backend: e.backend, reason: e.reason }, `outlier ${type}`)
      if (type === 'ejected') this.metrics.ejections.labels(e.pool, e.backend).inc()
      deps.onEvent?.(type, `${e.backend} in pool ${e.pool}: ${e.reason}`, { pool: e.pool, backend: e.backend })
    })
    this.store.setTls(backendTls(config))
    this.store.setConnectTimeouts(connectTimeouts(config, this.store.members))
    this.#deps = deps
    this.#inherited = new Map(deps.inherited ?? [])
    this.#tunnels = this.makeTunnels(config)
    this.#table = new EdgeTable(config, this.store, this.#tunnels)
    this.metrics = new EdgeMetrics(() => this.#table)
    this.metrics.watchCertificates(() => this.certificates())
    this.metrics.watchTunnels(() => this.#tunnels?.sessionStats() ?? [], () => this.#tunnels?.clientTotals() ?? [])
    this.metrics.watchListeners(() => this.#listeners.values())
    this.#accessLog = createAccessLog(config.log.access)
    this.hooks = new ExchangeHooks({ log: this.log, countFault: () => { this.metrics.internalErrors.inc({ where: 'hook' }) } })
    // Passive health first: an ejection an answer causes is in place before anything else looks at it.
    this.hooks.subscribe(new PassiveHealth())
    this.hooks.subscribe(new MetricsObserver(this.metrics))
    this.hooks.subscribe(new AccessLogObserver(() => this.#accessLog))
    // Last: a copy is sent only once every other observer has seen the attempt.
    this.mirror = new ShadowMirror({ log: this.log, table: () => this.#table, registry: this.metrics.registry })
    this.hooks.subscribe(this.mirror)
  }

  get config (): Config { return this.#table.config }
  get tunnels (): TunnelMembers | undefined { return this.#tunnels }

  private makeTunnels (config: Config): TunnelMembers | undefined {
    if (config.tunnel === undefined) return undefined
    const t = new TunnelMembers(config.tunnel, { log: this.log, store: this.store, ...(this.#deps.onEvent === undefined ? {} : { onEvent: this.#deps.onEvent }) })
    t.usePools(config)
    return t
  }
  table (): EdgeTable { return this.#table }
  listeners (): EdgeListener[] { return [...this.#listeners.values()] }

  /** Every https listener's certificates: names and expiry (status JSON, metrics). */
  certificates (): CertificateRow[] {
    return certificateRows(this.listeners())
  }

  listener (name: string): EdgeListener | undefined {
    for (const l of this.#listeners.values()) if (l.config.name === name) return l
    return undefined
  }

  get members (): MemberRegistry { return this.store.members }

  /** Applies a verdict from the control side (health checks, drain) to a pool's member in this process. */
  setMemberState (pool: string, url: string, patch: MemberPatch): boolean {
    return this.store.members.setStatus(pool, url, patch)
  }

  /** Adds an API member to a pool (it outlives reloads; a reload replaces only the config's members). */
  addMember (pool: string, m: AddedMember): Member | undefined {
    const p = this.config.pools.get(pool)
    if (p === undefined) return undefined
    if (p.tls !== undefined && !this.store.tlsSettings.has(m.url)) this.store.setTls(new Map([...this.store.tlsSettings, [m.url, p.tls]]))
    // Registered again while its removal drains: the new registration wins.
    if (this.store.members.get(pool, m.url)?.draining === true) this.store.members.setStatus(pool, m.url, { draining: false })
    // Its connect timeout is that of the routes to its pool, as for the file's members.
    this.store.setConnectTimeouts(connectTimeouts(this.config, this.store.members, { pool, url: m.url }))
    return this.store.members.add(pool, {
      url: m.url,
      weight: m.weight,
      source: m.source ?? 'api',
      healthy: m.healthy,
      slowStart: p.healthCheck?.slowStart ?? 0,
      maxInflight: p.limits.maxInflightPerBackend,
    })
  }

  /**
   * Drains an API member (no new requests; in-flight ones finish), then removes it once nothing is in flight on
   * it or `drainMs` passed, whichever comes first. Resolves when it is gone.
   */
  async removeMember (pool: string, url: string, drainMs: number): Promise<boolean> {
    const m = this.store.members.get(pool, url)
    if (m === undefined || m.source === 'config') return false
    this.store.members.setStatus(pool, url, { draining: true })
    const deadline = Date.now() + drainMs
    while (m.backend.inflight > 0 && Date.now() < deadline && !this.#closed) await new Promise(resolve => setTimeout(resolve, Math.min(50, Math.max(1, deadline - Date.now()))))
    // Re-added while it drained (a POST after the DELETE): that registration wins.
    if (this.store.members.get(pool, url) !== m || !m.draining) return false
    this.store.members.remove(pool, url)
    if (!this.config.pools.get(pool)?.backends.some(b => b.url === url)) this.store.release(url)
    return true
  }

  /** The pool's latency over the last `windowMs`, merged over its members (the scaler reads it). */
  poolLatency (pool: string, windowMs: number, now = Date.now()): WindowHistogram {
    const h = new WindowHistogram()
    for (const m of this.store.members.list(pool)) m.latency.addTo(h, windowMs, now)
    return h
  }

  async start (): Promise<void> {
    try {
      const t = this.#tunnels
      const key = t === undefined ? '' : formatAddress(t.config.address)
      const handle = this.#inherited.get(key)
      if (handle !== undefined) this.#inherited.delete(key)
      await t?.start(handle)
      await this.syncListeners(this.#table.config)
    } catch (err) {
      await this.close(0)
      throw err
    }
  }

  private async syncListeners (config: Config): Promise<void> {
    const wanted = new Map(config.listeners.map(l => [listenerKey(l), l]))
    const self = this
    const deps = {
      table: () => self.#table,
      get accessLog () { return self.#accessLog },
      log: this.log,
      metrics: this.metrics,
      hooks: this.hooks,
    }
    const started: EdgeListener[] = []
    const onCertEvent = logCertEvent(this.log)
    // A listener replaced on the same address (protocol, ALPN or mTLS changed) must let go of the port first.
    const addresses = new Set([...wanted].filter(([k]) => !this.#listeners.has(k)).map(([, l]) => formatAddress(l.address)))
    for (const [key, l] of this.#listeners) {
      if (!wanted.has(key) && addresses.has(formatAddress(l.config.address)) && l.config.address.port !== 0) {
        this.#listeners.delete(key)
        void l.close(config.server.shutdownTimeout)
        await new Promise(resolve => setImmediate(resolve))
      }
    }
    try {
      for (const [key, l] of wanted) {
        const running = this.#listeners.get(key)
        if (running instanceof HttpsListener) await running.reconfigure(l, onCertEvent(l.name))
        if (running !== undefined) continue
        const listener = l.protocol === 'https'
          ? new HttpsListener(l, deps, config.server, onCertEvent(l.name))
          : l.protocol === 'tls'
            ? new TlsListener(l, deps, { helloTimeout: config.server.headersTimeout, connectTimeout: backendOptions(config).connectTimeout, idleTimeout: config.server.tunnelIdleTimeout })
            : new HttpListener(l, deps, config.server)
        const handle = this.#inherited.get(formatAddress(l.address))
        if (handle !== undefined) this.#inherited.delete(formatAddress(l.address))
        try {
          await listener.listen(handle)
        } catch (err) {
          throw listenError(`listener "${l.name}"`, formatAddress(l.address), err)
        }
        started.push(listener)
        this.#listeners.set(key, listener)
        this.log.info({ listener: l.name, address: listener.address() }, 'listening')
      }
    } catch (err) {
      for (const l of started) {
        for (const [k, v] of this.#listeners) if (v === l) this.#listeners.delete(k)
        await l.close(0)
      }
      throw err
    }
    for (const [key, l] of this.#listeners) {
      if (!wanted.has(key)) {
        this.#listeners.delete(key)
        this.log.info({ listener: l.config.name }, 'listener removed')
        void l.close(config.server.shutdownTimeout)
      }
    }
  }

  /** Swaps in a new config: new requests use it at once; running ones finish on the old objects. */
  async reload (config: Config): Promise<void> {
    if (this.#closed) return
    await this.syncListeners(config)
    if (this.#tunnels === undefined ? config.tunnel !== undefined : !this.#tunnels.sameAs(config.tunnel)) {
      // A changed [tunnel] table means a new endpoint; clients reconnect to it within their backoff.
      const old = this.#tunnels
      const fresh = this.makeTunnels(config)
      await old?.close()
      await fresh?.start()
      this.#tunnels = fresh
    } else {
      this.#tunnels?.usePools(config)
    }
    this.store.setTls(backendTls(config, this.store.members))
    this.store.setConnectTimeouts(connectTimeouts(config, this.store.members))
    const next = new EdgeTable(config, this.store, this.#tunnels)
    const oldLog = this.#accessLog
    if (config.log.access !== this.#table.config.log.access) {
      this.#accessLog = createAccessLog(config.log.access)
      oldLog?.flush()
    }
    this.#table = next
    // Backends no longer named close after their in-flight requests.
    void this.store.retain(next.backendUrls(), config.pools)
  }

  /** `idleGraceMs`: an upgrade's drain, where idle keep-alive connections close only once idle that long. */
  /** Each HTTP(S) listener's bound server by listen address, for handing them to a new edge process. */
  acceptors (): Map<string, net.Server> {
    const m = new Map<string, net.Server>()
    for (const l of this.#listeners.values()) m.set(formatAddress(l.config.address), l.acceptor)
    const t = this.#tunnels?.acceptor
    if (t !== undefined && this.#tunnels !== undefined) m.set(formatAddress(this.#tunnels.config.address), t)
    return m
  }

  async close (timeoutMs: number, idleGraceMs = 0): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const deadline = Date.now() + timeoutMs
    // An upgrade: tunnel clients get GOAWAY at once and dial the new process (which holds the port now), while
    // their streams here finish within the drain; the sooner they go, the shorter the new process waits for them.
    const tunnelsDrained = idleGraceMs > 0 ? this.#tunnels?.drainSessions(timeoutMs) : undefined
    await Promise.all([...this.#listeners.values()].map(l => l instanceof HttpListener ? l.close(timeoutMs, idleGraceMs) : l.close(timeoutMs)))
    this.#listeners.clear()
    await tunnelsDrained
    await this.#tunnels?.close()
    // Shadow copies in flight are cancelled (no client waits for them) and their records written out.
    await this.mirror.close()
    // A request still running upstream now has no client to answer: it, too, ends at the deadline.
    await this.store.close(Math.max(0, deadline - Date.now()))
    this.#accessLog?.flush()
  }
}

function backendTls (config: Config, members?: MemberRegistry): Map<string, BackendTlsConfig> {
  const m = new Map<string, BackendTlsConfig>()
  for (const p of config.pools.values()) {
    if (p.tls === undefined) continue
    for (const b of p.backends) m.set(b.url, p.tls)
    // Members the API added use their pool's settings too.
    if (members !== undefined) for (const url of members.urls(p.name)) if (!m.has(url)) m.set(url, p.tls)
  }
  return m
}
