// Active health checks, run once per pool in the control process (the single process, or the cluster primary),
// never once per worker. Verdicts go out through `apply`, which sets the member directly or broadcasts it.
import type { Logger } from 'pino'
import type { Config, PoolConfig } from '../config/types.js'
import { HealthChecker, type HealthVerdict } from '../health/checker.js'
import type { EventLog } from '../proxy/ops/events.js'

export interface MemberVerdict {
  readonly pool: string
  readonly url: string
  readonly healthy: boolean
  readonly recoveredAt: number
}

export class HealthControl {
  readonly #checkers = new Map<string, { checker: HealthChecker, key: string }>()

  /** `extra(pool)`: members other sources added (the admin API's), checked like the config's. */
  constructor (private readonly apply: (v: MemberVerdict) => void, private readonly events: EventLog, private readonly log: Logger,
    private readonly extra: (pool: string) => readonly string[] = () => []) {}

  /** Starts, updates or stops checkers to match `config`; a pool whose checks were removed is marked healthy. */
  sync (config: Config): void {
    for (const [name, entry] of this.#checkers) {
      const pool = config.pools.get(name)
      if (pool === undefined || pool.healthCheck === undefined || JSON.stringify(pool.healthCheck) !== entry.key) {
        void entry.checker.close()
        this.#checkers.delete(name)
        if (pool !== undefined) for (const url of this.#urls(pool)) this.apply({ pool: name, url, healthy: true, recoveredAt: 0 })
      }
    }
    for (const pool of config.pools.values()) {
      if (pool.healthCheck === undefined) continue
      const urls = this.#urls(pool)
      const existing = this.#checkers.get(pool.name)
      if (existing !== undefined) { existing.checker.update(urls); continue }
      const checker: HealthChecker = new HealthChecker(pool.name, pool.healthCheck, urls, {
        setStatus: (url) => {
          const v = checker.verdict(url)
          if (v !== undefined) this.apply(toMember(v))
        },
        onEvent: (e) => {
          const level = e.to === 'down' ? 'warn' : 'info'
          this.log[level]({ pool: e.pool, backend: e.backend, from: e.from, to: e.to, reason: e.reason }, 'health state changed')
          this.events.push(e.to === 'down' ? 'unhealthy' : 'healthy', `${e.backend} in pool ${e.pool}: ${e.from} -> ${e.to} (${e.reason})`, { pool: e.pool, backend: e.backend, from: e.from, to: e.to })
        },
      })
      this.#checkers.set(pool.name, { checker, key: JSON.stringify(pool.healthCheck) })
      checker.start()
    }
  }

  /** Whether a pool's health checks passed for `url`: undefined when the pool has none (or does not check it). */
  up (pool: string, url: string): boolean | undefined {
    const st = this.#checkers.get(pool)?.checker.state(url)
    return st === undefined ? undefined : st === 'up'
  }

  #urls (pool: PoolConfig): string[] {
    const urls = pool.backends.map(b => b.url)
    for (const url of this.extra(pool.name)) if (!urls.includes(url)) urls.push(url)
    return urls
  }

  /** Every current verdict, for a worker that has just started. */
  verdicts (): MemberVerdict[] {
    const out: MemberVerdict[] = []
    for (const { checker } of this.#checkers.values()) for (const v of checker.verdicts()) out.push(toMember(v))
    return out
  }

  async close (): Promise<void> {
    await Promise.all([...this.#checkers.values()].map(e => e.checker.close()))
    this.#checkers.clear()
  }
}

function toMember (v: HealthVerdict): MemberVerdict {
  return { pool: v.pool, url: v.url, healthy: v.up, recoveredAt: v.recoveredAt }
}
