// Backend side: holds a session to each edge, claims names, and on OPEN connects the stream to the
// local target mapped to that name. A lost session or a network error is redialled with full-jitter backoff; an
// edge that refuses the token (401/403) or grants none of the claims gives a final answer: 'refused', no redial.
import { EventEmitter } from 'node:events'
import type { ClientRequest, IncomingMessage } from 'node:http'
import { connect } from 'node:net'
import { WebSocket } from 'ws'
import { TunnelError, ResetCode, tunnelErrorCodes, type TunnelErrorCode } from './errors.js'
import { FrameType, MAX_MESSAGE } from './frame.js'
import { decodeGrant, encodeHello, type Grant, type NameClaim, type Service } from './payload.js'
import { Session, type SessionOptions } from './session.js'
import { NameTable, normalizeName } from './names.js'
import { proxyHeader } from './proxy-header.js'
import type { TunnelStream } from './stream.js'

export interface TunnelRoute {
  service: Service
  name: string
  /** "http://host:port" or "tcp://host:port": where streams for this name go. */
  to: string
  /** Prefix each connection with a PROXY protocol header carrying the original client address. */
  proxyProtocol?: 1 | 2
}

export interface TunnelClientOptions {
  /** ws:// or wss:// URLs of the edges' tunnel endpoints; one session is held to each. */
  edges: readonly string[]
  token: string
  routes: readonly TunnelRoute[]
  /** Full-jitter reconnect delay bounds (default 1 s .. 30 s). */
  backoff?: { minMs: number, maxMs: number }
  session?: Omit<SessionOptions, 'role'>
  connectTimeoutMs?: number
}

interface Target { host: string, port: number, proxyProtocol: 0 | 1 | 2 }

function parseTarget (r: TunnelRoute): Target {
  const u = new URL(r.to)
  if (u.protocol !== 'http:' && u.protocol !== 'tcp:') throw new TypeError(`tunnel target ${r.to}: expected http:// or tcp://`)
  const port = Number(u.port !== '' ? u.port : (u.protocol === 'http:' ? 80 : NaN))
  if (!Number.isInteger(port) || port <= 0) throw new TypeError(`tunnel target ${r.to}: needs a port`)
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port, proxyProtocol: r.proxyProtocol ?? 0 }
}

/** A second GOAWAY within this of the last one redials with backoff: at once only for a real hand-over. */
const GOAWAY_REDIAL_MS = 5000

/** Zero masks let ws skip copying every outgoing frame to mask it (a browser-only defence; wss encrypts anyway). */
function zeroMask (mask: Buffer): void { mask.fill(0) }

class EdgeLink {
  session: Session | undefined
  grant: Grant | undefined
  attempt = 0
  ws: WebSocket | undefined
  timer: NodeJS.Timeout | undefined
  /** A final refusal from this edge (bad or expired token, every claim refused): no more dialling. */
  final: TunnelError | undefined
  /** Sessions the edge sent GOAWAY on: they finish their streams while a new session already serves. */
  readonly draining = new Set<Session>()
  /** When the last GOAWAY redial happened: a peer that sends GOAWAY on every session gets backoff, not a loop. */
  lastGoaway = 0
  constructor (readonly url: string) {}
}

export class TunnelClient extends EventEmitter {
  readonly links: EdgeLink[]
  private readonly opts: TunnelClientOptions
  private readonly claims: NameClaim[]
  private readonly targets: Record<Service, NameTable<Target>> = { http: new NameTable(), tls: new NameTable(), tcp: new NameTable() }
  private closed = false

  constructor (opts: TunnelClientOptions) {
    super()
    this.opts = opts
    this.links = opts.edges.map(url => new EdgeLink(url))
    this.claims = opts.routes.map(r => ({ service: r.service, name: normalizeName(r.name) }))
    for (const r of opts.routes) this.targets[r.service].add(normalizeName(r.name), parseTarget(r))
  }

  start (): void {
    for (const link of this.links) this.dial(link)
  }

  /** Sessions that have been granted names, one per connected edge. */
  sessions (): Session[] {
    return this.links.flatMap(l => l.session !== undefined && l.grant !== undefined && !l.session.closed ? [l.session] : [])
  }

  /** Graceful stop: GOAWAY to every edge (they stop sending new streams), wait for open streams, then close. */
  async drain (timeoutMs = 30_000): Promise<void> {
    this.closed = true
    const live = this.links.flatMap(l => l.session !== undefined && !l.session.closed ? [l.session] : [])
    const going = this.links.flatMap(l => [...l.draining].filter(s => !s.closed))
    const done = Promise.all([...live, ...going].map(s => new Promise(resolve => s.once('close', resolve))))
    for (const s of live) s.goaway()
    let timer: NodeJS.Timeout | undefined
    await Promise.race([done, new Promise(resolve => { timer = setTimeout(resolve, timeoutMs) })])
    clearTimeout(timer)
    await this.close()
  }

  async close (): Promise<void> {
    this.closed = true
    const waits: Promise<unknown>[] = []
    for (const link of this.links) {
      clearTimeout(link.timer)
      for (const s of link.draining) s.destroy()
      const ws = link.ws
      if (ws !== undefined && ws.readyState !== ws.CLOSED) waits.push(new Promise(resolve => ws.once('close', resolve)))
      if (link.session !== undefined) link.session.destroy()
      else ws?.terminate()
    }
    await Promise.all(waits)
  }

