// Runtime registration on the control side (the single process, or the cluster primary): checks a request against
// the running config, keeps the registered set (a worker that starts later gets it, as drains), keeps the health
// checks in step, and hands the change to whatever reaches the serving processes (directly, or over IPC).
import type { Config, PoolConfig } from '../config/types.js'
import { backendOrigin } from '../config/load.js'
import { BACKEND_WEIGHT } from '../config/schema.js'
import { parseDuration } from '../config/duration.js'
import { AdminRefusal, type MemberJson, type MemberOps } from '../proxy/ops/admin.js'
import type { EventLog } from '../proxy/ops/events.js'
import type { EdgeStatus } from '../proxy/ops/status.js'
import { memberState } from '../proxy/upstream/members.js'
import type { HealthControl } from './health-control.js'

/** A DELETE without ?drain= lets in-flight requests finish for up to this long. */
export const DEFAULT_DRAIN_MS = 30_000
const WEIGHT_MIN = BACKEND_WEIGHT.min
const WEIGHT_MAX = BACKEND_WEIGHT.max

export interface Registered {
  readonly pool: string
  readonly url: string
  readonly weight: number
  /** Who registered it: the admin API (default) or the scaler (a backend it started). */
  readonly source?: 'api' | 'scale'
}

/** How a change reaches the serving processes. */
export interface MemberApply {
  add (r: Registered, healthy: boolean): void
  remove (pool: string, url: string, drainMs: number): void
}

export class Registrations {
  /** pool -> url -> registration */
  readonly #byPool = new Map<string, Map<string, Registered>>()

