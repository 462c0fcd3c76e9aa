// Retry rules for one exchange: which failures and methods may be sent again, and the pool's retry budget. The
// Exchange asks `mayRetry` when a try failed or answered a retryable 5xx, and goes to another member on yes, as
// undici's retry interceptor wraps a handler's onError (lib/interceptor/retry.js): the decision lives here, the
// mechanics of sending again stay in the exchange.
import type { RetryOn } from '../../config/health.js'
import type { ErrorCode } from '../../config/errors.js'
import type { Member } from '../upstream/member.js'
import type { PoolRuntime, Shard } from '../upstream/pool.js'

/** Methods whose repetition has no further effect (RFC 9110 9.2.2): a failed try may be sent again. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

const RETRY_STATUS: Record<number, RetryOn | undefined> = { 500: '500', 502: '502', 503: '503', 504: '504' }

/** The retry.on kind of a backend's status (500, 502, 503, 504), or undefined. */
export function statusKind (status: number): RetryOn | undefined {
  return RETRY_STATUS[status]
}

/** The retry.on kind of a failed try, or undefined for failures that are never retried. */
export function failureKind (code: ErrorCode): RetryOn | undefined {
  switch (code) {
    case 'EP_ERR_UPSTREAM_CONNECT': return 'connect-failure'
    case 'EP_ERR_UPSTREAM_RESET': return 'reset'
    case 'EP_ERR_UPSTREAM_TIMEOUT': return 'timeout'
    default: return undefined
  }
}

/** What the rules read of a try (the Exchange is one). */
export interface RetryTry {
  readonly pool: PoolRuntime
  readonly method: string
  /** The request has a body (streamed: it cannot be replayed once sent). */
  readonly hasBody: boolean
  /** Some of the body was read by the transport (so some may have been sent). */
  readonly bodyRead: boolean
  /** Retries so far. */
  readonly retries: number
  readonly shard: Shard | undefined
  /** The member that failed. */
  readonly member: Member | undefined
}

/**
 * Whether a failed try may go to another member: the kind is listed in retry.on, attempts and the pool's budget
 * allow it, and nothing unrepeatable was sent (a refused connection sent nothing; otherwise only idempotent
 * methods without a streamed body, which cannot be replayed). With nowhere else to go, the backend's own answer
 * stands, and no budget is spent.
 */
export function mayRetry (t: RetryTry, kind: RetryOn | undefined, now: number): boolean {
  const retry = t.pool.config.retry
  if (kind === undefined || t.retries >= retry.attempts || !retry.on.has(kind)) return false
  if (kind === 'connect-failure') {
    if (t.bodyRead) return false
  } else if (t.hasBody || !IDEMPOTENT.has(t.method)) {
    return false
  }
  if (!t.pool.hasOther(now, t.shard, t.member)) return false
  return t.pool.state.budget.tryRetry(now)
}
