// An https listener: TLS terminated with the listener's CertStore (SNI, default certificate, hot reload, mTLS),
// then HTTP/1.1 or HTTP/2 by ALPN on the same port. One TLS server accepts; an "h2" connection goes to a node:http2
// server, anything else to the HttpListener's own node:http server, so HTTP/1.1 over TLS behaves exactly as on a
// plain listener (header limits, 431, timeouts, keep-alive, WebSocket upgrades, graceful close). Both feed the
// same HttpListener.handle(), so routing, balancing and forwarding are shared.
//
// Why not http2.createSecureServer({ allowHTTP1: true })? Its HTTP/1.1 side ignores maxHeaderSize (a 3 KB header
// passed a 1 KB limit on Node 20) and has no closeIdleConnections for a graceful drain of keep-alive clients.
import http2 from 'node:http2'
import tls from 'node:tls'
import type net from 'node:net'
import type { Socket } from 'node:net'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { ListenerConfig, ListenerTlsConfig } from '../../config/types.js'
import { formatAddress } from '../../config/address.js'
import { HttpListener, type HttpServerOptions, type ListenerDeps } from './http-listener.js'
import { CertStore, type CertStoreEvent, type CertStoreOptions } from '../tls/sni.js'
import { EdgeH2Response } from './h2.js'

/** Concurrent streams per HTTP/2 connection; a client that wants more waits (SETTINGS_MAX_CONCURRENT_STREAMS). */
export const H2_MAX_STREAMS = 128
/** An HTTP/2 connection with no frames either way for this long is closed (GOAWAY). */
const H2_IDLE_MS = 120_000

export type HttpsServerOptions = HttpServerOptions

export function certStoreOptions (t: ListenerTlsConfig, onEvent: (e: CertStoreEvent) => void): CertStoreOptions {
  return {
    ...(t.certificates === undefined ? {} : { certificates: t.certificates }),
    ...(t.directory === undefined ? {} : { directory: t.directory }),
    ...(t.defaultCertificate === undefined ? {} : { defaultCertificate: t.defaultCertificate }),
    ...(t.clientCa === undefined ? {} : { clientCa: t.clientCa }),
    minVersion: t.minVersion,
    // honorCipherOrder off: with only strong suites offered the client's preference is the better one (Mozilla).
    context: { ciphers: t.ciphers, honorCipherOrder: false },
    ocsp: true,
    onEvent,
  }
}

export class HttpsListener extends HttpListener {
  readonly certs: CertStore
  readonly #tls: ListenerTlsConfig
  readonly #opts: HttpsServerOptions
  readonly #h2: http2.Http2Server | undefined
  readonly #sessions = new Set<http2.ServerHttp2Session>()
  /** Every accepted TCP socket (handshaking, HTTP/1.1, HTTP/2, upgraded): close() cuts them all at its deadline. */
  readonly #sockets = new Set<Socket>()
  #front: tls.Server | undefined

  constructor (config: ListenerConfig, deps: ListenerDeps, serverOpts: HttpsServerOptions, onCertEvent: (e: CertStoreEvent) => void) {
    super(config, deps, serverOpts)
    if (config.tls === undefined) throw new Error(`listener "${config.name}" has no tls settings`)
    this.#tls = config.tls
    this.#opts = serverOpts
    this.certs = new CertStore(certStoreOptions(config.tls, onCertEvent))
    if (config.tls.alpn.includes('h2')) {
      const h2 = http2.createServer({
        settings: { maxConcurrentStreams: H2_MAX_STREAMS, maxHeaderListSize: serverOpts.maxHeaderBytes },
        maxSessionInvalidFrames: 100,
        Http2ServerResponse: EdgeH2Response,
      }, (req, res) => { this.handleH2(req, res) })
      h2.on('session', s => { this.trackSession(s) })
      h2.on('sessionError', () => { /* the session is destroyed; nothing to tell the client */ })
      this.#h2 = h2
    }
  }

