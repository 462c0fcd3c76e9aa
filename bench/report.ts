// Turning rounds into the figures the README explains: medians over rounds, ratios to direct and to nginx, and
// the markdown table printed at the end of a run. Pure functions over the result records.
import type { LoadResult } from './load/result.js'

export interface RoundResult extends LoadResult {
  readonly round: number
  /** CPU of the proxy's process tree during the round, ms; undefined for the direct target. */
  readonly proxyCpuMs: number | undefined
  /** Peak RSS of the proxy's process tree (sum over its processes), KiB; undefined for the direct target. */
  readonly proxyPeakRssKb: number | undefined
  readonly backendCpuMs: number
}

export interface Summary {
  readonly rps: number
  /** Median over rounds of response bytes read per second, in MB/s (10^6 bytes). */
  readonly mbps: number
  readonly p50: number
  readonly p99: number
  readonly requests: number
  readonly errors: number
  readonly non2xx: number
  readonly vsDirect: number | undefined
  readonly vsNginx: number | undefined
  readonly proxyPeakRssMb: number | undefined
  /** Proxy CPU time per request, µs (all rounds' CPU over all rounds' requests). */
  readonly proxyCpuUsPerReq: number | undefined
  /** Median share of one core used during a round, %. Over 100 means more than one core. */
  readonly proxyCpuPct: number | undefined
  readonly backendCpuPct: number
  readonly loadgenCpuPct: number
}

export interface Cell {
  readonly scenario: string
  readonly target: string
  readonly rounds: RoundResult[]
  error?: string
  summary?: Summary
}

export interface IdleResult {
  readonly target: string
  readonly connections: number
  readonly opened: number
  readonly failed: number
  /** Connections (beyond the warm-up's) still open when "after" was sampled. */
  readonly stillOpen: number
  readonly rssBeforeKb: number
  readonly rssAfterKb: number
  /** (after - before) / stillOpen, bytes. */
  readonly bytesPerConnection: number
  /** Least-squares slope of RSS over open connections (4 samples: 0, 1/3, 2/3, all), bytes. */
  readonly slopeBytesPerConnection: number
  error?: string
}

/** One soak round: the load round's figures plus the tree's RSS after the settle that follows it. */
export interface SoakRound extends RoundResult {
  readonly rssAfterKb: number
}

/** "flat": the last round's RSS within the tolerance of the first's; "incomplete": a round is missing. */
export type SoakVerdict = 'flat' | 'grew' | 'shrank' | 'incomplete'

export interface SoakResult {
  readonly scenario: string
  readonly target: string
  readonly roundS: number
  /** Pause between the end of a round and the RSS sample, ms. */
  readonly settleMs: number
  readonly tolerancePct: number
  /** RSS after the warm-up, before round 1 (context only: round 1 is the baseline). */
  readonly rssBeforeKb: number
  readonly rounds: SoakRound[]
  /** (RSS after the last round − after the first) / after the first, %. */
  changePct?: number
  verdict?: SoakVerdict
  error?: string
}

/**
 * The soak verdict over the RSS samples taken after each round: the change from the first to the last, and
 * "flat" when its size is within `tolerancePct`. The first round is the baseline, not the RSS before it: a heap
 * grows to its working size during the first minute of load, and that is not a leak.
 */
export function soakVerdict (rssKb: readonly number[], rounds: number, tolerancePct: number): { changePct: number, verdict: SoakVerdict } {
  const first = rssKb[0]
  const last = rssKb[rssKb.length - 1]
  if (rssKb.length < Math.max(2, rounds) || first === undefined || last === undefined || !(first > 0)) return { changePct: Number.NaN, verdict: 'incomplete' }
  const changePct = (last - first) * 100 / first
  return { changePct, verdict: Math.abs(changePct) <= tolerancePct ? 'flat' : changePct > 0 ? 'grew' : 'shrank' }
}

export function median (xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}

