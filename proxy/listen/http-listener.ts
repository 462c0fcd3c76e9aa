// An HTTP listener: accepts requests, rejects what could be read two ways, routes, and hands pool routes to an
// Exchange. Respond and redirect routes are answered here.
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type net from 'node:net'
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import type { ListenerConfig } from '../../config/types.js'
import { formatAddress } from '../../config/address.js'
import { Exchange, sendError, type PoolAction } from '../forward/exchange.js'
import type { ExchangeHooks } from '../forward/hooks.js'
import type { EdgeTable } from '../route/table.js'
import type { AccessLog } from '../ops/log.js'
import { kGoAway, proxyUpgrade } from './upgrade.js'
import type { EdgeMetrics } from '../ops/metrics.js'
import { clientIpOf, closeAfter, kClosing, rewritePath, scanRequest, versionRefusal, type ClosingSocket, type ScannedRequest } from './request.js'
import { H1Server, h1Available, type H1Request, type H1Response } from './h1.js'

export interface ListenerDeps {
  /** The current table; read once per request. */
  table (): EdgeTable
  readonly accessLog: AccessLog | undefined
  readonly log: Logger
  readonly metrics: EdgeMetrics | undefined
  /** Observers of every exchange (metrics, access log, passive health...). */
  readonly hooks: ExchangeHooks
}

export interface HttpServerOptions {
  readonly maxHeaderBytes: number
  readonly headersTimeout: number
  readonly keepAliveTimeout: number
  /** "edge": the edge's own HTTP/1.1 server (proxy/listen/h1.ts); "node": node:http. */
  readonly http1Server: 'edge' | 'node'
}

