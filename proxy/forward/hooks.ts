// Exchange hooks: named moments of one exchange that observers (metrics, the access log, passive health, latency,
// and the mirror, proxy/mirror/) subscribe to without sitting in its path. The model is undici's diagnostics channels
// (`undici:request:create`, `:headers`, `:error`), kept per Edge instead of process-global, with fastify's names.
//
// Cost: each moment is a frozen array of the observers that implement it, replaced on (un)subscribe. The
// Exchange checks `length !== 0` before it calls emit, so a moment nobody listens to is one property load and
// a compare, and no moment allocates anything per request (no event object, no closure: observers get the
// Exchange itself and the values at hand as arguments).
import type { Logger } from 'pino'
import type { ErrorCode } from '../../config/errors.js'
import type { Exchange } from './exchange.js'

/**
 * One observer; it implements the moments it cares about. Per attempt (as undici, where a retry is a new
 * dispatch): onRequest, onResponseStart (of a backend's head), onError. Once per exchange: onResponseEnd, and
 * onResponseStart of the edge's own error answer. Hooks run synchronously, in subscription order, and must not
 * write to the response; one that throws is caught, counted and logged, and the exchange goes on.
 */
export interface ExchangeObserver {
  /** Names the observer in the log when one of its hooks throws. */
  readonly name: string
  /**
   * The exchange is about to go upstream: route, pool and member (`x.member`) are chosen; `x.retries` is the
   * attempt's index. On the first attempt an observer may ask for a copy of the request body (`x.teeBody`).
   */
  onRequest? (x: Exchange): void
  /**
   * A response head: the backend's (`headers`: its raw header list as undici read it) or the edge's own error
   * answer (`headers` undefined, `x.errorCode` set). A retryable 5xx that will be retried elsewhere shows here
   * too (passive health counts it); another onRequest follows it.
   */
  onResponseStart? (x: Exchange, status: number, headers: readonly Buffer[] | undefined): void
  /** The exchange is over (answered, failed or abandoned): `x.status`, `x.errorCode`, bytes, durations, retries. */
  onResponseEnd? (x: Exchange): void
  /**
   * An upstream attempt failed (`x.member` is the member that failed), whether or not a retry hides it. Not
   * called for a client that went away.
   */
  onError? (x: Exchange, code: ErrorCode, err: Error): void
}

type Moment = 'onRequest' | 'onResponseStart' | 'onResponseEnd' | 'onError'

export interface ExchangeHooksDeps {
  readonly log: Logger
  /** Counts one observer failure (edge_internal_errors_total{where="hook"}). */
  readonly countFault?: () => void
}

export class ExchangeHooks {
  /** Observers per moment, in subscription order. Read by the Exchange; replaced, never mutated. */
  request: readonly ExchangeObserver[] = []
  responseStart: readonly ExchangeObserver[] = []
  responseEnd: readonly ExchangeObserver[] = []
  error: readonly ExchangeObserver[] = []
  /** Request-body tees created (an observer asked for a copy): 0 while nobody asks, the path is untouched. */
  teesCreated = 0
  readonly #deps: ExchangeHooksDeps
  /** "observer.moment" pairs already logged: a throwing hook is logged once, then only counted. */
  readonly #logged = new Set<string>()

  constructor (deps: ExchangeHooksDeps) {
    this.#deps = deps
  }

  /** Adds an observer to each moment it implements; returns the matching unsubscribe. */
  subscribe (o: ExchangeObserver): () => void {
    if (o.onRequest !== undefined) this.request = [...this.request, o]
    if (o.onResponseStart !== undefined) this.responseStart = [...this.responseStart, o]
    if (o.onResponseEnd !== undefined) this.responseEnd = [...this.responseEnd, o]
    if (o.onError !== undefined) this.error = [...this.error, o]
    return () => { this.unsubscribe(o) }
  }

  unsubscribe (o: ExchangeObserver): void {
    this.request = this.request.filter(e => e !== o)
    this.responseStart = this.responseStart.filter(e => e !== o)
    this.responseEnd = this.responseEnd.filter(e => e !== o)
    this.error = this.error.filter(e => e !== o)
  }

  emitRequest (x: Exchange): void {
    for (const o of this.request) {
      try { (o.onRequest as NonNullable<ExchangeObserver['onRequest']>).call(o, x) } catch (err) { this.#fault(o, 'onRequest', err) }
    }
  }

  emitResponseStart (x: Exchange, status: number, headers: readonly Buffer[] | undefined): void {
    for (const o of this.responseStart) {
      try { (o.onResponseStart as NonNullable<ExchangeObserver['onResponseStart']>).call(o, x, status, headers) } catch (err) { this.#fault(o, 'onResponseStart', err) }
    }
  }

  emitResponseEnd (x: Exchange): void {
    for (const o of this.responseEnd) {
      try { (o.onResponseEnd as NonNullable<ExchangeObserver['onResponseEnd']>).call(o, x) } catch (err) { this.#fault(o, 'onResponseEnd', err) }
    }
  }

  emitError (x: Exchange, code: ErrorCode, err: Error): void {
    for (const o of this.error) {
      try { (o.onError as NonNullable<ExchangeObserver['onError']>).call(o, x, code, err) } catch (e) { this.#fault(o, 'onError', e) }
    }
  }

  #fault (o: ExchangeObserver, moment: Moment, err: unknown): void {
    try {
      this.#deps.countFault?.()
      const kind = `${String(o.name)}.${moment}`
      if (this.#logged.has(kind)) return
      this.#logged.add(kind)
      this.#deps.log.error({ err, observer: o.name, hook: moment }, 'exchange observer threw (the exchange goes on; logged once per observer and hook, counted in edge_internal_errors_total{where="hook"})')
    } catch { /* a log or counter that throws must not reach the exchange either */ }
  }
}
