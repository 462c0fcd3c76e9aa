// provider = "process": the edge runs the pool's backends itself. Each is `command` started with PORT={port} (a
// free port of `ports`) in its environment, in its own process group; it joins the pool once the port answers
// (and takes traffic once the pool's health check passes); scale-down drains it, then SIGTERM (SIGKILL after
// STOP_GRACE_MS). One that exits on its own is replaced, with a growing delay while it keeps crashing. Its
// output goes to the edge's log, each line prefixed with [pool:port].
import { spawn, type ChildProcess } from 'node:child_process'
import { connect, createServer } from 'node:net'
import { createInterface } from 'node:readline'
import type { ScaleProviderConfig } from '../../config/scale.js'
import type { ScaleEvent } from '../scaler.js'
import type { ScaleProvider, ScaleProviderDeps } from './provider.js'

/** A started backend that does not answer on its port within this long is stopped and counted as failed. */
export const START_TIMEOUT_MS = 15_000
/** SIGTERM, then SIGKILL after this long. */
export const STOP_GRACE_MS = 5_000
const PROBE_MS = 50
const RESTART_BASE_MS = 200
const RESTART_MAX_MS = 10_000

type ProcessConfig = Extract<ScaleProviderConfig, { kind: 'process' }>

interface Child {
  readonly port: number
  readonly url: string
  proc: ChildProcess | undefined
  state: 'starting' | 'running' | 'stopping'
  /** Consecutive exits without reaching running for a while (crash loop backoff). */
  crashes: number
  exited: Promise<void>
  timer: NodeJS.Timeout | undefined
}

export class ProcessProvider implements ScaleProvider {
  readonly kind = 'process'
  readonly #config: ProcessConfig
  readonly #deps: ScaleProviderDeps
  readonly #children = new Map<number, Child>()
  readonly #stops = new Set<Promise<void>>()
  #want = 0
  #closed = false
  /** Reconciles run one after another (two at once could pick the same free port). */
  #queue: Promise<void> = Promise.resolve()

  constructor (config: ProcessConfig, deps: ScaleProviderDeps) {
    this.#config = config
    this.#deps = deps
  }

  async start (): Promise<void> {}

