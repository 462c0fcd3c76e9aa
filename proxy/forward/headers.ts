// Header work on the hot path: hop-by-hop removal and the forwarded headers, over flat [name, value, ...] arrays.

/** Hop-by-hop headers (RFC 9110 7.6.1) plus those we always set ourselves. Lower-case. */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
])

export function isHopByHop (lowerName: string): boolean {
  return HOP_BY_HOP.has(lowerName)
}

/** Names listed in a Connection header value (lower-case), or undefined when it names none beyond the usual. */
export function connectionNamed (value: string | undefined): Set<string> | undefined {
  // The usual values name nothing: answer without splitting (this runs on every request and response).
  if (value === undefined || value === 'keep-alive' || value === 'close' || value === 'Keep-Alive' || value === 'Upgrade' || value === 'upgrade') return undefined
  let out: Set<string> | undefined
  for (const part of value.split(',')) {
    const n = part.trim().toLowerCase()
    if (n === '' || n === 'close' || n === 'keep-alive' || n === 'upgrade') continue
    ;(out ??= new Set()).add(n)
  }
  return out
}

/** Removes, in place, the [name, value] pairs of a flat header list whose (lower-cased) name is in `named`. */
export function stripNamed (out: string[], named: ReadonlySet<string>): void {
  let w = 0
  for (let r = 0; r < out.length; r += 2) {
    if (named.has((out[r] as string).toLowerCase())) continue
    out[w++] = out[r] as string
    out[w++] = out[r + 1] as string
  }
  out.length = w
}

/** `Forwarded` node syntax: IPv6 addresses are quoted and bracketed. */
export function forwardedFor (ip: string): string {
  return ip.includes(':') ? `"[${ip}]"` : ip
}

let counter = 0
const prefix = Math.floor(Math.random() * 0x7fffffff).toString(36)
// A cluster worker is its own process, so the pid read at module load is the one every id carries.
const idPrefix = `${prefix}-${process.pid.toString(36)}-`
/** A request id unique within this process and very likely across processes. */
export function newRequestId (): string {
  counter = (counter + 1) | 0
  return idPrefix + (counter >>> 0).toString(36)
}

/** The admin listener's session cookie; the edge never forwards it (cookies are not isolated by port). */
export const ADMIN_COOKIE = 'edge_admin'

/**
 * A Cookie value without its `edge_admin` pairs, the others kept in order ("" when none is left). Called only
 * when the value contains "edge_admin=", so other requests pay one indexOf.
 */
export function withoutAdminCookie (value: string): string {
  let out = ''
  let start = 0
  while (start < value.length) {
    let end = value.indexOf(';', start)
    if (end === -1) end = value.length
    const pair = value.slice(start, end).trim()
    const eq = pair.indexOf('=')
    const name = eq === -1 ? pair : pair.slice(0, eq).trimEnd()
    if (pair !== '' && name !== ADMIN_COOKIE) out = out === '' ? pair : `${out}; ${pair}`
    start = end + 1
  }
  return out
}
