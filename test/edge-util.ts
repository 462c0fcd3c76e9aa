// Helpers for the health, admin and status page tests: backends that count what reaches them, an in-process edge
// wired as `cli/run.ts` runSingle wires it (Edge + HealthControl + EventLog + AdminServer), and a small client.
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import net from 'node:net'
import type { TestContext } from 'node:test'
import pino from 'pino'
import { Agent, request } from 'undici'
import { parseConfigText } from '../config/load.js'
import { Edge } from '../proxy/edge.js'
import { AdminServer } from '../proxy/ops/admin.js'
import { EventLog } from '../proxy/ops/events.js'
import { edgeStatus } from '../proxy/ops/status.js'
import { applyDrain } from '../cli/control.js'
import { HealthControl } from '../cli/health-control.js'

export interface TestBackend {
  readonly url: string
  readonly port: number
  /** Requests other than health checks. */
  hits: number
  /** Health check requests (GET /healthz). */
  checks: number
  /** Client ports of the connections that carried requests other than health checks. */
  readonly peers: Set<number>
  /** TCP connections accepted. */
  connections: number
  /** What /healthz answers; the handler's own status is separate. */
  healthStatus: number
  readonly server: http.Server
  close (): Promise<void>
}

export type Handler = (req: IncomingMessage, res: ServerResponse, b: TestBackend) => void

const ok: Handler = (_req, res, b) => { res.end(`hello from ${b.port}`) }

/** An HTTP backend on 127.0.0.1:0 that answers /healthz with `healthStatus` and everything else with `handler`. */
export async function backend (t: TestContext, handler: Handler = ok): Promise<TestBackend> {
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') { b.checks++; res.statusCode = b.healthStatus; res.end(); return }
    b.hits++
    b.peers.add(req.socket.remotePort ?? 0)
    handler(req, res, b)
  })
  server.on('connection', () => { b.connections++ })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  let closed = false
  const b: TestBackend = {
    url: `http://127.0.0.1:${port}`,
    port,
    hits: 0,
    checks: 0,
    peers: new Set(),
    connections: 0,
    healthStatus: 200,
    server,
    close: () => new Promise<void>(resolve => {
      if (closed) { resolve(); return }
      closed = true
      server.close(() => { resolve() })
      server.closeAllConnections()
    }),
  }
  t.after(() => b.close())
  return b
}

export interface TestEdge {
  readonly edge: Edge
  readonly events: EventLog
  readonly health: HealthControl
  readonly admin: AdminServer
  /** http://127.0.0.1:PORT of the first listener. */
  readonly url: string
  readonly adminUrl: string
}

/** The TOML head every test config starts with: quiet logs, one listener and the admin on port 0. */
export function head (adminExtra = ''): string {
  return `
[log]
access = "off"
level = "silent"

[admin]
listen = "127.0.0.1:0"
${adminExtra}

[[listeners]]
name = "web"
listen = "127.0.0.1:0"
`
}

/** Starts an edge from TOML in this process, with health checks and the admin API wired as the CLI does. */
export async function startEdge (t: TestContext, toml: string): Promise<TestEdge> {
  const config = parseConfigText(toml)
  const log = pino({ level: 'silent' })
  const events = new EventLog()
  const edge = new Edge(config, { log, onEvent: (type, message, fields) => { events.push(type, message, fields) } })
  await edge.start()
  const health = new HealthControl(v => { edge.setMemberState(v.pool, v.url, v) }, events, log)
  health.sync(config)
  const admin = new AdminServer(config.admin, {
    log,
    events,
    reload: () => Promise.reject(new Error('no reload in tests')),
    health: () => ({ generation: 1, workers: 1 }),
    metrics: () => edge.metrics.text(),
    status: async () => ({ generation: 1, workers: 1, ...await edgeStatus(edge) }),
    drain: (pool, b, draining) => applyDrain(edge.config, events, pool, b, draining, (p, url, d) => { edge.setMemberState(p, url, { draining: d }) }),
  })
  await admin.listen()
  t.after(async () => {
    await admin.close()
    await health.close()
    await edge.close(0)
  })
  const port = (edge.listeners()[0] as { port: number }).port
  return { edge, events, health, admin, url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${admin.port}` }
}

export interface Answer { status: number, body: string, headers: Record<string, string | string[] | undefined> }

/** One client agent per test file; closed with the test. */
export function client (t: TestContext, opts: { keepAlive?: boolean } = {}): (url: string, init?: { method?: string, body?: string, headers?: Record<string, string> }) => Promise<Answer> {
  const agent = new Agent()
  t.after(() => agent.close())
  return async (url, init = {}) => {
    const res = await request(url, {
      dispatcher: agent,
      method: (init.method ?? 'GET') as 'GET',
      ...(init.body === undefined ? {} : { body: init.body }),
      headers: { ...(opts.keepAlive === false ? { connection: 'close' } : {}), ...(init.headers ?? {}) },
    })
    return { status: res.statusCode, body: await res.body.text(), headers: res.headers }
  }
}

/** Polls `check` every 10 ms until it holds or `timeout` ms pass; resolves with the time it took. */
export async function until (check: () => boolean, timeout: number, what: string): Promise<number> {
  const start = Date.now()
  while (!check()) {
    if (Date.now() - start > timeout) throw new Error(`timed out after ${timeout} ms waiting for: ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  return Date.now() - start
}

/** Prometheus text format (0.0.4) parsed into samples; throws on a line that is not valid exposition text. */
export interface Sample { name: string, labels: Record<string, string>, value: number }

const sampleLine = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?$/
const labelPair = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)/y

export function parsePrometheus (text: string): { samples: Sample[], types: Map<string, string> } {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  for (const [i, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*)(?: (.*))?$/.exec(line)
      if (m === null) { if (/^# (HELP|TYPE)/.test(line)) throw new Error(`line ${i + 1}: bad comment: ${line}`); continue }
      if (m[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3] ?? '')) throw new Error(`line ${i + 1}: bad type: ${line}`)
        types.set(m[2] as string, m[3] as string)
      }
      continue
    }
    const m = sampleLine.exec(line)
    if (m === null) throw new Error(`line ${i + 1}: not a sample: ${line}`)
    const labels: Record<string, string> = {}
    const body = m[2] ?? ''
    labelPair.lastIndex = 0
    while (labelPair.lastIndex < body.length) {
      const start = labelPair.lastIndex
      const lm = labelPair.exec(body)
      if (lm === null || lm.index !== start) throw new Error(`line ${i + 1}: bad labels: ${line}`)
      labels[lm[1] as string] = (lm[2] as string).replace(/\\(.)/g, (_s, c: string) => c === 'n' ? '\n' : c)
    }
    const raw = m[3] as string
    // NaN in any case, as Prometheus reads it (Go's ParseFloat): prom-client writes "Nan" for an empty event-loop lag.
    const nan = raw.toLowerCase() === 'nan'
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : nan ? NaN : Number(raw)
    if (Number.isNaN(value) && !nan) throw new Error(`line ${i + 1}: bad value: ${line}`)
    samples.push({ name: m[1] as string, labels, value })
  }
  return { samples, types }
}

/** The sum of every sample named `name` whose labels include `match`. */
export function sum (samples: readonly Sample[], name: string, match: Record<string, string> = {}): number {
  let total = 0
  for (const s of samples) {
    if (s.name !== name) continue
    if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) total += s.value
  }
  return total
}