  urls (pool: string): string[] {
    return [...(this.#byPool.get(pool)?.keys() ?? [])]
  }

  all (): Registered[] {
    const out: Registered[] = []
    for (const byUrl of this.#byPool.values()) out.push(...byUrl.values())
    return out
  }

  get (pool: string, url: string): Registered | undefined {
    return this.#byPool.get(pool)?.get(url)
  }

  has (pool: string, url: string): boolean {
    return this.#byPool.get(pool)?.has(url) === true
  }

  set (r: Registered): void {
    let byUrl = this.#byPool.get(r.pool)
    if (byUrl === undefined) { byUrl = new Map(); this.#byPool.set(r.pool, byUrl) }
    byUrl.set(r.url, r)
  }

  delete (pool: string, url: string): void {
    this.#byPool.get(pool)?.delete(url)
  }

  /** After a reload, as the workers do: a pool that left the config loses its members; a URL the file now names is the file's. */
  retain (config: Config): void {
    for (const [pool, byUrl] of this.#byPool) {
      const p = config.pools.get(pool)
      if (p === undefined) { this.#byPool.delete(pool); continue }
      for (const b of p.backends) byUrl.delete(b.url)
    }
  }
}

/** The registration API over `registrations`, shared by the single process and the cluster primary. */
export function memberOps (deps: {
  readonly config: () => Config
  readonly registrations: Registrations
  readonly health: HealthControl
  readonly events: EventLog
  readonly status: () => Promise<EdgeStatus | undefined>
  readonly apply: MemberApply
}): MemberOps {
  const { registrations, health, events, apply } = deps
  // An unknown pool in a POST is bad input (400, as the issue lists it); GET and DELETE name a missing resource (404).
  const poolOf = (name: string, status: 400 | 404 = 404): PoolConfig => {
    const p = deps.config().pools.get(name)
    if (p === undefined) throw new AdminRefusal(status, `no pool named "${name}"`)
    return p
  }
  return {
    async add (name, body) {
      const pool = poolOf(name, 400)
      const r = checkAdd(pool, registrations, body)
      registrations.set(r)
      health.sync(deps.config())
      // A pool with health checks takes the member once its first check passes.
      const healthy = pool.healthCheck === undefined
      apply.add(r, healthy)
      events.push('member-added', `${r.url} added to pool ${name} through the admin API (weight ${r.weight})`, { pool: name, backend: r.url })
      return { url: r.url, weight: r.weight, source: 'api', state: healthy ? 'up' : 'down' }
    },
    async remove (name, raw, drain) {
      const pool = poolOf(name)
      const parsed = backendOrigin(raw)
      const url = 'url' in parsed ? parsed.url : raw
      if (pool.backends.some(b => b.url === url)) {
        throw new AdminRefusal(409, `${url} is in pool "${name}" in the config file; edit the file and reload to remove it`)
      }
      if (!registrations.has(name, url)) throw new AdminRefusal(404, `pool "${name}" has no member ${raw} registered through the API`)
      if (registrations.get(name, url)?.source === 'scale') throw new AdminRefusal(409, `${url} in pool "${name}" was started by the scaler; it stops it when the pool scales down`)
      const drainMs = drain === null ? DEFAULT_DRAIN_MS : parseDuration(drain)
      if (drainMs === undefined) throw new AdminRefusal(400, `drain "${drain}" is not a duration like 30s or 500ms`)
      registrations.delete(name, url)
      apply.remove(name, url, drainMs)
      health.sync(deps.config())
      const message = `draining ${url} in pool ${name}; removed when its in-flight requests finish (at most ${drainMs} ms)`
      events.push('member-removed', message, { pool: name, backend: url })
      return message
    },
    async list (name) {
      poolOf(name)
      const st = await deps.status()
      const p = st?.pools.find(x => x.name === name)
      return (p?.backends ?? []).map((b): MemberJson => ({ url: b.url, weight: b.weight, source: b.source, state: memberState(b) }))
    },
  }
}

/** Checks a POST body against the pool: the same URL rules as the config's backends, its weight range, no duplicates (all 400). */
function checkAdd (pool: PoolConfig, registrations: Registrations, body: unknown): Registered {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new AdminRefusal(400, 'the body must be a JSON object like {"url": "http://127.0.0.1:9003", "weight": 2}')
  const { url: rawUrl, weight: rawWeight, ...rest } = body as Record<string, unknown>
  const unknown = Object.keys(rest)
  if (unknown.length > 0) throw new AdminRefusal(400, `unknown field${unknown.length === 1 ? '' : 's'} ${unknown.map(k => `"${k}"`).join(', ')}; a member has "url" and "weight"`)
  if (typeof rawUrl !== 'string') throw new AdminRefusal(400, '"url" is required: a backend URL such as "http://127.0.0.1:9003"')
  const parsed = backendOrigin(rawUrl)
  if ('error' in parsed) throw new AdminRefusal(400, parsed.error)
  const url = parsed.url
  const weight = rawWeight === undefined ? 1 : rawWeight
  if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < WEIGHT_MIN || weight > WEIGHT_MAX) {
    throw new AdminRefusal(400, `"weight" must be an integer from ${WEIGHT_MIN} to ${WEIGHT_MAX} (got ${JSON.stringify(rawWeight)})`)
  }
  if (pool.shards !== undefined) throw new AdminRefusal(400, `pool "${pool.name}" is sharded; a shard's members come from the config file`)
  // A pool serves either tls passthrough (tcp://) or HTTP; a tunnel-only pool has no file members to compare with.
  const tcp = url.startsWith('tcp:')
  const poolTcp = pool.backends.length > 0 && (pool.backends[0] as { url: string }).url.startsWith('tcp:')
  if (tcp !== poolTcp) {
    throw new AdminRefusal(400, tcp
      ? `pool "${pool.name}" is an HTTP pool; tcp:// backends serve tls passthrough pools only`
      : `pool "${pool.name}" serves tls passthrough; its backends are tcp://HOST:PORT`)
  }
  if (pool.backends.some(b => b.url === url)) throw new AdminRefusal(400, `${url} is already in pool "${pool.name}" (from the config file)`)
  if (registrations.has(pool.name, url)) throw new AdminRefusal(400, `${url} is already in pool "${pool.name}" (registered through the API)`)
  return { pool: pool.name, url, weight }
}
