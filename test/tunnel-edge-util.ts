// Shared setup for the tunnel end-to-end tests: real edge and tunnel-client processes (dist/cli/main.js) over
// loopback, a config file per edge, line watchers on their stderr, and small HTTP helpers.
import type { TestContext } from 'node:test'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { freePort } from './helpers.js'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'

export const MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url))
export const SECRET = 'e2e-tunnel-secret-0123456789abcdef'
const ENV = { ...process.env, EDGE_TUNNEL_SECRET: SECRET }

export function sleep (ms: number): Promise<void> { return new Promise(resolve => setTimeout(resolve, ms)) }

/** Resolves with `value` after ms, without keeping the process alive (for Promise.race deadlines). */
export function deadline<T> (ms: number, value: T): Promise<T> { return new Promise(resolve => setTimeout(resolve, ms, value).unref()) }

/** A free loopback port, never one handed out before in this process. */
export { freePort }

/** Collects a child's stderr lines; wait() resolves on the first line (at index >= from) that matches. */
export class Lines {
  readonly lines: string[] = []
  #waiters = new Set<{ re: RegExp, from: number, resolve: (l: string) => void }>()
  constructor (stream: Readable) {
    createInterface({ input: stream }).on('line', line => {
      this.lines.push(line)
      if (process.env.E2E_VERBOSE !== undefined) process.stderr.write(`  | ${line}\n`)
      for (const w of this.#waiters) if (w.re.test(line)) { this.#waiters.delete(w); w.resolve(line) }
    })
  }

  get mark (): number { return this.lines.length }

  count (re: RegExp): number { return this.lines.filter(l => re.test(l)).length }

  async wait (re: RegExp, timeoutMs = 10_000, from = 0): Promise<string> {
    const hit = this.lines.slice(from).find(l => re.test(l))
    if (hit !== undefined) return hit
    let timer: NodeJS.Timeout | undefined
    let w: { re: RegExp, from: number, resolve: (l: string) => void } | undefined
    try {
      return await new Promise<string>((resolve, reject) => {
        w = { re, from, resolve }
        this.#waiters.add(w)
        timer = setTimeout(() => { reject(new Error(`no line matching ${re} within ${timeoutMs} ms; got:\n${this.lines.slice(-20).join('\n')}`)) }, timeoutMs)
      })
    } finally {
      clearTimeout(timer)
      if (w !== undefined) this.#waiters.delete(w)
    }
  }
}

export interface EdgePorts { http: number, tunnel: number }

export interface EdgeProc {
  readonly child: ChildProcess
  readonly log: Lines
  readonly ports: EdgePorts
  readonly admin: number
  readonly file: string
  /** SIGTERM and wait for the exit. */
  stop (): Promise<void>
}

export interface EdgeOptions {
  ports?: EdgePorts
  autoRoute?: boolean
  /** [tunnel] heartbeat, e.g. "1s" (default 15s). */
  heartbeat?: string
  /** Extra TOML appended to the file (routes, pools). */
  extra?: string
}

/** The default app: route app.tunnel.test to pool "app", whose members are the tunnels that claim that name. */
export const APP_POOL = `
[[routes]]
name = "app"
match.host = "app.tunnel.test"
pool = "app"

[pools.app]
balance = "round_robin"
tunnel = "app.tunnel.test"
`

export function edgeConfig (ports: EdgePorts, opts: EdgeOptions = {}): string {
  return `[server]
workers = 1
shutdown_timeout = "2s"

[admin]
listen = "127.0.0.1:0"

[log]
access = "off"
level = "info"

[[listeners]]
name = "web"
listen = "127.0.0.1:${ports.http}"
protocol = "http"

[tunnel]
listen = "127.0.0.1:${ports.tunnel}"
secret = "env:EDGE_TUNNEL_SECRET"
allow = ["*.tunnel.test"]
auto_route = ${opts.autoRoute ?? true}
heartbeat = "${opts.heartbeat ?? '15s'}"
${opts.extra ?? APP_POOL}`
}

export async function startEdge (t: TestContext, opts: EdgeOptions = {}): Promise<EdgeProc> {
  const ports = opts.ports ?? { http: await freePort(), tunnel: await freePort() }
  const dir = mkdtempSync(join(tmpdir(), 'edge-e2e-'))
  const file = join(dir, 'edge.toml')
  writeFileSync(file, edgeConfig(ports, opts))
  const child = spawn(process.execPath, [MAIN, '--config', file], { env: ENV, stdio: ['ignore', 'ignore', 'pipe'] })
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }) })
  const log = new Lines(child.stderr!)
  const exited = once(child, 'exit').then(([code]) => { throw new Error(`edge exited (${String(code)}):\n${log.lines.join('\n')}`) })
  const line = await Promise.race([log.wait(/"msg":"admin listening"/), exited])
  const admin = Number(/"address":"[^"]*:(\d+)"/.exec(line)?.[1])
  exited.catch(() => {})
  return {
    child,
    log,
    ports,
    admin,
    file,
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return
      const done = once(child, 'exit')
      child.kill('SIGTERM')
      await done
    },
  }
}