const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0)
const pct = (cpuMs: number, durationS: number): number => durationS > 0 ? cpuMs / (durationS * 10) : Number.NaN

/** Summarizes every cell; ratios compare with the same scenario's "direct" and "nginx" cells. */
export function summarize (cells: readonly Cell[]): void {
  for (const c of cells) {
    const r = c.rounds
    if (r.length === 0) continue
    const proxied = r.every(x => x.proxyCpuMs !== undefined)
    const requests = sum(r.map(x => x.requests))
    c.summary = {
      rps: median(r.map(x => x.rps)),
      mbps: median(r.map(x => x.durationS > 0 ? x.bytes / x.durationS / 1e6 : Number.NaN)),
      p50: median(r.map(x => x.p50)),
      p99: median(r.map(x => x.p99)),
      requests,
      errors: sum(r.map(x => x.errors)),
      non2xx: sum(r.map(x => x.non2xx)),
      vsDirect: undefined,
      vsNginx: undefined,
      proxyPeakRssMb: proxied ? Math.max(...r.map(x => x.proxyPeakRssKb ?? 0)) / 1024 : undefined,
      proxyCpuUsPerReq: proxied && requests > 0 ? sum(r.map(x => x.proxyCpuMs ?? 0)) * 1000 / requests : undefined,
      proxyCpuPct: proxied ? median(r.map(x => pct(x.proxyCpuMs ?? 0, x.durationS))) : undefined,
      backendCpuPct: median(r.map(x => pct(x.backendCpuMs, x.durationS))),
      loadgenCpuPct: median(r.map(x => pct(x.cpuMs, x.durationS))),
    }
  }
  for (const c of cells) {
    if (c.summary === undefined) continue
    const ref = (name: string): number | undefined => cells.find(x => x.scenario === c.scenario && x.target === name)?.summary?.rps
    const direct = ref('direct')
    const nginx = ref('nginx')
    c.summary = {
      ...c.summary,
      vsDirect: direct === undefined || direct === 0 ? undefined : c.summary.rps / direct,
      vsNginx: nginx === undefined || nginx === 0 ? undefined : c.summary.rps / nginx,
    }
  }
}

