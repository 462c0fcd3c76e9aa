// Comparing two answers to the same request: status, headers (minus the ignored and hop-by-hop ones), and the
// body. JSON bodies are compared field by field on flattened paths ("$.items[0].etag", arrays by index); other
// bodies by length and SHA-256. Pure functions: the mirror calls them off the client's path.
//
// Noise (Diffy's model): with `secondary`, each request also goes to a second primary member; a field that also
// differs between primary and secondary is noise (timestamps, random ids). A field counts as a difference only
// when its raw rate (primary vs shadow) beats its noise rate (primary vs secondary) by both margins Diffy uses:
//   relative = (raw - noise) / (raw + noise) > 20 %   and   absolute = raw - noise > 0.03 % of requests.
// Without a secondary every differing field counts.
import { createHash } from 'node:crypto'
import type { JsonPathStep } from '../../config/shadow.js'

export const NOISE_RELATIVE = 0.20
export const NOISE_ABSOLUTE = 0.0003

/** One side of a comparison. `body` is the whole body when it fit under the cap, else undefined. */
export interface Side {
  readonly status: number
  /** Lower-case name -> value (repeated headers joined with ", "). */
  readonly headers: Readonly<Record<string, string>>
  readonly body: Buffer | undefined
  readonly bytes: number
  /** Why there is no answer (timeout, connect...); status is 0 then. */
  readonly error?: string
}

export interface FieldDiff {
  /** "status", "header.NAME", "body" (non-JSON, or JSON on one side only) or a JSON path "$.a[0].b". */
  readonly field: string
  readonly primary: unknown
  readonly shadow: unknown
}

export interface CompareRules {
  readonly ignoreHeaders: ReadonlySet<string>
  readonly ignoreJson: readonly { readonly steps: readonly JsonPathStep[] }[]
}

const hopByHop = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-connection', 'proxy-authenticate'])

/** Raw header list (undici's Buffer pairs) to a lower-case record. */
export function headerRecord (raw: readonly (Buffer | string)[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = String(raw[i]).toLowerCase()
    const value = String(raw[i + 1])
    out[name] = out[name] === undefined ? value : `${out[name]}, ${value}`
  }
  return out
}

export function compare (a: Side, b: Side, rules: CompareRules): FieldDiff[] {
  const diffs: FieldDiff[] = []
  if (a.status !== b.status) diffs.push({ field: 'status', primary: a.error ?? a.status, shadow: b.error ?? b.status })
  if (a.error !== undefined || b.error !== undefined) return diffs
  const names = new Set([...Object.keys(a.headers), ...Object.keys(b.headers)])
  for (const n of names) {
    if (hopByHop.has(n) || rules.ignoreHeaders.has(n)) continue
    const va = a.headers[n]
    const vb = b.headers[n]
    if (va !== vb) diffs.push({ field: `header.${n}`, primary: va ?? null, shadow: vb ?? null })
  }
  compareBodies(a, b, rules, diffs)
  return diffs
}

function compareBodies (a: Side, b: Side, rules: CompareRules, diffs: FieldDiff[]): void {
  const ja = asJson(a)
  const jb = asJson(b)
  if (ja !== undefined && jb !== undefined) {
    const fa = flatten(ja.value)
    const fb = flatten(jb.value)
    const seen = new Set<string>()
    for (const [path, steps] of [...fa.paths, ...fb.paths]) {
      if (seen.has(path)) continue
      seen.add(path)
      if (ignored(steps, rules.ignoreJson)) continue
      const va = fa.values.get(path)
      const vb = fb.values.get(path)
      if (fa.values.has(path) && fb.values.has(path) && va === vb) continue
      diffs.push({ field: path, primary: fa.values.has(path) ? va : '(absent)', shadow: fb.values.has(path) ? vb : '(absent)' })
    }
    return
  }
  if (a.bytes === 0 && b.bytes === 0) return
  // Equal bytes need no hash (the common case, and hashing is the costly part).
  if (a.bytes === b.bytes && a.body !== undefined && b.body !== undefined && a.body.equals(b.body)) return
  const ha = digest(a)
  const hb = digest(b)
  if (a.bytes !== b.bytes || ha !== hb) diffs.push({ field: 'body', primary: `${a.bytes} bytes ${ha}`, shadow: `${b.bytes} bytes ${hb}` })
}

function digest (s: Side): string {
  return s.body === undefined ? '(over the cap)' : `sha256:${createHash('sha256').update(s.body).digest('hex').slice(0, 16)}`
}

