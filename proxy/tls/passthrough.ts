// TLS passthrough: read the ClientHello off an accepted socket (bounded in bytes and time), pick a backend by
// SNI, connect, replay the bytes read, and splice both ways. The edge never holds the keys; the backend's own
// certificate is what the client sees. No SNI or an unknown name with no default gets an unrecognized_name alert.
import net from 'node:net'
import type { Duplex } from 'node:stream'
import { ClientHelloParser, DEFAULT_MAX_HELLO_BYTES } from './client-hello.js'
import { NameTable } from './names.js'
import { idleTimeout } from '../listen/idle.js'

export interface PassthroughTarget {
  readonly host: string
  readonly port: number
  /** Opens the upstream itself (a tunnel stream) instead of a TCP connection to host:port; open at once. */
  readonly open?: (() => Duplex) | undefined
  /** Called once when the upstream side is gone: `connected` false means the connection never opened. */
  readonly done?: (connected: boolean, error: Error | undefined) => void
  /** How long the TCP connect may take (the route's connect_timeout); default: the listener's. */
  readonly connectTimeoutMs?: number
}

/** Chooses where a connection goes; undefined closes it. May be backed by a pool and a balancer. */
export type PickTarget = (sni: string | undefined, alpn: readonly string[], client: net.Socket) => PassthroughTarget | undefined

/** "tcp://host:port" (IPv6 in brackets) → target. Throws on anything else: config code calls it once at load. */
export function parseTcpTarget (url: string): PassthroughTarget {
  const u = new URL(url)
  if (u.protocol !== 'tcp:' || u.hostname === '' || u.port === '' || u.pathname !== '' || u.search !== '') {
    throw new Error(`"${url}" is not tcp://host:port`)
  }
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) }
}

/** A PickTarget over `match.sni` routes: exact names beat "*.example.com" (one label); then the default. */
export function sniRoutes (routes: ReadonlyArray<{ readonly sni: string, readonly target: string }>, defaultTarget?: string): PickTarget {
  const table = new NameTable<PassthroughTarget>()
  for (const r of routes) {
    if (!table.add(r.sni, parseTcpTarget(r.target))) throw new Error(`sni "${r.sni}" is invalid or listed twice`)
  }
  const fallback = defaultTarget === undefined ? undefined : parseTcpTarget(defaultTarget)
  return sni => table.lookup(sni) ?? fallback
}

export type PassthroughEvent =
  | { readonly type: 'routed', readonly sni: string | undefined, readonly target: PassthroughTarget }
  | { readonly type: 'rejected', readonly reason: 'invalid-hello' | 'hello-timeout' | 'no-route', readonly detail: string, readonly sni?: string | undefined, readonly client?: net.Socket }
  | { readonly type: 'upstream-error', readonly target: PassthroughTarget, readonly error: string }
  /** A spliced connection ended: bytes each way as the client's socket counted them, and how it ended. */
  | { readonly type: 'closed', readonly sni: string | undefined, readonly target: PassthroughTarget, readonly client: net.Socket, readonly bytesIn: number, readonly bytesOut: number, readonly durationMs: number, readonly end: 'closed' | 'connect-failed' | 'upstream-error', readonly error: string | undefined }

export interface PassthroughOptions {
  readonly pick: PickTarget
  readonly helloTimeoutMs?: number
  readonly connectTimeoutMs?: number
  /** Closes a spliced connection after this long with no bytes either way; 0 = never. */
  readonly idleTimeoutMs?: number
  readonly maxHelloBytes?: number
  readonly onEvent?: (event: PassthroughEvent) => void
}

// TLS alert record: fatal (2) unrecognized_name (112), so the client reports why instead of a bare reset.
const ALERT_UNRECOGNIZED_NAME = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70])

export class TlsPassthroughListener {
  readonly server: net.Server
  readonly #opts: PassthroughOptions
  readonly #sockets = new Set<Duplex>()

  constructor (options: PassthroughOptions) {
    this.#opts = options
    // allowHalfOpen: a client's FIN is passed on to the backend, not answered by closing our side early.
    this.server = net.createServer({ allowHalfOpen: true }, socket => { this.handle(socket) })
  }

