// Edge side: a WebSocket endpoint for tunnel clients. The upgrade is authenticated before it is accepted
// (401 on a bad token), the session gets GRANT with its names, and a registry maps names to live sessions.
import { EventEmitter } from 'node:events'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { Duplex } from 'node:stream'
import type { AddressInfo } from 'node:net'
import { WebSocketServer, type WebSocket } from 'ws'
import { TunnelError, ResetCode } from './errors.js'
import { FrameType, MAX_MESSAGE } from './frame.js'
import { decodeHello, encodeGrant, type NameClaim, type OpenInfo, type Service } from './payload.js'
import { Session, type SessionOptions } from './session.js'
import { verifyToken, type TokenClaims } from './token.js'
import { grantNames, NameTable } from './names.js'
import type { TunnelStream } from './stream.js'

export interface TunnelServerOptions {
  /** Attach to this server's upgrades (only on `path`); otherwise listen on host:port with a server of our own. */
  server?: Server | HttpsServer
  host?: string
  port?: number
  /** Upgrade path to accept; default: any path on our own server, "/_tunnel" on a shared one. */
  path?: string
  secret: Buffer
  /** Names any token may claim at most, e.g. ["*.tunnel.test"]. */
  allow: readonly string[]
  session?: Omit<SessionOptions, 'role'>
  /** Time a new session has to send HELLO (default 10 s). */
  handshakeTimeoutMs?: number
}

const SERVICES: readonly Service[] = ['http', 'tls', 'tcp']

export class TunnelServer extends EventEmitter {
  readonly sessions = new Set<Session>()
  private readonly opts: TunnelServerOptions
  private readonly tables: Record<Service, NameTable<Session>> = { http: new NameTable(), tls: new NameTable(), tcp: new NameTable() }
  private readonly wss: WebSocketServer
  private server: Server | HttpsServer | undefined
  private readonly ownServer: boolean
  private readonly path: string | undefined

