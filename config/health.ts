// Config pieces for a pool's health: [pools.NAME.health], .outlier, .retry and .limits. schema.ts spreads
// `poolHealthKeys` into poolSchema and load.ts calls resolvePoolHealth() from resolvePool(); health/ reads the
// resolved types. The raw (snake_case, as written) and resolved (camelCase, ms) shapes differ on purpose.
import { z } from 'zod'
import { duration } from './primitives.js'

/** An inclusive range of HTTP status codes a health check accepts. */
export type StatusRange = readonly [lo: number, hi: number]

/** Parses "200-399" or "200,204,300-399" (a TOML integer such as 200 works too); undefined when malformed. */
const rangePart = /^\s*(\d{3})\s*(?:-\s*(\d{3})\s*)?$/

export function parseStatusRanges (text: string): StatusRange[] | undefined {
  const ranges: StatusRange[] = []
  for (const part of text.split(',')) {
    const m = rangePart.exec(part)
    if (m === null) return undefined
    const lo = Number(m[1])
    const hi = m[2] === undefined ? lo : Number(m[2])
    if (lo < 100 || hi > 599 || hi < lo) return undefined
    ranges.push([lo, hi])
  }
  return ranges
}

export function statusMatches (ranges: readonly StatusRange[], status: number): boolean {
  for (const [lo, hi] of ranges) if (status >= lo && status <= hi) return true
  return false
}

export function formatStatusRanges (ranges: readonly StatusRange[]): string {
  return ranges.map(([lo, hi]) => lo === hi ? `${lo}` : `${lo}-${hi}`).join(',')
}

const expect = z.union([z.string(), z.number().int()], { error: 'expect is a status list such as "200-399" or "200,204,300-399"' })
  .transform((v, ctx) => {
    const text = String(v)
    const ranges = parseStatusRanges(text)
    if (ranges === undefined) {
      ctx.addIssue({ code: 'custom', message: `"${text}" is not a status list: write codes and ranges from 100 to 599, e.g. "200-399" or "200,204,300-399"` })
      return z.NEVER
    }
    return ranges
  })

export const healthSchema = z.strictObject({
  type: z.enum(['http', 'tcp']).default('http'),
  path: z.string().startsWith('/', { error: 'a health check path starts with "/"' }).default('/'),
  interval: duration.default(2_000),
  timeout: duration.default(1_000),
  expect: expect.default([[200, 399]]),
  rise: z.number().int().min(1).max(100).default(2),
  fall: z.number().int().min(1).max(100).default(3),
  slow_start: duration.default(0),
}).superRefine((h, ctx) => {
  if (h.interval < 10) ctx.addIssue({ code: 'custom', path: ['interval'], message: 'a health check interval is at least 10ms' })
  if (h.timeout < 1 || h.timeout > h.interval) {
    ctx.addIssue({ code: 'custom', path: ['timeout'], message: `a health check timeout is between 1ms and the interval (${h.interval}ms)` })
  }
})

export const outlierSchema = z.strictObject({
  /** 0 turns passive ejection off. */
  consecutive_failures: z.number().int().min(0).max(1000).default(5),
  base_ejection: duration.default(30_000),
  max_ejected_percent: z.number().int().min(0).max(100).default(50),
})

export const retryOnValues = ['connect-failure', 'reset', 'timeout', '500', '502', '503', '504'] as const
export type RetryOn = (typeof retryOnValues)[number]

export const retrySchema = z.strictObject({
  /** Retries after the first try (2 = up to three tries), as the edge has always done for connect failures. */
  attempts: z.number().int().min(0).max(10).default(2),
  on: z.array(z.enum(retryOnValues, { error: `retry.on lists any of ${retryOnValues.map(v => `"${v}"`).join(', ')}` })).default(['connect-failure']),
  budget: z.number().min(0).max(1).default(0.2),
  per_try_timeout: duration.optional(),
})

export const limitsSchema = z.strictObject({
  /** 0 = no limit. */
  max_inflight_per_backend: z.number().int().min(0).max(1_000_000).default(0),
})

/** The keys to spread into config/schema.ts's poolSchema. */
export const poolHealthKeys = {
  health: healthSchema.optional(),
  outlier: outlierSchema.prefault({}),
  retry: retrySchema.prefault({}),
  limits: limitsSchema.prefault({}),
}

export const poolHealthSchema = z.strictObject(poolHealthKeys)
export type RawPoolHealth = z.infer<typeof poolHealthSchema>

export type HealthCheckType = 'http' | 'tcp'

export interface HealthCheckConfig {
  readonly type: HealthCheckType
  readonly path: string
  readonly interval: number
  readonly timeout: number
  readonly expect: readonly StatusRange[]
  /** Consecutive passes for a down backend to come back. */
  readonly rise: number
  /** Consecutive failures for an up backend to go down. */
  readonly fall: number
  /** How long a recovered backend's weight ramps from 10% to 100% (0 = at once). */
  readonly slowStart: number
}

export interface OutlierConfig {
  /** 0 = passive ejection off. */
  readonly consecutiveFailures: number
  readonly baseEjection: number
  readonly maxEjectedPercent: number
}

export interface RetryConfig {
  readonly attempts: number
  readonly on: ReadonlySet<RetryOn>
  readonly budget: number
  /** undefined = only the route's timeout applies. */
  readonly perTryTimeout: number | undefined
}

export interface LimitsConfig {
  /** 0 = no limit. */
  readonly maxInflightPerBackend: number
}

export interface PoolHealthConfig {
  /** undefined = no active checks: backends stay healthy unless passive detection says otherwise. */
  readonly health: HealthCheckConfig | undefined
  readonly outlier: OutlierConfig
  readonly retry: RetryConfig
  readonly limits: LimitsConfig
}

export function resolvePoolHealth (raw: RawPoolHealth): PoolHealthConfig {
  const h = raw.health
  return {
    health: h === undefined
      ? undefined
      : {
          type: h.type,
          path: h.path,
          interval: h.interval,
          timeout: h.timeout,
          expect: h.expect,
          rise: h.rise,
          fall: h.fall,
          slowStart: h.slow_start,
        },
    outlier: {
      consecutiveFailures: raw.outlier.consecutive_failures,
      baseEjection: raw.outlier.base_ejection,
      maxEjectedPercent: raw.outlier.max_ejected_percent,
    },
    retry: {
      attempts: raw.retry.attempts,
      on: new Set(raw.retry.on),
      budget: raw.retry.budget,
      perTryTimeout: raw.retry.per_try_timeout,
    },
    limits: { maxInflightPerBackend: raw.limits.max_inflight_per_backend },
  }
}
