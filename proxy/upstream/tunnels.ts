// Tunnel members: the edge side of the packer. Backends behind NAT dial in, claim names, and each live session
// becomes a backend (an undici pool whose "connections" are streams opened over the session). Pools that say
// `tunnel = "name"` take those backends as members through the member registry, like any other source; with
// auto_route a claimed host is a run-time entry of the resolver (proxy/route/resolve.ts).
import https from 'node:https'
import { readFileSync } from 'node:fs'
import { isIP, type Server as NetServer } from 'node:net'
import type { Logger } from 'pino'
import { LRUCache } from 'lru-cache'
import { Pool } from 'undici'
import type { Config, RouteConfig, TunnelConfig } from '../../config/types.js'
import { defaultPoolAction, defaultPoolConfig } from '../../config/load.js'
import { DEFAULT_CIPHERS } from '../../config/tls.js'
import { listenError } from '../../config/errors.js'
import { formatAddress } from '../../config/address.js'
import { TunnelServer } from '../../packer/server.js'
import type { Session } from '../../packer/session.js'
import type { Service } from '../../packer/payload.js'
import type { Duplex } from 'node:stream'
import { Backend, type StreamOpener } from './backend.js'
import type { BackendStore } from './store.js'
import { PoolRuntime, tlsPools } from './pool.js'
import type { Resolved, RuntimeRoutes } from '../route/resolve.js'
import { RefusingDispatcher } from './transport.js'
import type { TunnelClientTotals, TunnelSessionStats } from '../ops/metrics.js'

export interface TunnelMembersDeps {
  readonly log: Logger
  readonly store: BackendStore
  readonly onEvent?: (type: string, message: string, fields: Record<string, unknown>) => void
}

let sessionSeq = 0

/** How many auto_route names that went offline are remembered for their 503 answer. */
const OFFLINE_NAMES = 1024

/** An offline name serving `host`: the host itself, or a wildcard claim over it ("*.b.c" for a.b.c, then "*.c"). */
function offlineEntry (offline: LRUCache<string, Resolved>, host: string): Resolved | undefined {
  const exact = offline.peek(host)
  if (exact !== undefined) return exact
  for (let dot = host.indexOf('.'); dot !== -1; dot = host.indexOf('.', dot + 1)) {
    const e = offline.peek(`*${host.slice(dot)}`)
    if (e !== undefined) return e
  }
  return offline.peek('*')
}

/** Opens the streams of one session's claim: the backend's pooled connections and raw streams (Upgrade, tls). */
class SessionOpener implements StreamOpener {
  client = ''
  constructor (private readonly server: TunnelServer, private readonly session: Session, private readonly name: string, private readonly service: 'http' | 'tls') {}

  openRaw (clientIp: string, servername?: string): Duplex {
    const stream = this.server.openStream(this.session, { family: isIP(clientIp) === 6 ? 6 : 4, address: clientIp === '' ? '0.0.0.0' : clientIp, port: 0, service: this.service, servername: servername ?? this.name })
    stream.on('error', () => {})
    return stream
  }
}

/** A pool fed by tunnel sessions: a config pool naming `tunnel`, or the pool of a claim's auto route. */
interface TunnelPool { readonly pool: string, readonly claim: string, readonly service: 'http' | 'tls' }

/**
 * The tunnel side as a member source: each session's claim is a backend, added to the member registry (source
 * "tunnel") of every pool that names the claim, and, with auto_route, a run-time route entry of its own.
 */
export class TunnelMembers implements RuntimeRoutes {
  readonly config: TunnelConfig
  readonly server: TunnelServer
  readonly #deps: TunnelMembersDeps
  /** name ("tls:NAME" for tls claims) -> session -> backend */
  readonly #byName = new Map<string, Map<Session, Backend>>()
  /** auto_route entries by claimed name, made when the first session claims it, gone with the last. */
  readonly #auto = new Map<string, Resolved>()
  readonly #autoTls = new Map<string, Resolved>()
  /**
   * auto_route names whose last session left, most recent last: they answer 503 "tunnel offline" rather than 404
   * "no route". Bounded, so names that come and go cannot grow it.
   */
  readonly #offline = new LRUCache<string, Resolved>({ max: OFFLINE_NAMES })
  /** The config's pools that name a tunnel (set by usePools on start and on each reload). */
  #configPools: readonly TunnelPool[] = []
  /** Pools this source added members to at the last sync (to empty those that stop naming a tunnel). */
  #synced = new Set<string>()
  /** Totals of closed sessions per client; bounded, as subjects are whatever tokens say. */
  readonly #retired = new LRUCache<string, TunnelClientTotals>({ max: 4096 })
  readonly #https: https.Server | undefined

