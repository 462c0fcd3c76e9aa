// How the edge talks to a backend, by URL scheme: http:// and https:// through an undici Pool (https with the
// pool's `tls` settings), h2c:// through one multiplexed HTTP/2 cleartext connection (gRPC-style backends), and
// tcp:// not at all (tls passthrough connects those itself), so a tcp:// backend gets a dispatcher that refuses.
import type { ConnectionOptions } from 'node:tls'
import { isIP } from 'node:net'
import { Dispatcher, H2CClient, Pool, buildConnector } from 'undici'
import type { BackendTlsConfig } from '../../config/types.js'

export interface BackendOptions {
  readonly connectTimeout: number
  readonly keepAliveTimeout: number
  readonly maxHeaderSize: number
}


/** Streams per HTTP/2 connection to an h2c backend; more requests queue in undici. */
const H2C_STREAMS = 128

/** node:tls options for connecting to an https backend with a pool's settings (also used by upgrades). */
export function tlsConnectOptions (tls: BackendTlsConfig | undefined): ConnectionOptions {
  if (tls === undefined) return {}
  return {
    ...(tls.ca === undefined ? {} : { ca: tls.ca }),
    ...(tls.servername === undefined ? {} : { servername: tls.servername }),
    ...(tls.insecure ? { rejectUnauthorized: false } : {}),
    ...(tls.cert === undefined || tls.key === undefined ? {} : { cert: tls.cert, key: tls.key }),
  }
}

/** Identity of a transport setting: a backend whose settings changed on reload gets a new dispatcher. */
export function transportKey (tls: BackendTlsConfig | undefined, connectTimeout = 0): string {
  return `${connectTimeout}${tls === undefined ? '' : JSON.stringify(tls)}`
}

export class RefusingDispatcher extends Dispatcher {
  override dispatch (_opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    handler.onError?.(new Error('a tcp:// backend takes tls passthrough connections, not HTTP requests'))
    return false
  }

  override close (): Promise<void>
  override close (callback: () => void): void
  override close (callback?: () => void): Promise<void> | void {
    if (callback === undefined) return Promise.resolve()
    callback()
  }

  override destroy (): Promise<void>
  override destroy (err: Error | null): Promise<void>
  override destroy (callback: () => void): void
  override destroy (err: Error | null, callback: () => void): void
  override destroy (a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    const cb = typeof a === 'function' ? a : b
    if (cb === undefined) return Promise.resolve()
    cb()
  }
}

export function createDispatcher (url: string, opts: BackendOptions, tls: BackendTlsConfig | undefined): Dispatcher {
  if (url.startsWith('tcp:')) return new RefusingDispatcher()
  if (url.startsWith('h2c:')) {
    return new H2CClient(`http:${url.slice(4)}`, {
      maxConcurrentStreams: H2C_STREAMS,
      pipelining: H2C_STREAMS,
      connectTimeout: opts.connectTimeout,
      keepAliveTimeout: opts.keepAliveTimeout,
      maxHeaderSize: opts.maxHeaderSize,
      headersTimeout: 0,
      bodyTimeout: 0,
    })
  }
  return new Pool(url, {
    connections: null,
    pipelining: 1,
    connectTimeout: opts.connectTimeout,
    keepAliveTimeout: opts.keepAliveTimeout,
    keepAliveMaxTimeout: 10 * 60_000,
    maxHeaderSize: opts.maxHeaderSize,
    headersTimeout: 0,
    bodyTimeout: 0,
    strictContentLength: true,
    ...(url.startsWith('https:') ? { connect: backendConnector(url, tls, opts.connectTimeout) } : {}),
  })
}

/**
 * undici takes the TLS server name from each request's Host header, which here is the client's: a backend is
 * identified by its URL, so the name sent and verified is the pool's `servername`, else the URL's host.
 */
function backendConnector (url: string, tls: BackendTlsConfig | undefined, timeout: number): buildConnector.connector {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '')
  const servername = tls?.servername ?? (isIP(host) === 0 ? host : undefined)
  const base = buildConnector({ ...tlsConnectOptions(tls), timeout } as buildConnector.BuildOptions)
  // '' (an IP backend without a configured name) makes undici send no SNI and verify against the IP.
  return (options, callback) => base({ ...options, servername: servername ?? '' }, callback)
}
