// Config for scaling a pool from its observed latency: [pools.NAME.scale] and [alerts]. schema.ts spreads
// `scaleKeys` into poolSchema and `alertsKeys` into the top level; load.ts calls resolveScale() from resolvePool().
// health/scaler.ts and health/scale-providers/ read the resolved types.
import { z } from 'zod'
import { duration } from './primitives.js'

export const scaleMetrics = ['p50', 'p95', 'p99', 'mean'] as const
export type ScaleMetric = (typeof scaleMetrics)[number]
export const scaleProviders = ['process', 'command', 'webhook'] as const
export type ScaleProviderName = (typeof scaleProviders)[number]

/** Keys that belong to one provider only: a key of another provider is a mistake worth naming. */
const providerKeys: Record<ScaleProviderName, readonly string[]> = {
  process: ['command', 'ports'],
  command: ['run'],
  webhook: ['url'],
}

const target = z.union([z.literal('auto'), duration], { error: 'target is a duration such as "200ms", or "auto"' })
const notifyEntry = z.string().min(1)

export const scaleSchema = z.strictObject({
  metric: z.enum(scaleMetrics, { error: 'metric is one of "p50", "p95", "p99", "mean"' }).default('p95'),
  target: target.default('auto'),
  target_ceiling: duration.default(2_000),
  override: z.boolean().default(false),
  interval: duration.default(60_000),
  window: duration.default(60_000),
  tolerance: z.number().min(0).max(10).default(0.1),
  min: z.number().int().min(0).max(10_000).default(1),
  max: z.number().int().min(1).max(10_000).default(10),
  scale_down_stabilization: duration.default(300_000),
  cost_per_backend_hour: z.number().min(0).default(0),
  max_cost_per_hour: z.number().min(0).optional(),
  provider: z.enum(scaleProviders, { error: 'provider is one of "process", "command", "webhook"' }),
  command: z.string().min(1).optional(),
  ports: z.string().optional(),
  run: z.string().min(1).optional(),
  url: z.string().optional(),
  notify: z.union([notifyEntry, z.array(notifyEntry)]).optional(),
})

export type RawScale = z.infer<typeof scaleSchema>

export const alertsSchema = z.strictObject({
  smtp: z.string().min(1).optional(),
  from: z.string().min(1).optional(),
})

export const scaleKeys = { scale: scaleSchema.optional() }
export const alertsKeys = { alerts: alertsSchema.prefault({}) }

/** What a pool's scaler acts through. */
export type ScaleProviderConfig =
  | { readonly kind: 'process', readonly command: string, readonly ports: readonly [lo: number, hi: number] }
  | { readonly kind: 'command', readonly run: string }
  | { readonly kind: 'webhook', readonly url: string }

export type ScaleTarget = { readonly kind: 'fixed', readonly ms: number } | { readonly kind: 'auto' }

export type NotifyTarget = { readonly kind: 'http', readonly url: string } | { readonly kind: 'mail', readonly to: string }

export interface ScaleConfig {
  readonly metric: ScaleMetric
  readonly target: ScaleTarget
  /** A configured target above it was refused at load (or let through with override); a learned one is clamped. */
  readonly targetCeiling: number
  /** The configured target is above the ceiling and let through (logged as an override at start). */
  readonly override: boolean
  readonly interval: number
  readonly window: number
  readonly tolerance: number
  readonly min: number
  readonly max: number
  readonly scaleDownStabilization: number
  readonly costPerBackendHour: number
  /** undefined = no cap. */
  readonly maxCostPerHour: number | undefined
  readonly provider: ScaleProviderConfig
  readonly notify: readonly NotifyTarget[]
}

export interface AlertsConfig {
  /** smtp:// or smtps:// URL mail alerts go through; undefined = no mail. */
  readonly smtp: string | undefined
  /** The From address; default edge-proxy@HOSTNAME. */
  readonly from: string | undefined
}

/** The latency window the decision reads is made of the stats' slots: 1 s up to 9 s, 10 s slots up to 5 min. */
export const SCALE_WINDOW = Object.freeze({ min: 1_000, max: 290_000 })

type AddProblem = (path: readonly (string | number)[], message: string) => void

/** "9100-9199" or "9100"; undefined when malformed. */
export function parsePorts (text: string): [number, number] | undefined {
  const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(text)
  if (m === null) return undefined
  const lo = Number(m[1])
  const hi = m[2] === undefined ? lo : Number(m[2])
  if (lo < 1 || hi > 65_535 || hi < lo) return undefined
  return [lo, hi]
}

