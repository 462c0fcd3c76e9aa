// `edge-proxy report shadow`: reads a store's JSON lines (every worker's files, rotated ones too; a line without
// its newline is skipped), recomputes per endpoint which fields differ beyond noise over the whole window, and
// renders JSON (stable, for scripts), Markdown or one self-contained HTML page.
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { FieldStats, NOISE_ABSOLUTE, NOISE_RELATIVE, round4, type FieldDiff } from './compare.js'
import { storeFiles } from './store.js'

/** A record as shadow.ts writes it (v 1). */
export interface ShadowRecord {
  v: number
  time: string
  pool: string
  shadow_pool: string
  endpoint: string
  request: { id: string, method: string, path: string, body_bytes: number }
  /** headers and body only when some field differed (noise included). */
  primary: { status: number, ms: number, bytes: number, headers?: Record<string, string>, body?: string }
  shadow: { status: number, ms: number, bytes: number, headers?: Record<string, string>, body?: string, error?: string, backend?: string }
  secondary?: { status: number, ms: number, error?: string }
  diffs: FieldDiff[]
  noise?: string[]
  differs: boolean
}

export interface LatencySummary { count: number, p50: number, p95: number, p99: number }

export interface ReportExample {
  field: string
  time: string
  request: { id: string, method: string, path: string }
  primary: unknown
  shadow: unknown
  primary_status: number
  shadow_status: number
  primary_body?: string
  shadow_body?: string
}

export interface EndpointReport {
  endpoint: string
  compared: number
  differing: number
  differing_rate: number
  fields: { field: string, count: number, rate: number, noise_rate: number, noise: boolean }[]
  examples: ReportExample[]
  latency: { primary: LatencySummary, shadow: LatencySummary }
}

export interface ShadowReport {
  version: 1
  generated_at: string
  store: string
  since_ms: number | null
  window: { from: string | null, to: string | null }
  thresholds: { relative: number, absolute: number }
  records: number
  pools: { pool: string, shadow_pool: string, compared: number, differing: number, endpoints: EndpointReport[] }[]
}

/** Examples kept per field; fields with examples per endpoint. */
const EXAMPLES_PER_FIELD = 3
const FIELDS_WITH_EXAMPLES = 20

/** Each whole line of a file (the last one only if it ends with a newline). */
async function * lines (file: string): AsyncGenerator<string> {
  let rest = ''
  for await (const chunk of createReadStream(file, { encoding: 'utf8', highWaterMark: 256 * 1024 })) {
    const text = rest + (chunk as string)
    const parts = text.split('\n')
    rest = parts.pop() ?? ''
    for (const p of parts) if (p !== '') yield p
  }
}

/** Every record of `dir` at or after `sinceMs` (ms since epoch; undefined = all). */
export async function * readRecords (dir: string, sinceMs?: number): AsyncGenerator<ShadowRecord> {
  for (const f of await storeFiles(dir)) {
    if (sinceMs !== undefined && (await stat(f)).mtimeMs < sinceMs) continue
    for await (const line of lines(f)) {
      let r: ShadowRecord
      try { r = JSON.parse(line) as ShadowRecord } catch { continue }
      if (r.v !== 1 || typeof r.endpoint !== 'string') continue
      if (sinceMs !== undefined && Date.parse(r.time) < sinceMs) continue
      yield r
    }
  }
}

function latency (values: number[]): LatencySummary {
  const v = values.filter(x => x >= 0).sort((a, b) => a - b)
  const at = (q: number): number => v.length === 0 ? 0 : round4(v[Math.min(v.length - 1, Math.floor(q * v.length))] as number)
  return { count: v.length, p50: at(0.5), p95: at(0.95), p99: at(0.99) }
}

interface Acc {
  pool: string
  shadowPool: string
  endpoint: string
  stats: FieldStats
  /** Per record, the differing fields (the verdict needs the whole window's noise first). */
  diffFields: string[][]
  primaryMs: number[]
  shadowMs: number[]
  examples: Map<string, ReportExample[]>
}