  private dial (link: EdgeLink): void {
    if (this.closed) return
    const ws = new WebSocket(link.url, {
      headers: { authorization: `Bearer ${this.opts.token}` },
      maxPayload: MAX_MESSAGE,
      perMessageDeflate: false,
      generateMask: zeroMask,
      handshakeTimeout: this.opts.connectTimeoutMs ?? 10_000,
    })
    link.ws = ws
    link.grant = undefined
    let refusal: TunnelError | undefined
    ws.on('error', (err: Error) => { if (link.session === undefined) this.emit('dial-error', link.url, refusal ?? err) })
    // A refused upgrade says why in X-Tunnel-Error and a one-line body: report that, not just "401".
    ws.once('unexpected-response', (_req: ClientRequest, res: IncomingMessage) => {
      const header = res.headers['x-tunnel-error']
      const code = typeof header === 'string' && (tunnelErrorCodes as readonly string[]).includes(header) ? header as TunnelErrorCode : 'EP_ERR_TUNNEL_AUTH'
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { if (body.length < 1024) body += c })
      res.once('close', () => {
        refusal = new TunnelError(code, `edge refused the tunnel: ${res.statusCode ?? 0} ${code}${body.trim() === '' ? '' : `: ${body.trim().slice(0, 1024)}`}`)
        // The token itself was refused: dialling again with it cannot succeed. Other answers (5xx) may pass.
        if (res.statusCode === 401 || res.statusCode === 403) link.final = refusal
        ws.terminate()
      })
    })
    ws.once('open', () => { this.onOpen(link, ws) })
    ws.once('close', () => {
      if (link.ws !== ws) return // superseded after a GOAWAY: a new session serves this edge already
      const had = link.grant !== undefined
      // Why the session ended (timeout, flood, protocol error...), when it ended itself before the socket did.
      const why = link.session?.closeError
      link.session = undefined
      link.grant = undefined
      if (had) this.emit('disconnect', link.url, why)
      if (link.final !== undefined) { this.emit('refused', link.url, link.final); return }
      this.scheduleRedial(link)
    })
  }

  private onOpen (link: EdgeLink, ws: WebSocket): void {
    const session = new Session(ws, { ...this.opts.session, role: 'client' })
    link.session = session
    session.on('stream', this.onStream)
    // The edge is going away (draining, or handing over to a new process on the same port): dial a new session at
    // once, without backoff, while this one finishes its streams. A refused session is handled as final instead.
    session.once('goaway', (code: number, message: string) => {
      if (this.closed || link.session !== session || code === ResetCode.REFUSED) return
      link.draining.add(session)
      session.once('close', () => { link.draining.delete(session) })
      link.ws = undefined
      link.session = undefined
      link.grant = undefined
      this.emit('goaway', link.url, message)
      const now = Date.now()
      const again = now - link.lastGoaway < GOAWAY_REDIAL_MS
      link.lastGoaway = now
      if (again) { this.scheduleRedial(link); return } // GOAWAY after GOAWAY: back off as for any failure
      link.attempt = 0
      this.dial(link)
    })
    session.once('grant', (payload: Buffer) => {
      const grant = decodeGrant(payload)
      if (grant === undefined || !session.applyPeerSettings(grant)) { session.destroy(new TunnelError('EP_ERR_TUNNEL_PROTOCOL', 'malformed GRANT')); return }
      link.grant = grant
      if (grant.granted.length > 0) link.attempt = 0
      this.emit('session', link.url, session, grant)
      if (grant.granted.length === 0 && grant.refused.length > 0) {
        // Every claim refused (not allowed, or not in the token): the same token gets the same answer next time.
        link.final = new TunnelError('EP_ERR_TUNNEL_REFUSED', `edge granted none of the names: refused ${grant.refused.map(c => `${c.service}:${c.name}`).join(', ')} (the token's names and the edge's [tunnel] allow must cover them)`)
        session.destroy()
      }
    })
    session.sendHandshake(FrameType.HELLO, encodeHello({ ...session.localSettings, claims: this.claims }))
  }

  private scheduleRedial (link: EdgeLink): void {
    if (this.closed) return
    const min = this.opts.backoff?.minMs ?? 1000
    const max = this.opts.backoff?.maxMs ?? 30_000
    // Full jitter: uniform between the floor and an exponentially growing cap, even after the first failure.
    const cap = Math.min(max, min * 2 ** Math.min(link.attempt, 20))
    const delay = min + Math.random() * (cap - min)
    link.attempt++
    link.timer = setTimeout(() => { this.dial(link) }, delay)
  }

  private readonly onStreamError = function (this: TunnelStream, err: Error): void {
    // Reported, never thrown: a failed stream is that stream's problem only.
    ;(this.session as Session).emit('stream-error', this, err) // the client's sessions are Sessions
  }

  private readonly onStream = (s: TunnelStream): void => {
    s.on('error', this.onStreamError)
    const target = this.targets[s.info.service].lookup(s.info.servername)?.values().next().value
    if (target === undefined) {
      s.destroy(new TunnelError('EP_ERR_TUNNEL_REFUSED', `no target for ${s.info.service}:${s.info.servername}`, { resetCode: ResetCode.REFUSED }))
      return
    }
    const sock = connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true })
    let connected = false
    sock.once('connect', () => {
      connected = true
      if (target.proxyProtocol !== 0) sock.write(proxyHeader(target.proxyProtocol, s.info, sock.remoteAddress ?? target.host, target.port))
      s.pipe(sock)
      sock.pipe(s)
    })
    sock.once('error', (err: Error) => {
      s.destroy(new TunnelError('EP_ERR_TUNNEL_STREAM_RESET', `local target ${target.host}:${target.port}: ${err.message}`,
        { cause: err, resetCode: connected ? ResetCode.CANCEL : ResetCode.CONNECT_FAILED }))
    })
    sock.once('close', (hadError: boolean) => { if (hadError && !s.destroyed) s.destroy() })
    s.once('close', () => { if (!sock.destroyed) sock.destroy() })
    this.emit('stream', s)
  }
}