  /** Binds `host:port`, or takes over `handle`, a listening socket an older edge process handed over. */
  async listen (port: number, host: string, handle?: net.Server): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      const done = (): void => { this.server.off('error', reject); resolve() }
      if (handle !== undefined) this.server.listen(handle, done)
      else this.server.listen(port, host, done)
    })
  }

  address (): net.AddressInfo { return this.server.address() as net.AddressInfo }

  get connections (): number { return this.#sockets.size }

  /** Takes over an accepted socket (also usable by a listener that accepts elsewhere). */
  handle (socket: net.Socket): void {
    const c = new PassthroughConnection(this.#opts, socket, this.#sockets)
    c.start()
  }

  /** Stops accepting; spliced connections get `timeoutMs` to finish, then are cut. */
  async close (timeoutMs = 0): Promise<void> {
    const closed = new Promise<void>(resolve => { this.server.close(() => { resolve() }) })
    if (this.#sockets.size > 0 && timeoutMs > 0) {
      const deadline = Date.now() + timeoutMs
      while (this.#sockets.size > 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 25))
    }
    for (const s of this.#sockets) s.destroy()
    await closed
  }
}

/** One accepted connection: hello phase, then a splice. Handlers are methods bound once per connection. */
class PassthroughConnection {
  readonly #opts: PassthroughOptions
  readonly #client: net.Socket
  readonly #all: Set<Duplex>
  readonly #parser: ClientHelloParser
  #upstream: Duplex | undefined
  #timer: NodeJS.Timeout | undefined

  constructor (opts: PassthroughOptions, client: net.Socket, all: Set<Duplex>) {
    this.#opts = opts
    this.#client = client
    this.#all = all
    this.#parser = new ClientHelloParser(opts.maxHelloBytes ?? DEFAULT_MAX_HELLO_BYTES)
  }

  start (): void {
    const client = this.#client
    this.#all.add(client)
    client.on('error', this.#onClientGone)
    client.on('close', this.#onClientGone)
    client.on('data', this.#onHelloData)
    this.#timer = setTimeout(this.#onHelloTimeout, this.#opts.helloTimeoutMs ?? 5000)
  }

  readonly #onHelloData = (chunk: Buffer): void => {
    let r: ReturnType<ClientHelloParser['push']>
    // Hostile bytes must cost this connection at most, even if the parser has a bug.
    try { r = this.#parser.push(chunk) } catch (err) { r = { kind: 'invalid', reason: `parser error: ${(err as Error).message}` } }
    if (r.kind === 'need-more') return
    clearTimeout(this.#timer)
    this.#client.off('data', this.#onHelloData)
    this.#client.pause()
    if (r.kind === 'invalid') {
      this.#emit({ type: 'rejected', reason: 'invalid-hello', detail: r.reason, client: this.#client })
      this.#client.destroy()
      return
    }
    let target: PassthroughTarget | undefined
    try { target = this.#opts.pick(r.sni, r.alpn, this.#client) } catch { target = undefined }
    if (target === undefined) {
      this.#emit({ type: 'rejected', reason: 'no-route', detail: r.sni === undefined ? 'no SNI and no default' : `no route for "${r.sni}"`, sni: r.sni, client: this.#client })
      // Drain what the client still sends so the close is a FIN, not a reset that could eat the alert.
      const client = this.#client
      client.resume()
      client.end(ALERT_UNRECOGNIZED_NAME)
      setTimeout(() => { client.destroy() }, 1000).unref()
      return
    }
    this.#connect(target, r.sni)
  }

  readonly #onHelloTimeout = (): void => {
    this.#emit({ type: 'rejected', reason: 'hello-timeout', detail: `no ClientHello after ${this.#parser.buffered.length} bytes`, client: this.#client })
    this.#client.destroy()
  }

  #connect (target: PassthroughTarget, sni: string | undefined): void {
    const started = performance.now()
    let up: Duplex
    if (target.open !== undefined) {
      // A target that brings its own upstream (a tunnel stream) is open at once.
      try {
        up = target.open()
      } catch (err) {
        this.#emit({ type: 'upstream-error', target, error: (err as Error).message })
        try { target.done?.(false, err as Error) } catch { /* the picker's bookkeeping stays its own */ }
        this.#client.destroy()
        return
      }
    } else {
      const sock = net.connect({ host: target.host, port: target.port, allowHalfOpen: true })
      sock.setNoDelay(true)
      sock.setTimeout(target.connectTimeoutMs ?? this.#opts.connectTimeoutMs ?? 5000)
      sock.once('timeout', () => { sock.destroy(new Error('connect timeout')) })
      up = sock
    }
    this.#upstream = up
    this.#all.add(up)
    this.#client.setNoDelay(true)
    let connected = false
    let error: Error | undefined
    up.on('error', err => {
      error = err
      this.#emit({ type: 'upstream-error', target, error: err.message })
      this.#client.destroy()
    })
    up.on('close', () => {
      this.#all.delete(up)
      const client = this.#client
      client.destroy()
      try { target.done?.(connected, error) } catch { /* the picker's bookkeeping stays its own */ }
      this.#emit({
        type: 'closed', sni, target, client, bytesIn: client.bytesRead, bytesOut: client.bytesWritten, durationMs: performance.now() - started,
        end: !connected ? 'connect-failed' : error !== undefined ? 'upstream-error' : 'closed', error: error?.message,
      })
    })
    const open = (): void => {
      connected = true
      this.#emit({ type: 'routed', sni, target })
      up.write(this.#parser.buffered)
      if (up instanceof net.Socket) {
        up.removeAllListeners('timeout')
        up.setTimeout(0)
      }
      this.#client.pipe(up)
      up.pipe(this.#client)
      idleTimeout(this.#client, up, this.#opts.idleTimeoutMs ?? 0)
    }
    if (target.open !== undefined) open()
    else up.once('connect', open)
  }

  readonly #onClientGone = (): void => {
    clearTimeout(this.#timer)
    if (this.#client.destroyed) {
      this.#all.delete(this.#client)
      this.#upstream?.destroy()
    }
  }

  #emit (event: PassthroughEvent): void {
    try { this.#opts.onEvent?.(event) } catch { /* observer failures stay with the observer */ }
  }
}
