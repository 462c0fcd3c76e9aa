// One Exchange per proxied request: it is the undici dispatch handler (the low-level, raw-header API, which
// neither parses nor copies headers), streams both ways with backpressure, retries where retry.ts allows it, and
// turns failures into answers. What watches an exchange (metrics, access log, passive health, latency, a mirror)
// hangs off its hooks (hooks.ts), never in its path.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import type { RouteConfig } from '../../config/types.js'
import type { Member } from '../upstream/member.js'
import type { PoolRuntime, Shard } from '../upstream/pool.js'
import { classifyUpstreamError } from '../errors.js'
import { EdgeError, statusFor, type ErrorCode } from '../../config/errors.js'
import { connectionNamed, isHopByHop, stripNamed } from './headers.js'
import { trailerRecord } from '../listen/h2.js'
import { H1Request } from '../listen/h1.js'
import type { Readable } from 'node:stream'
import type { Socket } from 'node:net'
import type { ExchangeHooks } from './hooks.js'
import { failureKind, mayRetry, statusKind } from './retry.js'
import { BodyTee, type BodyCopy } from './tee.js'

const kExchange = Symbol('exchange')
type WithExchange = ServerResponse & { [kExchange]?: Exchange }

function onResClose (this: WithExchange): void {
  this[kExchange]?.clientClosed()
}
function onResDrain (this: WithExchange): void {
  this[kExchange]?.resumeUpstream()
}
function onTimeout (x: Exchange): void {
  x.timedOut()
}
function onTryTimeout (x: Exchange): void {
  x.tryTimedOut()
}

export type PoolAction = Extract<RouteConfig['action'], { kind: 'pool' }>

/**
 * Sees the response the client gets (the mirror compares it with the shadow's): its head once the retry decision
 * is made, each body chunk as it goes to the client (kept by reference, never copied or awaited), and the end.
 * Set from onRequest (`x.watchResponse`); an exchange nobody watches pays one undefined check per chunk.
 */
export interface ResponseWatcher {
  onPrimaryHead (status: number, rawHeaders: readonly Buffer[], ms: number): void
  onPrimaryData (chunk: Buffer): void
  /** Once per exchange: `complete` when the whole response reached the client as the backend sent it. */
  onPrimaryEnd (complete: boolean): void
}

export class Exchange implements Dispatcher.DispatchHandler {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly route: RouteConfig
  readonly action: PoolAction
  readonly pool: PoolRuntime
  readonly requestId: string
  readonly clientIp: string
  readonly start: number
  readonly path: string
  readonly upstreamHeaders: string[]
  readonly hasBody: boolean
  /** The request body stream (the request itself on node:http and HTTP/2), or null. */
  readonly body: Readable | null
  readonly hooks: ExchangeHooks

  member: Member | undefined
  shard: Shard | undefined
  key = ''
  status = 0
  errorCode: ErrorCode | undefined
  upstreamStart = 0
  upstreamMs = -1
  durationMs = 0
  retries = 0
  /** The route's whole-exchange timeout ended it (not one try's failure). */
  routeTimedOut = false
  /**
   * The client's socket, kept: node:http sets `req.socket` to null once a request body has been read and the
   * request is done, which is before the access log asks.
   */
  readonly socket: Socket
  /** Request body bytes sent to the backend (undici's onBodySent): the access log's bytes_in. */
  bodyBytes = 0
  /** Response body bytes passed to the client (HTTP/2 has no per-stream socket to count on). */
  responseBodyBytes = 0
  bytesOutStart: number
  #abort: ((err?: Error) => void) | null = null
  #resume: (() => void) | null = null
  #timer: NodeJS.Timeout | undefined
  #tryTimer: NodeJS.Timeout | undefined
  #tryTimedOut = false
  #done = false
  #gotHeaders = false
  /** A retryable status arrived: its body is read and dropped, then the request goes to another member. */
  #discarding = false
  /** Set only when an observer asked for a copy of the body: then undici reads the tee instead of the body. */
  #tee: BodyTee | undefined
  #dispatched = false
  #watcher: ResponseWatcher | undefined
  #completed = false

  constructor (req: IncomingMessage, res: ServerResponse, route: RouteConfig, action: PoolAction, pool: PoolRuntime,
    requestId: string, clientIp: string, start: number, path: string, upstreamHeaders: string[], hasBody: boolean,
    hooks: ExchangeHooks) {
    this.req = req
    this.res = res
    this.route = route
    this.action = action
    this.pool = pool
    this.requestId = requestId
    this.clientIp = clientIp
    this.start = start
    this.path = path
    this.upstreamHeaders = upstreamHeaders
    this.hasBody = hasBody
    this.body = !hasBody ? null : req instanceof H1Request ? req.body : req
    this.hooks = hooks
    this.socket = req.socket
    this.bytesOutStart = req.socket.bytesWritten
    ;(res as WithExchange)[kExchange] = this
    res.on('close', onResClose)
    if (action.timeout > 0) this.#timer = setTimeout(onTimeout, action.timeout, this)
  }

