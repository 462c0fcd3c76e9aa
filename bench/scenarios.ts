// What the bench measures: the scenario list. Each load scenario runs against every target, round-robin.
// To add one, append an entry; an entry with `pending` is listed in the report as not measured yet, so the list
// doubles as the to-do. An entry with `soak` is opt-in (it runs only when BENCH_SCENARIOS names it): it takes
// minutes per target, so the default run leaves it out.

/** Which load generator drives a scenario. "close" = a new TCP connection per request (see load/index.ts). */
export type Tool = 'autocannon' | 'wrk' | 'close'

export interface Scenario {
  readonly name: string
  readonly title: string
  readonly method: 'GET' | 'POST'
  readonly path: string
  /** Request body size in bytes (POST). */
  readonly bodyBytes?: number
  readonly connections: number
  /** Requests per second over all connections (autocannon's overallRate); default: as fast as the target goes. */
  readonly rate?: number
  readonly tool: Tool
  /** The tool to use instead when `tool` (wrk) is not installed; without one the scenario is skipped. */
  readonly fallback?: Tool
  /** "https": sent to each target's TLS port (targets without one are skipped with a note). Default "http". */
  readonly scheme?: 'http' | 'https'
  /** The Host header to send (default: the URL's, 127.0.0.1:PORT). */
  readonly host?: string
  /**
   * Only these targets run it (default: every target that is not `dedicated`). A dedicated target, such as the
   * tunnel one, runs only in the scenarios that name it.
   */
  readonly targets?: readonly string[]
  /** Set while the capability it needs is not built: the scenario is reported as skipped with this reason. */
  readonly pending?: string
  /**
   * A leak check instead of a throughput cell (bench/soak.ts): `rounds` consecutive rounds of load on one target
   * (BENCH_SOAK_SECONDS each), RSS of the proxy's tree sampled after each, "flat" when the last is within
   * `tolerancePct` of the first. Opt-in: runs only when BENCH_SCENARIOS names it.
   */
  readonly soak?: { readonly rounds: number, readonly tolerancePct: number }
}

/** The tool a scenario runs with, given whether wrk is installed; undefined when it cannot run. */
export function toolFor (s: Scenario, wrk: string | undefined): Tool | undefined {
  return s.tool === 'wrk' && wrk === undefined ? s.fallback : s.tool
}

/** Whether a scenario runs when BENCH_SCENARIOS is `selected` (undefined: not set, the default run). */
export function selected (s: Scenario, names: ReadonlySet<string> | undefined): boolean {
  return names === undefined ? s.soak === undefined : names.has(s.name)
}

/** The name tunnel clients claim in the tunnel scenarios (bench/targets.ts, edge-proxy-tunnel). */
export const TUNNEL_NAME = 'bench.tunnel.test'
const TUNNEL_TARGETS = ['direct', 'edge-proxy', 'edge-proxy-tunnel']
/** edge-proxy with its own HTTP/1.1 server (the default) and with node:http, beside the no-feature floor. */
const HTTP1_TARGETS = ['direct', 'edge-proxy', 'edge-proxy-node', 'undici-min', 'http-proxy-3']

export const SCENARIOS: readonly Scenario[] = [
  { name: '100b-c50', title: 'GET 100 B, 50 connections, keep-alive', method: 'GET', path: '/100b', connections: 50, tool: 'autocannon' },
  { name: '16k-c50', title: 'GET 16 KiB, 50 connections, keep-alive', method: 'GET', path: '/16k', connections: 50, tool: 'autocannon' },
  { name: '100b-c500', title: 'GET 100 B, 500 connections, keep-alive', method: 'GET', path: '/100b', connections: 500, tool: 'autocannon' },
  { name: 'wrk-100b-c50', title: 'GET 100 B, 50 connections, keep-alive (wrk)', method: 'GET', path: '/100b', connections: 50, tool: 'wrk' },
  { name: 'wrk-16k-c50', title: 'GET 16 KiB, 50 connections, keep-alive (wrk)', method: 'GET', path: '/16k', connections: 50, tool: 'wrk' },
  { name: 'http1-100b-c50', title: 'GET 100 B, 50 connections, keep-alive (wrk): http1_server "edge" vs "node"', method: 'GET', path: '/100b', connections: 50, tool: 'wrk', fallback: 'autocannon', targets: HTTP1_TARGETS },
  { name: 'close-100b-c50', title: 'GET 100 B, new connection per request, 50 concurrent', method: 'GET', path: '/100b', connections: 50, tool: 'close' },
  { name: 'upload-1mb-c10', title: 'POST 1 MB upload, 10 connections, keep-alive', method: 'POST', path: '/upload', bodyBytes: 1024 * 1024, connections: 10, tool: 'autocannon' },
  { name: 'https-100b-c50', title: 'GET 100 B over TLS, 50 connections, keep-alive', method: 'GET', path: '/100b', connections: 50, tool: 'autocannon', scheme: 'https' },
  { name: 'https-close-100b-c50', title: 'GET 100 B over TLS, new connection (full handshake) per request, 50 concurrent', method: 'GET', path: '/100b', connections: 50, tool: 'close', scheme: 'https' },
  { name: 'tunnel-100b-c50', title: 'GET 100 B through a tunnel, 50 connections, keep-alive', method: 'GET', path: '/100b', connections: 50, tool: 'autocannon', host: TUNNEL_NAME, targets: TUNNEL_TARGETS },
  { name: 'tunnel-64m-c1', title: 'GET 64 MiB through a tunnel, 1 connection, keep-alive (read MB/s)', method: 'GET', path: '/64m', connections: 1, tool: 'autocannon', host: TUNNEL_NAME, targets: TUNNEL_TARGETS },
  // Issue 7: "RSS flat (within 10%) across three consecutive 60-second load rounds (no leak)".
  { name: 'soak', title: 'GET 100 B, 50 connections, keep-alive: RSS after each of 3 consecutive rounds (leak check)', method: 'GET', path: '/100b', connections: 50, tool: 'wrk', fallback: 'autocannon', soak: { rounds: 3, tolerancePct: 10 } },
  // Issue 14: "shadow with sample = 1.0 to a shadow backend 10x slower than the primary; client req/s and p99
  // within 10% of the same run without shadowing" (edge-proxy beside edge-proxy-shadow).
  { name: 'shadow-100b-c50', title: 'GET 100 B, 50 connections, keep-alive: without and with 100% shadowing to a slower backend', method: 'GET', path: '/100b', connections: 50, tool: 'autocannon', targets: ['direct', 'edge-proxy', 'edge-proxy-shadow'] },
  // The same below saturation: what a client sees when the proxy has CPU to spare (the usual case in production).
  { name: 'shadow-100b-c50-r1000', title: 'GET 100 B, 50 connections, 1000 req/s: without and with 100% shadowing to a slower backend', method: 'GET', path: '/100b', connections: 50, rate: 1000, tool: 'autocannon', targets: ['direct', 'edge-proxy', 'edge-proxy-shadow'] },
]