export async function buildReport (dir: string, opts: { sinceMs?: number, now?: number } = {}): Promise<ShadowReport> {
  const now = opts.now ?? Date.now()
  const sinceMs = opts.sinceMs === undefined ? undefined : now - opts.sinceMs
  const accs = new Map<string, Acc>()
  let count = 0
  let from: string | null = null
  let to: string | null = null
  for await (const r of readRecords(dir, sinceMs)) {
    count++
    if (from === null || r.time < from) from = r.time
    if (to === null || r.time > to) to = r.time
    const key = `${r.pool}\u0000${r.endpoint}`
    let a = accs.get(key)
    if (a === undefined) {
      a = { pool: r.pool, shadowPool: r.shadow_pool, endpoint: r.endpoint, stats: new FieldStats(), diffFields: [], primaryMs: [], shadowMs: [], examples: new Map() }
      accs.set(key, a)
    }
    a.stats.add(r.diffs, r.noise?.map(field => ({ field, primary: null, shadow: null })))
    a.diffFields.push(r.diffs.map(d => d.field))
    a.primaryMs.push(r.primary.ms)
    a.shadowMs.push(r.shadow.ms)
    for (const d of r.diffs) {
      let ex = a.examples.get(d.field)
      if (ex === undefined) {
        if (a.examples.size >= FIELDS_WITH_EXAMPLES) continue
        ex = []
        a.examples.set(d.field, ex)
      }
      if (ex.length >= EXAMPLES_PER_FIELD) continue
      ex.push({
        field: d.field,
        time: r.time,
        request: { id: r.request.id, method: r.request.method, path: r.request.path },
        primary: d.primary,
        shadow: d.shadow,
        primary_status: r.primary.status,
        shadow_status: r.shadow.status,
        ...(r.primary.body === undefined ? {} : { primary_body: r.primary.body }),
        ...(r.shadow.body === undefined ? {} : { shadow_body: r.shadow.body }),
      })
    }
  }
  const pools = new Map<string, ShadowReport['pools'][number]>()
  for (const a of accs.values()) {
    const differing = a.diffFields.filter(fs => fs.some(f => a.stats.significant(f))).length
    const fields = a.stats.fields(100)
    const e: EndpointReport = {
      endpoint: a.endpoint,
      compared: a.stats.compared,
      differing,
      differing_rate: a.stats.compared === 0 ? 0 : round4(differing / a.stats.compared),
      fields,
      examples: fields.filter(f => !f.noise).flatMap(f => a.examples.get(f.field) ?? []).slice(0, 12),
      latency: { primary: latency(a.primaryMs), shadow: latency(a.shadowMs) },
    }
    let p = pools.get(a.pool)
    if (p === undefined) { p = { pool: a.pool, shadow_pool: a.shadowPool, compared: 0, differing: 0, endpoints: [] }; pools.set(a.pool, p) }
    p.compared += e.compared
    p.differing += e.differing
    p.endpoints.push(e)
  }
  for (const p of pools.values()) p.endpoints.sort((x, y) => y.differing_rate - x.differing_rate || y.compared - x.compared || (x.endpoint < y.endpoint ? -1 : 1))
  return {
    version: 1,
    generated_at: new Date(now).toISOString(),
    store: dir,
    since_ms: opts.sinceMs ?? null,
    window: { from, to },
    thresholds: { relative: NOISE_RELATIVE, absolute: NOISE_ABSOLUTE },
    records: count,
    pools: [...pools.values()].sort((x, y) => (x.pool < y.pool ? -1 : 1)),
  }
}

function pct (r: number): string {
  return `${(r * 100).toFixed(r > 0 && r < 0.001 ? 3 : 1)}%`
}

function ms (v: number): string {
  return v < 10 ? v.toFixed(2) : v.toFixed(1)
}

function show (v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v)
}

