// Tunnel members: the edge side of the packer. Backends behind NAT dial in, claim names, and each live session
// becomes a backend (an undici pool whose "connections" are streams opened over the session). Pools that say
// `tunnel = "name"` take those backends as members; with auto_route a claimed host is routed without a route.
import https from 'node:https'
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import type { Logger } from 'pino'
import { Pool } from 'undici'
import type { Config, RouteConfig, TunnelConfig } from '../../config/types.js'
import { defaultPoolAction, defaultPoolConfig } from '../../config/load.js'
import { DEFAULT_CIPHERS } from '../../config/tls.js'
import { TunnelServer } from '../../packer/server.js'
import type { Session } from '../../packer/session.js'
import type { Service } from '../../packer/payload.js'
import { Backend } from './backend.js'
import type { BackendStore } from './store.js'
import { PoolRuntime } from './pool.js'
import { RefusingDispatcher } from './transport.js'
import type { TunnelSessionStats } from '../ops/metrics.js'

export interface TunnelMembersDeps {
  readonly log: Logger
  readonly store: BackendStore
  readonly onEvent?: (type: string, message: string, fields: Record<string, unknown>) => void
}

let sessionSeq = 0

export class TunnelMembers {
  readonly config: TunnelConfig
  readonly server: TunnelServer
  /** Bumped on every register/unregister: pools re-read their members when it moves. */
  version = 0
  readonly #deps: TunnelMembersDeps
  /** name -> session -> backend */
  readonly #byName = new Map<string, Map<Session, Backend>>()
  readonly #auto = new Map<string, { route: RouteConfig, pool: PoolRuntime }>()
  readonly #autoTls = new Map<string, PoolRuntime>()
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
      if (service === 'http') this.add(name, session)
      else if (service === 'tls') this.addTls(name, session)
    })
    this.server.on('unregister', (name: string, session: Session, service: Service) => {
      if (service === 'http' || service === 'tls') this.remove(service === 'tls' ? `tls:${name}` : name, session)
    })
    this.server.on('refused', (err: Error, ip: string | undefined) => { deps.log.warn({ reason: err.message, ip }, 'tunnel refused') })
    this.server.on('session-close', (session: Session, err: (Error & { code?: string }) | undefined) => {
      if (err !== undefined) deps.log.warn({ sub: session.meta.sub, code: err.code, reason: err.message }, 'tunnel session closed')
    })
  }

  async start (): Promise<void> {
    if (this.#https !== undefined) {
      const srv = this.#https
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject)
        srv.listen(this.config.address.port, this.config.address.host, () => { srv.off('error', reject); resolve() })
      })
    }
    await this.server.start()
    const a = this.#https?.address() ?? this.server.address()
    this.#deps.log.info({ address: typeof a === 'object' && a !== null ? `${a.address}:${a.port}` : '', tls: this.#https !== undefined }, 'tunnel endpoint listening')
  }

  get port (): number {
    const a = this.#https?.address() ?? this.server.address()
    return typeof a === 'object' && a !== null ? a.port : 0
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

  /** A pool for a server name claimed with tls: (passthrough auto_route), or undefined. */
  autoTlsPool (sni: string | undefined): PoolRuntime | undefined {
    if (!this.config.autoRoute || sni === undefined || sni === '' || this.server.lookup(sni, 'tls').length === 0) return undefined
    const name = this.server.claimOf(sni, 'tls') as string
    let pool = this.#autoTls.get(name)
    if (pool === undefined) {
      pool = new PoolRuntime(defaultPoolConfig(`tunnel:tls:${name}`, { balance: 'least_conn', tunnel: name }), this.#deps.store, this, 'tls')
      this.#autoTls.set(name, pool)
    }
    return pool
  }

  /**
   * A route and pool for a host claimed by a tunnel (auto_route), or undefined. Keyed by the claimed name, not the
   * host: under a wildcard claim the client picks the host, and per-host pools and metric series would be unbounded.
   */
  autoRoute (host: string): { route: RouteConfig, pool: PoolRuntime } | undefined {
    if (!this.config.autoRoute || host === '' || this.server.lookup(host, 'http').length === 0) return undefined
    const name = this.server.claimOf(host, 'http') as string
    let a = this.#auto.get(name)
    if (a === undefined) {
      const poolConfig = defaultPoolConfig(`tunnel:${name}`, { balance: 'least_conn', tunnel: name })
      a = {
        pool: new PoolRuntime(poolConfig, this.#deps.store, this),
        route: Object.freeze({
          name: `tunnel:${name}`,
          index: -1,
          listeners: undefined,
          match: Object.freeze({ host: name, pathPrefix: undefined, methods: undefined, headers: undefined }),
          action: defaultPoolAction(poolConfig),
        }) as RouteConfig,
      }
      this.#auto.set(name, a)
    }
    return a
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

  private add (name: string, session: Session): void {
    let byName = this.#byName.get(name)
    if (byName === undefined) { byName = new Map(); this.#byName.set(name, byName) }
    if (byName.has(session)) return
    const url = `tunnel://${name}/${++sessionSeq}`
    const backend: Backend = new Backend(url, this.#deps.store.options, undefined, new Pool(`http://${name}`, {
      connections: null,
      pipelining: 1,
      keepAliveTimeout: this.#deps.store.options.keepAliveTimeout,
      maxHeaderSize: this.#deps.store.options.maxHeaderSize,
      headersTimeout: 0,
      bodyTimeout: 0,
      // Each pooled "connection" is a stream over the session; its OPEN names the client that caused it.
      connect: (_opts, cb) => {
        try {
          const ip = backend.lastClient
          const stream = this.server.openStream(session, { family: isIP(ip) === 6 ? 6 : 4, address: ip === '' ? '0.0.0.0' : ip, port: 0, service: 'http', servername: name })
          stream.on('error', () => {})
          // undici expects the connector to answer asynchronously, as a real connect does; a synchronous
          // callback lands inside its resume loop and the request would sit in the queue.
          process.nextTick(cb, null, stream as never)
        } catch (err) {
          process.nextTick(cb, err as Error, null)
        }
      },
    }), name)
    backend.tunnel = name
    backend.openRaw = (ip) => {
      const stream = this.server.openStream(session, { family: isIP(ip) === 6 ? 6 : 4, address: ip === '' ? '0.0.0.0' : ip, port: 0, service: 'http', servername: name })
      stream.on('error', () => {})
      return stream
    }
    byName.set(session, backend)
    this.#deps.store.adopt(backend)
    this.version++
    this.#deps.log.info({ name, url, sub: session.meta.sub }, 'tunnel registered')
    this.#deps.onEvent?.('tunnel-up', `tunnel for ${name} registered (${url})`, { name, backend: url })
  }

  /** A tls: claim: a backend with no HTTP side whose streams carry raw (still encrypted) client connections. */
  private addTls (name: string, session: Session): void {
    const key = `tls:${name}`
    let byName = this.#byName.get(key)
    if (byName === undefined) { byName = new Map(); this.#byName.set(key, byName) }
    if (byName.has(session)) return
    const url = `tunnel+tls://${name}/${++sessionSeq}`
    const backend = new Backend(url, this.#deps.store.options, undefined, new RefusingDispatcher(), name)
    backend.tunnel = name
    backend.openRaw = (ip, servername) => {
      const stream = this.server.openStream(session, { family: isIP(ip) === 6 ? 6 : 4, address: ip === '' ? '0.0.0.0' : ip, port: 0, service: 'tls', servername: servername ?? name })
      stream.on('error', () => {})
      return stream
    }
    byName.set(session, backend)
    this.#deps.store.adopt(backend)
    this.version++
    this.#deps.log.info({ name: key, url, sub: session.meta.sub }, 'tunnel registered')
    this.#deps.onEvent?.('tunnel-up', `tunnel for ${key} registered (${url})`, { name: key, backend: url })
  }

  private remove (name: string, session: Session): void {
    const byName = this.#byName.get(name)
    const backend = byName?.get(session)
    if (byName === undefined || backend === undefined) return
    byName.delete(session)
    // Names come and go with sessions: forget the auto route of one nobody serves any more.
    if (byName.size === 0) {
      this.#byName.delete(name)
      if (name.startsWith('tls:')) this.#autoTls.delete(name.slice(4))
      else this.#auto.delete(name)
    }
    this.#deps.store.drop(backend.url)
    this.version++
    // New requests go to the other members, or 503. A session that closed already failed its streams; one that is
    // draining (the client sent GOAWAY) finishes them, so close gracefully: in-flight requests complete, idle
    // keep-alive streams close, and the client's drain can end.
    void (session.closed ? backend.dispatcher.destroy() : backend.dispatcher.close()).catch(() => {})
    this.#deps.log.info({ name, url: backend.url }, 'tunnel unregistered')
    this.#deps.onEvent?.('tunnel-down', `tunnel for ${name} went away (${backend.url})`, { name, backend: backend.url })
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
  }
}
