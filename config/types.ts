// The resolved, frozen configuration: durations in ms, names resolved to objects. Nothing after load re-checks it.
import type { Address } from './address.js'
import type { HealthCheckConfig, LimitsConfig, OutlierConfig, RetryConfig } from './health.js'
import type { ShadowConfig } from './shadow.js'
import type { AlertsConfig, ScaleConfig } from './scale.js'
import type { FloatingIp, HaConfig, IpMode } from './ha.js'

export type { AlertsConfig, HealthCheckConfig, LimitsConfig, OutlierConfig, RetryConfig, ScaleConfig, ShadowConfig }
export type { FloatingIp, HaConfig, IpMode }

export type BalanceName = 'round_robin' | 'least_conn' | 'p2c' | 'hash'

export type HashKey =
  | { kind: 'header', name: string }
  | { kind: 'cookie', name: string }
  | { kind: 'query', name: string }
  | { kind: 'path', index: number }
  | { kind: 'ip' }

export interface BackendConfig {
  /** Normalised origin, e.g. "http://127.0.0.1:9001". The identity of a backend across reloads. */
  readonly url: string
  readonly weight: number
}

export interface ShardConfig {
  readonly name: string
  readonly backends: readonly BackendConfig[]
}

export interface PoolConfig {
  readonly name: string
  readonly balance: BalanceName
  readonly backends: readonly BackendConfig[]
  readonly hashKey: HashKey
  /** Present for a sharded pool; then `backends` is every shard's backends together. */
  readonly shards: readonly ShardConfig[] | undefined
  /** How long a backend that refused a connection is passed over before it is tried again. */
  readonly unreachableCooldown: number
  /** A tunnel name whose registered sessions join this pool as members. */
  readonly tunnel: string | undefined
  /** Active checks ([pools.NAME.health]); undefined = none. */
  readonly healthCheck: HealthCheckConfig | undefined
  readonly outlier: OutlierConfig
  readonly retry: RetryConfig
  readonly limits: LimitsConfig
  /** [pools.NAME.tls]: how https:// backends are verified. Absent = system CAs, the URL's host as the name. */
  readonly tls?: BackendTlsConfig
  /** [pools.NAME.shadow]: a copy of this pool's traffic goes to another pool and the answers are compared. */
  readonly shadow?: ShadowConfig
  /** [pools.NAME.scale]: scale events from observed latency; undefined = the pool is not scaled. */
  readonly scale?: ScaleConfig
}

export interface BackendTlsConfig {
  /** PEM of the CA(s) backend certificates must chain to (read at load); undefined = Node's default CAs. */
  readonly ca: string | undefined
  /** Name sent as SNI and checked against the backend certificate; undefined = the URL's host. */
  readonly servername: string | undefined
  /** Skip certificate verification (tests, self-signed lab backends). */
  readonly insecure: boolean
  /** Client certificate and key (PEM) the edge presents to backends that ask for one. */
  readonly cert: string | undefined
  readonly key: string | undefined
}

export interface HeaderMatch { readonly name: string, readonly value: string | null }

export interface RouteMatch {
  /** Lower-case exact host, or a wildcard "*.example.com" (one or more labels). */
  readonly host: string | undefined
  readonly pathPrefix: string | undefined
  readonly methods: ReadonlySet<string> | undefined
  readonly headers: readonly HeaderMatch[] | undefined
  /** TLS server name the client sent: lower-case exact or "*.example.com" (exactly one label). */
  readonly sni?: string
}

export type RouteAction =
  | {
    readonly kind: 'pool'
    readonly pool: PoolConfig
    readonly stripPrefix: boolean
    /** "client" keeps the client's Host, "backend" uses the backend URL's host, anything else is sent as is. */
    readonly hostHeader: string
    readonly timeout: number
    readonly connectTimeout: number
    readonly idleTimeout: number
  }
  | { readonly kind: 'redirect', readonly to: string, readonly status: number, readonly appendPath: boolean }
  | { readonly kind: 'respond', readonly status: number, readonly body: string, readonly contentType: string }

export type PoolRouteAction = Extract<RouteAction, { kind: 'pool' }>

export interface RouteConfig {
  readonly name: string
  readonly index: number
  /** Listener names the route applies to; undefined = every http and https listener (tls ones need naming). */
  readonly listeners: ReadonlySet<string> | undefined
  readonly match: RouteMatch
  readonly action: RouteAction
}

/** http and https route requests; tls routes whole connections by the ClientHello's server name. */
export type ListenerProtocol = 'http' | 'https' | 'tls'

export interface ListenerTlsConfig {
  /** Absolute cert/key paths in precedence order, or undefined when a directory is given. */
  readonly certificates: readonly { readonly cert: string, readonly key: string }[] | undefined
  readonly directory: string | undefined
  /** An absolute certificate path or a server name; undefined = the first certificate. */
  readonly defaultCertificate: string | undefined
  readonly alpn: readonly ('h2' | 'http/1.1')[]
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3'
  /** OpenSSL cipher string for TLS 1.2 (checked at load); default DEFAULT_CIPHERS, AEAD only. */
  readonly ciphers: string
  /** PEM of the CA client certificates must chain to (mTLS); undefined = no client certificates asked. */
  readonly clientCa: string | undefined
}

export interface ListenerConfig {
  readonly name: string
  readonly address: Address
  readonly protocol: ListenerProtocol
  /** Present for protocol = "https". */
  readonly tls?: ListenerTlsConfig
}

export interface TunnelConfig {
  readonly address: Address
  /** The HS256 key, resolved from "env:NAME", "file:PATH" or the literal. */
  readonly secret: Buffer
  readonly allow: readonly string[]
  readonly autoRoute: boolean
  /** wss:// when set: absolute paths of the certificate and key. */
  readonly tls: { readonly cert: string, readonly key: string } | undefined
  readonly heartbeat: number
  /** Streams one session may hold open; with stream_window it bounds what a session can make the edge buffer. */
  readonly maxStreams: number
  /** Receive window per stream, in bytes (64 KiB .. 16 MiB). */
  readonly streamWindow: number
}

export interface Config {
  /** Absolute path of the file it was loaded from ("" when loaded from text). */
  readonly file: string
  readonly server: {
    readonly workers: number
    readonly shutdownTimeout: number
    readonly maxHeaderBytes: number
    readonly headersTimeout: number
    readonly keepAliveTimeout: number
    /** HTTP/1.1 server of http/https listeners: "edge" (proxy/listen/h1.ts, the default) or "node" (node:http). */
    readonly http1Server: 'edge' | 'node'
    /** ms without a byte either way after which an upgraded splice or a TLS passthrough is closed; 0 = never. */
    readonly tunnelIdleTimeout: number
  }
  readonly admin: {
    readonly address: Address
    readonly token: string | undefined
    /** Host names (lower-case, no port) the admin answers for besides its listen host and the loopback names. */
    readonly hosts: readonly string[]
  }
  /** format: the event log's (stderr); "pretty" by default when stderr is a terminal, as Caddy's console encoder. */
  readonly log: { readonly access: string, readonly level: string, readonly format: 'json' | 'pretty' }
  readonly tunnel: TunnelConfig | undefined
  /** [ha]: this node's part in an active/passive group; undefined = standalone. */
  readonly ha: HaConfig | undefined
  readonly listeners: readonly ListenerConfig[]
  readonly routes: readonly RouteConfig[]
  readonly pools: ReadonlyMap<string, PoolConfig>
  /** [alerts]: where mailto: notifications of scale events go. */
  readonly alerts: AlertsConfig
}