/** Checks a pool's [scale] table and resolves it; problems go to `add` with their key path under `base`. */
export function resolveScale (raw: RawScale, base: readonly (string | number)[], hasSmtp: boolean, add: AddProblem): ScaleConfig {
  const at = (key: string): (string | number)[] => [...base, key]
  if (raw.min > raw.max) add(at('min'), `min (${raw.min}) is above max (${raw.max})`)
  if (raw.interval < 10) add(at('interval'), 'a scale interval is at least 10ms')
  if (raw.window < SCALE_WINDOW.min || raw.window > SCALE_WINDOW.max) add(at('window'), `a scale window is from 1s to 290s (the latency stats keep 5 minutes)`)
  let targetConfig: ScaleTarget = { kind: 'auto' }
  if (raw.target !== 'auto') {
    targetConfig = { kind: 'fixed', ms: raw.target }
    if (raw.target < 1) add(at('target'), 'a target is at least 1ms')
    if (raw.target > raw.target_ceiling && !raw.override) {
      add(at('target'), `target ${raw.target}ms is above target_ceiling (${raw.target_ceiling}ms); lower it, or set override = true to run with it anyway`)
    }
  } else if (raw.override) {
    add(at('override'), 'override only applies to a configured target above target_ceiling; a learned target is clamped to the ceiling')
  }
  if (raw.max_cost_per_hour !== undefined) {
    if (raw.cost_per_backend_hour === 0) add(at('max_cost_per_hour'), 'a cost cap needs cost_per_backend_hour above 0')
    else if (raw.min * raw.cost_per_backend_hour > raw.max_cost_per_hour + 1e-9) {
      add(at('max_cost_per_hour'), `min = ${raw.min} backends already cost ${round(raw.min * raw.cost_per_backend_hour)} per hour, above the cap of ${raw.max_cost_per_hour}`)
    }
  }
  for (const [name, keys] of Object.entries(providerKeys)) {
    if (name === raw.provider) continue
    for (const k of keys) {
      if (raw[k as keyof RawScale] !== undefined) add(at(k), `"${k}" belongs to provider = "${name}" (this pool's provider is "${raw.provider}")`)
    }
  }
  const need = (k: 'command' | 'ports' | 'run' | 'url', example: string): string => {
    const v = raw[k]
    if (v === undefined) add(at(k), `is required for provider = "${raw.provider}", e.g. ${k} = ${example}`)
    return v ?? ''
  }
  let provider: ScaleProviderConfig
  switch (raw.provider) {
    case 'process': {
      const command = need('command', '"node app.js"')
      const text = need('ports', '"9100-9199"')
      let ports: [number, number] = [0, 0]
      if (raw.ports !== undefined) {
        const parsed = parsePorts(text)
        if (parsed === undefined) add(at('ports'), `"${text}" is not a port range: write "LO-HI" with ports from 1 to 65535, e.g. "9100-9199"`)
        else {
          ports = parsed
          const n = parsed[1] - parsed[0] + 1
          if (n < raw.max) add(at('ports'), `the range has ${n} port${n === 1 ? '' : 's'}, fewer than max = ${raw.max} backends`)
        }
      }
      provider = { kind: 'process', command, ports }
      break
    }
    case 'command':
      provider = { kind: 'command', run: need('run', '"./scale.sh"') }
      break
    case 'webhook': {
      const url = need('url', '"http://127.0.0.1:7000/scale"')
      if (raw.url !== undefined && !isHttpUrl(url)) add(at('url'), `"${url}" is not an http:// or https:// URL`)
      provider = { kind: 'webhook', url }
      break
    }
  }
  const notify: NotifyTarget[] = []
  const entries = raw.notify === undefined ? [] : typeof raw.notify === 'string' ? [raw.notify] : raw.notify
  entries.forEach((n, i) => {
    const path = typeof raw.notify === 'string' ? at('notify') : [...at('notify'), i]
    if (n.startsWith('mailto:')) {
      const to = decodeURIComponent(n.slice('mailto:'.length).split('?')[0] ?? '')
      if (!/^[^@\s]+@[^@\s]+$/.test(to)) add(path, `"${n}" is not a mail address such as "mailto:ops@example.com"`)
      else if (!hasSmtp) add(path, `mail alerts need a server: set [alerts] smtp = "smtp://HOST:PORT"`)
      notify.push({ kind: 'mail', to })
    } else if (isHttpUrl(n)) {
      notify.push({ kind: 'http', url: n })
    } else {
      add(path, `"${n}" is neither an http(s):// URL nor a mailto: address`)
    }
  })
  return {
    metric: raw.metric,
    target: targetConfig,
    targetCeiling: raw.target_ceiling,
    override: raw.override,
    interval: raw.interval,
    window: raw.window,
    tolerance: raw.tolerance,
    min: raw.min,
    max: raw.max,
    scaleDownStabilization: raw.scale_down_stabilization,
    costPerBackendHour: raw.cost_per_backend_hour,
    maxCostPerHour: raw.max_cost_per_hour,
    provider,
    notify,
  }
}

export function resolveAlerts (raw: z.infer<typeof alertsSchema>, add: AddProblem): AlertsConfig {
  if (raw.smtp !== undefined) {
    let ok = false
    try { ok = ['smtp:', 'smtps:'].includes(new URL(raw.smtp).protocol) } catch { /* reported below */ }
    if (!ok) add(['alerts', 'smtp'], `"${raw.smtp}" is not an smtp:// or smtps:// URL, e.g. "smtp://127.0.0.1:2525"`)
  }
  return { smtp: raw.smtp, from: raw.from }
}

function isHttpUrl (s: string): boolean {
  try {
    const u = new URL(s)
    return u.protocol === 'http:' || u.protocol === 'https:'
  } catch { return false }
}

function round (n: number): number {
  return Math.round(n * 1e6) / 1e6
}
