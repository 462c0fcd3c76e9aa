// The operator's view of exchanges, on the exchange hooks (proxy/forward/hooks.ts): request and upstream metrics,
// and the access log. Neither sits in the exchange's path; both read what the Exchange already measured.
import type { ErrorCode } from '../../config/errors.js'
import type { Exchange } from '../forward/exchange.js'
import type { ExchangeObserver } from '../forward/hooks.js'
import type { AccessLog } from './log.js'
import { errorKind, type EdgeMetrics } from './metrics.js'

/**
 * Requests by route and status, upstream latency per member, retries per pool, and upstream errors per failing
 * backend: every failed try counts against the backend that failed, also when a retry elsewhere hid it.
 */
export class MetricsObserver implements ExchangeObserver {
  readonly name = 'metrics'
  constructor (private readonly metrics: EdgeMetrics) {}

  onError (x: Exchange, code: ErrorCode): void {
    const m = x.member
    if (m !== undefined) this.metrics.countUpstreamError(x.pool.name, m.backend.url, errorKind(code))
  }

  onResponseEnd (x: Exchange): void {
    const metrics = this.metrics
    metrics.countRequest(x.route.name, x.status, x.durationMs / 1000, x.bodyBytes, bytesOut(x))
    if (x.member !== undefined && x.upstreamMs >= 0) metrics.observeUpstream(x.pool.name, x.member, x.upstreamMs / 1000)
    if (x.retries > 0) metrics.retries.labels(x.pool.name).inc(x.retries)
  }
}

/**
 * Bytes the client got: the socket's delta on HTTP/1.1 (head included); the body on HTTP/2 (streams share it).
 * An exchange runs only for a version the listener accepted, so major 2 here is a real HTTP/2 stream.
 */
function bytesOut (x: Exchange): number {
  return x.req.httpVersionMajor === 2 ? x.responseBodyBytes : x.socket.bytesWritten - x.bytesOutStart
}

/** One access-log line per exchange; `log()` is read at the end of each (a reload may switch the log). */
export class AccessLogObserver implements ExchangeObserver {
  readonly name = 'access-log'
  constructor (private readonly log: () => AccessLog | undefined) {}

  onResponseEnd (x: Exchange): void {
    const log = this.log()
    if (log === undefined) return
    log.write({
      requestId: x.requestId,
      clientIp: x.clientIp,
      method: x.req.method ?? '',
      host: x.req.headers.host ?? String(x.req.headers[':authority'] ?? ''),
      path: x.req.url ?? '',
      status: x.status,
      bytesIn: x.bodyBytes,
      bytesOut: bytesOut(x),
      durationMs: x.durationMs,
      route: x.route.name,
      backend: x.member?.backend.url ?? '',
      error: x.errorCode,
    })
  }
}