  constructor (opts: TunnelServerOptions) {
    super()
    this.opts = opts
    this.ownServer = opts.server === undefined
    this.path = opts.path ?? (this.ownServer ? undefined : '/_tunnel')
    // maxPayload: ws rejects an oversized message from its length field, before buffering it.
    this.wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE, perMessageDeflate: false, clientTracking: false })
  }

  /** `handle`: a listening socket an older edge process handed over, taken instead of binding the port. */
  async start (handle?: import('node:net').Server): Promise<void> {
    const server = this.opts.server ?? createServer((_req, res) => { res.writeHead(426, { connection: 'close' }).end('tunnel endpoint: WebSocket upgrade required\n') })
    this.server = server
    server.on('upgrade', this.onUpgrade)
    if (this.ownServer) {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        const done = (): void => { server.off('error', reject); resolve() }
        if (handle !== undefined) server.listen(handle, done)
        else server.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', done)
      })
    }
  }

  /** The server bound to the tunnel port when this endpoint owns it (what an upgrade hands to a new process). */
  get acceptor (): Server | HttpsServer | undefined {
    return this.ownServer ? this.server : undefined
  }

  address (): AddressInfo { return this.server?.address() as AddressInfo }

  /** The live sessions that serve a host for a service (exact name first, then wildcards). */
  lookup (host: string, service: Service = 'http'): Session[] {
    const set = this.tables[service].lookup(host)
    if (set === undefined) return []
    const out: Session[] = []
    for (const s of set) if (!s.closed && !s.goingAway && !s.peerGoingAway) out.push(s)
    return out
  }

  /** The claimed name (exact, or the wildcard) that serves a host for a service, if any session claims it. */
  claimOf (host: string, service: Service = 'http'): string | undefined {
    return this.tables[service].key(host)
  }

  openStream (session: Session, info: OpenInfo): TunnelStream {
    return session.openStream(info)
  }

  /** Graceful drain: every session gets GOAWAY and closes once its streams finish. */
  drain (): void {
    for (const s of this.sessions) s.goaway(ResetCode.GOING_AWAY, 'edge is draining')
  }

  async close (): Promise<void> {
    const server = this.server
    this.server = undefined
    if (server !== undefined) server.off('upgrade', this.onUpgrade)
    for (const s of [...this.sessions]) s.destroy()
    if (server !== undefined && this.ownServer) {
      server.closeAllConnections()
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    }
  }

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (this.path !== undefined && (req.url ?? '/').split('?')[0] !== this.path) {
      // On a shared server another upgrade handler owns other paths; on our own, refuse.
      if (this.ownServer) reject(socket, 404, 'EP_ERR_TUNNEL_REFUSED', 'unknown tunnel path')
      return
    }
    const auth = req.headers.authorization ?? ''
    const m = /^Bearer +(\S+)$/i.exec(auth)
    let claims: TokenClaims
    try {
      if (m === null) throw new TunnelError('EP_ERR_TUNNEL_AUTH', 'missing Authorization: Bearer <token>')
      claims = verifyToken(m[1]!, this.opts.secret)
    } catch (err) {
      const e = err as TunnelError
      this.emit('refused', e, req.socket.remoteAddress)
      reject(socket, 401, e.code, e.message)
      return
    }
    this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => { this.onSession(ws, claims, req.socket.remoteAddress ?? '') })
  }

  private onSession (ws: WebSocket, claims: TokenClaims, remote: string): void {
    const session = new Session(ws, { ...this.opts.session, role: 'edge' })
    session.meta = { sub: claims.sub, tokenNames: claims.names, remote }
    this.sessions.add(session)
    const timer = setTimeout(() => { session.destroy(new TunnelError('EP_ERR_TUNNEL_PROTOCOL', 'no HELLO in time')) }, this.opts.handshakeTimeoutMs ?? 10_000).unref()
    // The token's exp binds the session too: at expiry it gets GOAWAY (streams in flight finish, no new ones) and its
    // names leave the registry; the client must come back with a fresh token.
    const expiry = afterMs(claims.exp * 1000 - Date.now(), () => { session.goaway(ResetCode.GOING_AWAY, 'token expired') })
    const registered: NameClaim[] = []
    const unregister = (): void => {
      for (const c of registered.splice(0)) if (this.tables[c.service].delete(c.name, session)) this.emit('unregister', c.name, session, c.service)
    }
    session.once('hello', (payload: Buffer) => {
      clearTimeout(timer)
      const hello = decodeHello(payload)
      if (hello === undefined || !session.applyPeerSettings(hello)) { session.destroy(new TunnelError('EP_ERR_TUNNEL_PROTOCOL', 'malformed HELLO')); return }
      const claimsIn = hello.claims.length > 0 ? hello.claims : claims.names.map(name => ({ service: 'http' as const, name }))
      const granted: NameClaim[] = []
      const refused: NameClaim[] = []
      for (const service of SERVICES) {
        const want = claimsIn.filter(c => c.service === service).map(c => c.name)
        if (want.length === 0) continue
        const g = grantNames(claims.names, this.opts.allow, want)
        for (const name of g.granted) granted.push({ service, name })
        for (const name of g.refused) refused.push({ service, name })
      }
      session.sendHandshake(FrameType.GRANT, encodeGrant({ ...session.localSettings, granted, refused }))
      session.meta.granted = granted
      if (granted.length === 0) { session.goaway(ResetCode.REFUSED, 'no names granted'); return }
      for (const c of granted) {
        if (this.tables[c.service].add(c.name, session)) { registered.push(c); this.emit('register', c.name, session, c.service) }
      }
    })
    // A draining client takes no new streams: drop it from the registry now, not when it closes.
    session.once('goaway', unregister)
    session.once('close', (err?: Error) => {
      clearTimeout(timer)
      expiry.cancel()
      unregister()
      this.sessions.delete(session)
      this.emit('session-close', session, err)
    })
    this.emit('session', session)
  }
}

/** setTimeout for delays past its 24.8-day limit (tokens often live 30 days): re-arms in steps. */
function afterMs (ms: number, fn: () => void): { cancel (): void } {
  const MAX = 0x7fffffff
  let t: NodeJS.Timeout
  const arm = (left: number): void => {
    t = setTimeout(() => { if (left > MAX) arm(left - MAX); else fn() }, Math.max(0, Math.min(left, MAX)))
    t.unref()
  }
  arm(ms)
  return { cancel: () => { clearTimeout(t) } }
}

function reject (socket: Duplex, status: number, code: string, message: string): void {
  const body = `${message}\n`
  const reason = status === 401 ? 'Unauthorized' : 'Not Found'
  socket.on('error', noop) // a client that hangs up on the refusal is not our problem
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\n` +
    `${status === 401 ? 'WWW-Authenticate: Bearer error="invalid_token"\r\n' : ''}X-Tunnel-Error: ${code}\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
}

function noop (): void {}