export function renderMarkdown (r: ShadowReport): string {
  const out: string[] = ['# Shadow traffic report', '', `${r.records} comparisons from ${r.window.from ?? '–'} to ${r.window.to ?? '–'} (store ${r.store}).`,
    `A field counts as a difference when its rate beats its noise rate (primary vs secondary) by ${pct(r.thresholds.relative)} relative and ${pct(r.thresholds.absolute)} absolute.`, '']
  for (const p of r.pools) {
    out.push(`## Pool ${p.pool} → ${p.shadow_pool}`, '', `${p.compared} compared, ${p.differing} differing (${pct(p.compared === 0 ? 0 : p.differing / p.compared)}).`, '')
    out.push('| endpoint | compared | differing | rate | primary p50/p95/p99 ms | shadow p50/p95/p99 ms |', '|---|---:|---:|---:|---:|---:|')
    for (const e of p.endpoints) {
      const l = e.latency
      out.push(`| \`${e.endpoint}\` | ${e.compared} | ${e.differing} | ${pct(e.differing_rate)} | ${ms(l.primary.p50)} / ${ms(l.primary.p95)} / ${ms(l.primary.p99)} | ${ms(l.shadow.p50)} / ${ms(l.shadow.p95)} / ${ms(l.shadow.p99)} |`)
    }
    out.push('')
    for (const e of p.endpoints) {
      if (e.fields.length === 0) continue
      out.push(`### \`${e.endpoint}\``, '', '| field | rate | noise rate | verdict |', '|---|---:|---:|---|')
      for (const f of e.fields) out.push(`| \`${f.field}\` | ${pct(f.rate)} | ${pct(f.noise_rate)} | ${f.noise ? 'noise' : '**difference**'} |`)
      out.push('')
      for (const x of e.examples.slice(0, 3)) out.push(`- \`${x.request.method} ${x.request.path}\` ${x.field}: primary \`${show(x.primary)}\` · shadow \`${show(x.shadow)}\``)
      if (e.examples.length > 0) out.push('')
    }
  }
  if (r.pools.length === 0) out.push('No comparisons in this window.', '')
  return out.join('\n')
}

const esc = (s: unknown): string => String(s).replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string)

/** Grouped bars: p50, p95, p99 of primary and shadow. */
function latencyChart (l: EndpointReport['latency']): string {
  const w = 320
  const h = 120
  const max = Math.max(1e-6, l.primary.p99, l.shadow.p99, l.primary.p95, l.shadow.p95)
  const bars: string[] = []
  const qs = ['p50', 'p95', 'p99'] as const
  qs.forEach((q, i) => {
    const x0 = 40 + i * 95
    for (const [j, side, color] of [[0, l.primary, '#0969da'], [1, l.shadow, '#bc4c00']] as const) {
      const v = side[q]
      const bh = Math.round((h - 34) * v / max)
      bars.push(`<rect x="${x0 + j * 30}" y="${h - 18 - bh}" width="26" height="${bh}" fill="${color}"><title>${j === 0 ? 'primary' : 'shadow'} ${q} ${v} ms</title></rect>`,
        `<text x="${x0 + j * 30 + 13}" y="${h - 21 - bh}" font-size="9" text-anchor="middle">${v < 10 ? v.toFixed(1) : Math.round(v)}</text>`)
    }
    bars.push(`<text x="${x0 + 28}" y="${h - 5}" font-size="11" text-anchor="middle" fill="#57606a">${q}</text>`)
  })
  return `<svg class="chart" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="latency, ms">${bars.join('')}` +
    '<rect x="4" y="4" width="9" height="9" fill="#0969da"/><text x="16" y="12" font-size="10">primary</text><rect x="66" y="4" width="9" height="9" fill="#bc4c00"/><text x="78" y="12" font-size="10">shadow (ms)</text></svg>'
}

function prettyBody (s: string | undefined): string {
  if (s === undefined) return '(no body)'
  try { return JSON.stringify(JSON.parse(s), null, 2) } catch { return s }
}

