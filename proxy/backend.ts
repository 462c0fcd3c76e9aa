// A backend is one upstream origin with its keep-alive connection pool and its live numbers.
// Backends live in a BackendStore that outlives config reloads, so connections and stats carry over.
import type { Dispatcher } from 'undici'
import type { BackendTlsConfig } from '../config/types.js'
import { createDispatcher, transportKey } from './transport.js'

export interface BackendOptions {
  readonly connectTimeout: number
  readonly keepAliveTimeout: number
  readonly maxHeaderSize: number
}

const EWMA_DECAY = 0.2

export class Backend {
  readonly url: string
  readonly host: string
  /** Stable per-URL seed for rendezvous hashing. */
  readonly seed: number
  readonly dispatcher: Dispatcher
  inflight = 0
  /** Exponentially weighted moving average of time to first byte, in ms (0 = no sample yet). */
  ewma = 0
  requests = 0
  failures = 0
  /** Passive: after a refused connection the backend is passed over until this time (ms since epoch). */
  unreachableUntil = 0
  /** Active health verdict; health checks set it, true until told otherwise. */
  healthy = true
  draining = false
  /** The pool `tls` settings this backend's connections use (https only). */
  readonly tls: BackendTlsConfig | undefined
  readonly transport: string

  constructor (url: string, opts: BackendOptions, tls?: BackendTlsConfig) {
    this.url = url
    this.host = new URL(url).host
    this.seed = hash32(url)
    this.tls = tls
    this.transport = transportKey(tls)
    this.dispatcher = createDispatcher(url, opts, tls)
  }

  available (now: number): boolean {
    return this.healthy && !this.draining && this.unreachableUntil <= now
  }

  markUnreachable (now: number, cooldown: number): void {
    this.unreachableUntil = now + cooldown
  }

  observeLatency (ms: number): void {
    this.ewma = this.ewma === 0 ? ms : this.ewma + EWMA_DECAY * (ms - this.ewma)
  }

  close (): Promise<void> {
    return this.dispatcher.close()
  }
}

export class BackendStore {
  readonly #backends = new Map<string, Backend>()
  #tls: ReadonlyMap<string, BackendTlsConfig> = new Map()
  constructor (private readonly opts: BackendOptions) {}

  /** TLS settings by backend URL for the next table; get() replaces a backend whose settings changed. */
  setTls (byUrl: ReadonlyMap<string, BackendTlsConfig>): void {
    this.#tls = byUrl
  }

  get (url: string): Backend {
    let b = this.#backends.get(url)
    const tls = this.#tls.get(url)
    if (b === undefined || b.transport !== transportKey(tls)) {
      // The old one finishes what it has in flight (requests of the previous table), then closes.
      if (b !== undefined) void b.close().catch(() => {})
      b = new Backend(url, this.opts, tls)
      this.#backends.set(url, b)
    }
    return b
  }

  find (url: string): Backend | undefined {
    return this.#backends.get(url)
  }

  all (): IterableIterator<Backend> {
    return this.#backends.values()
  }

  /** Closes (gracefully: in-flight requests finish) every backend not in `keep`. */
  async retain (keep: ReadonlySet<string>): Promise<void> {
    const closing: Promise<void>[] = []
    for (const [url, b] of this.#backends) {
      if (!keep.has(url)) {
        this.#backends.delete(url)
        closing.push(b.close().catch(() => {}))
      }
    }
    await Promise.all(closing)
  }

  async close (): Promise<void> {
    await this.retain(new Set())
  }
}

/** FNV-1a over UTF-16 code units, finished with murmur3's fmix32 for avalanche. */
export function hash32 (s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return fmix32(h)
}

export function fmix32 (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}
