// Config of a pool's shadow traffic, [pools.NAME.shadow]: which pool gets a copy of the traffic, how much of it,
// and how the answers are compared and stored. schema.ts adds `shadowSchema` to poolSchema; load.ts calls
// resolveShadow() once every pool is known (the shadow pool must be another pool of the file). proxy/mirror/
// reads the resolved type. Raw keys as written (snake_case); resolved ones camelCase, ms and bytes.
import { resolve as resolvePath } from 'node:path'
import { z } from 'zod'
import { duration } from './primitives.js'
import type { HashKey } from './types.js'

/** Byte sizes as written: 512 (bytes), "512b", "64kb", "1mb", "1gb" (binary multiples). */
const sizeUnits: Record<string, number> = { b: 1, kb: 1024, k: 1024, mb: 1024 ** 2, m: 1024 ** 2, gb: 1024 ** 3, g: 1024 ** 3 }

export function parseSize (v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : undefined
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v)
  if (m === null) return undefined
  const unit = sizeUnits[(m[2] as string).toLowerCase() || 'b']
  return unit === undefined ? undefined : Math.round(Number(m[1]) * unit)
}

export const size = z.union([z.string(), z.number()], { error: 'expected a size such as "64kb" or "1mb"' }).transform((v, ctx) => {
  const n = parseSize(v)
  if (n === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not a size: write a number with a unit, e.g. "512b", "64kb", "1mb"` })
    return z.NEVER
  }
  return n
})

/** Methods a shadow may carry (CONNECT never: it is a tunnel, not an exchange). */
export const SHADOW_METHODS = ['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH', 'DELETE'] as const
/** Mirrored when `methods` is not written: the idempotent ones without side effects. */
export const DEFAULT_SHADOW_METHODS = ['GET', 'HEAD', 'OPTIONS'] as const

const method = z.string().transform((s, ctx) => {
  const m = s.toUpperCase()
  if (!(SHADOW_METHODS as readonly string[]).includes(m)) {
    ctx.addIssue({ code: 'custom', message: `"${s}" is not a method a shadow can carry: use any of ${SHADOW_METHODS.join(', ')}` })
    return z.NEVER
  }
  return m
})

export const shadowSchema = z.strictObject({
  pool: z.string().min(1, { error: 'pool names the shadow pool, another [pools.NAME] of this file' }),
  sample: z.number({ error: 'sample is a fraction from 0 to 1, e.g. 0.25' }).min(0, { error: 'sample is a fraction from 0 to 1' }).max(1, { error: 'sample is a fraction from 0 to 1' }).default(1),
  sample_key: z.string().min(1).optional(),
  methods: z.array(method).default([...DEFAULT_SHADOW_METHODS]),
  max_body: size.default(1024 * 1024),
  max_inflight: z.number().int().min(1).max(100_000).default(64),
  timeout: duration.default(5_000),
  secondary: z.boolean().default(false),
  ignore_headers: z.array(z.string().min(1)).default([]),
  ignore_json: z.array(z.string().min(1)).default([]),
  endpoints: z.array(z.string().min(1)).default([]),
  store: z.string().min(1).optional(),
  // The header that marks a shadow copy, so the shadow side can keep its side effects apart.
  header: z.string().regex(/^[!#$%&'*+.^_`|~0-9a-z-]+$/i, { error: 'header is an HTTP header name, e.g. "x-shadow"' }).default('x-shadow'),
})

export type RawShadow = z.infer<typeof shadowSchema>

/** One step of a JSONPath (subset: `$.a.b`, `$.items[*].x`, `$.items[0]`, `$.a.*`). */
export type JsonPathStep = { readonly key: string } | { readonly index: number } | { readonly any: true }

export interface ShadowConfig {
  /** The shadow pool's name (checked to be another pool of the file). */
  readonly pool: string
  readonly sample: number
  /** Sample by a consistent hash of this key (same users every time); undefined = at random. */
  readonly sampleKey: HashKey | undefined
  readonly methods: ReadonlySet<string>
  /** Bytes of request body teed at most; larger requests are not mirrored. */
  readonly maxBody: number
  readonly maxInflight: number
  readonly timeout: number
  readonly secondary: boolean
  /** Lower-case header names left out of the comparison. */
  readonly ignoreHeaders: ReadonlySet<string>
  /** JSON paths left out of the comparison (a path also covers everything below it); `text` as written. */
  readonly ignoreJson: readonly { readonly text: string, readonly steps: readonly JsonPathStep[] }[]
  /** Path patterns ("/users/:id") that group requests into endpoints. */
  readonly endpoints: readonly string[]
  /** Absolute directory of the comparison records; undefined = none kept (metrics and status only). */
  readonly store: string | undefined
  /** Lower-case name of the header shadow copies carry ("x-shadow: 1"). */
  readonly header: string
}