export function renderHtml (r: ShadowReport): string {
  const sections = r.pools.map(p => {
    const rows = p.endpoints.map(e => `<tr class="${e.differing > 0 ? 'bad' : 'ok'}"><td><a href="#${esc(encodeURIComponent(p.pool + e.endpoint))}"><code>${esc(e.endpoint)}</code></a></td><td>${e.compared}</td><td>${e.differing}</td>` +
      `<td><span class="bar"><span style="width:${(e.differing_rate * 100).toFixed(1)}%"></span></span> ${pct(e.differing_rate)}</td>` +
      `<td>${ms(e.latency.primary.p50)} / ${ms(e.latency.primary.p99)}</td><td>${ms(e.latency.shadow.p50)} / ${ms(e.latency.shadow.p99)}</td></tr>`).join('')
    const cards = p.endpoints.map(e => {
      const fields = e.fields.length === 0
        ? '<p class="muted">No field differs.</p>'
        : `<table class="fields"><tr><th>field</th><th>rate</th><th>noise rate</th><th>verdict</th></tr>${e.fields.map(f =>
          `<tr class="${f.noise ? 'noise' : 'diff'}"><td><code>${esc(f.field)}</code></td><td>${pct(f.rate)}</td><td>${pct(f.noise_rate)}</td><td>${f.noise ? 'noise' : '<strong>difference</strong>'}</td></tr>`).join('')}</table>`
      const examples = e.examples.slice(0, 4).map(x => `<div class="example"><div class="req"><code>${esc(x.request.method)} ${esc(x.request.path)}</code> · <code>${esc(x.field)}</code>: ` +
        `<span class="p">${esc(show(x.primary))}</span> → <span class="s">${esc(show(x.shadow))}</span> <span class="muted">${esc(x.time)} · ${esc(x.request.id)}</span></div>` +
        `<div class="sbs"><div><h4>primary · ${x.primary_status}</h4><pre>${esc(prettyBody(x.primary_body))}</pre></div><div><h4>shadow · ${x.shadow_status}</h4><pre>${esc(prettyBody(x.shadow_body))}</pre></div></div></div>`).join('')
      return `<section class="endpoint" id="${esc(encodeURIComponent(p.pool + e.endpoint))}" data-endpoint="${esc(e.endpoint)}"><h3><code>${esc(e.endpoint)}</code> <span class="${e.differing > 0 ? 'state-bad' : 'state-ok'}">${e.differing} of ${e.compared} differ (${pct(e.differing_rate)})</span></h3>` +
        `<div class="cols"><div>${fields}</div><div>${latencyChart(e.latency)}</div></div>${examples}</section>`
    }).join('')
    return `<h2>Pool <code>${esc(p.pool)}</code> → shadow <code>${esc(p.shadow_pool)}</code></h2><p>${p.compared} compared, ${p.differing} differing.</p>` +
      `<table class="summary"><tr><th>endpoint</th><th>compared</th><th>differing</th><th>rate</th><th>primary p50 / p99 ms</th><th>shadow p50 / p99 ms</th></tr>${rows}</table>${cards}`
  }).join('')
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Shadow traffic report</title>
<style>
  body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }
  header { background: #24292f; color: #fff; padding: 12px 24px; } header h1 { margin: 0; font-size: 20px; } header p { margin: 4px 0 0; color: #d0d7de; font-size: 12px; }
  main { padding: 16px 24px; max-width: 1200px; }
  table { border-collapse: collapse; width: 100%; background: #fff; } th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #d0d7de; font-variant-numeric: tabular-nums; }
  th { font-size: 12px; color: #57606a; } tr.bad td:first-child { border-left: 3px solid #cf222e; } tr.ok td:first-child { border-left: 3px solid #1a7f37; }
  .bar { display: inline-block; width: 80px; height: 8px; background: #eaeef2; border-radius: 4px; vertical-align: middle; } .bar span { display: block; height: 100%; background: #cf222e; border-radius: 4px; }
  section.endpoint { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 12px 16px; margin: 16px 0; } section.endpoint h3 { margin: 0 0 8px; font-size: 15px; }
  .cols { display: grid; grid-template-columns: 1fr 340px; gap: 16px; align-items: start; }
  .state-bad { color: #cf222e; font-weight: 600; } .state-ok { color: #1a7f37; } .muted { color: #57606a; font-size: 12px; }
  tr.diff td { background: #ffebe9; } tr.noise td { color: #57606a; }
  .example { margin-top: 10px; } .sbs { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; } .sbs h4 { margin: 4px 0; font-size: 12px; color: #57606a; }
  pre { background: #f6f8fa; border: 1px solid #d0d7de; padding: 6px 8px; margin: 0; max-height: 220px; overflow: auto; font-size: 12px; white-space: pre-wrap; word-break: break-all; }
  .p { color: #0969da; font-family: ui-monospace, monospace; } .s { color: #bc4c00; font-family: ui-monospace, monospace; }
</style></head>
<body><header><h1>Shadow traffic report</h1><p>${r.records} comparisons · ${esc(r.window.from ?? '–')} to ${esc(r.window.to ?? '–')} · store ${esc(r.store)} · generated ${esc(r.generated_at)}</p></header>
<main><p class="muted">A field counts as a difference when its rate beats its noise rate (primary vs secondary) by ${pct(r.thresholds.relative)} relative and ${pct(r.thresholds.absolute)} absolute; without a secondary every differing field counts.</p>
${sections || '<p>No comparisons in this window.</p>'}</main></body></html>
`
}
