// A pool at run time: its members (shared backends with this pool's weights), its balancer, and its shards.
import type { IncomingHttpHeaders } from 'node:http'
import type { Config, HashKey, PoolConfig } from '../../config/types.js'
import { hash32 } from './backend.js'
import type { BackendStore, PoolState } from './store.js'
import { balancers, type Balancer } from './balancers/index.js'
import { usable } from './balancers/balancer.js'
import type { Member } from './member.js'
import { ConsistentHash, pickShard } from './balancers/hash.js'

export class Shard {
  readonly seed: number
  readonly balancer: Balancer = new ConsistentHash()
  constructor (readonly name: string, readonly members: readonly Member[]) {
    this.seed = hash32(name)
  }
}

export type Selection =
  | { readonly member: Member, readonly shard: Shard | undefined, readonly key: string }
  | { readonly member: undefined, readonly shard: Shard | undefined, readonly key: string }

export class PoolRuntime {
  readonly name: string
  readonly config: PoolConfig
  /** The pool's members in the registry, from every source (config, API, tunnel sessions...). */
  members: readonly Member[]
  readonly #store: BackendStore
  #seenMembers = -1
  readonly balancer: Balancer
  readonly shards: readonly Shard[] | undefined
  readonly usesKey: boolean
  /** Outlier detection and retry budget, shared with the pool's next generations. */
  readonly state: PoolState

  constructor (config: PoolConfig, store: BackendStore) {
    this.name = config.name
    this.#store = store
    this.config = config
    // The config file is one member source among others: its members go through the registry like the rest.
    const registry = store.members
    const byUrl = new Map<string, Member>()
    const slowStart = config.healthCheck?.slowStart ?? 0
    const maxInflight = config.limits.maxInflightPerBackend
    for (const b of config.backends) byUrl.set(b.url, registry.add(config.name, { url: b.url, weight: b.weight, source: 'config', slowStart, maxInflight }))
    // Members other sources added take this generation's pool settings too.
    for (const m of registry.list(config.name)) { m.slowStart = slowStart; m.maxInflight = maxInflight }
    this.members = registry.list(config.name)
    this.state = store.poolState(config)
    this.refresh()
    this.balancer = balancers[config.balance]()
    this.shards = config.shards?.map(s => new Shard(s.name, s.backends.map(b => byUrl.get(b.url) as Member)))
    this.usesKey = config.balance === 'hash'
  }

  /** Re-reads members when the registry changed (one integer compare when it did not). */
  refresh (): void {
    const registry = this.#store.members
    if (registry.version === this.#seenMembers) return
    this.#seenMembers = registry.version
    const list = registry.list(this.name)
    this.members = list
    this.state.outlier.update(list.map(m => m.backend.url))
  }

  /** Picks a member for a request; with shards, only inside the key's shard. */
  select (req: { readonly headers: IncomingHttpHeaders }, path: string, clientIp: string, now: number, exclude: Member | undefined, key?: string): Selection {
    this.refresh()
    const k = key ?? (this.usesKey ? hashKeyOf(this.config.hashKey, req, path, clientIp) : '')
    if (this.shards !== undefined) {
      const shard = pickShard(this.shards, k) as Shard
      return { member: shard.balancer.pick(shard.members, now, k, exclude), shard, key: k }
    }
    return { member: this.balancer.pick(this.members, now, k, exclude), shard: undefined, key: k }
  }

  /** Whether a member other than `exclude` could take a retry now; no side effects on the balancer. */
  hasOther (now: number, shard: Shard | undefined, exclude: Member | undefined): boolean {
    const list = shard === undefined ? this.members : shard.members
    for (const m of list) if (usable(m, now, exclude)) return true
    return false
  }

  /** After a failed pick: true when members are up but all at their in-flight limit (503 overloaded). */
  saturated (now: number, shard: Shard | undefined): boolean {
    const list = shard === undefined ? this.members : shard.members
    let full = false
    for (const m of list) {
      if (m.available(now)) return false
      if (m.full(now)) full = true
    }
    return full
  }
}

/** Pools behind tls (passthrough) routes: their tunnel members are the sessions' tls: claims, not http ones. */
export function tlsPools (config: Config): Set<string> {
  const tlsListeners = new Set(config.listeners.filter(l => l.protocol === 'tls').map(l => l.name))
  const out = new Set<string>()
  for (const r of config.routes) {
    if (r.action.kind === 'pool' && r.listeners !== undefined && [...r.listeners].some(n => tlsListeners.has(n))) out.add(r.action.pool.name)
  }
  return out
}

/** The request's hash key; an absent key is the empty string (documented: it always lands on one shard). */
export function hashKeyOf (hk: HashKey, req: { readonly headers: IncomingHttpHeaders }, path: string, clientIp: string): string {
  switch (hk.kind) {
    case 'ip':
      return clientIp
    case 'header': {
      const v = req.headers[hk.name]
      return v === undefined ? '' : Array.isArray(v) ? v.join(',') : v
    }
    case 'cookie':
      return cookieValue(req.headers.cookie, hk.name)
    case 'query':
      return queryValue(path, hk.name)
    case 'path':
      return pathSegment(path, hk.index)
  }
}

function cookieValue (cookie: string | undefined, name: string): string {
  if (cookie === undefined) return ''
  let i = 0
  while (i < cookie.length) {
    while (cookie.charCodeAt(i) === 32) i++
    let end = cookie.indexOf(';', i)
    if (end === -1) end = cookie.length
    // Look for '=' inside this pair only: a pair without one ("flag; id=7") must not borrow the next pair's.
    const eq = cookie.indexOf('=', i)
    if (eq !== -1 && eq < end && eq - i === name.length && cookie.startsWith(name, i)) return cookie.slice(eq + 1, end).trim()
    i = end + 1
  }
  return ''
}

function queryValue (path: string, name: string): string {
  const q = path.indexOf('?')
  if (q === -1) return ''
  const v = new URLSearchParams(path.slice(q + 1)).get(name)
  return v ?? ''
}

function pathSegment (path: string, index: number): string {
  let end = path.indexOf('?')
  if (end === -1) end = path.length
  let seg = 0
  let i = 0
  while (i < end) {
    if (path.charCodeAt(i) === 47) { i++; continue }
    let j = path.indexOf('/', i)
    if (j === -1 || j > end) j = end
    if (++seg === index) return path.slice(i, j)
    i = j
  }
  return ''
}