  /** Chooses a member and dispatches; answers 503 itself when none is available. */
  run (now: number): void {
    this.pool.state.budget.onRequest(now)
    const sel = this.pool.select(this.req, this.req.url ?? '/', this.clientIp, now, undefined)
    this.shard = sel.shard
    this.key = sel.key
    if (sel.member === undefined) { this.noMember(now); return }
    this.dispatchTo(sel.member)
  }

  private noMember (now: number): void {
    if (this.pool.saturated(now, this.shard)) this.fail('EP_ERR_OVERLOADED', `every backend of pool "${this.pool.name}" is at its in-flight limit`)
    else if (this.shard !== undefined) this.fail('EP_ERR_SHARD_UNAVAILABLE', `shard "${this.shard.name}" unavailable: no reachable backend`)
    else if (this.pool.members.length === 0 && this.pool.config.tunnel !== undefined) this.fail('EP_ERR_NO_HEALTHY_BACKEND', `tunnel offline: no tunnel client is connected for ${this.pool.config.tunnel}`)
    else this.fail('EP_ERR_NO_HEALTHY_BACKEND', `no live backend in pool "${this.pool.name}"`)
  }

  private dispatchTo (m: Member): void {
    this.member = m
    const backend = m.backend
    const headers = this.upstreamHeaders
    if (this.action.hostHeader !== 'client') {
      for (let i = headers.length - 2; i >= 0; i -= 2) {
        if (headers[i] === 'host') { headers[i + 1] = this.action.hostHeader === 'backend' ? backend.host : this.action.hostHeader; break }
      }
    }
    const opener = backend.opener
    if (opener !== undefined) opener.client = this.clientIp
    backend.inflight++
    backend.requests++
    m.requests++
    this.#gotHeaders = false
    this.#discarding = false
    this.#tryTimedOut = false
    this.upstreamStart = performance.now()
    if (this.hooks.request.length !== 0) this.hooks.emitRequest(this)
    this.#dispatched = true
    const perTry = this.pool.config.retry.perTryTimeout
    if (perTry !== undefined) this.#tryTimer = setTimeout(onTryTimeout, perTry, this)
    backend.dispatcher.dispatch({
      path: this.path,
      method: this.req.method as Dispatcher.HttpMethod,
      headers,
      body: this.#tee ?? this.body,
      headersTimeout: 0,
      bodyTimeout: this.action.idleTimeout,
      idempotent: false,
    }, this)
  }

