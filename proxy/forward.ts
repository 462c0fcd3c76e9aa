// One Exchange per proxied request: it is the undici dispatch handler (the low-level, raw-header API, which
// neither parses nor copies headers), streams both ways with backpressure, and turns failures into answers.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import type { RouteConfig } from '../config/types.js'
import type { Member } from './balancers/balancer.js'
import type { PoolRuntime, Shard } from './pool.js'
import { classifyUpstreamError, EdgeError, statusFor, type ErrorCode } from './errors.js'
import { connectionNamed, isHopByHop } from './headers.js'
import { trailerRecord } from './h2.js'

export interface ExchangeObserver {
  /** Called once per request when the exchange is over (response finished, failed or abandoned). */
  onExchangeEnd (x: Exchange): void
}

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

export type PoolAction = Extract<RouteConfig['action'], { kind: 'pool' }>

const MAX_CONNECT_RETRIES = 2

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
  readonly observer: ExchangeObserver

  member: Member | undefined
  shard: Shard | undefined
  key = ''
  status = 0
  errorCode: ErrorCode | undefined
  upstreamStart = 0
  upstreamMs = -1
  durationMs = 0
  retries = 0
  bytesInStart: number
  bytesOutStart: number
  #abort: ((err?: Error) => void) | null = null
  #resume: (() => void) | null = null
  #timer: NodeJS.Timeout | undefined
  #done = false
  #gotHeaders = false

  constructor (req: IncomingMessage, res: ServerResponse, route: RouteConfig, action: PoolAction, pool: PoolRuntime,
    requestId: string, clientIp: string, start: number, path: string, upstreamHeaders: string[], hasBody: boolean,
    observer: ExchangeObserver) {
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
    this.observer = observer
    const sock = req.socket
    this.bytesInStart = sock.bytesRead
    this.bytesOutStart = sock.bytesWritten
    ;(res as WithExchange)[kExchange] = this
    res.on('close', onResClose)
    if (action.timeout > 0) this.#timer = setTimeout(onTimeout, action.timeout, this)
  }

  /** Chooses a member and dispatches; answers 503 itself when none is available. */
  run (now: number): void {
    const sel = this.pool.select(this.req, this.req.url ?? '/', this.clientIp, now, this.member, this.retries > 0 ? this.key : undefined)
    this.shard = sel.shard
    this.key = sel.key
    if (sel.member === undefined) {
      if (sel.shard !== undefined) this.fail('EP_ERR_SHARD_UNAVAILABLE', `shard "${sel.shard.name}" unavailable: no reachable backend`)
      else this.fail('EP_ERR_NO_HEALTHY_BACKEND', `no live backend in pool "${this.pool.name}"`)
      return
    }
    this.member = sel.member
    this.dispatchTo(sel.member)
  }

  private dispatchTo (m: Member): void {
    const backend = m.backend
    const headers = this.upstreamHeaders
    if (this.action.hostHeader !== 'client') {
      // The Host entry is always the last-but-... one we pushed; find and replace it.
      for (let i = 0; i < headers.length; i += 2) {
        if (headers[i] === 'host') { headers[i + 1] = this.action.hostHeader === 'backend' ? backend.host : this.action.hostHeader; break }
      }
    }
    backend.inflight++
    backend.requests++
    this.upstreamStart = performance.now()
    backend.dispatcher.dispatch({
      path: this.path,
      method: this.req.method as Dispatcher.HttpMethod,
      headers,
      body: this.hasBody ? this.req : null,
      headersTimeout: 0,
      bodyTimeout: this.action.idleTimeout,
      idempotent: false,
    }, this)
  }

  // --- undici handler (legacy raw API) ---

  onConnect (abort: (err?: Error) => void): void {
    if (this.#done) { abort(new EdgeError('EP_ERR_CLIENT_ABORTED', 'client went away')); return }
    this.#abort = abort
  }

  onHeaders (statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (this.#done) return false
    if (statusCode < 200) return true // 1xx informational: Node answers 100-continue itself
    const now = performance.now()
    this.#gotHeaders = true
    this.upstreamMs = now - this.upstreamStart
    const m = this.member as Member
    m.backend.observeLatency(this.upstreamMs)
    this.#resume = resume
    this.status = statusCode
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
    const edgeMs = now - this.start - this.upstreamMs
    const timing = `edge;dur=${round2(edgeMs)}, upstream;dur=${round2(this.upstreamMs)}`
    out.push('server-timing', serverTiming === undefined ? timing : `${serverTiming}, ${timing}`)
    if (!hasRequestId) out.push('x-request-id', this.requestId)
    const res = this.res
    try {
      res.writeHead(statusCode, statusText, out)
    } catch (err) {
      this.#abort?.(err as Error)
      return false
    }
    return true
  }

  onData (chunk: Buffer): boolean {
    if (this.#done) return false
    if (this.res.write(chunk)) return true
    if (this.res.listenerCount('drain') === 0) this.res.on('drain', onResDrain)
    return false
  }

  resumeUpstream (): void {
    this.#resume?.()
  }

  onComplete (trailers: string[] | null): void {
    ;(this.member as Member).backend.inflight--
    if (this.#done) return
    // An HTTP/1.1 client can take trailers only on a chunked response; an HTTP/2 one always (gRPC's grpc-status).
    const t = trailers === null || !(this.res.chunkedEncoding || this.req.httpVersionMajor === 2) ? undefined : trailerRecord(trailers)
    if (t !== undefined) this.res.addTrailers(t)
    this.res.end()
    this.finish()
  }

  onError (err: Error): void {
    // Every dispatch ends in exactly one onComplete or onError: the in-flight count is released here.
    const m = this.member as Member
    m.backend.inflight--
    if (this.#done) return
    if (this.errorCode === 'EP_ERR_CLIENT_ABORTED') { this.finish(); return }
    const code = classifyUpstreamError(err)
    if (!this.#gotHeaders) {
      this.#abort = null
      if (code === 'EP_ERR_UPSTREAM_CONNECT') {
        m.backend.markUnreachable(Date.now(), this.pool.config.unreachableCooldown)
        m.backend.failures++
        // A refused connection sent nothing, so another member can take a body-less request.
        if (!this.hasBody && this.retries < MAX_CONNECT_RETRIES) {
          this.retries++
          const now = Date.now()
          const sel = this.pool.select(this.req, this.req.url ?? '/', this.clientIp, now, m, this.key)
          if (sel.member !== undefined) {
            this.member = sel.member
            this.dispatchTo(sel.member)
            return
          }
        }
        if (this.shard !== undefined) {
          this.fail('EP_ERR_SHARD_UNAVAILABLE', `shard "${this.shard.name}" unavailable: no reachable backend`)
          return
        }
        this.fail(code, 'connection to the backend was refused')
        return
      }
      m.backend.failures++
      this.fail(code, code === 'EP_ERR_UPSTREAM_TIMEOUT' ? 'the backend did not answer in time' : code === 'EP_ERR_UPSTREAM_RESPONSE' ? 'the backend sent a malformed response' : 'the backend closed the connection')
      return
    }
    // Mid-response: end the client's transfer as broken, never as a complete (truncated) body.
    m.backend.failures++
    this.errorCode = code
    this.res.destroy(err)
    this.finish()
  }

  // --- client side ---

  clientClosed (): void {
    if (this.#done) return
    if (!this.res.writableFinished) {
      this.errorCode ??= 'EP_ERR_CLIENT_ABORTED'
      const abort = this.#abort
      this.#abort = null
      if (abort !== null) abort(new EdgeError('EP_ERR_CLIENT_ABORTED', 'client went away'))
      else this.finish()
    }
  }

  timedOut (): void {
    this.#timer = undefined
    if (this.#done) return
    const abort = this.#abort
    this.#abort = null
    if (!this.#gotHeaders) {
      this.fail('EP_ERR_UPSTREAM_TIMEOUT', `no complete answer within ${this.action.timeout} ms`)
      abort?.(new EdgeError('EP_ERR_UPSTREAM_TIMEOUT', 'timeout'))
    } else {
      this.errorCode = 'EP_ERR_UPSTREAM_TIMEOUT'
      abort?.(new EdgeError('EP_ERR_UPSTREAM_TIMEOUT', 'timeout'))
      this.res.destroy()
      this.finish()
    }
  }

  /** Answers with an error before any response byte went out. */
  fail (code: ErrorCode, message: string): void {
    this.errorCode = code
    const status = statusFor(code)
    this.status = status
    sendError(this.res, status, code, message, this.requestId)
    this.finish()
  }

  private finish (): void {
    if (this.#done) return
    this.#done = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.durationMs = performance.now() - this.start
    this.observer.onExchangeEnd(this)
  }
}

function stripNamed (out: string[], named: Set<string>): void {
  let w = 0
  for (let r = 0; r < out.length; r += 2) {
    if (named.has((out[r] as string).toLowerCase())) continue
    out[w++] = out[r] as string
    out[w++] = out[r + 1] as string
  }
  out.length = w
}

function round2 (ms: number): number {
  return Math.round(ms * 100) / 100
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
