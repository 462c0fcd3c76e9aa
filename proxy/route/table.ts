// The routing table of one config generation: its resolver and its pools at run time. Reload builds a new table
// and swaps one reference; requests already running keep the objects of their own generation.
import type { Config } from '../../config/types.js'
import type { BackendStore } from '../upstream/store.js'
import { PoolRuntime } from '../upstream/pool.js'
import { Resolver, type RuntimeRoutes } from './resolve.js'

export class EdgeTable {
  readonly config: Config
  readonly resolver: Resolver
  readonly pools: ReadonlyMap<string, PoolRuntime>

  /** `runtime`: the routes that come and go at run time (tunnel claims), shared by every generation. */
  constructor (config: Config, store: BackendStore, runtime?: RuntimeRoutes) {
    this.config = config
    const pools = new Map<string, PoolRuntime>()
    for (const p of config.pools.values()) pools.set(p.name, new PoolRuntime(p, store))
    this.pools = pools
    this.resolver = new Resolver(config, pools, runtime)
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
