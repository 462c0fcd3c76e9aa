// A backend is one upstream origin with its keep-alive connection pool and its live numbers.
// Backends live in a BackendStore (store.ts) that outlives config reloads, so connections and stats carry over.
import type { Duplex } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { BackendTlsConfig } from '../../config/types.js'
import { createDispatcher, transportKey, type BackendOptions } from './transport.js'

const EWMA_DECAY = 0.2

/** How a source reaches the service behind a backend it owns (packer streams over a tunnel session). */
export interface StreamOpener {
  /** The client whose request opens the next pooled connection (it travels in the stream's OPEN). */
  client: string
  /** Opens a raw stream to the service for a client (Upgrade requests, tls passthrough). */
  openRaw (clientIp: string, servername?: string): Duplex
}

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

  /**
   * Set for a backend whose source opens its connections (a tunnel session) instead of dialing its URL. Such a
   * backend belongs to its source, which closes it; reloads and the store never do.
   */
  readonly opener: StreamOpener | undefined

  /** The pool `tls` settings this backend's connections use (https only). */
  readonly tls: BackendTlsConfig | undefined
  readonly transport: string

  constructor (url: string, opts: BackendOptions, tls?: BackendTlsConfig, dispatcher?: Dispatcher, host?: string, opener?: StreamOpener) {
    this.url = url
    this.opener = opener
    this.host = host ?? new URL(url).host
    this.seed = hash32(url)
    this.tls = tls
    this.transport = transportKey(tls, opts.connectTimeout)
    this.dispatcher = dispatcher ?? createDispatcher(url, opts, tls)
  }

  reachable (now: number): boolean {
    return this.unreachableUntil <= now
  }

  markUnreachable (now: number, cooldown: number): void {
    this.unreachableUntil = now + cooldown
  }

  /** The EWMA p2c reads; the percentile windows are per pool member (Member.latency). */
  observeLatency (ms: number): void {
    this.ewma = this.ewma === 0 ? ms : this.ewma + EWMA_DECAY * (ms - this.ewma)
  }

  close (): Promise<void> {
    return this.dispatcher.close()
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
