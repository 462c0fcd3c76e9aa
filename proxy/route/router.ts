// The router: a pure match(request) -> route over a frozen table. Exact hosts are one Map lookup; wildcard and
// host-less routes are merged in file order (first match wins) and cached per host in a bounded LRU.
import type { IncomingHttpHeaders } from 'node:http'
import { LRUCache } from 'lru-cache'
import type { RouteConfig } from '../../config/types.js'
import { sniMatches, sniOf } from '../tls/names.js'

function wildcardMatches (pattern: string, host: string): boolean {
  // "*.example.com" matches one or more labels before ".example.com", never "example.com" itself.
  const suffix = pattern.slice(1)
  return host.length > suffix.length && host.endsWith(suffix)
}

export class Router {
  readonly #byHost = new Map<string, readonly RouteConfig[]>()
  readonly #generic: readonly RouteConfig[]
  readonly #hasWildcards: boolean
  readonly #cache = new LRUCache<string, readonly RouteConfig[]>({ max: 4096 })

  constructor (routes: readonly RouteConfig[]) {
    const generic = routes.filter(r => r.match.host === undefined || r.match.host.startsWith('*.'))
    this.#generic = generic
    this.#hasWildcards = generic.some(r => r.match.host !== undefined)
    const exactHosts = new Set<string>()
    for (const r of routes) if (r.match.host !== undefined && !r.match.host.startsWith('*.')) exactHosts.add(r.match.host)
    for (const h of exactHosts) {
      this.#byHost.set(h, routes.filter(r => r.match.host === h || (r.match.host === undefined) || (r.match.host.startsWith('*.') && wildcardMatches(r.match.host, h))))
    }
  }

  /** Candidates for a host, in file order. */
  candidates (host: string): readonly RouteConfig[] {
    const exact = this.#byHost.get(host)
    if (exact !== undefined) return exact
    if (!this.#hasWildcards) return this.#generic
    let list = this.#cache.get(host)
    if (list === undefined) {
      list = this.#generic.filter(r => r.match.host === undefined || wildcardMatches(r.match.host, host))
      this.#cache.set(host, list)
    }
    return list
  }

  match (host: string, path: string, method: string, req: { readonly headers: IncomingHttpHeaders, readonly socket?: unknown }): RouteConfig | undefined {
    const list = this.candidates(host)
    for (let i = 0; i < list.length; i++) {
      const r = list[i] as RouteConfig
      const m = r.match
      if (m.pathPrefix !== undefined && !path.startsWith(m.pathPrefix)) continue
      if (m.methods !== undefined && !m.methods.has(method)) continue
      if (m.headers !== undefined && !headersMatch(m.headers, req.headers)) continue
      if (m.sni !== undefined && !sniMatches(m.sni, sniOf(req.socket))) continue
      return r
    }
    return undefined
  }
}

function headersMatch (wanted: RouteConfig['match']['headers'] & object, headers: IncomingHttpHeaders): boolean {
  for (let i = 0; i < wanted.length; i++) {
    const w = wanted[i] as { name: string, value: string | null }
    const v = headers[w.name]
    if (v === undefined) return false
    if (w.value !== null && (Array.isArray(v) ? !v.includes(w.value) : v !== w.value)) return false
  }
  return true
}

/** "Example.COM:8080" -> "example.com"; "[::1]:80" -> "[::1]". */
export function normalizeHost (raw: string | undefined): string {
  if (raw === undefined) return ''
  let end = raw.length
  if (raw.charCodeAt(0) === 91) { // '['
    const close = raw.indexOf(']')
    end = close === -1 ? raw.length : close + 1
  } else {
    const colon = raw.lastIndexOf(':')
    if (colon !== -1) end = colon
  }
  let host = end === raw.length ? raw : raw.slice(0, end)
  if (host.endsWith('.')) host = host.slice(0, -1)
  return host.toLowerCase()
}