/** Parses the JSONPath subset; a string says what is wrong. */
export function parseJsonPath (text: string): JsonPathStep[] | string {
  if (!text.startsWith('$')) return 'a JSON path starts with "$", e.g. "$.generated_at" or "$.items[*].etag"'
  const steps: JsonPathStep[] = []
  const re = /\.([A-Za-z_$][\w$-]*|\*)|\[(\*|\d+)\]|\[(?:"([^"]*)"|'([^']*)')\]/y
  re.lastIndex = 1
  while (re.lastIndex < text.length) {
    const at = re.lastIndex
    const m = re.exec(text)
    if (m === null || m.index !== at) return `cannot read "${text.slice(at)}": use .name, .*, [N], [*] or ["name"]`
    if (m[1] !== undefined) steps.push(m[1] === '*' ? { any: true } : { key: m[1] })
    else if (m[2] !== undefined) steps.push(m[2] === '*' ? { any: true } : { index: Number(m[2]) })
    else steps.push({ key: m[3] ?? m[4] ?? '' })
  }
  if (steps.length === 0) return '"$" alone would ignore the whole body'
  return steps
}

/** Checks an endpoint pattern: "/users/:id", "/static/*" (the rest of the path). */
export function endpointProblem (p: string): string | undefined {
  if (!p.startsWith('/')) return `"${p}" is not a path pattern: it starts with "/", e.g. "/users/:id"`
  const segs = p.split('/').slice(1)
  for (const [i, s] of segs.entries()) {
    if (s === '*' && i !== segs.length - 1) return `"${p}": "*" (the rest of the path) can only be the last segment`
    if (s.startsWith(':') && s.length === 1) return `"${p}": a parameter needs a name, e.g. ":id"`
  }
  return undefined
}

type PathItem = string | number

export interface ShadowContext {
  /** Every pool of the file by name, with whether its backends are tcp:// (tls passthrough only). */
  readonly pools: ReadonlyMap<string, { readonly tcp: boolean }>
  readonly baseDir: string
  readonly parseHashKey: (text: string, path: PathItem[]) => HashKey
  readonly add: (path: PathItem[], message: string) => void
  readonly closest: (name: string, names: string[]) => string | undefined
}

export function resolveShadow (poolName: string, raw: RawShadow | undefined, ctx: ShadowContext): ShadowConfig | undefined {
  if (raw === undefined) return undefined
  const base: PathItem[] = ['pools', poolName, 'shadow']
  const target = ctx.pools.get(raw.pool)
  if (raw.pool === poolName) {
    ctx.add([...base, 'pool'], `pool "${poolName}" cannot shadow itself: name another pool (the shadow cluster, e.g. "${poolName}-remote1")`)
  } else if (target === undefined) {
    const hint = ctx.closest(raw.pool, [...ctx.pools.keys()].filter(n => n !== poolName))
    ctx.add([...base, 'pool'], `no pool named "${raw.pool}"${hint === undefined ? '' : ` (did you mean "${hint}"?)`}: the shadow pool is another [pools.NAME] of this file`)
  } else if (target.tcp) {
    ctx.add([...base, 'pool'], `pool "${raw.pool}" has tcp:// backends: a shadow takes HTTP requests`)
  }
  if (ctx.pools.get(poolName)?.tcp === true) ctx.add(base, `pool "${poolName}" serves tls passthrough (tcp:// backends), whose connections cannot be mirrored`)
  const ignoreJson: { text: string, steps: JsonPathStep[] }[] = []
  raw.ignore_json.forEach((text, i) => {
    const steps = parseJsonPath(text)
    if (typeof steps === 'string') ctx.add([...base, 'ignore_json', i], steps)
    else ignoreJson.push({ text, steps })
  })
  raw.endpoints.forEach((p, i) => {
    const problem = endpointProblem(p)
    if (problem !== undefined) ctx.add([...base, 'endpoints', i], problem)
  })
  if (raw.timeout < 1) ctx.add([...base, 'timeout'], 'a shadow timeout is at least 1ms')
  return {
    pool: raw.pool,
    sample: raw.sample,
    sampleKey: raw.sample_key === undefined ? undefined : ctx.parseHashKey(raw.sample_key, [...base, 'sample_key']),
    methods: new Set(raw.methods),
    maxBody: raw.max_body,
    maxInflight: raw.max_inflight,
    timeout: raw.timeout,
    secondary: raw.secondary,
    ignoreHeaders: new Set(raw.ignore_headers.map(h => h.toLowerCase())),
    ignoreJson,
    endpoints: raw.endpoints,
    store: raw.store === undefined ? undefined : resolvePath(ctx.baseDir, raw.store),
    header: raw.header.toLowerCase(),
  }
}
