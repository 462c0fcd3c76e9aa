// The request resolver: listener + request -> route + pool, one function for the HTTP listener, upgrades and the
// tls (passthrough) listener alike. The file's routes come first, in file order; run-time entries (a tunnel's claimed
// names under auto_route, and whatever source adds routes next) are entries of the same kind, looked up by host or
// server name, that beat only the routes without a host (or sni) match: a catch-all must not hide a claimed name.
//
// Cost per request: the router's match, at most one run-time lookup, one Map get. Nothing is allocated: each
// route's Resolved entry is built once with its table.
import type { IncomingHttpHeaders } from 'node:http'
import type { Config, ListenerConfig, RouteConfig } from '../../config/types.js'
import { sniMatches } from '../tls/names.js'
import type { PoolRuntime } from '../upstream/pool.js'
import { Router } from './router.js'

/** A route and, for a pool action, the pool runtime it sends to. */
export interface Resolved {
  readonly route: RouteConfig
  readonly pool: PoolRuntime | undefined
}

/** Routes that come and go at run time (tunnel claims with auto_route): looked up by name, never by scanning. */
export interface RuntimeRoutes {
  /** The entry serving an HTTP Host, or undefined. */
  byHost (host: string): Resolved | undefined
  /** The entry serving a tls passthrough server name, or undefined. */
  bySni (sni: string | undefined): Resolved | undefined
}

export class Resolver {
  readonly #routers = new Map<string, Router>()
  /** tls listeners' routes, in file order (matched on server name only). */
  readonly #sniRoutes = new Map<string, readonly RouteConfig[]>()
  readonly #entries = new Map<RouteConfig, Resolved>()
  readonly #runtime: RuntimeRoutes | undefined

  constructor (config: Config, pools: ReadonlyMap<string, PoolRuntime>, runtime?: RuntimeRoutes) {
    this.#runtime = runtime
    for (const r of config.routes) {
      this.#entries.set(r, Object.freeze({ route: r, pool: r.action.kind === 'pool' ? pools.get(r.action.pool.name) : undefined }))
    }
    for (const l of config.listeners) {
      const routes = routesFor(config, l)
      if (l.protocol === 'tls') this.#sniRoutes.set(l.name, routes)
      else this.#routers.set(l.name, new Router(routes))
    }
  }

  /** An HTTP request (or an Upgrade) on listener `listener`: its route and pool, or undefined (404). */
  resolve (listener: string, host: string, path: string, method: string, req: { readonly headers: IncomingHttpHeaders, readonly socket?: unknown }): Resolved | undefined {
    const router = this.#routers.get(listener)
    if (router === undefined) return undefined // not an http(s) listener
    const route = router.match(host, path, method, req)
    if ((route === undefined || route.match.host === undefined) && this.#runtime !== undefined) {
      const entry = this.#runtime.byHost(host)
      if (entry !== undefined) return entry
    }
    return route === undefined ? undefined : this.#entries.get(route)
  }

  /** A passthrough connection on tls listener `listener` by its ClientHello's server name. */
  resolveSni (listener: string, sni: string | undefined): Resolved | undefined {
    const list = this.#sniRoutes.get(listener)
    if (list === undefined) return undefined // not a tls listener
    let route: RouteConfig | undefined
    for (const r of list) if (r.match.sni === undefined || sniMatches(r.match.sni, sni)) { route = r; break }
    if ((route === undefined || route.match.sni === undefined) && this.#runtime !== undefined) {
      const entry = this.#runtime.bySni(sni)
      if (entry !== undefined) return entry
    }
    return route === undefined ? undefined : this.#entries.get(route)
  }
}

function routesFor (config: Config, l: ListenerConfig): Config['routes'] {
  // A route without `listener` serves every http and https listener; tls (passthrough) ones take only routes naming them.
  return config.routes.filter(r => r.listeners === undefined ? l.protocol !== 'tls' : r.listeners.has(l.name))
}