  constructor (config: TunnelConfig, deps: TunnelMembersDeps) {
    this.config = config
    this.#deps = deps
    // The same AEAD-only TLS 1.2 suites as the https listeners' default.
    this.#https = config.tls === undefined ? undefined : https.createServer({ cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key), ciphers: DEFAULT_CIPHERS, honorCipherOrder: false })
    this.server = new TunnelServer({
      ...(this.#https === undefined ? { host: config.address.host, port: config.address.port } : { server: this.#https, path: '/' }),
      secret: config.secret,
      allow: config.allow,
      session: { pingIntervalMs: config.heartbeat, maxStreams: config.maxStreams, streamWindow: config.streamWindow },
    })
    // http claims serve requests by Host; tls claims serve passthrough connections by SNI. (tcp claims are granted
    // but nothing routes raw TCP to them yet.)
    this.server.on('register', (name: string, session: Session, service: Service) => {
      if (service === 'http' || service === 'tls') this.add(name, session, service)
    })
    this.server.on('unregister', (name: string, session: Session, service: Service) => {
      if (service === 'http' || service === 'tls') this.remove(name, session, service)
    })
    this.server.on('refused', (err: Error, ip: string | undefined) => { deps.log.warn({ reason: err.message, ip }, 'tunnel refused') })
    this.server.on('session-close', (session: Session, err: (Error & { code?: string }) | undefined) => {
      this.retire(session)
      if (err !== undefined) deps.log.warn({ sub: session.meta.sub, code: err.code, reason: err.message }, 'tunnel session closed')
    })
  }

  /** `handle`: the tunnel port's listening socket, handed over by an older edge process (no new bind). */
  async start (handle?: NetServer): Promise<void> {
    try {
      await this.listen(handle)
    } catch (err) {
      throw listenError('the tunnel endpoint ([tunnel] listen)', formatAddress(this.config.address), err)
    }
    const a = this.#https?.address() ?? this.server.address()
    this.#deps.log.info({ address: typeof a === 'object' && a !== null ? `${a.address}:${a.port}` : '', tls: this.#https !== undefined }, 'tunnel endpoint listening')
  }

  private async listen (handle?: NetServer): Promise<void> {
    if (this.#https !== undefined) {
      const srv = this.#https
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject)
        const done = (): void => { srv.off('error', reject); resolve() }
        if (handle !== undefined) srv.listen(handle, done)
        else srv.listen(this.config.address.port, this.config.address.host, done)
      })
      await this.server.start()
      return
    }
    await this.server.start(handle)
  }

  /** The bound tunnel port's server, for handing it to a new edge process. */
  get acceptor (): NetServer | undefined {
    return this.#https ?? this.server.acceptor
  }

  /**
   * An upgrade's drain: GOAWAY to every session (clients dial the new process at once, while their streams here
   * finish), then wait up to `ms` for them to close.
   */
  async drainSessions (ms: number): Promise<void> {
    const open = [...this.server.sessions].filter(s => !s.closed)
    if (open.length === 0) return
    const closed = Promise.all(open.map(s => new Promise(resolve => { s.once('close', resolve) })))
    this.server.drain()
    let timer: NodeJS.Timeout | undefined
    await Promise.race([closed, new Promise(resolve => { timer = setTimeout(resolve, ms) })])
    clearTimeout(timer)
  }

  get port (): number {
    const a = this.#https?.address() ?? this.server.address()
    return typeof a === 'object' && a !== null ? a.port : 0
  }

  /** Takes the pools of a config generation that name a tunnel, and gives them their members at once. */
  usePools (config: Config): void {
    const tls = tlsPools(config)
    const list: TunnelPool[] = []
    for (const p of config.pools.values()) if (p.tunnel !== undefined) list.push({ pool: p.name, claim: p.tunnel, service: tls.has(p.name) ? 'tls' : 'http' })
    this.#configPools = list
    this.sync()
  }

  /** The backends currently serving `name` for a service (exact claims and wildcard claims). */
  backendsFor (name: string, service: 'http' | 'tls' = 'http'): Backend[] {
    const out: Backend[] = []
    for (const s of this.server.lookup(name, service)) {
      for (const [key, byName] of this.#byName) {
        if (key.startsWith('tls:') !== (service === 'tls')) continue
        const b = byName.get(s)
        if (b !== undefined && !out.includes(b)) { out.push(b); break }
      }
    }
    return out
  }

  /**
   * auto_route: the entry for a host claimed by a tunnel. Keyed by the claimed name, not the host: under a wildcard
   * claim the client picks the host, and per-host pools and metric series would be unbounded.
   */
  byHost (host: string): Resolved | undefined {
    if (!this.config.autoRoute || host === '' || (this.#auto.size === 0 && this.#offline.size === 0)) return undefined
    const name = this.server.claimOf(host, 'http')
    if (name !== undefined) return this.#auto.get(name)
    return this.#offline.size === 0 ? undefined : offlineEntry(this.#offline, host)
  }

  /** auto_route for tls passthrough: the entry for a server name claimed with tls:. */
  bySni (sni: string | undefined): Resolved | undefined {
    if (!this.config.autoRoute || sni === undefined || sni === '' || this.#autoTls.size === 0) return undefined
    const name = this.server.claimOf(sni, 'tls')
    return name === undefined ? undefined : this.#autoTls.get(name)
  }

  /**
   * Brings the registry in line with the live sessions: every pool fed by a claim has exactly the claim's session
   * backends as its tunnel members. Runs when a session claims or drops a name and when the pools change (rare).
   */
  private sync (): void {
    const registry = this.#deps.store.members
    const want: TunnelPool[] = [...this.#configPools]
    for (const [claim, e] of this.#auto) want.push({ pool: (e.pool as PoolRuntime).name, claim, service: 'http' })
    for (const [claim, e] of this.#autoTls) want.push({ pool: (e.pool as PoolRuntime).name, claim, service: 'tls' })
    const synced = new Set<string>()
    for (const w of want) {
      synced.add(w.pool)
      const backends = this.backendsFor(w.claim, w.service)
      const urls = new Set(backends.map(b => b.url))
      for (const url of [...registry.urls(w.pool)]) {
        if (!urls.has(url)) registry.remove(w.pool, url, 'tunnel')
      }
      for (const b of backends) if (registry.get(w.pool, b.url) === undefined) registry.add(w.pool, { url: b.url, weight: 1, source: 'tunnel', backend: b })
    }
    // A pool that no longer names a tunnel (reload) loses its tunnel members.
    for (const pool of this.#synced) {
      if (!synced.has(pool)) for (const url of [...registry.urls(pool)]) registry.remove(pool, url, 'tunnel')
    }
    this.#synced = synced
  }

  /** A closed session's numbers stay in its client's totals (the metrics' counters never go down). */
  private retire (s: Session): void {
    const sub = String(s.meta.sub ?? '')
    const t = this.#retired.get(sub) ?? { sub, streams_total: 0, bytes_in: 0, bytes_out: 0, window_stalls: 0 }
    this.#retired.set(sub, { sub, streams_total: t.streams_total + s.stats.streamsTotal, bytes_in: t.bytes_in + s.stats.bytesIn, bytes_out: t.bytes_out + s.stats.bytesOut, window_stalls: t.window_stalls + s.stats.windowStalls })
  }

  /** Per client (token subject): streams, bytes and stalls of its closed sessions plus its live ones. */
  clientTotals (): TunnelClientTotals[] {
    const out = new Map<string, TunnelClientTotals>()
    for (const [sub, t] of this.#retired.entries()) out.set(sub, t)
    for (const s of this.server.sessions) {
      if (s.closed) continue // counted by retire() once its close is reported
      const sub = String(s.meta.sub ?? '')
      const t = out.get(sub) ?? { sub, streams_total: 0, bytes_in: 0, bytes_out: 0, window_stalls: 0 }
      out.set(sub, { sub, streams_total: t.streams_total + s.stats.streamsTotal, bytes_in: t.bytes_in + s.stats.bytesIn, bytes_out: t.bytes_out + s.stats.bytesOut, window_stalls: t.window_stalls + s.stats.windowStalls })
    }
    return [...out.values()]
  }

  /** Per-session numbers for status and metrics. */
  sessionStats (): Array<TunnelSessionStats & { names: unknown }> {
    return [...this.server.sessions].map(s => ({
      sub: String(s.meta.sub ?? ''),
      names: s.meta.granted,
      streams_open: s.stats.streamsOpen,
      streams_total: s.stats.streamsTotal,
      bytes_in: s.stats.bytesIn,
      bytes_out: s.stats.bytesOut,
      window_stalls: s.stats.windowStalls,
    }))
  }

  status (): unknown {
    return {
      listen: `${this.config.address.host}:${this.port}`,
      sessions: this.sessionStats(),
    }
  }

  private add (name: string, session: Session, service: 'http' | 'tls'): void {
    const key = service === 'tls' ? `tls:${name}` : name
    let byName = this.#byName.get(key)
    if (byName === undefined) { byName = new Map(); this.#byName.set(key, byName) }
    if (byName.has(session)) return
    const opener = new SessionOpener(this.server, session, name, service)
    const opts = this.#deps.store.options
    let backend: Backend
    if (service === 'tls') {
      // No HTTP side: the streams carry raw (still encrypted) client connections.
      backend = new Backend(`tunnel+tls://${name}/${++sessionSeq}`, opts, undefined, new RefusingDispatcher(), name, opener)
    } else {
      backend = new Backend(`tunnel://${name}/${++sessionSeq}`, opts, undefined, new Pool(`http://${name}`, {
        connections: null,
        pipelining: 1,
        keepAliveTimeout: opts.keepAliveTimeout,
        maxHeaderSize: opts.maxHeaderSize,
        headersTimeout: 0,
        bodyTimeout: 0,
        // Each pooled "connection" is a stream over the session; its OPEN names the client that caused it.
        connect: (_opts, cb) => {
          try {
            const stream = opener.openRaw(opener.client, name)
            // undici expects the connector to answer asynchronously, as a real connect does; a synchronous
            // callback lands inside its resume loop and the request would sit in the queue.
            process.nextTick(cb, null, stream as never)
          } catch (err) {
            process.nextTick(cb, err as Error, null)
          }
        },
      }), name, opener)
    }
    byName.set(session, backend)
    this.#deps.store.adopt(backend)
    if (this.config.autoRoute) this.ensureAutoRoute(name, service)
    this.sync()
    this.#deps.log.info({ name: key, url: backend.url, sub: session.meta.sub }, 'tunnel registered')
    this.#deps.onEvent?.('tunnel-up', `tunnel for ${key} registered (${backend.url})`, { name: key, backend: backend.url })
  }

  /** The auto_route entry of a claimed name: a route like the file's, with a least-connections pool of its own. */
  private ensureAutoRoute (name: string, service: 'http' | 'tls'): void {
    const map = service === 'tls' ? this.#autoTls : this.#auto
    if (map.has(name)) return
    if (service === 'http') {
      const back = this.#offline.get(name)
      if (back !== undefined) { this.#offline.delete(name); map.set(name, back); return }
    }
    const poolName = service === 'tls' ? `tunnel:tls:${name}` : `tunnel:${name}`
    const poolConfig = defaultPoolConfig(poolName, { balance: 'least_conn', tunnel: name })
    const route = Object.freeze({
      name: poolName,
      index: -1,
      listeners: undefined,
      match: Object.freeze(service === 'tls'
        ? { host: undefined, pathPrefix: undefined, methods: undefined, headers: undefined, sni: name }
        : { host: name, pathPrefix: undefined, methods: undefined, headers: undefined }),
      action: defaultPoolAction(poolConfig),
    }) as RouteConfig
    map.set(name, Object.freeze({ route, pool: new PoolRuntime(poolConfig, this.#deps.store) }))
  }

  private remove (name: string, session: Session, service: 'http' | 'tls'): void {
    const key = service === 'tls' ? `tls:${name}` : name
    const byName = this.#byName.get(key)
    const backend = byName?.get(session)
    if (byName === undefined || backend === undefined) return
    byName.delete(session)
    // Names come and go with sessions: forget the auto route of one nobody serves any more.
    if (byName.size === 0) {
      this.#byName.delete(key)
      const map = service === 'tls' ? this.#autoTls : this.#auto
      const entry = map.get(name)
      map.delete(name)
      if (entry?.pool !== undefined) this.#deps.store.members.removePool(entry.pool.name)
      if (entry !== undefined && service === 'http') this.#offline.set(name, entry)
    }
    this.#deps.store.drop(backend.url)
    this.sync()
    // New requests go to the other members, or 503. A session that closed already failed its streams; one that is
    // draining (the client sent GOAWAY) finishes them, so close gracefully: in-flight requests complete, idle
    // keep-alive streams close, and the client's drain can end.
    void (session.closed ? backend.dispatcher.destroy() : backend.dispatcher.close()).catch(() => {})
    this.#deps.log.info({ name: key, url: backend.url }, 'tunnel unregistered')
    this.#deps.onEvent?.('tunnel-down', `tunnel for ${key} went away (${backend.url})`, { name: key, backend: backend.url })
  }

  /** True when the running tunnel endpoint can serve `config` as it is (else the edge rebuilds it). */
  sameAs (config: Config['tunnel']): boolean {
    return config !== undefined && JSON.stringify({ ...config, secret: config.secret.toString('base64') }) === JSON.stringify({ ...this.config, secret: this.config.secret.toString('base64') })
  }

  async close (): Promise<void> {
    await this.server.close()
    if (this.#https !== undefined) {
      const srv = this.#https
      srv.closeAllConnections()
      await new Promise<void>(resolve => { srv.close(() => { resolve() }) })
    }
    for (const byName of this.#byName.values()) {
      for (const b of byName.values()) {
        this.#deps.store.drop(b.url)
        void b.dispatcher.destroy().catch(() => {})
      }
    }
    this.#byName.clear()
    for (const e of [...this.#auto.values(), ...this.#autoTls.values()]) if (e.pool !== undefined) this.#deps.store.members.removePool(e.pool.name)
    this.#auto.clear()
    this.#autoTls.clear()
    this.#offline.clear()
  }
}
