// The routing table of one config generation: routers per listener and pools at run time. Reload builds a new
// table and swaps one reference; requests already running keep the objects of their own generation.
import type { Config, ListenerConfig } from '../../config/types.js'
import type { BackendStore } from '../upstream/store.js'
import { PoolRuntime, type TunnelSource } from '../upstream/pool.js'
import { Router } from './router.js'

export class EdgeTable {
  readonly config: Config
  readonly routers: ReadonlyMap<string, Router>
  readonly pools: ReadonlyMap<string, PoolRuntime>

  constructor (config: Config, store: BackendStore, tunnels?: TunnelSource) {
    this.config = config
    const tlsListeners = new Set(config.listeners.filter(l => l.protocol === 'tls').map(l => l.name))
    const tlsPools = new Set<string>()
    for (const r of config.routes) {
      if (r.action.kind === 'pool' && r.listeners !== undefined && [...r.listeners].some(n => tlsListeners.has(n))) tlsPools.add(r.action.pool.name)
    }
    const pools = new Map<string, PoolRuntime>()
    for (const p of config.pools.values()) pools.set(p.name, new PoolRuntime(p, store, tunnels, tlsPools.has(p.name) ? 'tls' : 'http'))
    this.pools = pools
    const routers = new Map<string, Router>()
    for (const l of config.listeners) routers.set(l.name, new Router(routesFor(config, l)))
    this.routers = routers
  }

  /** Every backend URL this table uses (the store closes the rest). */
  backendUrls (): Set<string> {
    const s = new Set<string>()
    for (const p of this.config.pools.values()) for (const b of p.backends) s.add(b.url)
    return s
  }

  /** A pool runtime for a config pool object (routes hold config objects, tables hold runtimes). */
  pool (name: string): PoolRuntime | undefined {
    return this.pools.get(name)
  }
}

function routesFor (config: Config, l: ListenerConfig): Config['routes'] {
  // A route without `listener` serves every http and https listener; tls (passthrough) ones take only routes naming them.
  return config.routes.filter(r => r.listeners === undefined ? l.protocol !== 'tls' : r.listeners.has(l.name))
}
