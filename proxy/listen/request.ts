// What the listeners read off a request before routing it: one pass over its headers (hop-by-hop dropped, the
// forwarded set appended, Host and framing checked), its path in one spelling, its client address. Shared by
// plain and TLS HTTP listeners, HTTP/2 streams and upgrades.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { RouteConfig } from '../../config/types.js'
import { connectionNamed, forwardedFor, newRequestId, stripNamed, withoutAdminCookie } from '../forward/headers.js'
import { normalizeHost } from '../route/router.js'
import { h2HasBody } from './h2.js'

const VIA = '1.1 edge-proxy'

/** What the header scan found, reused by the upgrade path. */
export interface ScannedRequest {
  host: string
  rawHost: string
  requestId: string
  headers: string[]
  hasBody: boolean
  bad: string | undefined
}

/**
 * HTTP/1.x requests name version 1.0 or 1.1; llhttp also lets "HTTP/0.9" and "HTTP/2.0" request lines through, and
 * the rest of the edge must never mistake one for an HTTP/2 stream. Undefined when the version is served.
 */
export function versionRefusal (req: IncomingMessage, h2: boolean): string | undefined {
  if (h2 || (req.httpVersionMajor === 1 && req.httpVersionMinor <= 1)) return undefined
  return `HTTP/${req.httpVersionMajor}.${req.httpVersionMinor} is not served here: send HTTP/1.1 (or HTTP/2 over TLS with ALPN)`
}

/** Bytes allowed in a Host value (RFC 3986 reg-name, IPv4, IP-literal, port): no space, "@", "/", "?", "#", "\\"... */
const HOST_CHAR = new Uint8Array(128)
for (const c of 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&\'()*+,;=%:[]') HOST_CHAR[c.charCodeAt(0)] = 1

function hostValid (v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i)
    if (c >= 128 || HOST_CHAR[c] === 0) return false
  }
  return true
}

/**
 * One pass over rawHeaders: keeps end-to-end headers, drops hop-by-hop ones, and appends the forwarded set.
 * `keepUpgrade` keeps Connection/Upgrade for WebSocket handshakes; `h2` says the request is an HTTP/2 stream.
 */
