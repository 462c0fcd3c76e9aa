// Passive health and latency on the exchange hooks: every backend answer feeds the member's latency (EWMA for
// p2c, the p50/p95/p99 windows) and the pool's outlier detector (5xx counts as a failure, anything else as a
// success); every failed try before its answer began counts as a failure too (a refused connection as the
// outlier detector's status 0). Hooks run synchronously before the retry decision, so an ejection this answer
// causes is already seen when the exchange looks for another member.
import type { ErrorCode } from '../../config/errors.js'
import type { Exchange } from './exchange.js'
import type { ExchangeObserver } from './hooks.js'

export class PassiveHealth implements ExchangeObserver {
  readonly name = 'passive-health'

  onResponseStart (x: Exchange, status: number, headers: readonly Buffer[] | undefined): void {
    const m = x.member
    if (headers === undefined || m === undefined) return // the edge's own answer: no backend spoke
    const now = Date.now()
    m.backend.observeLatency(x.upstreamMs)
    m.latency.record(x.upstreamMs, now)
    x.pool.state.outlier.observe(m.backend.url, status, now)
  }

  onError (x: Exchange, code: ErrorCode): void {
    const m = x.member
    // The route's whole budget ran out: that is not this try's failure alone (only tries count).
    if (m === undefined || x.routeTimedOut) return
    if (code === 'EP_ERR_UPSTREAM_CONNECT') x.pool.state.outlier.observe(m.backend.url, 0, Date.now())
    else if (!x.responseStarted) x.pool.state.outlier.failure(m.backend.url, Date.now(), code)
  }
}
