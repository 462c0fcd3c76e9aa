// What every load generator reports for one run, whatever the tool.
export interface LoadResult {
  readonly tool: string
  /** Completed requests (any status). */
  readonly requests: number
  /** Measured duration of the load, in seconds. */
  readonly durationS: number
  readonly rps: number
  /** Latency percentiles in ms. */
  readonly p50: number
  readonly p99: number
  /** Connection errors and timeouts. */
  readonly errors: number
  /** Responses with a status outside 2xx/3xx. */
  readonly non2xx: number
  /** Response bytes read (headers and bodies). autocannon counts whole 2xx responses only; wrk and the close client count every byte. */
  readonly bytes: number
  /** CPU time the load generator used for this run, in ms (user + system). */
  readonly cpuMs: number
}

/** The options the harness hands a load-generator child, as JSON on argv. */
export interface LoadSpec {
  readonly url: string
  readonly method: 'GET' | 'POST'
  readonly bodyBytes: number
  readonly connections: number
  /** autocannon's overallRate (req/s over all connections), when the scenario sets one. */
  readonly rate?: number
  readonly durationS: number
  /** Host header, when not the URL's. */
  readonly host?: string
  /** For https URLs: the SNI name to send, and the CA file that signed the targets' certificate. */
  readonly tls?: { readonly servername: string, readonly ca: string }
}
