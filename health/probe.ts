// One probe per health check type: "http" sends GET path and checks the status, "tcp" only connects.
// Probes use their own agents without keep-alive, so every check proves a fresh connection can be made and
// never rides on (or disturbs) the proxy's pooled connections.
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { formatStatusRanges, statusMatches, type HealthCheckConfig, type HealthCheckType } from '../config/health.js'

export interface ProbeResult {
  readonly ok: boolean
  /** Short and human: "HTTP 200", "HTTP 503 (expected 200-399)", "ECONNREFUSED", "timed out after 1000ms". */
  readonly reason: string
}

/** Where a probe goes, parsed once from the backend URL. */
export interface ProbeTarget {
  readonly url: string
  readonly tls: boolean
  /** Without IPv6 brackets, as net.connect wants it. */
  readonly host: string
  readonly port: number
  /** As the Host header: with brackets and a non-default port. */
  readonly authority: string
}

export function probeTarget (url: string): ProbeTarget {
  const u = new URL(url)
  const tls = u.protocol === 'https:'
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname
  const port = u.port === '' ? (tls ? 443 : 80) : Number(u.port)
  return { url, tls, host, port, authority: u.host }
}

export interface ProbeAgents {
  readonly http: http.Agent
  readonly https: https.Agent
}

export function probeAgents (): ProbeAgents {
  return {
    http: new http.Agent({ keepAlive: false }),
    https: new https.Agent({ keepAlive: false }),
  }
}

export type Probe = (target: ProbeTarget, config: HealthCheckConfig, agents: ProbeAgents, signal: AbortSignal) => Promise<ProbeResult>

export const probes: Record<HealthCheckType, Probe> = { http: httpProbe, tcp: tcpProbe }

function describe (err: unknown): string {
  const e = err as { code?: unknown, message?: unknown } | null
  if (typeof e?.code === 'string') return e.code
  return typeof e?.message === 'string' ? e.message : String(err)
}

/**
 * Settles a probe exactly once: clears its timer, drops the abort listener and destroys the socket or request,
 * whichever way it ended (answer, error, timeout or close()).
 */
class Attempt {
  timer: NodeJS.Timeout | undefined
  done = false
  constructor (
    readonly resolve: (r: ProbeResult) => void,
    readonly signal: AbortSignal,
    readonly destroy: () => void,
  ) {}

  finish (ok: boolean, reason: string): void {
    if (this.done) return
    this.done = true
    clearTimeout(this.timer)
    this.signal.removeEventListener('abort', this.onAbort)
    this.destroy()
    this.resolve({ ok, reason })
  }

  arm (timeout: number): void {
    if (this.signal.aborted) { this.finish(false, 'aborted'); return }
    this.signal.addEventListener('abort', this.onAbort, { once: true })
    this.timer = setTimeout(this.onTimeout, timeout, timeout)
  }

  readonly onAbort = (): void => { this.finish(false, 'aborted') }
  readonly onTimeout = (ms: number): void => { this.finish(false, `timed out after ${ms}ms`) }
}

function httpProbe (target: ProbeTarget, config: HealthCheckConfig, agents: ProbeAgents, signal: AbortSignal): Promise<ProbeResult> {
  return new Promise(resolve => {
    const req = (target.tls ? https : http).request({
      host: target.host,
      port: target.port,
      path: config.path,
      method: 'GET',
      agent: target.tls ? agents.https : agents.http,
      headers: { host: target.authority, 'user-agent': 'edge-proxy-health-check', accept: '*/*', connection: 'close' },
    })
    const a = new Attempt(resolve, signal, () => req.destroy())
    req.on('response', res => {
      const status = res.statusCode ?? 0
      // The status is the verdict; the body is not read, so a large or endless one cannot hold the check.
      res.on('error', noop)
      if (statusMatches(config.expect, status)) a.finish(true, `HTTP ${status}`)
      else a.finish(false, `HTTP ${status} (expected ${formatStatusRanges(config.expect)})`)
    })
    req.on('error', err => { a.finish(false, describe(err)) })
    a.arm(config.timeout)
    req.end()
  })
}

function tcpProbe (target: ProbeTarget, config: HealthCheckConfig, _agents: ProbeAgents, signal: AbortSignal): Promise<ProbeResult> {
  return new Promise(resolve => {
    const socket = net.connect({ host: target.host, port: target.port })
    const a = new Attempt(resolve, signal, () => socket.destroy())
    socket.on('connect', () => { a.finish(true, 'connected') })
    socket.on('error', err => { a.finish(false, describe(err)) })
    a.arm(config.timeout)
  })
}

function noop (): void {}