  /**
   * A copy of the request body for an observer, up to `cap` bytes (tee.ts): the primary request never waits for
   * it, and past the cap it is abandoned (`truncated`). Only before the body first goes upstream, that is from
   * onRequest of the first try; undefined when the request has no body or it is too late.
   */
  teeBody (cap: number): BodyCopy | undefined {
    if (this.body === null || this.#dispatched || this.#done) return undefined
    if (this.#tee === undefined) { this.#tee = new BodyTee(this.body); this.hooks.teesCreated++ }
    return this.#tee.copy(cap)
  }

  /** Lets `w` see the response the client gets (ResponseWatcher); from onRequest, one watcher per exchange. */
  watchResponse (w: ResponseWatcher): boolean {
    if (this.#watcher !== undefined || this.#done) return false
    this.#watcher = w
    return true
  }

  // --- what retry.ts and the observers read ---

  get method (): string { return this.req.method ?? '' }
  /** Some of the body was read by undici (so some may have been sent): a refused connection is retried only before. */
  get bodyRead (): boolean { return (this.#tee ?? this.body)?.readableDidRead === true }
  /** The backend's response head went to the client: a failure now breaks the transfer, and is never retried. */
  get responseStarted (): boolean { return this.#gotHeaders && !this.#discarding }

  /** Sends the request to another member of the same pool (or shard); false when there is none. */
  private retryElsewhere (now: number): boolean {
    const failed = this.member
    const sel = this.pool.select(this.req, this.req.url ?? '/', this.clientIp, now, failed, this.key)
    if (sel.member === undefined) return false
    this.retries++
    this.dispatchTo(sel.member)
    return true
  }

  private endTry (): void {
    if (this.#tryTimer !== undefined) { clearTimeout(this.#tryTimer); this.#tryTimer = undefined }
    ;(this.member as Member).backend.inflight--
  }

  // --- undici handler (legacy raw API) ---

  onConnect (abort: (err?: Error) => void): void {
    if (this.#done) { abort(new EdgeError('EP_ERR_CLIENT_ABORTED', 'client went away')); return }
    this.#abort = abort
  }

  onHeaders (statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (this.#done) return false
    if (statusCode < 200) return true // 1xx informational: Node answers 100-continue itself
    const nowMs = performance.now()
    this.#gotHeaders = true
    this.upstreamMs = nowMs - this.upstreamStart
    // Passive health and latency see every answer before the retry decision (an ejection it causes counts there).
    if (this.hooks.responseStart.length !== 0) this.hooks.emitResponseStart(this, statusCode, rawHeaders)
    if (statusCode >= 500 && mayRetry(this, statusKind(statusCode), Date.now())) {
      this.#discarding = true
      return true
    }
    this.#resume = resume
    this.status = statusCode
    if (this.#watcher !== undefined) this.#watcher.onPrimaryHead(statusCode, rawHeaders, this.upstreamMs)
    const out: string[] = []
    let serverTiming: string | undefined
    let named: Set<string> | undefined
    let hasRequestId = false
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = (rawHeaders[i] as Buffer).toString('latin1')
      const lower = name.toLowerCase()
      const value = (rawHeaders[i + 1] as Buffer).toString('latin1')
      if (lower === 'connection') { named = connectionNamed(value); continue }
      if (isHopByHop(lower)) continue
      if (lower === 'server-timing') { serverTiming = serverTiming === undefined ? value : `${serverTiming}, ${value}`; continue }
      if (lower === 'x-request-id') hasRequestId = true
      out.push(name, value)
    }
    if (named !== undefined) stripNamed(out, named)
    const edgeMs = nowMs - this.start - this.upstreamMs
    const timing = `edge;dur=${ms2(edgeMs)}, upstream;dur=${ms2(this.upstreamMs)}`
    out.push('server-timing', serverTiming === undefined ? timing : `${serverTiming}, ${timing}`)
    if (!hasRequestId) out.push('x-request-id', this.requestId)
    try {
      this.res.writeHead(statusCode, statusText, out)
    } catch (err) {
      this.#abort?.(err as Error)
      return false
    }
    return true
  }

  /** undici 7 passes the chunk sent (its typings say a size): either is counted. */
  onBodySent (chunk: unknown): void {
    this.bodyBytes += typeof chunk === 'number' ? chunk : typeof chunk === 'string' ? Buffer.byteLength(chunk) : (chunk as Uint8Array).byteLength
  }

  onData (chunk: Buffer): boolean {
    if (this.#done) return false
    if (this.#discarding) return true
    this.responseBodyBytes += chunk.length
    if (this.#watcher !== undefined) this.#watcher.onPrimaryData(chunk)
    if (this.res.write(chunk)) return true
    if (this.res.listenerCount('drain') === 0) this.res.on('drain', onResDrain)
    return false
  }

  resumeUpstream (): void {
    this.#resume?.()
  }

  onComplete (trailers: string[] | null): void {
    this.endTry()
    this.#abort = null
    if (this.#done) return
    if (this.#discarding) {
      // The retryable answer was read to its end, so the connection stays reusable; now try another member.
      const now = Date.now()
      if (this.retryElsewhere(now)) return
      this.noMember(now)
      return
    }
    // An HTTP/1.1 client can take trailers only on a chunked response; an HTTP/2 one always (gRPC's grpc-status).
    const t = trailers === null || !(this.res.chunkedEncoding || this.req.httpVersionMajor === 2) ? undefined : trailerRecord(trailers)
    if (t !== undefined) this.res.addTrailers(t)
    this.res.end()
    this.#completed = true
    this.finish()
  }

  onError (err: Error): void {
    // Every dispatch ends in exactly one onComplete or onError: the try's in-flight count is released here.
    this.endTry()
    this.#abort = null
    if (this.#done) return
    if (this.errorCode === 'EP_ERR_CLIENT_ABORTED') { this.finish(); return }
    const m = this.member as Member
    const code = this.#tryTimedOut ? 'EP_ERR_UPSTREAM_TIMEOUT' : classifyUpstreamError(err)
    const now = Date.now()
    m.backend.failures++
    m.failures++
    if (code === 'EP_ERR_UPSTREAM_CONNECT') m.backend.markUnreachable(now, this.pool.config.unreachableCooldown)
    // Every failed try, a retry hiding it or not (passive health, edge_upstream_errors_total for this member).
    if (this.hooks.error.length !== 0) this.hooks.emitError(this, code, err)
    if (!this.#gotHeaders || this.#discarding) {
      if (mayRetry(this, failureKind(code), now) && this.retryElsewhere(now)) return
      if (code === 'EP_ERR_UPSTREAM_CONNECT' && this.shard !== undefined) {
        this.fail('EP_ERR_SHARD_UNAVAILABLE', `shard "${this.shard.name}" unavailable: no reachable backend`)
        return
      }
      this.fail(code, code === 'EP_ERR_UPSTREAM_CONNECT'
        ? 'connection to the backend was refused'
        : code === 'EP_ERR_UPSTREAM_TIMEOUT'
          ? 'the backend did not answer in time'
          : code === 'EP_ERR_UPSTREAM_RESPONSE' ? 'the backend sent a malformed response' : 'the backend closed the connection')
      return
    }
    // Mid-response: end the client's transfer as broken, never as a complete (truncated) body.
    this.errorCode = code
    this.res.destroy(err)
    this.finish()
  }

  // --- client side and timers ---

  clientClosed (): void {
    // writableEnded, not writableFinished: an HTTP/2 response on a stream the client (or node, on a
    // content-length mismatch) reset reports writableFinished, and the upstream request was left running until
    // the route timeout, holding a backend connection and shutdown.
    if (this.#done || this.res.writableEnded) return
    this.errorCode ??= 'EP_ERR_CLIENT_ABORTED'
    const abort = this.#abort
    this.#abort = null
    if (abort !== null) abort(new EdgeError('EP_ERR_CLIENT_ABORTED', 'client went away'))
    else this.finish()
  }

  /** The route's whole-exchange timeout. */
  timedOut (): void {
    this.#timer = undefined
    if (this.#done) return
    const abort = this.#abort
    this.#abort = null
    const err = new EdgeError('EP_ERR_UPSTREAM_TIMEOUT', 'timeout')
    this.routeTimedOut = true
    // The try in flight failed with the exchange (undici's own onError comes after the end and is dropped).
    if (this.member !== undefined && this.errorCode !== 'EP_ERR_CLIENT_ABORTED' && this.hooks.error.length !== 0) this.hooks.emitError(this, 'EP_ERR_UPSTREAM_TIMEOUT', err)
    if (!this.#gotHeaders || this.#discarding) {
      this.fail('EP_ERR_UPSTREAM_TIMEOUT', `no complete answer within ${this.action.timeout} ms`)
      abort?.(err)
    } else {
      this.errorCode = 'EP_ERR_UPSTREAM_TIMEOUT'
      abort?.(err)
      this.res.destroy()
      this.finish()
    }
  }

  /** retry.per_try_timeout: gives up on this try only (before its response head), maybe retrying elsewhere. */
  tryTimedOut (): void {
    this.#tryTimer = undefined
    if (this.#done || (this.#gotHeaders && !this.#discarding)) return
    this.#tryTimedOut = true
    const abort = this.#abort
    this.#abort = null
    abort?.(new EdgeError('EP_ERR_UPSTREAM_TIMEOUT', 'per-try timeout'))
  }

  /** Answers with an error before any response byte went out. */
  fail (code: ErrorCode, message: string): void {
    this.errorCode = code
    const status = statusFor(code)
    this.status = status
    if (this.hooks.responseStart.length !== 0) this.hooks.emitResponseStart(this, status, undefined)
    sendError(this.res, status, code, message, this.requestId)
    this.finish()
  }

  private finish (): void {
    if (this.#done) return
    this.#done = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.durationMs = performance.now() - this.start
    this.#tee?.release()
    if (this.#watcher !== undefined) this.#watcher.onPrimaryEnd(this.#completed && this.errorCode === undefined)
    if (this.hooks.responseEnd.length !== 0) this.hooks.emitResponseEnd(this)
  }
}

/**
 * Milliseconds to two decimals ("0.07", "12.5"), built from integers: V8 prints small integers from a cache but
 * runs its shortest-decimal algorithm for every fraction, a cost on each response.
 */
export function ms2 (ms: number): string {
  const n = Math.round(ms * 100)
  if (n < 0 || !Number.isSafeInteger(n)) return String(Math.round(ms * 100) / 100)
  const frac = n % 100
  const whole = (n - frac) / 100
  if (frac === 0) return String(whole)
  return frac % 10 === 0 ? `${whole}.${frac / 10}` : `${whole}.${frac < 10 ? '0' : ''}${frac}`
}

/** A small text error answer naming what went wrong and the request id. */
export function sendError (res: ServerResponse, status: number, code: string, message: string, requestId: string): void {
  if (res.headersSent) { res.destroy(); return }
  const body = `${status} ${message}\ncode: ${code}\nrequest-id: ${requestId}\n`
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
    'cache-control': 'no-store',
  })
  res.end(body)
}
