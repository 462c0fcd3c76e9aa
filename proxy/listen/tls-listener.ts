// A tls (passthrough) listener: reads the ClientHello's server name without terminating, picks the first route
// of this listener whose match.sni fits (exact or "*.example.com"; a route without match.sni takes anything),
// lets the route's pool balancer choose a tcp:// backend, and splices the raw stream to it. The backend's own
// certificate is what the client verifies.
import type { Server as NetServer, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { AccessLog } from '../ops/log.js'
import type { ListenerConfig } from '../../config/types.js'
import { formatAddress } from '../../config/address.js'
import { defaultRoute } from '../../config/load.js'
import type { Backend } from '../upstream/backend.js'
import type { Member } from '../upstream/member.js'
import type { EdgeTable } from '../route/table.js'
import { clientIpOf } from './request.js'
import { TlsPassthroughListener, parseTcpTarget, type PassthroughEvent, type PassthroughTarget } from '../tls/passthrough.js'

export interface TlsListenerDeps {
  table (): EdgeTable
  readonly log: Logger
  /** One line per passthrough connection (read per connection: a reload may switch the log). */
  readonly accessLog?: AccessLog | undefined
}

export interface TlsListenerOptions {
  /** The whole ClientHello must arrive within this. */
  readonly helloTimeout: number
  readonly connectTimeout: number
  /** A spliced connection with no bytes either way for this long is closed; 0 = never. */
  readonly idleTimeout: number
}

const NO_HEADERS = { headers: {} }

/** One spliced connection's hold on a backend: counted in flight until the upstream closes. */
class BackendLease implements PassthroughTarget {
  readonly open: (() => Duplex) | undefined
  readonly backend: Backend
  constructor (readonly host: string, readonly port: number, readonly member: Member, readonly cooldown: number, client: string, sni: string | undefined,
    readonly connectTimeoutMs: number) {
    const backend = member.backend
    this.backend = backend
    member.requests++
    const opener = backend.opener
    // A tunnel member: the connection travels as a stream over the client's session.
    this.open = opener === undefined ? undefined : () => opener.openRaw(client, sni)
    backend.inflight++
    backend.requests++
  }

  done (connected: boolean): void {
    this.backend.inflight--
    if (!connected) {
      this.backend.failures++
      this.member.failures++
      this.backend.markUnreachable(Date.now(), this.cooldown)
    }
  }
}

export class TlsListener {
  readonly config: ListenerConfig
  readonly #deps: TlsListenerDeps
  readonly #inner: TlsPassthroughListener
  #bytesIn = 0
  #bytesOut = 0

  constructor (config: ListenerConfig, deps: TlsListenerDeps, options: TlsListenerOptions) {
    this.config = config
    this.#deps = deps
    this.#inner = new TlsPassthroughListener({
      pick: (sni, _alpn, client) => this.pick(sni, client),
      helloTimeoutMs: options.helloTimeout,
      connectTimeoutMs: options.connectTimeout,
      idleTimeoutMs: options.idleTimeout,
      onEvent: e => { this.onEvent(e) },
    })
  }

  /** Binds the address, or takes over `handle`, a listening socket an older edge process handed over. */
  listen (handle?: NetServer): Promise<void> {
    return this.#inner.listen(this.config.address.port, this.config.address.host, handle)
  }

  /** The server bound to the port (what an upgrade hands to the new edge process). */
  get acceptor (): NetServer {
    return this.#inner.server
  }

  address (): string {
    const a = this.#inner.server.address()
    return a !== null && typeof a === 'object' ? formatAddress({ host: a.address, port: a.port }) : ''
  }

  get port (): number {
    const a = this.#inner.server.address()
    return a !== null && typeof a === 'object' ? a.port : 0
  }

  get connections (): number { return this.#inner.connections }

  openConnections (): Promise<number> { return Promise.resolve(this.#inner.connections) }

  /** Bytes from and to clients over the spliced connections that ended (the status page's bytes per listener). */
  bytes (): { in: number, out: number } { return { in: this.#bytesIn, out: this.#bytesOut } }

  private pick (sni: string | undefined, client: Socket): PassthroughTarget | undefined {
    const resolved = this.#deps.table().resolver.resolveSni(this.config.name, sni)
    const pool = resolved?.pool
    if (resolved === undefined || pool === undefined) return undefined
    const ip = clientIpOf(client)
    const member = pool.select(NO_HEADERS, '/', ip, Date.now(), undefined).member
    if (member === undefined) return undefined
    const action = resolved.route.action
    const connectTimeout = action.kind === 'pool' ? action.connectTimeout : defaultRoute.connectTimeout
    if (member.backend.opener !== undefined) return new BackendLease('tunnel', 0, member, pool.config.unreachableCooldown, ip, sni, connectTimeout)
    const t = parseTcpTarget(member.backend.url)
    return new BackendLease(t.host, t.port, member, pool.config.unreachableCooldown, ip, sni, connectTimeout)
  }

  private onEvent (e: PassthroughEvent): void {
    if (e.type === 'closed') { this.#bytesIn += e.bytesIn; this.#bytesOut += e.bytesOut }
    const access = this.#deps.accessLog
    if (access !== undefined) {
      if (e.type === 'closed') {
        access.connection({
          listener: this.config.name, clientIp: clientIpOf(e.client), sni: e.sni ?? '', backend: (e.target as BackendLease).backend?.url ?? `${e.target.host}:${e.target.port}`,
          bytesIn: e.bytesIn, bytesOut: e.bytesOut, durationMs: e.durationMs, end: e.end, error: e.error,
        })
      } else if (e.type === 'rejected') {
        access.connection({ listener: this.config.name, clientIp: e.client === undefined ? '' : clientIpOf(e.client), sni: e.sni ?? '', backend: '', bytesIn: 0, bytesOut: 0, durationMs: 0, end: 'rejected', error: `${e.reason}: ${e.detail}` })
      }
    }
    const log = this.#deps.log
    if (!log.isLevelEnabled('debug')) return
    if (e.type === 'routed') log.debug({ listener: this.config.name, sni: e.sni, target: `${e.target.host}:${e.target.port}` }, 'tls passthrough')
    else if (e.type === 'rejected') log.debug({ listener: this.config.name, reason: e.reason, detail: e.detail }, 'tls passthrough refused')
    else log.debug({ listener: this.config.name, target: `${e.target.host}:${e.target.port}`, error: e.error }, 'tls passthrough backend failed')
  }

  close (timeoutMs: number): Promise<void> {
    return this.#inner.close(timeoutMs)
  }
}