  private trackSession (s: http2.ServerHttp2Session): void {
    this.#sessions.add(s)
    s.once('close', () => { this.#sessions.delete(s) })
    s.setTimeout(H2_IDLE_MS, () => { s.close() })
  }

  /**
   * An HTTP/2 request through the HTTP/1.1 path: the compat request and response carry what it reads (method,
   * url, headers, rawHeaders, socket, stream events, writeHead/write/end/addTrailers/destroy); the HTTP/2
   * differences are handled in scanRequest (pseudo-headers, :authority, body) and EdgeH2Response.
   */
  private handleH2 (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void {
    if (req.method === 'CONNECT') { // no extended CONNECT (RFC 8441) here: WebSockets use HTTP/1.1 on this port
      res.writeHead(501, { 'content-type': 'text/plain; charset=utf-8' })
      res.end('501 CONNECT over HTTP/2 is not supported\n')
      return
    }
    this.serve(req as unknown as IncomingMessage, res as unknown as ServerResponse, true)
  }

  /** The TLS server bound to the port (the HTTP servers behind it take its sockets). */
  override get acceptor (): net.Server {
    return this.#front ?? this.server
  }

  override async listen (handle?: net.Server): Promise<void> {
    await this.certs.start()
    const front = tls.createServer({
      ...this.certs.serverOptions({ alpn: this.#tls.alpn }),
      handshakeTimeout: this.#opts.headersTimeout,
      noDelay: true,
    }, socket => { this.dispatch(socket) })
    // A failed or timed-out handshake (scanners, wrong CA, no client cert, handshake_timeout = headers_timeout,
    // which also fires for a client that sends nothing): with a listener on 'tlsClientError', node leaves the
    // socket open, so close it here or a silent client holds it forever.
    front.on('tlsClientError', (_err, socket) => { socket.destroy() })
    front.on('connection', (raw: Socket) => {
      this.#sockets.add(raw)
      raw.once('close', () => { this.#sockets.delete(raw) })
      this.trackSocket(raw)
    })
    this.certs.attach(front)
    // node:http starts its connection bookkeeping (idle sweep, headers timeout) on 'listening'; its sockets come
    // from the TLS server here, so start it by hand.
    this.server.emit('listening')
    try {
      await new Promise<void>((resolve, reject) => {
        front.once('error', reject)
        const done = (): void => { front.off('error', reject); resolve() }
        if (handle !== undefined) front.listen(handle, done)
        else front.listen(this.config.address.port, this.config.address.host, done)
      })
    } catch (err) {
      this.certs.close()
      throw err
    }
    this.#front = front
  }

  private dispatch (socket: tls.TLSSocket): void {
    if (socket.alpnProtocol === 'h2' && this.#h2 !== undefined) this.#h2.emit('connection', socket)
    else this.server.emit('connection', socket)
  }

  /** New certificate settings from a config reload, on the same store: open connections are untouched. */
  async reconfigure (config: ListenerConfig, onCertEvent: (e: CertStoreEvent) => void): Promise<void> {
    if (config.tls === undefined) return
    await this.certs.reconfigure(certStoreOptions(config.tls, onCertEvent))
  }

  override address (): string {
    const a = this.#front?.address()
    return a !== null && typeof a === 'object' ? formatAddress({ host: a.address, port: a.port }) : ''
  }

  override get port (): number {
    const a = this.#front?.address()
    return a !== null && typeof a === 'object' ? a.port : 0
  }

  get connections (): { h2Sessions: number } {
    return { h2Sessions: this.#sessions.size }
  }

  /**
   * Stops accepting; HTTP/2 clients get GOAWAY (running streams finish), HTTP/1.1 ones close when idle. After
   * `timeoutMs` every socket the TLS server accepted is cut, whatever runs on it: the HTTP/1.1 server does not
   * see upgraded or still-handshaking sockets, and the TLS server's close waits for them.
   */
  override async close (timeoutMs: number, idleGraceMs = 0): Promise<void> {
    const deadline = Date.now() + timeoutMs
    this.certs.close()
    const front = this.#front
    const closed = new Promise<void>(resolve => { if (front === undefined) resolve(); else front.close(() => { resolve() }) })
    for (const s of this.#sessions) s.close()
    await super.close(timeoutMs, idleGraceMs)
    await this.drain(closed, Math.max(0, deadline - Date.now()), () => {
      for (const s of this.#sessions) s.destroy()
      for (const s of this.#sockets) s.destroy()
    }, idleGraceMs)
  }
}
