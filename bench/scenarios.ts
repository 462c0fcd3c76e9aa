// What the bench measures: the scenario list. Each load scenario runs against every target, round-robin.
// To add one (https, tunnel, shadowing...), append an entry; an entry with `pending` is listed in the report as
// not measured yet, so the list doubles as the to-do.

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
  readonly tool: Tool
  /** Set while the capability it needs is not built: the scenario is reported as skipped with this reason. */
  readonly pending?: string
}

export const SCENARIOS: readonly Scenario[] = [
  { name: '100b-c50', title: 'GET 100 B, 50 connections, keep-alive', method: 'GET', path: '/100b', connections: 50, tool: 'autocannon' },
  { name: '16k-c50', title: 'GET 16 KiB, 50 connections, keep-alive', method: 'GET', path: '/16k', connections: 50, tool: 'autocannon' },
  { name: '100b-c500', title: 'GET 100 B, 500 connections, keep-alive', method: 'GET', path: '/100b', connections: 500, tool: 'autocannon' },
  { name: 'wrk-100b-c50', title: 'GET 100 B, 50 connections, keep-alive (wrk)', method: 'GET', path: '/100b', connections: 50, tool: 'wrk' },
  { name: 'wrk-16k-c50', title: 'GET 16 KiB, 50 connections, keep-alive (wrk)', method: 'GET', path: '/16k', connections: 50, tool: 'wrk' },
  { name: 'close-100b-c50', title: 'GET 100 B, new connection per request, 50 concurrent', method: 'GET', path: '/100b', connections: 50, tool: 'close' },
  { name: 'upload-1mb-c10', title: 'POST 1 MB upload, 10 connections, keep-alive', method: 'POST', path: '/upload', bodyBytes: 1024 * 1024, connections: 10, tool: 'autocannon' },
  // Hooks for capabilities that are not built yet.
  { name: 'https-100b-c50', title: 'GET 100 B over TLS, 50 connections', method: 'GET', path: '/100b', connections: 50, tool: 'autocannon', pending: 'needs the https listener' },
  { name: 'tunnel-100b-c50', title: 'GET 100 B through a packer tunnel, 50 connections', method: 'GET', path: '/100b', connections: 50, tool: 'autocannon', pending: 'needs packer/ (tunnels)' },
  { name: 'shadow-100b-c50', title: 'GET 100 B with 100% shadowing to a second backend, 50 connections', method: 'GET', path: '/100b', connections: 50, tool: 'autocannon', pending: 'needs request mirroring' },
]
