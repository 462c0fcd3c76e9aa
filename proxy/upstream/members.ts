// The member registry: the one place pool membership and member state change. Every source (the config file, the
// admin API, tunnel sessions, and next the scaler and the cluster store) adds and removes members through add() and
// remove(); health checks, outlier ejection and drain change a member only through setStatus(). Pools read list()
// and rebuild their member array only when `version` moved; whoever else cares subscribes (Envoy's
// addMemberUpdateCb).
import type { Backend } from './backend.js'
import { Member } from './member.js'

/** Where a member came from; `config` members are replaced by reloads, the others outlive them. */
export type MemberSource = 'config' | 'api' | 'tunnel' | 'scale' | 'cluster'

export interface MemberSpec {
  readonly url: string
  readonly weight: number
  readonly source: MemberSource
  /** The backend to use (a tunnel session's); default: the store's backend for `url`. */
  readonly backend?: Backend
  /** Initial health verdict (a member of a health-checked pool that the API adds waits for its first pass). */
  readonly healthy?: boolean
  readonly slowStart?: number
  readonly maxInflight?: number
}

/** A change of member state: health verdict, recovery time (slow start), outlier ejection, drain. */
export interface MemberPatch {
  healthy?: boolean
  recoveredAt?: number
  ejectedUntil?: number
  draining?: boolean
}

export type MemberChange =
  | { readonly kind: 'added', readonly pool: string, readonly member: Member }
  | { readonly kind: 'removed', readonly pool: string, readonly member: Member }
  | { readonly kind: 'status', readonly pool: string, readonly member: Member, readonly patch: MemberPatch }

export type MemberListener = (change: MemberChange) => void

const NO_MEMBERS: readonly Member[] = Object.freeze([])

export class MemberRegistry {
  /** Moves whenever a member is added or removed anywhere (not on state changes): pools compare one integer. */
  version = 0
  /** pool name -> url -> member */
  readonly #pools = new Map<string, Map<string, Member>>()
  readonly #listeners: MemberListener[] = []

  /** `backendOf(url)` gives the shared backend for a URL (the BackendStore's). */
  constructor (private readonly backendOf: (url: string) => Backend) {}

  /**
   * Adds a member, or updates the one the pool already has for that URL (weight, backend, source), keeping its
   * health, ejection and drain state. A config entry takes over a member another source added (the file wins).
   */
  add (pool: string, spec: MemberSpec): Member {
    let byUrl = this.#pools.get(pool)
    if (byUrl === undefined) { byUrl = new Map(); this.#pools.set(pool, byUrl) }
    const backend = spec.backend ?? this.backendOf(spec.url)
    let m = byUrl.get(spec.url)
    const added = m === undefined
    if (m === undefined) {
      m = new Member(backend, spec.weight)
      if (spec.healthy !== undefined) m.healthy = spec.healthy
      byUrl.set(spec.url, m)
      this.version++
    } else if (m.backend !== backend) {
      m.backend = backend // replaced (new tls settings); the member keeps its state
    }
    m.weight = spec.weight
    if (added || spec.source === 'config' || m.source !== 'config') m.source = spec.source
    if (spec.slowStart !== undefined) m.slowStart = spec.slowStart
    if (spec.maxInflight !== undefined) m.maxInflight = spec.maxInflight
    if (added) this.#emit({ kind: 'added', pool, member: m })
    return m
  }

  /** Removes a pool's member; with `source`, only if that source owns it (a reload never removes an API member). */
  remove (pool: string, url: string, source?: MemberSource): boolean {
    const byUrl = this.#pools.get(pool)
    const m = byUrl?.get(url)
    if (byUrl === undefined || m === undefined || (source !== undefined && m.source !== source)) return false
    byUrl.delete(url)
    this.version++
    this.#emit({ kind: 'removed', pool, member: m })
    return true
  }

  /** Removes `url` from every pool (a tunnel session is gone). */
  removeEverywhere (url: string): void {
    for (const pool of this.#pools.keys()) this.remove(pool, url)
  }

  /** Removes a pool and all of its members (it left the config). */
  removePool (pool: string): void {
    const byUrl = this.#pools.get(pool)
    if (byUrl === undefined) return
    for (const url of [...byUrl.keys()]) this.remove(pool, url)
    this.#pools.delete(pool)
  }

  /** The one way to change a member's state; false when the pool has no such member. */
  setStatus (pool: string, url: string, patch: MemberPatch): boolean {
    const m = this.#pools.get(pool)?.get(url)
    if (m === undefined) return false
    if (patch.healthy !== undefined) m.healthy = patch.healthy
    if (patch.recoveredAt !== undefined) m.recoveredAt = patch.recoveredAt
    if (patch.ejectedUntil !== undefined) m.ejectedUntil = patch.ejectedUntil
    if (patch.draining !== undefined) m.draining = patch.draining
    if (this.#listeners.length > 0) this.#emit({ kind: 'status', pool, member: m, patch })
    return true
  }

  get (pool: string, url: string): Member | undefined {
    return this.#pools.get(pool)?.get(url)
  }

  /** A pool's members in the order they were added (config members first at start). */
  list (pool: string): readonly Member[] {
    const byUrl = this.#pools.get(pool)
    return byUrl === undefined ? NO_MEMBERS : [...byUrl.values()]
  }

  urls (pool: string): IterableIterator<string> {
    return (this.#pools.get(pool) ?? new Map<string, Member>()).keys()
  }

  pools (): IterableIterator<string> {
    return this.#pools.keys()
  }

  /** Whether any pool still has a member on `url` (else its backend can close). */
  uses (url: string): boolean {
    for (const byUrl of this.#pools.values()) if (byUrl.has(url)) return true
    return false
  }

  /** Calls `fn` on every add, remove and state change; returns the unsubscribe. A throwing listener is skipped. */
  subscribe (fn: MemberListener): () => void {
    this.#listeners.push(fn)
    return () => {
      const i = this.#listeners.indexOf(fn)
      if (i !== -1) this.#listeners.splice(i, 1)
    }
  }

  #emit (change: MemberChange): void {
    for (const fn of this.#listeners) {
      try { fn(change) } catch { /* an observer never breaks a membership change */ }
    }
  }
}

/** How the operator's view names a member's state: drain and ejection first, then the health verdict. */
export function memberState (m: { healthy: boolean, draining: boolean, ejected: boolean }): 'up' | 'down' | 'draining' | 'ejected' {
  return m.draining ? 'draining' : m.ejected ? 'ejected' : m.healthy ? 'up' : 'down'
}
