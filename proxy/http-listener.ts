// An HTTP listener: accepts requests, rejects what could be read two ways, routes, and hands pool routes to an
// Exchange. Respond and redirect routes are answered here.
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { Logger } from 'pino'
import type { ListenerConfig, RouteConfig } from '../config/types.js'
import { formatAddress } from '../config/address.js'
import { Exchange, sendError, type ExchangeObserver, type PoolAction } from './forward.js'
import { connectionNamed, forwardedFor, newRequestId, stripNamed, withoutAdminCookie } from './headers.js'
import { normalizeHost } from './router.js'
import type { EdgeTable } from './table.js'
import type { AccessLog } from './log.js'
import { proxyUpgrade } from './upgrade.js'
import { errorKind, type EdgeMetrics } from './metrics.js'
import type { TunnelMembers } from './tunnels.js'
import type { PoolRuntime } from './pool.js'
import { h2HasBody } from './h2.js'
import { H1Server, h1Available, type H1Request, type H1Response } from './h1.js'

export interface ListenerDeps {
  /** The current table; read once per request. */
  table (): EdgeTable
  /** The tunnel side, for auto_route of claimed hosts. */
  tunnels (): TunnelMembers | undefined
  readonly accessLog: AccessLog | undefined
  readonly log: Logger
  readonly metrics: EdgeMetrics | undefined
}

const VIA = '1.1 edge-proxy'

/** What the header scan found, reused by the upgrade path. */
export interface ScannedRequest {
  host: string
  rawHost: string
  requestId: string
  headers: string[]
  hasBody: boolean
  bad: string | undefined
}

/**
 * HTTP/1.x requests name version 1.0 or 1.1; llhttp also lets "HTTP/0.9" and "HTTP/2.0" request lines through, and
 * the rest of the edge must never mistake one for an HTTP/2 stream. Undefined when the version is served.
 */
export function versionRefusal (req: IncomingMessage, h2: boolean): string | undefined {
  if (h2 || (req.httpVersionMajor === 1 && req.httpVersionMinor <= 1)) return undefined
  return `HTTP/${req.httpVersionMajor}.${req.httpVersionMinor} is not served here: send HTTP/1.1 (or HTTP/2 over TLS with ALPN)`
}

/** Bytes allowed in a Host value (RFC 3986 reg-name, IPv4, IP-literal, port): no space, "@", "/", "?", "#", "\\"... */
const HOST_CHAR = new Uint8Array(128)
for (const c of 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&\'()*+,;=%:[]') HOST_CHAR[c.charCodeAt(0)] = 1

function hostValid (v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i)
    if (c >= 128 || HOST_CHAR[c] === 0) return false
  }
  return true
}

/**
 * One pass over rawHeaders: keeps end-to-end headers, drops hop-by-hop ones, and appends the forwarded set.
 * `keepUpgrade` keeps Connection/Upgrade for WebSocket handshakes; `h2` says the request is an HTTP/2 stream.
 */