  starting (): number {
    let n = 0
    for (const c of this.#children.values()) if (c.state === 'starting') n++
    return n
  }

  urls (): string[] {
    return [...this.#children.values()].filter(c => c.state === 'running').map(c => c.url)
  }

  /** Every child's port and state (status page, tests). */
  children (): { port: number, state: Child['state'], pid: number | undefined }[] {
    return [...this.#children.values()].map(c => ({ port: c.port, state: c.state, pid: c.proc?.pid }))
  }

  apply (_event: ScaleEvent, own: number): void {
    if (this.#closed) return
    this.#want = Math.max(0, own)
    this.#queue = this.#queue.then(() => this.#reconcile(), () => this.#reconcile())
  }

  async #reconcile (): Promise<void> {
    const live = [...this.#children.values()].filter(c => c.state !== 'stopping')
    if (live.length > this.#want) {
      // Those still starting go first, then the newest.
      const order = live.sort((a, b) => (a.state === 'starting' ? 0 : 1) - (b.state === 'starting' ? 0 : 1) || b.port - a.port)
      for (const c of order.slice(0, live.length - this.#want)) this.#track(this.#stop(c, this.#deps.drainMs))
      return
    }
    for (let n = live.length; n < this.#want; n++) {
      const port = await this.#freePort()
      if (port === undefined) {
        this.#deps.log.error({ pool: this.#deps.pool, ports: this.#config.ports }, 'scale: no free port left in the range')
        return
      }
      if (this.#closed || this.#live() >= this.#want) return
      this.#launch({ port, url: `http://127.0.0.1:${port}`, proc: undefined, state: 'starting', crashes: 0, exited: Promise.resolve(), timer: undefined })
    }
  }

  #live (): number {
    let n = 0
    for (const c of this.#children.values()) if (c.state !== 'stopping') n++
    return n
  }

  #track (p: Promise<void>): void {
    this.#stops.add(p)
    void p.finally(() => { this.#stops.delete(p) })
  }

  /** The lowest port of the range no child holds and nothing else listens on. */
  async #freePort (): Promise<number | undefined> {
    const [lo, hi] = this.#config.ports
    for (let port = lo; port <= hi; port++) {
      if (this.#children.has(port)) continue
      if (await canListen(port)) return port
    }
    return undefined
  }

  #launch (c: Child): void {
    const { pool, log } = this.#deps
    this.#children.set(c.port, c)
    c.state = 'starting'
    const proc = spawn(this.#config.command, {
      shell: true,
      detached: true, // its own process group: SIGTERM reaches the command the shell started, too
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PORT: String(c.port) },
    })
    c.proc = proc
    const prefix = `[${pool}:${c.port}]`
    for (const [name, stream] of [['stdout', proc.stdout], ['stderr', proc.stderr]] as const) {
      if (stream === null) continue
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', line => { log.info({ pool, port: c.port, stream: name }, `${prefix} ${line}`) })
    }
    c.exited = new Promise(resolve => {
      proc.once('exit', (code, signal) => { resolve(); this.#exited(c, proc, code, signal) })
      proc.once('error', err => {
        log.error({ pool, port: c.port, reason: err.message }, 'scale: backend could not start')
        resolve()
        this.#exited(c, proc, null, null)
      })
    })
    log.info({ pool, port: c.port, pid: proc.pid, command: this.#config.command }, 'scale: backend starting')
    void this.#waitReady(c, proc)
  }

  async #waitReady (c: Child, proc: ChildProcess): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS
    while (c.proc === proc && c.state === 'starting' && !this.#closed) {
      if (await answers(c.port)) {
        if (c.proc !== proc || c.state !== 'starting') return
        c.state = 'running'
        this.#deps.log.info({ pool: this.#deps.pool, port: c.port, pid: proc.pid }, 'scale: backend up, joining the pool')
        this.#deps.addMember(c.url)
        return
      }
      if (Date.now() > deadline) {
        this.#deps.log.error({ pool: this.#deps.pool, port: c.port, timeout_ms: START_TIMEOUT_MS }, 'scale: backend did not answer on its port; stopping it')
        signal(proc, 'SIGKILL')
        return
      }
      await sleep(PROBE_MS)
    }
  }

  #exited (c: Child, proc: ChildProcess, code: number | null, sig: NodeJS.Signals | null): void {
    if (c.proc !== proc) return
    c.proc = undefined
    if (c.state === 'stopping' || this.#closed) { this.#children.delete(c.port); return }
    const { pool, log } = this.#deps
    const wasRunning = c.state === 'running'
    const how = sig === null ? `code ${code ?? '?'}` : sig
    log.warn({ pool, port: c.port, code, signal: sig }, 'scale: backend exited; replacing it')
    this.#deps.onEvent('scale-backend-exited', `${c.url} in pool ${pool} exited (${how}); replacing it`, { pool, backend: c.url })
    if (wasRunning) void this.#deps.removeMember(c.url, 0)
    c.crashes++
    c.state = 'starting'
    const delay = Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** (c.crashes - 1))
    c.timer = setTimeout(() => {
      c.timer = undefined
      if (this.#closed || c.state !== 'starting' || this.#live() > this.#want) { this.#children.delete(c.port); return }
      this.#launch(c)
    }, delay)
  }

  /** Drains (the member leaves the pool; in-flight requests finish), then SIGTERM, then SIGKILL. */
  async #stop (c: Child, drainMs: number): Promise<void> {
    const wasRunning = c.state === 'running'
    c.state = 'stopping'
    if (c.timer !== undefined) { clearTimeout(c.timer); c.timer = undefined; this.#children.delete(c.port); return }
    if (wasRunning) await this.#deps.removeMember(c.url, drainMs).catch(() => {})
    const proc = c.proc
    if (proc === undefined) { this.#children.delete(c.port); return }
    this.#deps.log.info({ pool: this.#deps.pool, port: c.port, pid: proc.pid }, 'scale: stopping backend (SIGTERM)')
    signal(proc, 'SIGTERM')
    const kill = setTimeout(() => { signal(proc, 'SIGKILL') }, STOP_GRACE_MS)
    await c.exited
    clearTimeout(kill)
    this.#children.delete(c.port)
  }

  async close (): Promise<void> {
    if (this.#closed) { await Promise.all(this.#stops); return }
    this.#closed = true
    this.#want = 0
    await this.#queue.catch(() => {})
    // The edge is stopping: its listeners drain on their own; the backends get SIGTERM now.
    for (const c of this.#children.values()) if (c.state !== 'stopping') this.#track(this.#stop(c, 0))
    await Promise.all(this.#stops)
  }
}

function signal (proc: ChildProcess, sig: NodeJS.Signals): void {
  if (proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return
  try { process.kill(-proc.pid, sig) } catch { try { proc.kill(sig) } catch { /* gone */ } }
}

function canListen (port: number): Promise<boolean> {
  return new Promise(resolve => {
    const s = createServer()
    s.once('error', () => { resolve(false) })
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => { s.close(() => { resolve(true) }) })
  })
}

function answers (port: number): Promise<boolean> {
  return new Promise(resolve => {
    const sock = connect({ port, host: '127.0.0.1' })
    const done = (ok: boolean): void => { sock.destroy(); resolve(ok) }
    sock.setTimeout(1000, () => { done(false) })
    sock.once('connect', () => { done(true) })
    sock.once('error', () => { done(false) })
  })
}

function sleep (ms: number): Promise<void> {
  return new Promise(resolve => { setTimeout(resolve, ms) })
}
