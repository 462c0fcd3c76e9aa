// The bench's knobs: command-line flags and BENCH_* environment variables.
import { parseArgs } from 'node:util'

export interface BenchOptions {
  readonly quick: boolean
  readonly durationS: number
  readonly rounds: number
  /** Only these targets / scenarios (by name), or all when undefined. */
  readonly targets: ReadonlySet<string> | undefined
  readonly scenarios: ReadonlySet<string> | undefined
  readonly idleConnections: number
  /** Seconds per round of the soak scenario (opt-in). */
  readonly soakSeconds: number
  readonly outDir: string
}

export const USAGE = `npm run bench [-- --quick]

  --quick                 1 round of 2 s per scenario and target (a smoke run, not a measurement)
  --out DIR               where the JSON result goes (default bench/results)
  -h, --help

Environment:
  BENCH_DURATION=5        seconds per round (default 5; 2 with --quick)
  BENCH_ROUNDS=3          rounds per scenario and target, run round-robin over targets (default 3; 1 with --quick)
  BENCH_TARGETS=a,b       only these targets (direct, edge-proxy, edge-proxy-tunnel, edge-proxy-auto, http-proxy-3,
                          undici-min, nginx, haproxy, caddy); "direct" and "nginx" are worth keeping for the ratios.
                          edge-proxy-tunnel runs only in the tunnel-* scenarios
  BENCH_SCENARIOS=a,b     only these scenarios (names as in the report; "idle" is the idle-connection memory test).
                          "soak" (RSS after 3 consecutive rounds of load: the leak check) runs only when named here;
                          "ha" (failover gap against keepalived, in network namespaces) needs root
  BENCH_SOAK_SECONDS=60   seconds per soak round (default 60; 2 with --quick)
  BENCH_IDLE_CONNS=3000   connections for the idle-connection memory test (0 skips it)
`

function positive (name: string, fallback: number): number {
  const v = process.env[name]
  if (v === undefined || v === '') return fallback
  const n = Number(v)
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number >= 0, got "${v}"`)
  return n
}

function list (name: string): ReadonlySet<string> | undefined {
  const v = process.env[name]
  return v === undefined || v.trim() === '' ? undefined : new Set(v.split(',').map(s => s.trim()).filter(s => s !== ''))
}

export function parseOptions (argv: string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: { quick: { type: 'boolean' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  })
  if (values.help === true) return 'help'
  const quick = values.quick === true
  return {
    quick,
    durationS: Math.max(1, Math.round(positive('BENCH_DURATION', quick ? 2 : 5))),
    rounds: Math.max(1, Math.round(positive('BENCH_ROUNDS', quick ? 1 : 3))),
    targets: list('BENCH_TARGETS'),
    scenarios: list('BENCH_SCENARIOS'),
    idleConnections: Math.round(positive('BENCH_IDLE_CONNS', 3000)),
    soakSeconds: Math.max(1, Math.round(positive('BENCH_SOAK_SECONDS', quick ? 2 : 60))),
    outDir: values.out ?? new URL('../../bench/results/', import.meta.url).pathname,
  }
}