export function scanRequest (req: IncomingMessage, proto: string, clientIp: string, keepUpgrade: boolean, h2 = false): ScannedRequest {
  const raw = req.rawHeaders
  const out: string[] = []
  let rawHost = ''
  // Absolute-form ("GET http://a.example/x"): RFC 9112 3.2.2 says its authority replaces Host. Route on it and
  // forward origin-form, or routing (host, path_prefix) and the backend would read two different requests.
  let authority: string | undefined
  let bad: string | undefined
  const target = req.url ?? '/'
  if (target.charCodeAt(0) !== 47 /* / */ && target !== '*') {
    const u = URL.canParse(target) ? new URL(target) : undefined
    if (u !== undefined && (u.protocol === 'http:' || u.protocol === 'https:') && u.host !== '') {
      // RFC 9110 4.2.4: userinfo in an http(s) URI is refused, not routed on.
      if (u.username !== '' || u.password !== '') bad = 'the request target must not carry userinfo ("user@")'
      authority = u.host
      req.url = `${u.pathname}${u.search}`
    } else {
      bad = 'the request target must be a path or an absolute http(s) URL'
    }
  } else if (target === '*' && req.method !== 'OPTIONS') {
    bad = 'the request target "*" is only for OPTIONS'
  }
  // Route and forward one spelling of the path: "/a/../admin", "//admin" and "/%61dmin" are "/admin", so a
  // path_prefix route cannot be bypassed by a spelling the backend would normalise anyway.
  const url = req.url ?? '/'
  if (url.charCodeAt(0) === 47 && needsNormalizing(url)) req.url = normalizePath(url)
  let xff: string | undefined
  let forwarded: string | undefined
  let via: string | undefined
  let requestId: string | undefined
  let connection: string | undefined
  let te: string | undefined
  let contentLength: string | undefined
  let upgrade: string | undefined
  let hosts = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const value = raw[i + 1] as string
    // HTTP/2 pseudo-headers (:method, :path, :scheme, :authority) are not headers; :authority is the Host.
    if (name.charCodeAt(0) === 58) { if (name === ':authority') authority = value; continue }
    switch (name.length) {
      // "te: trailers" is the one TE HTTP/2 allows; gRPC servers expect it, so it goes on from HTTP/2 clients.
      case 2: if (name.toLowerCase() === 'te') { if (keepUpgrade || (value === 'trailers' && h2)) out.push(name, value); continue } break
      case 3: if (name.toLowerCase() === 'via') { via = via === undefined ? value : `${via}, ${value}`; continue } break
      case 4: if (name.toLowerCase() === 'host') { rawHost = value; hosts++; continue } break
      // Expect: 100-continue is answered by this edge (node:http sends 100 Continue); undici refuses to send it.
      case 6: {
        const l = name.toLowerCase()
        if (l === 'expect') continue
        // The admin's session cookie reaches this port too (cookies ignore ports): never hand it to a backend.
        if (l === 'cookie' && value.indexOf('edge_admin=') !== -1) {
          const rest = withoutAdminCookie(value)
          if (rest !== '') out.push(name, rest)
          continue
        }
        break
      }
      case 7: {
        const l = name.toLowerCase()
        if (l === 'upgrade') { upgrade = value; continue }
        if (l === 'trailer') continue
        break
      }
      case 9: if (name.toLowerCase() === 'forwarded') { forwarded = forwarded === undefined ? value : `${forwarded}, ${value}`; continue } break
      case 10: {
        const l = name.toLowerCase()
        if (l === 'connection') { connection = value; continue }
        if (l === 'keep-alive') continue
        break
      }
      case 12: if (name.toLowerCase() === 'x-request-id') { requestId = value; continue } break
      case 14: if (name.toLowerCase() === 'content-length') contentLength = value; break
      case 15: {
        const l = name.toLowerCase()
        if (l === 'x-forwarded-for') { xff = xff === undefined ? value : `${xff}, ${value}`; continue }
        break
      }
      case 16: {
        const l = name.toLowerCase()
        if (l === 'x-forwarded-host' || l === 'proxy-connection') continue
        break
      }
      case 17: {
        const l = name.toLowerCase()
        if (l === 'transfer-encoding') { te = te === undefined ? value : `${te}, ${value}`; continue }
        if (l === 'x-forwarded-proto') continue
        break
      }
      // Set by the edge from the TLS handshake only; a client's own copy would be a forgery.
      case 23: if (name.toLowerCase() === 'x-forwarded-server-name') continue; break
      case 19: {
        const l = name.toLowerCase()
        if (l === 'proxy-authorization' || l === 'proxy-authenticate') continue
        break
      }
    }
    out.push(name, value)
  }
  // RFC 9112 3.2: one Host, and an HTTP/1.1 request must have it; a second one is read differently by the router, the
  // log and the backend. Its value is an authority: no space, userinfo or path.
  if (hosts > 1) bad = 'a request has one Host field'
  else if (hosts === 0 && authority === undefined && !h2 && req.httpVersionMinor >= 1) bad = 'an HTTP/1.1 request needs a Host field'
  if (authority !== undefined) rawHost = authority
  if (rawHost !== '' && !hostValid(rawHost)) bad = `the Host ${JSON.stringify(rawHost)} is not a valid authority`
  // Node's parser already refuses CL+TE, repeated CL, bad chunk sizes and obs-fold; it accepts a TE list ending
  // in chunked ("gzip, chunked"), which a backend could read differently once we re-frame the body: refuse it.
  if (te !== undefined && te.trim().toLowerCase() !== 'chunked') bad = `unsupported Transfer-Encoding "${te}": only "chunked" is accepted`
  // RFC 9112 6.1: chunked framing is not HTTP/1.0's; refused as nginx does, so the connection cannot stay in step.
  else if (te !== undefined && !h2 && req.httpVersionMinor === 0) bad = 'Transfer-Encoding is not allowed in an HTTP/1.0 request'
  // Headers the client's Connection header names are hop-by-hop too.
  const named = connectionNamed(connection)
  if (named !== undefined) stripNamed(out, named)
  if (keepUpgrade && upgrade !== undefined) out.push('connection', 'upgrade', 'upgrade', upgrade)
  const id = requestId ?? newRequestId()
  const host = normalizeHost(rawHost)
  out.push(
    'host', rawHost,
    'x-forwarded-for', xff === undefined ? clientIp : `${xff}, ${clientIp}`,
    'x-forwarded-proto', proto,
    'x-forwarded-host', rawHost,
    'forwarded', `${forwarded === undefined ? '' : `${forwarded}, `}for=${forwardedFor(clientIp)};host=${rawHost === '' ? '""' : quoteIfNeeded(rawHost)};proto=${proto}`,
    'via', via === undefined ? VIA : `${via}, ${VIA}`,
    'x-request-id', id,
  )
  const serverName = (req.socket as TLSSocket).servername
  if (typeof serverName === 'string' && serverName !== '') out.push('x-forwarded-server-name', serverName)
  const hasBody = te !== undefined || (contentLength !== undefined && contentLength !== '0') || (h2 && h2HasBody(req))
  return { host, rawHost, requestId: id, headers: out, hasBody, bad }
}

