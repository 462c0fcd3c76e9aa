// The edge's own HTTP/1.1 server: node's llhttp parser (the one node:http runs, same strictness, same limits)
// driven straight from the socket, without node:http's IncomingMessage/ServerResponse streams around every
// request. It serves the subset of those objects the listener and the Exchange use (RequestLike and the
// members H1Response lists), so the proxying code is shared with node:http ([server] http1_server = "node") and node:http2.
// Why (bench/README.md, "Past node:http"): node:http's own server work was ~3.6 µs of a request's ~18 µs of user
// CPU; with this server edge-proxy's user CPU per request went 17.7 -> 14.0 µs and req/s up 12 %.
//
// What node:http did that this server does too: keep-alive per RFC 9112 9.3 (HTTP/1.0 needs "keep-alive"),
// pipelining (answers in order, one at a time; later requests wait with the socket paused), request bodies with
// backpressure, "Expect: 100-continue" (answered when the request's turn comes; any other expectation gets 417),
// upgrades (handed over with the bytes read past the head, after any answers pipelined before them), chunked
// framing when a response has no length, no body on HEAD/204/304, Date and Connection/Keep-Alive response headers,
// headers_timeout (408) and keepalive_timeout, max_header_bytes (431), 400 on anything llhttp refuses, and a
// graceful close (idle connections first, busy ones after their response). Where node:http differs, this server
// is stricter: nothing pipelined after an answer that closes is served.
import net, { type Socket } from 'node:net'
import { Readable } from 'node:stream'
import { createRequire } from 'node:module'
import { STATUS_CODES, validateHeaderName, validateHeaderValue, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http'

/** Node's llhttp binding as `_http_common` exposes it (the module node:http itself parses with). */
export interface Parser {
  initialize (type: number, resource: object, maxHeaderSize: number, lenient: number): void
  execute (data: Buffer): number | ParseError
  close (): void
  consume (handle: object): void
  unconsume (): void
  getCurrentBuffer (): Buffer
  [cb: number]: unknown
  conn: H1Conn | undefined
}
interface ParseError extends Error { code?: string, bytesParsed?: number, reason?: string }
interface HttpCommon {
  HTTPParser: {
    new (): Parser
    REQUEST: number
    RESPONSE: number
    kOnMessageBegin: number
    kOnHeaders: number
    kOnHeadersComplete: number
    kOnBody: number
    kOnMessageComplete: number
    kOnExecute: number
    kLenientNone: number
  }
  methods: string[]
}

function loadCommon (): HttpCommon | undefined {
  try {
    const c = createRequire(import.meta.url)('_http_common') as Partial<HttpCommon>
    if (typeof c.HTTPParser === 'function' && Array.isArray(c.methods)) return c as HttpCommon
  } catch { /* not on this Node: the listener falls back to node:http */ }
  return undefined
}

const common = loadCommon()
/** Whether this Node exposes its HTTP parser; when not, listeners use node:http. */
export const h1Available = common !== undefined

/**
 * A parser for one backend's answer to a replayed upgrade handshake (proxy/listen/upgrade.ts): llhttp in response mode.
 * Undefined where this Node does not expose it.
 */
export function responseParser (maxHeaderSize: number): Parser | undefined {
  if (common === undefined) return undefined
  const p = new common.HTTPParser()
  p.initialize(common.HTTPParser.RESPONSE, {}, maxHeaderSize, common.HTTPParser.kLenientNone)
  return p
}

export const parserEvents = common === undefined
  ? undefined
  : { headersComplete: common.HTTPParser.kOnHeadersComplete, body: common.HTTPParser.kOnBody, messageComplete: common.HTTPParser.kOnMessageComplete }

/** The members of IncomingMessage that the listener, router, pools, Exchange and upgrade path read. */
export type RequestLike = Pick<IncomingMessage, 'method' | 'url' | 'headers' | 'rawHeaders' | 'httpVersionMajor' | 'httpVersionMinor' | 'httpVersion' | 'socket' | 'complete'>

type Listener = (this: H1Response) => void

/** Header names node:http keeps one of (the first) when a request repeats them. */
const SINGLE = new Set(['content-type', 'content-length', 'user-agent', 'referer', 'host', 'authorization',
  'proxy-authorization', 'if-modified-since', 'if-unmodified-since', 'from', 'location', 'max-forwards',
  'retry-after', 'etag', 'last-modified', 'server', 'age', 'expires'])

/** A parsed request head. Its body, when it has one, is `body`, a Readable fed by the parser. */
export class H1Request implements RequestLike {
  method: string
  url: string
  readonly rawHeaders: string[]
  readonly httpVersionMajor: number
  readonly httpVersionMinor: number
  readonly socket: Socket
  readonly shouldKeepAlive: boolean
  readonly upgrade: boolean
  /** The request body as a stream; null when the request has none (no Content-Length > 0, no chunked). */
  body: H1Body | null = null
  complete = false
  /** Set once the response is over: the rest of the body is read and dropped so keep-alive can go on. */
  dumping = false
  /** An Expect header: 100-continue (answered when the request's turn comes) or one this server cannot meet. */
  expect = 0
  #headers: IncomingHttpHeaders | undefined

  constructor (socket: Socket, method: string, url: string, rawHeaders: string[], major: number, minor: number, keepAlive: boolean, upgrade: boolean) {
    this.socket = socket
    this.method = method
    this.url = url
    this.rawHeaders = rawHeaders
    this.httpVersionMajor = major
    this.httpVersionMinor = minor
    this.shouldKeepAlive = keepAlive
    this.upgrade = upgrade
  }

  get httpVersion (): string {
    return `${this.httpVersionMajor}.${this.httpVersionMinor}`
  }

  /** Lower-cased header object, built on first use as node:http does (duplicates joined the same way). */
  get headers (): IncomingHttpHeaders {
    if (this.#headers !== undefined) return this.#headers
    const h: Record<string, string | string[]> = {}
    const raw = this.rawHeaders
    for (let i = 0; i < raw.length; i += 2) {
      const k = (raw[i] as string).toLowerCase()
      const v = raw[i + 1] as string
      const cur = h[k]
      if (cur === undefined) h[k] = k === 'set-cookie' ? [v] : v
      else if (k === 'set-cookie') (cur as string[]).push(v)
      else if (k === 'cookie') h[k] = `${cur as string}; ${v}`
      else if (!SINGLE.has(k)) h[k] = `${cur as string}, ${v}`
    }
    this.#headers = h
    return h
  }
}

/** A request body: the parser pushes, the consumer's reads resume a socket paused for backpressure. */
export class H1Body extends Readable {
  readonly #conn: H1Conn
  constructor (conn: H1Conn) {
    super()
    this.#conn = conn
  }

  override _read (): void {
    this.#conn.unpause(PAUSE_BODY)
  }
}

const PAUSE_BODY = 1
const PAUSE_QUEUE = 2

const EXPECT_CONTINUE = 1
const EXPECT_FAILED = 2

let dateSec = -1
let dateStr = ''
function utcDate (): string {
  const now = Date.now()
  const s = Math.floor(now / 1000)
  if (s !== dateSec) { dateSec = s; dateStr = new Date(now).toUTCString() }
  return dateStr
}

/**
 * The members of ServerResponse that the listener and the Exchange use (statusCode, shouldKeepAlive, headersSent,
 * writableEnded/Finished, chunkedEncoding, writeHead, write, end, destroy, addTrailers, on/listenerCount for
 * 'close' and 'drain'), with node:http's meaning. (Not `implements`: ServerResponse's methods return itself.)
 */
export class H1Response {
  statusCode = 200
  shouldKeepAlive: boolean
  headersSent = false
  writableEnded = false
  writableFinished = false
  chunkedEncoding = false
  readonly req: H1Request
  readonly #conn: H1Conn
  #noBody = false
  #trailers = ''
  #onClose: Listener | Listener[] | undefined
  #onDrain: Listener | Listener[] | undefined

  constructor (conn: H1Conn, req: H1Request) {
    this.#conn = conn
    this.req = req
    this.shouldKeepAlive = req.shouldKeepAlive
  }

  get socket (): Socket { return this.#conn.socket }

  writeHead (statusCode: number, reasonOrHeaders?: string | OutgoingHttpHeaders | string[], maybeHeaders?: OutgoingHttpHeaders | string[]): this {
    if (this.headersSent) throw Object.assign(new Error('Cannot write headers after they are sent to the client'), { code: 'ERR_HTTP_HEADERS_SENT' })
    if (!(statusCode >= 200 && statusCode <= 999) || !Number.isInteger(statusCode)) {
      throw Object.assign(new RangeError(`Invalid status code: ${statusCode}`), { code: 'ERR_HTTP_INVALID_STATUS_CODE' })
    }
    let reason: string | undefined
    let headers: OutgoingHttpHeaders | string[] | undefined
    if (typeof reasonOrHeaders === 'string') { reason = reasonOrHeaders; headers = maybeHeaders } else headers = reasonOrHeaders
    if (reason === undefined || reason === '') reason = STATUS_CODES[statusCode] ?? 'unknown'
    // A backend's reason phrase (the Exchange's list form) was read by undici's parser: it has no CR/LF.
    else if (!Array.isArray(headers) && /[\r\n]/.test(reason)) throw Object.assign(new TypeError('Invalid character in statusMessage'), { code: 'ERR_INVALID_CHAR' })
    this.statusCode = statusCode
    const conn = this.#conn
    const req = this.req
    let head = `HTTP/1.1 ${statusCode} ${reason}\r\n`
    // Framing facts the caller's headers decide: their length, a Date of their own, Connection: close.
    let hasLength = false
    let hasDate = false
    let close = false
    if (Array.isArray(headers)) {
      // The Exchange's list: a backend's headers as undici's strict parser read them (hop-by-hop ones gone) plus
      // the edge's own; names and values cannot carry CR/LF, so they are written as they are.
      for (let i = 0; i < headers.length; i += 2) {
        const name = headers[i] as string
        const value = headers[i + 1] as string
        const n = name.length
        if (n === 14 && name.toLowerCase() === 'content-length') hasLength = true
        else if (n === 4 && name.toLowerCase() === 'date') hasDate = true
        head += `${name}: ${value}\r\n`
      }
    } else if (headers !== undefined) {
      // The edge's own answers (errors, respond and redirect routes): validated like node:http does.
      for (const name in headers) {
        const v = headers[name]
        if (v === undefined) continue
        validateHeaderName(name)
        const lower = name.toLowerCase()
        if (lower === 'content-length') hasLength = true
        else if (lower === 'date') hasDate = true
        else if (lower === 'connection') { if (String(v).toLowerCase() === 'close') close = true; continue }
        if (Array.isArray(v)) {
          for (const one of v) { validateHeaderValue(name, one); head += `${name}: ${one}\r\n` }
        } else {
          const one = String(v)
          validateHeaderValue(name, one)
          head += `${name}: ${one}\r\n`
        }
      }
    }
    this.#noBody = req.method === 'HEAD' || statusCode === 204 || statusCode === 304
    if (!this.#noBody && !hasLength) {
      // No length: chunked for HTTP/1.1 clients; an HTTP/1.0 client reads to the close.
      if (req.httpVersionMinor >= 1 || req.httpVersionMajor > 1) { this.chunkedEncoding = true; head += 'transfer-encoding: chunked\r\n' } else close = true
    }
    if (!hasDate) head += `date: ${utcDate()}\r\n`
    if (close || conn.server.closing) this.shouldKeepAlive = false
    head += this.shouldKeepAlive ? conn.server.keepAliveHeader : 'connection: close\r\n\r\n'
    this.headersSent = true
    conn.cork()
    conn.socket.write(head, 'latin1')
    return this
  }

  write (chunk: string | Uint8Array): boolean {
    if (!this.headersSent) this.writeHead(this.statusCode)
    if (this.#noBody || this.writableEnded) return true
    const conn = this.#conn
    const socket = conn.socket
    if (!this.chunkedEncoding) return socket.write(chunk)
    const len = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength
    if (len === 0) return true
    conn.cork()
    socket.write(`${len.toString(16)}\r\n`, 'latin1')
    socket.write(chunk)
    return socket.write('\r\n', 'latin1')
  }

  end (chunk?: string | Uint8Array | (() => void)): this {
    if (this.writableEnded) return this
    const body = typeof chunk === 'function' ? undefined : chunk
    if (!this.headersSent) {
      const len = body === undefined ? 0 : typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength
      this.writeHead(this.statusCode, { 'content-length': len })
    }
    if (body !== undefined) this.write(body)
    this.writableEnded = true
    if (this.chunkedEncoding && !this.#noBody) this.#conn.socket.write(`0\r\n${this.#trailers}\r\n`, 'latin1')
    this.writableFinished = true
    this.#conn.responseDone(this)
    return this
  }

  addTrailers (headers: OutgoingHttpHeaders | ReadonlyArray<[string, string]>): void {
    const list: Array<[string, unknown]> = Array.isArray(headers) ? headers as Array<[string, string]> : Object.entries(headers)
    for (const [name, v] of list) {
      if (v === undefined) continue
      validateHeaderName(name)
      for (const item of Array.isArray(v) ? v as unknown[] : [v]) {
        const one = String(item)
        validateHeaderValue(name, one)
        this.#trailers += `${name}: ${one}\r\n`
      }
    }
  }

  /** Ends the connection: nothing more can be sent on it (a response cut short must not look complete). */
  destroy (_err?: Error): this {
    this.#conn.socket.destroy()
    return this
  }

  on (event: string, fn: Listener): this {
    if (event === 'close') this.#onClose = add(this.#onClose, fn)
    else if (event === 'drain') this.#onDrain = add(this.#onDrain, fn)
    else throw new Error(`H1Response has no "${event}" event`)
    return this
  }

  listenerCount (event: string): number {
    const l = event === 'close' ? this.#onClose : event === 'drain' ? this.#onDrain : undefined
    return l === undefined ? 0 : typeof l === 'function' ? 1 : l.length
  }

  /** The connection closed before this response ended. */
  emitClose (): void {
    call(this, this.#onClose)
  }

  emitDrain (): void {
    call(this, this.#onDrain)
  }
}

function add (cur: Listener | Listener[] | undefined, fn: Listener): Listener | Listener[] {
  return cur === undefined ? fn : typeof cur === 'function' ? [cur, fn] : [...cur, fn]
}

function call (self: H1Response, l: Listener | Listener[] | undefined): void {
  if (l === undefined) return
  if (typeof l === 'function') { l.call(self); return }
  for (const fn of l) fn.call(self)
}

/** The native stream handle of a net/tls socket (`socket._handle`), as node:http uses it with `parser.consume`. */
interface Handle {
  isStreamBase?: boolean
  reading?: boolean
  readStart (): number
  readStop (): number
}

const kConn = Symbol('h1Conn')
type ConnSocket = Socket & { [kConn]?: H1Conn }

/** One client connection: its parser, the response being written, and pipelined requests waiting their turn. */
export class H1Conn {
  readonly socket: Socket
  readonly server: H1Server
  readonly parser: Parser
  /** The response being written; requests behind it wait in `queue`. */
  cur: H1Response | undefined
  /** The request whose body the parser is reading. */
  parsing: H1Request | undefined
  queue: H1Response[] = []
  /** server.clock when the current request head began (0: not reading a head). */
  headersSince: number
  /** server.clock when the connection went idle (0: busy). */
  idleSince = 0
  paused = 0
  corked = false
  /** An exception was thrown inside a parser callback: the connection ends with 500. */
  faulted = false
  upgradeReq: H1Request | undefined
  /** Bytes read past a pipelined upgrade's head, kept until the answers before it are out. */
  upgradeHead: Buffer | undefined
  /** Headers and URL llhttp hands over early on requests with many headers (kOnHeaders). */
  partHeaders: string[] | undefined
  partUrl = ''
  closed = false
  /** The last answer said Connection: close; requests parsed after it are ignored. */
  ending = false
  /**
   * The socket's native handle when the parser reads from it directly (`parser.consume`, as node:http does): no
   * 'data' event and no read buffer allocated per read. Undefined when reading through 'data' events.
   */
  handle: Handle | undefined

  constructor (server: H1Server, socket: Socket, parser: Parser) {
    this.server = server
    this.socket = socket
    this.parser = parser
    this.headersSince = server.clock
    parser.conn = this
    ;(socket as ConnSocket)[kConn] = this
    const handle = (socket as { _handle?: Handle | null })._handle
    if (handle?.isStreamBase === true) {
      parser[(common as HttpCommon).HTTPParser.kOnExecute] = onParserExecute
      parser.consume(handle)
      this.handle = handle
      socket.resume() // keeps the handle reading; the bytes go to the parser, not to the stream
    } else {
      socket.on('data', onSocketData)
    }
    socket.on('drain', onSocketDrain)
    socket.on('error', onSocketError)
    socket.on('close', onSocketClose)
    socket.on('end', onSocketEnd)
  }

  cork (): void {
    if (this.corked) return
    this.corked = true
    this.socket.cork()
    process.nextTick(uncorkConn, this)
  }

  pause (why: number): void {
    if (this.paused === 0) {
      const h = this.handle
      if (h === undefined) this.socket.pause()
      else if (h.reading !== false) { h.reading = false; h.readStop() }
    }
    this.paused |= why
  }

  unpause (why: number): void {
    if ((this.paused & why) === 0) return
    this.paused &= ~why
    // A pending upgrade keeps the socket paused for its handler (no data listener is left to read it).
    if (this.paused === 0 && !this.closed && this.upgradeReq === undefined) {
      const h = this.handle
      if (h === undefined) this.socket.resume()
      else if (h.reading !== true) { h.reading = true; h.readStart() }
    }
  }

  /** A request head is complete: answer it now, or queue it behind the response being written. */
  onRequest (req: H1Request): void {
    const res = new H1Response(this, req)
    if (this.cur === undefined) { this.start(res); return }
    this.queue.push(res)
    this.pause(PAUSE_QUEUE)
  }

  private start (res: H1Response): void {
    this.cur = res
    const req = res.req
    if (req.expect === EXPECT_FAILED) { res.writeHead(417, { 'content-length': 0 }); res.end(); return }
    // Sent when the request's turn comes, so it never lands inside an earlier pipelined answer.
    if (req.expect === EXPECT_CONTINUE) this.socket.write('HTTP/1.1 100 Continue\r\n\r\n', 'latin1')
    this.server.handler(req, res)
  }

  responseDone (res: H1Response): void {
    if (res !== this.cur) return
    this.cur = undefined
    const req = res.req
    if (!req.complete) {
      // The answer went out before the request body was read (an error, a route that answers by itself).
      req.dumping = true
      req.body?.resume()
      this.unpause(PAUSE_BODY)
    }
    if (!res.shouldKeepAlive) {
      // Anything pipelined after a closing answer is not read (RFC 9112 9.6).
      this.ending = true
      stopReading(this)
      this.queue.length = 0
      closeAfterWrite(this.socket)
      return
    }
    const next = this.queue.shift()
    if (next !== undefined) {
      if (this.queue.length === 0) this.unpause(PAUSE_QUEUE)
      this.start(next)
      return
    }
    const up = this.upgradeReq
    if (up !== undefined && this.upgradeHead !== undefined) { startUpgrade(this, up, this.upgradeHead); return }
    if (this.headersSince === 0) this.idleSince = this.server.clock
  }

  /** Bytes llhttp refused: answered like node:http's clientError, unless an answer is already on its way. */
  parseError (err: ParseError): void {
    stopReading(this)
    if (this.cur?.headersSent === true) { this.socket.destroy(); return }
    // A request under way (a bad chunk in its body) is abandoned first: its upstream side is cancelled.
    abandon(this)
    this.server.clientError(this.faulted ? Object.assign(new Error('internal error'), { code: 'EP_ERR_INTERNAL' }) : err, this.socket)
  }
}

/**
 * Ends our side and closes the socket once what was written is handed to the kernel, as node:http's destroySoon:
 * a client that never sends its FIN does not hold the connection open.
 */
function closeAfterWrite (socket: Socket): void {
  socket.once('finish', () => { socket.destroy() })
  socket.end()
}

function uncorkConn (c: H1Conn): void {
  c.corked = false
  c.socket.uncork()
}

/**
 * The parser stops reading this socket: later bytes stay in the socket (paused) for whoever takes it over (an
 * upgrade's handler), or are never looked at (after a closing answer or a refused request).
 */
function stopReading (c: H1Conn): void {
  if (c.handle !== undefined) {
    c.socket.pause() // from here the stream buffers what arrives, and reads on when it is resumed or piped
    c.parser.unconsume()
    c.handle = undefined
  } else {
    c.socket.removeListener('data', onSocketData)
  }
}

function onSocketData (this: ConnSocket, d: Buffer): void {
  const c = this[kConn] as H1Conn
  try {
    executed(c, c.parser.execute(d), d)
  } catch (err) {
    c.server.fault(err)
    this.destroy()
  }
}

/** The parser read a chunk straight from the handle (`this` is the parser). */
function onParserExecute (this: Parser, r: number | ParseError): void {
  const c = this.conn as H1Conn
  if (c.handle === undefined) return
  // Called from the socket's native read: a throw here would end the process.
  try {
    executed(c, r, undefined)
  } catch (err) {
    c.server.fault(err)
    c.socket.destroy()
  }
}

function executed (c: H1Conn, r: number | ParseError, d: Buffer | undefined): void {
  if (typeof r !== 'number') { c.parseError(r); return }
  const up = c.upgradeReq
  if (up === undefined) return
  // llhttp stopped after the upgrade request's head: what follows belongs to the new protocol.
  const head = (d ?? c.parser.getCurrentBuffer()).subarray(r)
  // Nothing is read until the upgrade's handler pipes the socket (node:http does the same).
  const h = c.handle
  stopReading(c)
  c.socket.pause()
  // Pipelined requests before it may have stopped the native handle behind the stream's back (PAUSE_QUEUE): the
  // stream still counts a read in flight and would never start one again, so later bytes of the new protocol were
  // never read. Reading resumes into the paused stream's buffer, which stops the handle itself when full.
  if (h !== undefined && h.reading === false) { h.reading = true; h.readStart() }
  if (c.cur === undefined && c.queue.length === 0) { startUpgrade(c, up, head); return }
  // An upgrade pipelined behind answers still being written waits for them (responseDone starts it).
  c.upgradeHead = head
}

function startUpgrade (c: H1Conn, req: H1Request, head: Buffer): void {
  c.upgradeReq = undefined
  c.upgradeHead = undefined
  const socket = c.socket
  socket.removeListener('drain', onSocketDrain)
  socket.removeListener('error', onSocketError)
  socket.removeListener('close', onSocketClose)
  socket.removeListener('end', onSocketEnd)
  c.closed = true
  c.server.conns.delete(c)
  closeParser(c)
  c.paused = 0
  if (req.method === 'CONNECT') { // forward proxying is not this edge's job
    socket.end('HTTP/1.1 405 Method Not Allowed\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
    return
  }
  c.server.upgrader(req, socket, head)
}

function onSocketDrain (this: ConnSocket): void {
  this[kConn]?.cur?.emitDrain()
}

/** The client's FIN ends its requests as node:http does by default: what is under way is abandoned. */
function onSocketEnd (this: ConnSocket): void {
  const c = this[kConn] as H1Conn
  abandon(c)
  if (this.writable) this.end()
}

function onSocketError (this: ConnSocket): void {
  this.destroy()
}

function onSocketClose (this: ConnSocket): void {
  const c = this[kConn] as H1Conn
  abandon(c)
  closeParser(c)
}

function closeParser (c: H1Conn): void {
  if (c.handle !== undefined) { c.handle = undefined; c.parser.unconsume() }
  // Not now: this may run inside the parser's own callback (an upgrade read by the consuming parser), and close()
  // frees the native parser. node:http defers it the same way.
  setImmediate(closeParserNow, c.parser)
}

function closeParserNow (p: Parser): void {
  p.close()
}

/** The connection is gone (or half-closed by the client): requests under way learn it, once. */
function abandon (c: H1Conn): void {
  if (c.closed) return
  c.closed = true
  c.server.conns.delete(c)
  const cur = c.cur
  c.cur = undefined
  if (cur !== undefined && !cur.writableEnded) cur.emitClose()
  for (const res of c.queue) res.emitClose()
  c.queue.length = 0
  const p = c.parsing
  const body = p?.complete === false ? p.body : null
  // An error only for a reader that listens (undici does); with none, node would throw it as uncaught.
  if (body !== null) body.destroy(body.listenerCount('error') > 0 ? Object.assign(new Error('aborted'), { code: 'ECONNRESET' }) : undefined)
}

// --- llhttp callbacks (`this` is the parser) ---

function onMessageBegin (this: Parser): void {
  const c = this.conn as H1Conn
  c.headersSince = c.server.clock
  c.idleSince = 0
  c.partHeaders = undefined
  c.partUrl = ''
}

function onHeaders (this: Parser, headers: string[], url: string): void {
  const c = this.conn as H1Conn
  if (c.partHeaders === undefined) c.partHeaders = headers; else for (const h of headers) c.partHeaders.push(h)
  c.partUrl += url
}

function onHeadersComplete (this: Parser, major: number, minor: number, headers: string[] | undefined, method: number,
  url: string | undefined, _status: number, _statusText: string, upgrade: boolean, keepAlive: boolean): number {
  // A throw inside a parser callback would escape through the native parser and end the process: it becomes a
  // parse error of this connection (500 if nothing was answered yet), and the server reports it.
  try {
    return headersComplete(this.conn as H1Conn, major, minor, headers, method, url, upgrade, keepAlive)
  } catch (err) {
    const c = this.conn as H1Conn
    c.server.fault(err)
    c.faulted = true
    return -1
  }
}

function headersComplete (c: H1Conn, major: number, minor: number, headers: string[] | undefined, method: number,
  url: string | undefined, upgrade: boolean, keepAlive: boolean): number {
  c.headersSince = 0
  if (c.ending) return 0
  let raw = headers
  let target = url
  if (raw === undefined) { raw = c.partHeaders ?? []; c.partHeaders = undefined }
  else if (c.partHeaders !== undefined) { raw = c.partHeaders.concat(raw); c.partHeaders = undefined }
  if (target === undefined) { target = c.partUrl; c.partUrl = '' }
  const req = new H1Request(c.socket, (common as HttpCommon).methods[method] ?? 'GET', target, raw, major, minor,
    keepAlive, upgrade)
  if (upgrade) { c.upgradeReq = req; return 2 } // llhttp stops after this head (no body)
  // Body, Expect: only the headers that decide them are looked at (by length first: this runs per request).
  let body = false
  let expect: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const n = name.length
    if (n === 14) { if (name.toLowerCase() === 'content-length' && raw[i + 1] !== '0') body = true } else if (n === 17) { if (name.toLowerCase() === 'transfer-encoding') body = true } else if (n === 6 && name.toLowerCase() === 'expect') expect = raw[i + 1]
  }
  if (body) req.body = new H1Body(c)
  c.parsing = req
  if (expect !== undefined && (major > 1 || minor >= 1)) req.expect = expect.toLowerCase() === '100-continue' ? EXPECT_CONTINUE : EXPECT_FAILED
  c.onRequest(req)
  return 0
}

function onBody (this: Parser, chunk: Buffer): void {
  const req = (this.conn as H1Conn).parsing
  if (req === undefined || req.dumping || req.body === null) return
  if (!req.body.push(chunk)) (this.conn as H1Conn).pause(PAUSE_BODY)
}

function onMessageComplete (this: Parser): void {
  const c = this.conn as H1Conn
  // A chunked body's trailer fields reach kOnHeaders just before this (with the message's URL again): they are
  // not forwarded (undici sends no request trailers) and must not become the next request's headers.
  c.partHeaders = undefined
  c.partUrl = ''
  const req = c.parsing
  if (req === undefined) return
  c.parsing = undefined
  req.complete = true
  if (!req.dumping) req.body?.push(null)
  else req.body?.destroy()
}

export interface H1ServerOptions {
  readonly maxHeaderSize: number
  readonly headersTimeout: number
  readonly keepAliveTimeout: number
}

/**
 * A net.Server speaking HTTP/1.1 through H1Conn; also takes sockets accepted elsewhere (`emit('connection')`).
 * `closeIdleConnections`/`closeAllConnections` match node:http's.
 */
export class H1Server extends net.Server {
  readonly conns = new Set<H1Conn>()
  readonly opts: H1ServerOptions
  readonly handler: (req: H1Request, res: H1Response) => void
  readonly upgrader: (req: H1Request, socket: Socket, head: Buffer) => void
  readonly clientError: (err: ParseError, socket: Socket) => void
  /** Told of an exception caught inside the server's own callbacks (a bug: the connection it hit is ended). */
  readonly fault: (err: unknown) => void
  readonly keepAliveHeader: string
  closing = false
  /**
   * A coarse clock (ms) the timeouts are measured on: performance.now() read by the sweep, not per request, plus
   * one sweep interval, so a timeout fires no earlier than set and at most one interval late.
   */
  clock = performance.now()
  #sweep: NodeJS.Timeout | undefined

  constructor (opts: H1ServerOptions,
    handler: (req: H1Request, res: H1Response) => void,
    upgrader: (req: H1Request, socket: Socket, head: Buffer) => void,
    clientError: (err: ParseError, socket: Socket) => void,
    fault: (err: unknown) => void) {
    if (common === undefined) throw new Error('this Node does not expose its HTTP parser (_http_common)')
    // Half-open: a client's FIN after its last request still gets the answer (then the edge closes).
    super({ noDelay: true, allowHalfOpen: true })
    this.opts = opts
    this.handler = handler
    this.upgrader = upgrader
    this.clientError = clientError
    this.fault = fault
    this.keepAliveHeader = `connection: keep-alive\r\nkeep-alive: timeout=${Math.ceil(opts.keepAliveTimeout / 1000)}\r\n\r\n`
    this.on('connection', (socket: Socket) => { this.accept(socket) })
    this.on('listening', () => { this.startSweep() })
    this.on('close', () => { if (this.#sweep !== undefined) clearInterval(this.#sweep) })
  }

  private accept (socket: Socket): void {
    const { HTTPParser } = common as HttpCommon
    const parser = new HTTPParser()
    parser.initialize(HTTPParser.REQUEST, {}, this.opts.maxHeaderSize, HTTPParser.kLenientNone)
    parser[HTTPParser.kOnMessageBegin] = onMessageBegin
    parser[HTTPParser.kOnHeaders] = onHeaders
    parser[HTTPParser.kOnHeadersComplete] = onHeadersComplete
    parser[HTTPParser.kOnBody] = onBody
    parser[HTTPParser.kOnMessageComplete] = onMessageComplete
    this.conns.add(new H1Conn(this, socket, parser))
  }

  /** headers_timeout (408) and keepalive_timeout, checked for every connection a few times per timeout. */
  private startSweep (): void {
    if (this.#sweep !== undefined) return
    const { headersTimeout, keepAliveTimeout } = this.opts
    const every = Math.max(100, Math.min(1000, Math.floor(Math.min(headersTimeout, keepAliveTimeout) / 4)))
    this.clock = performance.now() + every
    this.#sweep = setInterval(() => {
      const now = performance.now()
      this.clock = now + every
      for (const c of this.conns) {
        if (c.headersSince !== 0 && now - c.headersSince > headersTimeout) {
          c.headersSince = 0
          stopReading(c)
          if (c.cur !== undefined) c.socket.destroy()
          else this.clientError(Object.assign(new Error('request headers timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), c.socket)
        } else if (c.idleSince !== 0 && c.cur === undefined && now - c.idleSince > keepAliveTimeout) {
          c.socket.destroy()
        }
      }
    }, every)
    this.#sweep.unref()
  }

  /**
   * Ends connections with no request under way (node:http's closeIdleConnections). `idleForMs`: only those idle
   * (or silent since they connected) that long, so a keep-alive client that is about to send, which would get a
   * reset, is not cut; its next answer says Connection: close instead (an upgrade's drain).
   */
  closeIdleConnections (idleForMs = 0): void {
    if (idleForMs === 0) {
      for (const c of this.conns) if (c.cur === undefined && (c.idleSince !== 0 || c.socket.bytesRead === 0)) c.socket.destroy()
      return
    }
    const now = performance.now()
    for (const c of this.conns) {
      if (c.cur !== undefined) continue
      if ((c.idleSince !== 0 && now - c.idleSince >= idleForMs) || (c.socket.bytesRead === 0 && now - c.headersSince >= idleForMs)) c.socket.destroy()
    }
  }

  closeAllConnections (): void {
    for (const c of this.conns) c.socket.destroy()
  }

  override close (callback?: (err?: Error) => void): this {
    this.closing = true
    super.close(callback)
    return this
  }
}
