// What the admin listener refuses before it looks at a token, and the sessions behind its login cookie.
//  - A Host that is not the admin's own name (DNS rebinding: a page on rebind.attacker.example whose name now
//    points at 127.0.0.1 would otherwise read /api/status and /metrics as the same origin).
//  - A state-changing call from another origin (a page the operator visits posting a form to /api/reload).
// curl and scripts send neither Origin nor Sec-Fetch-Site, so they pass as before.
import { randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import type { IncomingMessage } from 'node:http'
import { ADMIN_COOKIE } from '../forward/headers.js'

/**
 * The host names a request's Host may carry (lower-case, IPv6 without brackets): the listen host, the loopback
 * names and the configured `[admin] hosts`. The port is not compared: a rebinding page differs in its name, never
 * in the port (the browser sends the admin's), and `ssh -L 8000:127.0.0.1:9901` must keep working.
 */
export class HostPolicy {
  private readonly names: ReadonlySet<string>
  /** Bound to every address (0.0.0.0, ::): any IP literal is one of ours, and a rebinding page has a name. */
  private readonly anyIp: boolean
  constructor (listenHost: string, configured: readonly string[]) {
    const names = new Set(['localhost', '127.0.0.1', '::1', listenHost.toLowerCase()])
    for (const n of configured) names.add(n.toLowerCase())
    this.names = names
    this.anyIp = listenHost === '0.0.0.0' || listenHost === '::'
  }

  /** Undefined when `host` (a Host header value) names this admin, else why not. */
  refuse (host: string | undefined): string | undefined {
    // HTTP/1.0 may omit Host (node:http refuses a 1.1 request without one); no browser does, so no rebinding.
    if (host === undefined) return undefined
    const name = hostnameOf(host)
    if (name !== undefined && (this.names.has(name) || (this.anyIp && isIP(name) !== 0))) return undefined
    return `Host "${host}" is not a name of this admin listener (allowed: ${[...this.names].join(', ')}${this.anyIp ? ', any IP address' : ''}; add others to [admin] hosts)`
  }
}

/** The host part of a Host value ("a.example:9901" -> "a.example", "[::1]:9901" -> "::1"), lower-case. */
export function hostnameOf (host: string): string | undefined {
  let name = host
  let port = ''
  if (host.charCodeAt(0) === 91 /* [ */) {
    const end = host.indexOf(']')
    if (end === -1) return undefined
    name = host.slice(1, end)
    port = host.slice(end + 1)
  } else {
    const c = host.indexOf(':')
    if (c !== -1) { name = host.slice(0, c); port = host.slice(c) }
  }
  if (name === '' || (port !== '' && !/^:\d{1,5}$/.test(port))) return undefined
  return name.toLowerCase()
}

/**
 * Undefined when a state-changing request may come from where it does, else why not. A browser marks a request
 * from another page with Sec-Fetch-Site and sends Origin on every POST; the status page's own requests carry
 * Origin equal to the admin's origin (the Host they were sent to).
 */
export function crossOriginReason (req: IncomingMessage): string | undefined {
  const site = req.headers['sec-fetch-site']
  if (site === 'cross-site' || site === 'same-site') return `the request comes from another site (Sec-Fetch-Site: ${site})`
  const origin = req.headers.origin
  if (origin === undefined) return undefined
  if (!sameOrigin(origin, req.headers.host)) return `the request comes from another origin (Origin: ${origin})`
  return undefined
}

function sameOrigin (origin: string, host: string | undefined): boolean {
  if (host === undefined || !URL.canParse(origin)) return false
  const o = new URL(origin)
  if (o.protocol !== 'http:' && o.protocol !== 'https:') return false
  // Parse the Host under the Origin's scheme, so default ports ("x:80" and "http://x") compare equal.
  const h = URL.parse(`${o.protocol}//${host}`)
  return h !== null && h.host === o.host && h.pathname === '/' && h.search === '' && h.username === ''
}

const SESSION_TTL = 12 * 60 * 60 * 1000
const MAX_SESSIONS = 1000

/**
 * Login sessions: the cookie holds a random value, never the token, so a cookie that leaks (to a backend, a log)
 * does not give the token away and expires by itself. In memory: the admin listener runs in one process only
 * (the single process, or the cluster primary; workers never start it), so no process needs another's sessions.
 */
export class Sessions {
  // Insertion order is age order: the first key is the oldest.
  private readonly expiries = new Map<string, number>()
  constructor (readonly ttlMs = SESSION_TTL, readonly max = MAX_SESSIONS) {}

  /** A new session value (32 random bytes, base64url). Only a holder of the token gets here, so the bound is a backstop. */
  create (now = Date.now()): string {
    for (const [id, expiry] of this.expiries) {
      if (expiry > now && this.expiries.size < this.max) break
      this.expiries.delete(id)
    }
    const id = randomBytes(32).toString('base64url')
    this.expiries.set(id, now + this.ttlMs)
    return id
  }

  /** Whether a Cookie header carries a live session (every edge_admin pair is tried: another port may set one too). */
  valid (cookie: string | undefined, now = Date.now()): boolean {
    if (cookie === undefined) return false
    for (const part of cookie.split(';')) {
      const eq = part.indexOf('=')
      if (eq === -1 || part.slice(0, eq).trim() !== ADMIN_COOKIE) continue
      // A Map lookup, not a constant-time compare: the value is 256 random bits, so timing tells nothing useful.
      const id = part.slice(eq + 1).trim()
      const expiry = this.expiries.get(id)
      if (expiry === undefined) continue
      if (expiry > now) return true
      this.expiries.delete(id)
    }
    return false
  }

  /** The Set-Cookie value for a new session. */
  cookie (id: string): string {
    return `${ADMIN_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(this.ttlMs / 1000)}`
  }
}
