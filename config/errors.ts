// Every EP_ERR_* code the edge reports, from the proxy, the tunnel packer and the config loader alike, and the one
// map from a code to its HTTP status. It lives in config/, the bottom layer that every folder may import
// (config/ imports neither proxy/, health/ nor packer/), and imports nothing itself, so no layer has to reach up
// for its errors. README's "Error codes" table is kept in step with this list by test/errors.test.ts.

export const errorCodes = [
  'EP_ERR_CONFIG',
  'EP_ERR_LISTEN',
  'EP_ERR_NO_ROUTE',
  'EP_ERR_NO_HEALTHY_BACKEND',
  'EP_ERR_SHARD_UNAVAILABLE',
  'EP_ERR_UPSTREAM_CONNECT',
  'EP_ERR_UPSTREAM_TIMEOUT',
  'EP_ERR_UPSTREAM_RESPONSE',
  'EP_ERR_UPSTREAM_RESET',
  'EP_ERR_BAD_REQUEST',
  'EP_ERR_HEADERS_TOO_LARGE',
  'EP_ERR_OVERLOADED',
  'EP_ERR_CLIENT_ABORTED',
  'EP_ERR_TLS_CERT',
  'EP_ERR_HTTP_VERSION',
  'EP_ERR_INTERNAL',
  // Tunnels (packer/): a session's or stream's failure, and the endpoint's refusals of a tunnel client.
  'EP_ERR_TUNNEL_PROTOCOL',
  'EP_ERR_TUNNEL_FLOW_CONTROL',
  'EP_ERR_TUNNEL_TIMEOUT',
  'EP_ERR_TUNNEL_FLOOD',
  'EP_ERR_TUNNEL_CLOSED',
  'EP_ERR_TUNNEL_GOAWAY',
  'EP_ERR_TUNNEL_STREAM_RESET',
  'EP_ERR_TUNNEL_REFUSED',
  'EP_ERR_TUNNEL_AUTH',
  'EP_ERR_TOKEN_MALFORMED',
  'EP_ERR_TOKEN_BAD_SIGNATURE',
  'EP_ERR_TOKEN_EXPIRED',
  'EP_ERR_TUNNEL_SECRET',
] as const

export type ErrorCode = (typeof errorCodes)[number]

export class EdgeError extends Error {
  readonly code: ErrorCode
  constructor (code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'EdgeError'
    this.code = code
  }
}

/**
 * The HTTP status each code answers with; undefined for codes no HTTP client is ever answered with (a tunnel
 * session's own failures: a request they cost is answered with the upstream code they caused).
 */
export const statusByCode: { readonly [C in ErrorCode]: number | undefined } = {
  EP_ERR_CONFIG: 500,
  EP_ERR_LISTEN: undefined,
  EP_ERR_NO_ROUTE: 404,
  EP_ERR_NO_HEALTHY_BACKEND: 503,
  EP_ERR_SHARD_UNAVAILABLE: 503,
  EP_ERR_UPSTREAM_CONNECT: 502,
  EP_ERR_UPSTREAM_TIMEOUT: 504,
  EP_ERR_UPSTREAM_RESPONSE: 502,
  EP_ERR_UPSTREAM_RESET: 502,
  EP_ERR_BAD_REQUEST: 400,
  EP_ERR_HEADERS_TOO_LARGE: 431,
  EP_ERR_OVERLOADED: 503,
  EP_ERR_CLIENT_ABORTED: 499,
  EP_ERR_TLS_CERT: 500,
  EP_ERR_HTTP_VERSION: 505,
  EP_ERR_INTERNAL: 500,
  EP_ERR_TUNNEL_PROTOCOL: undefined,
  EP_ERR_TUNNEL_FLOW_CONTROL: undefined,
  EP_ERR_TUNNEL_TIMEOUT: undefined,
  EP_ERR_TUNNEL_FLOOD: undefined,
  EP_ERR_TUNNEL_CLOSED: undefined,
  EP_ERR_TUNNEL_GOAWAY: undefined,
  EP_ERR_TUNNEL_STREAM_RESET: undefined,
  EP_ERR_TUNNEL_REFUSED: 404,
  EP_ERR_TUNNEL_AUTH: 401,
  EP_ERR_TOKEN_MALFORMED: 401,
  EP_ERR_TOKEN_BAD_SIGNATURE: 401,
  EP_ERR_TOKEN_EXPIRED: 401,
  EP_ERR_TUNNEL_SECRET: undefined,
}

/** The HTTP status for `code`; a code without one (see statusByCode) can only get here by a bug, hence 500. */
export function statusFor (code: ErrorCode): number {
  return statusByCode[code] ?? 500
}

const LISTEN_REASONS: Readonly<Record<string, string>> = {
  EADDRINUSE: 'address already in use (another process, or an edge already running, holds it: stop it or pick another port)',
  EACCES: 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)',
  EADDRNOTAVAIL: 'no interface of this machine has that address',
}

/** A listen() that failed, as one line naming what listens, where and why: `listener "web" cannot listen on ...`. */
export function listenError (what: string, address: string, err: unknown): EdgeError {
  const code = (err as { code?: string } | undefined)?.code
  const reason = (code !== undefined ? LISTEN_REASONS[code] : undefined) ?? (err instanceof Error ? err.message : String(err))
  return new EdgeError('EP_ERR_LISTEN', `${what} cannot listen on ${address}: ${reason}`, { cause: err })
}