export class HttpListener {
  readonly config: ListenerConfig
  /** The HTTP/1.1 server: the edge's own (H1Server) or node:http's; both are net.Servers with the same calls. */
  readonly server: http.Server | H1Server
  readonly #deps: ListenerDeps
  /** Upgraded client sockets: the HTTP server no longer tracks them, so close() must end them itself. */
  readonly #upgraded = new Set<Socket>()
  #closing = false
  /** Client sockets open now, and the bytes of those that closed (the status page's bytes per listener). */
  readonly #open = new Set<Socket>()
  #closedIn = 0
  #closedOut = 0
  readonly #onSocketClose = (socket: Socket): void => {
    this.#open.delete(socket)
    this.#closedIn += socket.bytesRead
    this.#closedOut += socket.bytesWritten
  }

  /** Counts a client socket's bytes (the https listener passes its raw TCP sockets: TLS and h2 included). */
  protected readonly trackSocket = (socket: Socket): void => {
    this.#open.add(socket)
    socket.once('close', () => { this.#onSocketClose(socket) })
  }

  constructor (config: ListenerConfig, deps: ListenerDeps, serverOpts: HttpServerOptions) {
    this.config = config
    this.#deps = deps
    const onUpgrade = (req: IncomingMessage, socket: Socket, head: Buffer): void => {
      this.#upgraded.add(socket)
      socket.once('close', () => { this.#upgraded.delete(socket) })
      try {
        const table = this.#deps.table()
        const server = table.config.server
        proxyUpgrade(req, socket, head, table, this.config.name, this.config.protocol, this.#deps.log,
          { maxHeaderBytes: server.maxHeaderBytes, idleTimeout: server.tunnelIdleTimeout })
      } catch (err) {
        this.fault(err, undefined, 'upgrade')
        socket.destroy()
      }
    }
    if (serverOpts.http1Server === 'edge' && h1Available) {
      this.server = new H1Server(
        { maxHeaderSize: serverOpts.maxHeaderBytes, headersTimeout: serverOpts.headersTimeout, keepAliveTimeout: serverOpts.keepAliveTimeout },
        (req: H1Request, res: H1Response) => { this.serve(req as unknown as IncomingMessage, res as unknown as ServerResponse, false) },
        (req: H1Request, socket: Socket, head: Buffer) => { onUpgrade(req as unknown as IncomingMessage, socket, head) },
        onClientError,
        (err: unknown) => { this.fault(err, undefined, 'h1') })
      return
    }
    const server = http.createServer({
      maxHeaderSize: serverOpts.maxHeaderBytes,
      headersTimeout: serverOpts.headersTimeout,
      requestTimeout: 0,
      keepAliveTimeout: serverOpts.keepAliveTimeout,
      // Node enforces headersTimeout only when it sweeps connections, every 30 s by default: a slow-headers
      // client would hold its socket far past headers_timeout. Sweep often enough to keep the promise.
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(serverOpts.headersTimeout / 4))),
      noDelay: true,
      // node's own 400 for a missing Host keeps reading the connection (and serves what is pipelined after it):
      // scanRequest refuses it instead, and closes.
      requireHostHeader: false,
    }, (req, res) => { this.serve(req, res, false) })
    server.on('clientError', onClientError)
    server.on('upgrade', onUpgrade)
    // Forward proxying is not this edge's job: answered as the edge's own server answers it.
    server.on('connect', (_req: IncomingMessage, socket: Socket) => {
      socket.on('error', () => { socket.destroy() })
      socket.once('finish', () => { socket.destroy() })
      socket.end('HTTP/1.1 405 Method Not Allowed\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
    })
    this.server = server
  }

  /** The server bound to the port (what an upgrade hands to the new edge process). */
  get acceptor (): net.Server {
    return this.server
  }

  /** Binds the address, or takes over `handle`, a listening socket an older edge process handed over. */
  listen (handle?: net.Server): Promise<void> {
    this.server.on('connection', this.trackSocket)
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => { reject(err) }
      this.server.once('error', onError)
      const done = (): void => {
        this.server.off('error', onError)
        this.server.on('error', err => { this.#deps.log.error({ err, listener: this.config.name }, 'listener error') })
        resolve()
      }
      if (handle !== undefined) this.server.listen(handle, done)
      else this.server.listen(this.config.address.port, this.config.address.host, done)
    })
  }

  /** The bound address (port 0 in config becomes a real port). */
  address (): string {
    const a = this.server.address()
    return a !== null && typeof a === 'object' ? formatAddress({ host: a.address, port: a.port }) : ''
  }

  get port (): number {
    const a = this.server.address()
    return a !== null && typeof a === 'object' ? a.port : 0
  }

  /**
   * Where every request enters: a bug that throws while one request is handled costs that request (500, or its
   * connection cut when the answer had begun), never the process.
   */
  serve (req: IncomingMessage, res: ServerResponse, h2: boolean): void {
    try {
      this.handle(req, res, h2)
    } catch (err) {
      this.fault(err, res, 'request')
    }
  }

  /** An exception thrown while a request or upgrade was handled: logged with its stack, counted, answered. */
  fault (err: unknown, res: ServerResponse | undefined, where: string): void {
    this.#deps.log.error({ err, listener: this.config.name, where }, 'internal error while handling a request (the request is answered 500; please report this)')
    this.#deps.metrics?.internalErrors.inc({ where })
    if (res === undefined) return
    try {
      if (res.headersSent) { res.destroy(); return }
      res.shouldKeepAlive = false
      sendError(res, 500, 'EP_ERR_INTERNAL', 'internal error in the edge', '-')
    } catch {
      res.destroy()
    }
  }

  handle (req: IncomingMessage, res: ServerResponse, h2 = false): void {
    const start = performance.now()
    // The edge's own answers count their bytes as an exchange does: the socket's delta (HTTP/1.1), the body (h2).
    const bytesStart = h2 ? -1 : req.socket.bytesWritten
    // node:http hands over requests pipelined behind one the edge refused and is closing on: none may be served.
    if ((req.socket as ClosingSocket)[kClosing] === true) return
    if (this.#closing) res.shouldKeepAlive = false
    const clientIp = clientIpOf(req.socket)
    const scanned = scanRequest(req, this.config.protocol, clientIp, false, h2)
    const table = this.#deps.table()
    const refusal = versionRefusal(req, h2)
    if (refusal !== undefined) {
      closeAfter(req, res)
      sendError(res, 505, 'EP_ERR_HTTP_VERSION', refusal, scanned.requestId)
      this.logSimple(req, res, scanned, clientIp, start, bytesStart, '', 'EP_ERR_HTTP_VERSION')
      return
    }
    if (scanned.bad !== undefined) {
      closeAfter(req, res)
      sendError(res, 400, 'EP_ERR_BAD_REQUEST', scanned.bad, scanned.requestId)
      this.logSimple(req, res, scanned, clientIp, start, bytesStart, '', 'EP_ERR_BAD_REQUEST')
      return
    }
    const url = req.url ?? '/'
    const method = req.method ?? 'GET'
    if (url === '*') { // OPTIONS * asks about the server itself: the edge answers, no backend is bothered
      res.writeHead(204, { allow: 'GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS', 'x-request-id': scanned.requestId })
      res.end()
      this.logSimple(req, res, scanned, clientIp, start, bytesStart, '', undefined)
      return
    }
    const resolved = table.resolver.resolve(this.config.name, scanned.host, url, method, req)
    if (resolved === undefined) {
      sendError(res, 404, 'EP_ERR_NO_ROUTE', `no route for ${scanned.host === '' ? '(no host)' : scanned.host}${url.split('?')[0] ?? ''}`, scanned.requestId)
      this.logSimple(req, res, scanned, clientIp, start, bytesStart, '', 'EP_ERR_NO_ROUTE')
      return
    }
    const route = resolved.route
    const action = route.action
    switch (action.kind) {
      case 'respond': {
        res.writeHead(action.status, {
          'content-type': action.contentType,
          'content-length': Buffer.byteLength(action.body),
          'x-request-id': scanned.requestId,
        })
        res.end(action.body)
        this.logSimple(req, res, scanned, clientIp, start, bytesStart, route.name, undefined)
        return
      }
      case 'redirect': {
        let to = action.to
        if (action.appendPath) to += rewritePath(url, route, true).slice(to.endsWith('/') ? 1 : 0)
        res.writeHead(action.status, { location: to, 'content-length': 0, 'x-request-id': scanned.requestId })
        res.end()
        this.logSimple(req, res, scanned, clientIp, start, bytesStart, route.name, undefined)
        return
      }
      case 'pool': {
        const pool = resolved.pool
        if (pool === undefined) { // cannot happen after validation; answer rather than throw
          sendError(res, 503, 'EP_ERR_NO_HEALTHY_BACKEND', `pool "${action.pool.name}" missing`, scanned.requestId)
          return
        }
        const x = new Exchange(req, res, route, action as PoolAction, pool, scanned.requestId, clientIp, start,
          rewritePath(url, route, action.stripPrefix), scanned.headers, scanned.hasBody, this.#deps.hooks)
        x.run(Date.now())
      }
    }
  }

  private logSimple (req: IncomingMessage, res: ServerResponse, s: ScannedRequest, clientIp: string, start: number, bytesStart: number, route: string, error: string | undefined): void {
    const durationMs = performance.now() - start
    // bytesStart -1: an HTTP/2 stream (its session's socket is shared), counted by the body it was sent. Not
    // httpVersionMajor: an HTTP/1.1 connection may claim "HTTP/2.0" (and gets 505 here).
    const bytesOut = bytesStart < 0 ? Number(res.getHeader('content-length') ?? 0) : req.socket.bytesWritten - bytesStart
    this.#deps.metrics?.countRequest(route, res.statusCode, durationMs / 1000, 0, bytesOut)
    const log = this.#deps.accessLog
    if (log === undefined) return
    log.write({
      requestId: s.requestId,
      clientIp,
      method: req.method ?? '',
      host: s.rawHost,
      path: req.url ?? '',
      status: res.statusCode,
      bytesIn: 0,
      bytesOut,
      durationMs,
      route,
      backend: '',
      error,
    })
  }

  /** Bytes read from and written to this listener's clients, open connections included (https: on the wire, TLS records). */
  bytes (): { in: number, out: number } {
    let bytesIn = this.#closedIn
    let bytesOut = this.#closedOut
    for (const s of this.#open) { bytesIn += s.bytesRead; bytesOut += s.bytesWritten }
    return { in: bytesIn, out: bytesOut }
  }

  /** Client connections open on this listener now (upgraded ones included, until they close). */
  openConnections (): Promise<number> {
    return new Promise(resolve => { this.server.getConnections((err, n) => { resolve(err === null ? n : 0) }) })
  }

  /**
   * Stops accepting; idle keep-alive connections close now, busy ones after their response. `idleGraceMs` (an
   * upgrade's drain): idle ones close only once idle that long, and busy ones are told Connection: close.
   */
  async close (timeoutMs: number, idleGraceMs = 0): Promise<void> {
    this.#closing = true
    const closed = new Promise<void>(resolve => { this.server.close(() => { resolve() }) })
    if (idleGraceMs === 0) this.server.closeIdleConnections()
    // server.close() waits for upgraded sockets too, which closeAllConnections() does not reach.
    // An upgrade's drain ends WebSocket splices with a close frame (1001, going away); shutdown cuts them.
    await this.drain(closed, timeoutMs, () => {
      for (const s of this.#upgraded) {
        const goAway = (s as Socket & { [kGoAway]?: () => void })[kGoAway]
        if (idleGraceMs > 0 && goAway !== undefined) goAway()
        else s.destroy()
      }
    }, idleGraceMs)
  }

  /**
   * Waits for `closed` while closing connections as they become idle; after `timeoutMs` cuts every connection
   * (and whatever `cut` ends) so shutdown is bounded.
   */
  protected async drain (closed: Promise<void>, timeoutMs: number, cut: () => void, idleGraceMs = 0): Promise<void> {
    const timer = setTimeout(() => {
      this.server.closeAllConnections()
      cut()
    }, timeoutMs)
    // node:http does not say how long a connection has been idle: its idle ones close at once, grace or not.
    const server = this.server
    const sweep = setInterval(server instanceof H1Server ? () => { server.closeIdleConnections(idleGraceMs) } : () => { server.closeIdleConnections() }, 50)
    try {
      await closed
    } finally {
      clearTimeout(timer)
      clearInterval(sweep)
    }
  }

}

function onClientError (err: Error & { code?: string }, socket: Socket): void {
  if (!socket.writable || err.code === 'ECONNRESET') { socket.destroy(); return }
  const tooLarge = err.code === 'HPE_HEADER_OVERFLOW'
  // headers_timeout expired: the request was not malformed, just too slow (as Node's own default answer says).
  const slow = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
  const internal = err.code === 'EP_ERR_INTERNAL'
  const status = tooLarge ? '431 Request Header Fields Too Large' : slow ? '408 Request Timeout' : internal ? '500 Internal Server Error' : '400 Bad Request'
  const body = `${status}\ncode: ${tooLarge ? 'EP_ERR_HEADERS_TOO_LARGE' : internal ? 'EP_ERR_INTERNAL' : 'EP_ERR_BAD_REQUEST'}\nreason: ${err.code ?? 'malformed request'}\n`
  // Closed once the answer is out, whether or not the client ever sends its FIN (the servers are half-open).
  socket.once('finish', () => { socket.destroy() })
  socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
}