function fmt (n: number | undefined, digits = 0): string {
  if (n === undefined || Number.isNaN(n)) return '–'
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

export interface ScenarioInfo { readonly name: string, readonly title: string, readonly tool: string }

const mb = (kb: number): string => fmt(kb / 1024, 1)

/** The soak table: one row per target, RSS after each round and the verdict. */
export function soakMarkdown (scenario: ScenarioInfo, results: readonly SoakResult[]): string {
  const rows = results.filter(r => r.scenario === scenario.name)
  if (rows.length === 0) return ''
  const tool = rows.find(r => r.rounds.length > 0)?.rounds[0]?.tool ?? scenario.tool
  const first = rows[0] as SoakResult
  const out = [`### ${scenario.name}: ${scenario.title} [${tool}]`, '']
  out.push(`${first.rounds.length > 0 ? first.rounds.length : 'consecutive'} rounds of ${first.roundS} s per target; RSS of the proxy's tree ${first.settleMs / 1000} s after each round; "flat" when round 1 → last is within ±${first.tolerancePct} %.`, '')
  out.push('| target | req/s per round | errors | RSS before MB | RSS after each round MB | peak RSS MB | round 1 → last | verdict |')
  out.push('|---|---:|---:|---:|---:|---:|---:|---|')
  for (const r of rows) {
    const rps = r.rounds.map(x => fmt(x.rps)).join(' / ')
    const errors = r.rounds.reduce((a, x) => a + x.errors + x.non2xx, 0)
    const peak = r.rounds.length === 0 ? Number.NaN : Math.max(...r.rounds.map(x => x.proxyPeakRssKb ?? 0))
    const change = r.changePct === undefined || Number.isNaN(r.changePct) ? '–' : `${r.changePct >= 0 ? '+' : ''}${fmt(r.changePct, 1)} %`
    const verdict = r.error === undefined ? (r.verdict ?? '–') : `${r.verdict ?? 'incomplete'}: ${r.error.replace(/\|/g, '/').slice(0, 120)}`
    out.push(`| ${r.target} | ${rps === '' ? '–' : rps} | ${fmt(errors)} | ${mb(r.rssBeforeKb)} | ${r.rounds.map(x => mb(x.rssAfterKb)).join(' / ') || '–'} | ${mb(peak)} | ${change} | ${verdict} |`)
  }
  out.push('')
  return out.join('\n')
}

/** The markdown report: one table per scenario (soak scenarios their own kind), then idle-connection memory, then what was skipped. */
export function markdown (scenarios: readonly ScenarioInfo[], cells: readonly Cell[], idle: readonly IdleResult[], skipped: readonly string[], soak: readonly SoakResult[] = []): string {
  const out: string[] = []
  for (const s of scenarios) {
    const soakTable = soakMarkdown(s, soak)
    if (soakTable !== '') { out.push(soakTable); continue }
    const rows = cells.filter(c => c.scenario === s.name)
    if (rows.length === 0) continue
    const tool = rows.find(c => c.rounds.length > 0)?.rounds[0]?.tool ?? s.tool
    out.push(`### ${s.name}: ${s.title} [${tool}]`, '')
    out.push('| target | req/s | MB/s | ×direct | ×nginx | p50 ms | p99 ms | errors | peak RSS MB | proxy CPU µs/req | proxy CPU % | backend CPU % | loadgen CPU % |')
    out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for (const c of rows) {
      const m = c.summary
      if (m === undefined) { out.push(`| ${c.target} | failed: ${(c.error ?? 'no result').replace(/\|/g, '/').slice(0, 120)} ||||||||||||`); continue }
      out.push(`| ${c.target} | ${fmt(m.rps, m.rps < 100 ? 1 : 0)} | ${fmt(m.mbps, 1)} | ${fmt(m.vsDirect, 2)} | ${fmt(m.vsNginx, 2)} | ${fmt(m.p50, 2)} | ${fmt(m.p99, 2)} | ${fmt(m.errors + m.non2xx)} | ${fmt(m.proxyPeakRssMb, 1)} | ${fmt(m.proxyCpuUsPerReq, 1)} | ${fmt(m.proxyCpuPct)} | ${fmt(m.backendCpuPct)} | ${fmt(m.loadgenCpuPct)} |`)
    }
    out.push('')
  }
  if (idle.length > 0) {
    out.push(`### idle keep-alive connections: memory per connection`, '')
    out.push('| target | connections open | RSS before MB | RSS after MB | KiB per connection | KiB per connection (slope) |')
    out.push('|---|---:|---:|---:|---:|---:|')
    for (const r of idle) {
      if (r.error !== undefined) { out.push(`| ${r.target} | failed: ${r.error.replace(/\|/g, '/').slice(0, 120)} |||||`); continue }
      out.push(`| ${r.target} | ${fmt(r.stillOpen)} / ${fmt(r.connections)} | ${fmt(r.rssBeforeKb / 1024, 1)} | ${fmt(r.rssAfterKb / 1024, 1)} | ${fmt(r.bytesPerConnection / 1024, 1)} | ${fmt(r.slopeBytesPerConnection / 1024, 1)} |`)
    }
    out.push('')
  }
  if (skipped.length > 0) out.push('Skipped:', '', ...skipped.map(s => `- ${s}`), '')
  return out.join('\n')
}

/** One of the speed targets against peers, checked against a run. `met` is undefined when the run did not measure it. */
export interface TargetCheck {
  readonly target: string
  readonly measured: string
  readonly met: boolean | undefined
}

/**
 * The targets against peers (100 B, 50 keep-alive connections; wrk where it ran, else autocannon),
 * checked against this run's medians, so that a run says by itself which hold.
 */
export function peerTargets (cells: readonly Cell[], idle: readonly IdleResult[], soak: readonly SoakResult[]): TargetCheck[] {
  const sum = (scenario: string, target: string): Summary | undefined => cells.find(c => c.scenario === scenario && c.target === target)?.summary
  const scenario = sum('wrk-100b-c50', 'edge-proxy') !== undefined ? 'wrk-100b-c50' : '100b-c50'
  const edge = sum(scenario, 'edge-proxy')
  const hp3 = sum(scenario, 'http-proxy-3')
  const umin = sum(scenario, 'undici-min')
  const nginx = sum(scenario, 'nginx')
  const out: TargetCheck[] = []
  const ratio = (a: number | undefined, b: number | undefined): number | undefined => a === undefined || b === undefined || b === 0 ? undefined : a / b
  const r = ratio(edge?.rps, hp3?.rps)
  out.push({ target: `${scenario}: edge-proxy req/s >= 2.0x http-proxy-3`, measured: r === undefined ? '–' : `${fmt(r, 2)}x (${fmt(edge?.rps)} vs ${fmt(hp3?.rps)})`, met: r === undefined ? undefined : r >= 2 })
  const cpu = edge?.proxyCpuUsPerReq
  const cpuMin = umin?.proxyCpuUsPerReq
  out.push({ target: `${scenario}: edge-proxy CPU per request <= undici-min`, measured: cpu === undefined || cpuMin === undefined ? '–' : `${fmt(cpu, 1)} vs ${fmt(cpuMin, 1)} µs`, met: cpu === undefined || cpuMin === undefined ? undefined : cpu <= cpuMin })
  out.push({ target: `${scenario}: edge-proxy p99 <= http-proxy-3`, measured: edge === undefined || hp3 === undefined ? '–' : `${fmt(edge.p99, 2)} vs ${fmt(hp3.p99, 2)} ms`, met: edge === undefined || hp3 === undefined ? undefined : edge.p99 <= hp3.p99 })
  const n = ratio(edge?.rps, nginx?.rps)
  out.push({ target: `${scenario}: edge-proxy >= 0.6x nginx (the aim beyond)`, measured: n === undefined ? '–' : `${fmt(n, 2)}x`, met: n === undefined ? undefined : n >= 0.6 })
  for (const s of ['wrk-100b-c50', 'wrk-16k-c50']) {
    const one = sum(s, 'edge-proxy')
    const auto = sum(s, 'edge-proxy-auto')
    out.push({ target: `${s}: workers = "auto" > workers = 1`, measured: one === undefined || auto === undefined ? '–' : `${fmt(auto.rps)} vs ${fmt(one.rps)}`, met: one === undefined || auto === undefined ? undefined : auto.rps > one.rps })
  }
  const id = idle.find(x => x.target === 'edge-proxy' && x.error === undefined)
  out.push({ target: 'idle keep-alive connection <= 12 KiB', measured: id === undefined ? '–' : `${fmt(id.bytesPerConnection / 1024, 1)} KiB`, met: id === undefined ? undefined : id.bytesPerConnection <= 12 * 1024 })
  const so = soak.find(x => x.target === 'edge-proxy' && x.verdict !== undefined)
  out.push({ target: 'RSS flat over the soak rounds (within 10 %)', measured: so?.changePct === undefined ? '–' : `${so.changePct >= 0 ? '+' : ''}${fmt(so.changePct, 1)} %`, met: so === undefined ? undefined : so.verdict === 'flat' })
  return out
}

export function targetsMarkdown (checks: readonly TargetCheck[]): string {
  if (checks.every(c => c.met === undefined)) return ''
  const out = ['### targets against peers, checked against this run', '', '| target | measured | verdict |', '|---|---|---|']
  for (const c of checks) out.push(`| ${c.target} | ${c.measured} | ${c.met === undefined ? 'not measured' : c.met ? 'met' : 'NOT met'} |`)
  out.push('')
  return out.join('\n')
}