const SUSPECT = /\/\.|\/\/|%/

function needsNormalizing (url: string): boolean {
  const q = url.indexOf('?')
  return SUSPECT.test(q === -1 ? url : url.slice(0, q))
}

function isUnreserved (c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 46 || c === 95 || c === 126
}

/** RFC 3986 6.2.2: decode unreserved %XX, resolve "." and ".." segments, merge repeated slashes; query kept as is. */
export function normalizePath (url: string): string {
  const q = url.indexOf('?')
  let path = q === -1 ? url : url.slice(0, q)
  const query = q === -1 ? '' : url.slice(q)
  path = path.replace(/%([0-9A-Fa-f]{2})/g, (m, hex: string) => {
    const c = parseInt(hex, 16)
    return isUnreserved(c) ? String.fromCharCode(c) : m.toUpperCase()
  })
  const out: string[] = []
  const segs = path.split('/')
  for (let i = 1; i < segs.length; i++) {
    const seg = segs[i] as string
    const last = i === segs.length - 1
    if (seg === '..') { out.pop(); if (last) out.push('') } else if (seg === '.') { if (last) out.push('') } else if (seg === '' && !last) { /* merge "//" */ } else out.push(seg)
  }
  return `/${out.join('/')}${query}`
}

// The last host quoted: consecutive requests nearly always carry the same one.
let lastRaw = ''
let lastQuoted = ''
function quoteIfNeeded (v: string): string {
  if (v === lastRaw) return lastQuoted
  lastQuoted = /^[A-Za-z0-9.\-_~!$&'*+^`|]+$/.test(v) ? v : `"${v.replace(/["\\]/g, '\\$&')}"`
  lastRaw = v
  return lastQuoted
}

const kClosing = Symbol('edgeClosing')
type ClosingSocket = Socket & { [kClosing]?: boolean }

/**
 * The answer to this request closes its connection, and nothing pipelined after it is served (RFC 9112 9.6): the
 * edge's own server stops reading by itself; node:http has already parsed what follows, so the socket is marked.
 */
export function closeAfter (req: IncomingMessage, res: ServerResponse): void {
  res.shouldKeepAlive = false
  ;(req.socket as ClosingSocket)[kClosing] = true
}

export function clientIpOf (socket: Socket): string {
  const ip = socket.remoteAddress ?? ''
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip
}

export function rewritePath (url: string, route: RouteConfig, strip: boolean): string {
  if (!strip || route.match.pathPrefix === undefined) return url
  const prefix = route.match.pathPrefix
  const cut = prefix.endsWith('/') ? prefix.length - 1 : prefix.length
  const rest = url.slice(cut)
  return rest === '' || rest.charCodeAt(0) === 63 /* ? */ ? `/${rest}` : rest
}

export interface HttpServerOptions {
  readonly maxHeaderBytes: number
  readonly headersTimeout: number
  readonly keepAliveTimeout: number
  /** "edge": the edge's own HTTP/1.1 server (proxy/h1.ts); "node": node:http. */
  readonly http1Server: 'edge' | 'node'
}

export class HttpListener implements ExchangeObserver {
  readonly config: ListenerConfig
  /** The HTTP/1.1 server: the edge's own (H1Server) or node:http's; both are net.Servers with the same calls. */
  readonly server: http.Server | H1Server
  readonly #deps: ListenerDeps
  /** Upgraded client sockets: the HTTP server no longer tracks them, so close() must end them itself. */
  readonly #upgraded = new Set<Socket>()
  #closing = false

  constructor (config: ListenerConfig, deps: ListenerDeps, serverOpts: HttpServerOptions) {
    this.config = config
    this.#deps = deps
    const onUpgrade = (req: IncomingMessage, socket: Socket, head: Buffer): void => {
      this.#upgraded.add(socket)
      socket.once('close', () => { this.#upgraded.delete(socket) })
      try {
        const table = this.#deps.table()
        const server = table.config.server
        proxyUpgrade(req, socket, head, table, this.config.name, this.config.protocol, this.#deps.log, this.#deps.tunnels(),
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

  listen (): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => { reject(err) }
      this.server.once('error', onError)
      this.server.listen(this.config.address.port, this.config.address.host, () => {
        this.server.off('error', onError)
        this.server.on('error', err => { this.#deps.log.error({ err, listener: this.config.name }, 'listener error') })
        resolve()
      })
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
      this.logSimple(req, res, scanned, clientIp, start, '', 'EP_ERR_HTTP_VERSION')
      return
    }
    if (scanned.bad !== undefined) {
      closeAfter(req, res)
      sendError(res, 400, 'EP_ERR_BAD_REQUEST', scanned.bad, scanned.requestId)
      this.logSimple(req, res, scanned, clientIp, start, '', 'EP_ERR_BAD_REQUEST')
      return
    }
    const url = req.url ?? '/'
    const method = req.method ?? 'GET'
    if (url === '*') { // OPTIONS * asks about the server itself: the edge answers, no backend is bothered
      res.writeHead(204, { allow: 'GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS', 'x-request-id': scanned.requestId })
      res.end()
      this.logSimple(req, res, scanned, clientIp, start, '', undefined)
      return
    }
    const router = table.routers.get(this.config.name)
    let route = router?.match(scanned.host, url, method, req)
    let autoPool: PoolRuntime | undefined
    if (route === undefined || route.match.host === undefined) {
      // auto_route: a host claimed by a tunnel beats host-less routes (a catch-all must not hide it).
      const auto = this.#deps.tunnels()?.autoRoute(scanned.host)
      if (auto !== undefined) { route = auto.route; autoPool = auto.pool }
    }
    if (route === undefined) {
      sendError(res, 404, 'EP_ERR_NO_ROUTE', `no route for ${scanned.host === '' ? '(no host)' : scanned.host}${url.split('?')[0] ?? ''}`, scanned.requestId)
      this.logSimple(req, res, scanned, clientIp, start, '', 'EP_ERR_NO_ROUTE')
      return
    }
    const action = route.action
    switch (action.kind) {
      case 'respond': {
        res.writeHead(action.status, {
          'content-type': action.contentType,
          'content-length': Buffer.byteLength(action.body),
          'x-request-id': scanned.requestId,
        })
        res.end(action.body)
        this.logSimple(req, res, scanned, clientIp, start, route.name, undefined)
        return
      }
      case 'redirect': {
        let to = action.to
        if (action.appendPath) to += rewritePath(url, route, true).slice(to.endsWith('/') ? 1 : 0)
        res.writeHead(action.status, { location: to, 'content-length': 0, 'x-request-id': scanned.requestId })
        res.end()
        this.logSimple(req, res, scanned, clientIp, start, route.name, undefined)
        return
      }
      case 'pool': {
        const pool = autoPool ?? table.pool(action.pool.name)
        if (pool === undefined) { // cannot happen after validation; answer rather than throw
          sendError(res, 503, 'EP_ERR_NO_HEALTHY_BACKEND', `pool "${action.pool.name}" missing`, scanned.requestId)
          return
        }
        const x = new Exchange(req, res, route, action as PoolAction, pool, scanned.requestId, clientIp, start,
          rewritePath(url, route, action.stripPrefix), scanned.headers, scanned.hasBody, this)
        x.run(Date.now())
      }
    }
  }

  onExchangeEnd (x: Exchange): void {
    const metrics = this.#deps.metrics
    if (metrics !== undefined) {
      metrics.countRequest(x.route.name, x.status)
      if (x.member !== undefined) {
        if (x.upstreamMs >= 0) metrics.observeUpstream(x.pool.name, x.member, x.upstreamMs / 1000)
        if (x.errorCode !== undefined && x.errorCode !== 'EP_ERR_CLIENT_ABORTED') metrics.countUpstreamError(x.pool.name, x.member.backend.url, errorKind(x.errorCode))
      }
      if (x.retries > 0) metrics.retries.labels(x.pool.name).inc(x.retries)
    }
    const log = this.#deps.accessLog
    if (log === undefined) return
    log.write({
      requestId: x.requestId,
      clientIp: x.clientIp,
      method: x.req.method ?? '',
      host: x.req.headers.host ?? String(x.req.headers[':authority'] ?? ''),
      path: x.req.url ?? '',
      status: x.status,
      bytesIn: x.bodyBytes,
      bytesOut: x.socket.bytesWritten - x.bytesOutStart,
      durationMs: x.durationMs,
      route: x.route.name,
      backend: x.member?.backend.url ?? '',
      error: x.errorCode,
    })
  }

  private logSimple (req: IncomingMessage, res: ServerResponse, s: ScannedRequest, clientIp: string, start: number, route: string, error: string | undefined): void {
    this.#deps.metrics?.countRequest(route, res.statusCode)
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
      bytesOut: 0,
      durationMs: performance.now() - start,
      route,
      backend: '',
      error,
    })
  }

  /** Stops accepting; idle keep-alive connections close now, busy ones after their response. */
  async close (timeoutMs: number): Promise<void> {
    this.#closing = true
    const closed = new Promise<void>(resolve => { this.server.close(() => { resolve() }) })
    this.server.closeIdleConnections()
    // server.close() waits for upgraded sockets too, which closeAllConnections() does not reach.
    await this.drain(closed, timeoutMs, () => { for (const s of this.#upgraded) s.destroy() })
  }

  /**
   * Waits for `closed` while closing connections as they become idle; after `timeoutMs` cuts every connection
   * (and whatever `cut` ends) so shutdown is bounded.
   */
  protected async drain (closed: Promise<void>, timeoutMs: number, cut: () => void): Promise<void> {
    const timer = setTimeout(() => {
      this.server.closeAllConnections()
      cut()
    }, timeoutMs)
    const sweep = setInterval(() => { this.server.closeIdleConnections() }, 50)
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
