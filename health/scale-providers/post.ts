// POSTing an event as JSON with retries and backoff, off the proxy's path: the webhook provider and notify use it.
import type { Logger } from 'pino'

export interface PostOptions {
  readonly attempts?: number
  /** First retry after this long, doubling. */
  readonly backoffMs?: number
  readonly timeoutMs?: number
}

/** Resolves true once a 2xx came back; false after the last attempt failed (logged). Never rejects. */
export async function postJson (url: string, body: unknown, log: Logger, opts: PostOptions = {}, isClosed: () => boolean = () => false): Promise<boolean> {
  const attempts = opts.attempts ?? 5
  const backoff = opts.backoffMs ?? 250
  const text = JSON.stringify(body)
  let last = ''
  for (let i = 0; i < attempts && !isClosed(); i++) {
    if (i > 0) await new Promise(resolve => { setTimeout(resolve, backoff * 2 ** (i - 1)).unref() })
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'edge-proxy-scaler' },
        body: text,
        signal: AbortSignal.timeout(opts.timeoutMs ?? 5_000),
      })
      await res.arrayBuffer().catch(() => {})
      if (res.ok) return true
      last = `HTTP ${res.status}`
    } catch (err) {
      last = (err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message
    }
  }
  log.warn({ url, attempts, reason: last }, 'scale: POST failed after retries')
  return false
}

/** Runs deliveries in the background, at most `limit` waiting (the oldest is dropped): never blocks the caller. */
export class Deliveries {
  readonly #running = new Set<Promise<unknown>>()
  #waiting = 0
  constructor (private readonly limit = 100) {}

  run (fn: () => Promise<unknown>): boolean {
    if (this.#waiting >= this.limit) return false
    this.#waiting++
    const p = fn().catch(() => {}).finally(() => { this.#waiting--; this.#running.delete(p) })
    this.#running.add(p)
    return true
  }

  /** Waits for what is in flight, at most `ms`. */
  async settle (ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([Promise.all(this.#running), new Promise(resolve => { timer = setTimeout(resolve, ms) })])
    clearTimeout(timer)
  }
}