export function scanRequest (req: IncomingMessage, proto: string, clientIp: string, keepUpgrade: boolean, h2 = false): ScannedRequest {
  const raw = req.rawHeaders
  const out: string[] = []
  let rawHost = ''
  // Absolute-form ("GET http://a.example/x"): RFC 9112 3.2.2 says its authority replaces Host. Route on it and
  // forward origin-form, or routing (host, path_prefix) and the backend would read two different requests.
  let authority: string | undefined
  let bad: string | undefined
  const target = req.url ?? '/'
  if (target.charCodeAt(0) !== 47 /* / */ && target !== '*') {
    const u = URL.canParse(target) ? new URL(target) : undefined
    if (u !== undefined && (u.protocol === 'http:' || u.protocol === 'https:') && u.host !== '') {
      // RFC 9110 4.2.4: userinfo in an http(s) URI is refused, not routed on.
      if (u.username !== '' || u.password !== '') bad = 'the request target must not carry userinfo ("user@")'
      authority = u.host
      req.url = `${u.pathname}${u.search}`
    } else {
      bad = 'the request target must be a path or an absolute http(s) URL'
    }
  } else if (target === '*' && req.method !== 'OPTIONS') {
    bad = 'the request target "*" is only for OPTIONS'
  }
  // Route and forward one spelling of the path: "/a/../admin", "//admin" and "/%61dmin" are "/admin", so a
  // path_prefix route cannot be bypassed by a spelling the backend would normalise anyway.
  const url = req.url ?? '/'
  if (url.charCodeAt(0) === 47 && needsNormalizing(url)) req.url = normalizePath(url)
  let xff: string | undefined
  let forwarded: string | undefined
  let via: string | undefined
  let requestId: string | undefined
  let connection: string | undefined
  let te: string | undefined
  let contentLength: string | undefined
  let upgrade: string | undefined
  let hosts = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const value = raw[i + 1] as string
    // HTTP/2 pseudo-headers (:method, :path, :scheme, :authority) are not headers; :authority is the Host.
    if (name.charCodeAt(0) === 58) { if (name === ':authority') authority = value; continue }
    switch (name.length) {
      // "te: trailers" is the one TE HTTP/2 allows; gRPC servers expect it, so it goes on from HTTP/2 clients.
      case 2: if (name.toLowerCase() === 'te') { if (keepUpgrade || (value === 'trailers' && h2)) out.push(name, value); continue } break
      case 3: if (name.toLowerCase() === 'via') { via = via === undefined ? value : `${via}, ${value}`; continue } break
      case 4: if (name.toLowerCase() === 'host') { rawHost = value; hosts++; continue } break
      // Expect: 100-continue is answered by this edge (node:http sends 100 Continue); undici refuses to send it.
      case 6: {
        const l = name.toLowerCase()
        if (l === 'expect') continue
        // The admin's session cookie reaches this port too (cookies ignore ports): never hand it to a backend.
        if (l === 'cookie' && value.indexOf('edge_admin=') !== -1) {
          const rest = withoutAdminCookie(value)
          if (rest !== '') out.push(name, rest)
          continue
        }
        break
      }
      case 7: {
        const l = name.toLowerCase()
        if (l === 'upgrade') { upgrade = value; continue }
        if (l === 'trailer') continue
        break
      }
      case 9: if (name.toLowerCase() === 'forwarded') { forwarded = forwarded === undefined ? value : `${forwarded}, ${value}`; continue } break
      case 10: {
        const l = name.toLowerCase()
        if (l === 'connection') { connection = value; continue }
        if (l === 'keep-alive') continue
        break
      }
      case 12: if (name.toLowerCase() === 'x-request-id') { requestId = value; continue } break
      case 14: if (name.toLowerCase() === 'content-length') contentLength = value; break
      case 15: {
        const l = name.toLowerCase()
        if (l === 'x-forwarded-for') { xff = xff === undefined ? value : `${xff}, ${value}`; continue }
        break
      }
      case 16: {
        const l = name.toLowerCase()
        if (l === 'x-forwarded-host' || l === 'proxy-connection') continue
        break
      }
      case 17: {
        const l = name.toLowerCase()
        if (l === 'transfer-encoding') { te = te === undefined ? value : `${te}, ${value}`; continue }
        if (l === 'x-forwarded-proto') continue
        break
      }
      // Set by the edge from the TLS handshake only; a client's own copy would be a forgery.
      case 23: if (name.toLowerCase() === 'x-forwarded-server-name') continue; break
      case 19: {
        const l = name.toLowerCase()
        if (l === 'proxy-authorization' || l === 'proxy-authenticate') continue
        break
      }
    }
    out.push(name, value)
  }
  // RFC 9112 3.2: one Host, and an HTTP/1.1 request must have it; a second one is read differently by the router, the
  // log and the backend. Its value is an authority: no space, userinfo or path.
  if (hosts > 1) bad = 'a request has one Host field'
  else if (hosts === 0 && authority === undefined && !h2 && req.httpVersionMinor >= 1) bad = 'an HTTP/1.1 request needs a Host field'
  if (authority !== undefined) rawHost = authority
  if (rawHost !== '' && !hostValid(rawHost)) bad = `the Host ${JSON.stringify(rawHost)} is not a valid authority`
  // Node's parser already refuses CL+TE, repeated CL, bad chunk sizes and obs-fold; it accepts a TE list ending
  // in chunked ("gzip, chunked"), which a backend could read differently once we re-frame the body: refuse it.
  if (te !== undefined && te.trim().toLowerCase() !== 'chunked') bad = `unsupported Transfer-Encoding "${te}": only "chunked" is accepted`
  // RFC 9112 6.1: chunked framing is not HTTP/1.0's; refused as nginx does, so the connection cannot stay in step.
  else if (te !== undefined && !h2 && req.httpVersionMinor === 0) bad = 'Transfer-Encoding is not allowed in an HTTP/1.0 request'
  // Headers the client's Connection header names are hop-by-hop too.
  const named = connectionNamed(connection)
  if (named !== undefined) stripNamed(out, named)
  if (keepUpgrade && upgrade !== undefined) out.push('connection', 'upgrade', 'upgrade', upgrade)
  const id = requestId ?? newRequestId()
  const host = normalizeHost(rawHost)
  out.push(
    'host', rawHost,
    'x-forwarded-for', xff === undefined ? clientIp : `${xff}, ${clientIp}`,
    'x-forwarded-proto', proto,
    'x-forwarded-host', rawHost,
    'forwarded', `${forwarded === undefined ? '' : `${forwarded}, `}for=${forwardedFor(clientIp)};host=${rawHost === '' ? '""' : quoteIfNeeded(rawHost)};proto=${proto}`,
    'via', via === undefined ? VIA : `${via}, ${VIA}`,
    'x-request-id', id,
  )
  const serverName = (req.socket as TLSSocket).servername
  if (typeof serverName === 'string' && serverName !== '') out.push('x-forwarded-server-name', serverName)
  const hasBody = te !== undefined || (contentLength !== undefined && contentLength !== '0') || (h2 && h2HasBody(req))
  return { host, rawHost, requestId: id, headers: out, hasBody, bad }
}

