// What the HTTP/2 side of an https listener needs beyond the HTTP/1.1 request path: a response class whose
// writeHead drops the reason phrase (HTTP/2 has none; Node warns on it), the request-body test (an HTTP/2 request
// has a body when its HEADERS frame did not end the stream, with or without content-length, as in gRPC), and
// trailers in both shapes undici reports them.
import http2, { type Http2ServerRequest } from 'node:http2'
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http'

export class EdgeH2Response extends http2.Http2ServerResponse {
  // The request path calls writeHead(status, statusText, flatHeaderArray) as for HTTP/1.1; the compat layer takes
  // a flat array too. Hop-by-hop headers, which HTTP/2 refuses, are already stripped by the Exchange.
  override writeHead (statusCode: number, a?: string | OutgoingHttpHeaders, b?: OutgoingHttpHeaders): this {
    return typeof a === 'string' || a === undefined ? super.writeHead(statusCode, b) : super.writeHead(statusCode, a)
  }
}

/** True for an HTTP/2 request whose stream carries DATA frames. */
export function h2HasBody (req: IncomingMessage): boolean {
  return (req as unknown as Http2ServerRequest).stream.endAfterHeaders !== true
}

/** undici's trailers: a flat [name, value, ...] array (HTTP/1.1) or a header object (HTTP/2). undefined = none. */
export function trailerRecord (trailers: unknown): Record<string, string> | undefined {
  let out: Record<string, string> | undefined
  if (Array.isArray(trailers)) {
    for (let i = 0; i + 1 < trailers.length; i += 2) (out ??= {})[String(trailers[i])] = String(trailers[i + 1])
  } else if (trailers !== null && typeof trailers === 'object') {
    for (const [k, v] of Object.entries(trailers as Record<string, unknown>)) {
      if (k.charCodeAt(0) === 58 || v === undefined) continue // pseudo-headers
      ;(out ??= {})[k] = Array.isArray(v) ? v.join(', ') : String(v)
    }
  }
  return out
}