function asJson (s: Side): { value: unknown } | undefined {
  if (s.body === undefined || s.bytes === 0) return undefined
  const ct = s.headers['content-type'] ?? ''
  const first = s.body[0]
  // application/json, +json, or a body that looks like an object or array.
  if (!/json/i.test(ct) && first !== 0x7b && first !== 0x5b) return undefined
  try {
    return { value: JSON.parse(s.body.toString('utf8')) as unknown }
  } catch {
    return undefined
  }
}

type Step = string | number

interface Flat {
  readonly values: Map<string, unknown>
  readonly paths: Map<string, readonly Step[]>
}

const plainKey = /^[A-Za-z_$][\w$-]*$/

/** Leaves of a JSON value by path ("$.a.b", "$.items[0]"); empty objects and arrays are leaves ("{}", "[]"). */
export function flatten (value: unknown): Flat {
  const flat: Flat = { values: new Map(), paths: new Map() }
  walk(value, '$', [], flat, 0)
  return flat
}

function walk (v: unknown, path: string, steps: Step[], flat: Flat, depth: number): void {
  if (depth > 64) { leaf(JSON.stringify(v), path, steps, flat); return }
  if (Array.isArray(v)) {
    if (v.length === 0) { leaf('[]', path, steps, flat); return }
    v.forEach((x, i) => { walk(x, `${path}[${i}]`, [...steps, i], flat, depth + 1) })
    return
  }
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v)
    if (keys.length === 0) { leaf('{}', path, steps, flat); return }
    for (const k of keys) walk((v as Record<string, unknown>)[k], plainKey.test(k) ? `${path}.${k}` : `${path}[${JSON.stringify(k)}]`, [...steps, k], flat, depth + 1)
    return
  }
  leaf(v, path, steps, flat)
}

function leaf (v: unknown, path: string, steps: Step[], flat: Flat): void {
  flat.values.set(path, v)
  flat.paths.set(path, steps)
}

/** A JSON path pattern covers a path when it matches the path's first steps ("$.meta" covers "$.meta.x"). */
export function ignored (steps: readonly Step[], patterns: CompareRules['ignoreJson']): boolean {
  outer: for (const p of patterns) {
    if (p.steps.length > steps.length) continue
    for (let i = 0; i < p.steps.length; i++) {
      const want = p.steps[i] as JsonPathStep
      const got = steps[i] as Step
      if ('any' in want) continue
      if ('key' in want ? want.key !== got : want.index !== got) continue outer
    }
    return true
  }
  return false
}

/** Per-field difference counts of one endpoint: raw (primary vs shadow) and noise (primary vs secondary). */
export class FieldStats {
  /** Requests compared with the shadow, and with a secondary. */
  compared = 0
  noiseCompared = 0
  readonly raw = new Map<string, number>()
  readonly noise = new Map<string, number>()

  add (raw: readonly FieldDiff[], noise: readonly FieldDiff[] | undefined): void {
    this.compared++
    for (const d of raw) this.raw.set(d.field, (this.raw.get(d.field) ?? 0) + 1)
    if (noise === undefined) return
    this.noiseCompared++
    for (const d of noise) this.noise.set(d.field, (this.noise.get(d.field) ?? 0) + 1)
  }

  rawRate (field: string): number { return this.compared === 0 ? 0 : (this.raw.get(field) ?? 0) / this.compared }
  noiseRate (field: string): number { return this.noiseCompared === 0 ? 0 : (this.noise.get(field) ?? 0) / this.noiseCompared }

  /** Whether differences on `field` beat its noise by the thresholds at the head of this file. */
  significant (field: string): boolean {
    const raw = this.rawRate(field)
    if (raw === 0) return false
    if (this.noiseCompared === 0) return true
    const noise = this.noiseRate(field)
    return raw - noise > NOISE_ABSOLUTE && (raw - noise) / (raw + noise) > NOISE_RELATIVE
  }

  /** Fields that differed at all, with rates and the verdict, most frequent first. */
  fields (limit = 50): { field: string, count: number, rate: number, noise_rate: number, noise: boolean }[] {
    return [...this.raw].sort((x, y) => y[1] - x[1]).slice(0, limit).map(([field, count]) => ({
      field,
      count,
      rate: round4(this.rawRate(field)),
      noise_rate: round4(this.noiseRate(field)),
      noise: !this.significant(field),
    }))
  }
}

export function round4 (n: number): number {
  return Math.round(n * 10_000) / 10_000
}