/** `edge-proxy token ...` through the CLI; returns the token. */
export function mintToken (names: string[], opts: { ttl?: string, secret?: string } = {}): string {
  const args = [MAIN, 'token', '--secret', opts.secret ?? 'env:EDGE_TUNNEL_SECRET', ...names.flatMap(n => ['--name', n])]
  if (opts.ttl !== undefined) args.push('--ttl', opts.ttl)
  const r = spawnSync(process.execPath, args, { env: ENV, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`edge-proxy token failed: ${r.stderr}`)
  return r.stdout.trim()
}

export interface TunnelProc {
  readonly child: ChildProcess
  readonly log: Lines
}

/** `edge-proxy tunnel --edge ws://127.0.0.1:PORT --token T --name N --to URL [extra...]`. */
export function startTunnel (t: TestContext, edgeTunnelPort: number, token: string, name: string, to: string, extra: string[] = []): TunnelProc {
  const child = spawn(process.execPath, [MAIN, 'tunnel', '--edge', `ws://127.0.0.1:${edgeTunnelPort}`, '--token', 'env:E2E_TUNNEL_TOKEN', '--name', name, '--to', to, ...extra], {
    env: { ...ENV, E2E_TUNNEL_TOKEN: token },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return { child, log: new Lines(child.stderr!) }
}

/** A tunnel client connected and registered on the edge (waits for both sides to say so). */
export async function startRegisteredTunnel (t: TestContext, edge: EdgeProc, name: string, to: string, extra: string[] = []): Promise<TunnelProc> {
  const from = edge.log.mark
  const tun = startTunnel(t, edge.ports.tunnel, mintToken([name]), name, to, extra)
  await tun.log.wait(/granted http:/)
  await edge.log.wait(new RegExp(`"name":"${name.replace(/[.*]/g, '\\$&')}".*"msg":"tunnel registered"`), 10_000, from)
  return tun
}

export interface Reply { status: number, headers: http.IncomingHttpHeaders, body: string }

/** One request through the edge, with its own connection (no agent), from an optional local address. */
export function request (port: number, host: string, path = '/', opts: { method?: string, headers?: Record<string, string>, localAddress?: string, body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', agent: false, headers: { host, ...opts.headers }, ...(opts.localAddress === undefined ? {} : { localAddress: opts.localAddress }) }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.setTimeout(15_000, () => { req.destroy(new Error('request timed out')) })
    req.end(opts.body)
  })
}

export interface TunnelStatus { tunnels?: { sessions: { sub: string, names: { name: string }[], streams_open: number, streams_total: number }[] } }

/** The edge's /api/status (tunnels section included). */
export async function edgeStatus (edge: EdgeProc): Promise<TunnelStatus> {
  const r = await request(edge.admin, '127.0.0.1', '/api/status')
  return JSON.parse(r.body) as TunnelStatus
}

/** Resident set size of a process in bytes, from /proc/PID/status. */
export function rssOf (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (m === null) throw new Error(`no VmRSS for ${pid}`)
  return Number(m[1]) * 1024
}

/** An HTTP server on 127.0.0.1:0 in this process, closed after the test. */
export async function httpServer (t: TestContext, handler: http.RequestListener): Promise<{ server: http.Server, port: number, url: string }> {
  const server = http.createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => { server.closeAllConnections(); server.close() })
  const port = (server.address() as AddressInfo).port
  return { server, port, url: `http://127.0.0.1:${port}` }
}