const SUSPECT = /\/\.|\/\/|%/

function needsNormalizing (url: string): boolean {
  const q = url.indexOf('?')
  return SUSPECT.test(q === -1 ? url : url.slice(0, q))
}

function isUnreserved (c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 46 || c === 95 || c === 126
}

/** RFC 3986 6.2.2: decode unreserved %XX, resolve "." and ".." segments, merge repeated slashes; query kept as is. */
export function normalizePath (url: string): string {
  const q = url.indexOf('?')
  let path = q === -1 ? url : url.slice(0, q)
  const query = q === -1 ? '' : url.slice(q)
  path = path.replace(/%([0-9A-Fa-f]{2})/g, (m, hex: string) => {
    const c = parseInt(hex, 16)
    return isUnreserved(c) ? String.fromCharCode(c) : m.toUpperCase()
  })
  const out: string[] = []
  const segs = path.split('/')
  for (let i = 1; i < segs.length; i++) {
    const seg = segs[i] as string
    const last = i === segs.length - 1
    if (seg === '..') { out.pop(); if (last) out.push('') } else if (seg === '.') { if (last) out.push('') } else if (seg === '' && !last) { /* merge "//" */ } else out.push(seg)
  }
  return `/${out.join('/')}${query}`
}

// The last host quoted: consecutive requests nearly always carry the same one.
let lastRaw = ''
let lastQuoted = ''
function quoteIfNeeded (v: string): string {
  if (v === lastRaw) return lastQuoted
  lastQuoted = /^[A-Za-z0-9.\-_~!$&'*+^`|]+$/.test(v) ? v : `"${v.replace(/["\\]/g, '\\$&')}"`
  lastRaw = v
  return lastQuoted
}

export const kClosing = Symbol('edgeClosing')
export type ClosingSocket = Socket & { [kClosing]?: boolean }

/**
 * The answer to this request closes its connection, and nothing pipelined after it is served (RFC 9112 9.6): the
 * edge's own server stops reading by itself; node:http has already parsed what follows, so the socket is marked.
 */
export function closeAfter (req: IncomingMessage, res: ServerResponse): void {
  res.shouldKeepAlive = false
  ;(req.socket as ClosingSocket)[kClosing] = true
}

export function clientIpOf (socket: Socket): string {
  const ip = socket.remoteAddress ?? ''
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip
}

export function rewritePath (url: string, route: RouteConfig, strip: boolean): string {
  if (!strip || route.match.pathPrefix === undefined) return url
  const prefix = route.match.pathPrefix
  const cut = prefix.endsWith('/') ? prefix.length - 1 : prefix.length
  const rest = url.slice(cut)
  return rest === '' || rest.charCodeAt(0) === 63 /* ? */ ? `/${rest}` : rest
}
