// The cluster primary's serving side: forks the workers and replaces those that die, hands them reloads (the
// Control validated them first) and member changes over IPC, catches late workers up, and gathers status and
// metrics from all of them. The admin listener, signals and health checks are the Control's (control.ts).
import cluster, { type Worker } from 'node:cluster'
import { AggregatorRegistry } from 'prom-client'
import type { Config } from '../config/types.js'
import { mergeStatus, type EdgeStatus } from '../proxy/ops/status.js'
import type { MemberPatch } from '../proxy/upstream/members.js'
import { IDLE_GRACE_MS, type Control, type Serving } from './control.js'
import type { Registered } from './registrations.js'
import type { FromWorker, ToWorker } from './messages.js'
import { WindowHistogram, type WindowHistogramJson } from '../health/latency.js'

function liveWorkers (): Worker[] {
  return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected())
}

/** How long a new worker has to load its config and start its listeners during an upgrade. */
const UPGRADE_READY_MS = 15_000


/** Resolves undefined once `w` reports ready, else with why not (it failed, exited, or `timeoutMs` passed). */
function readyOrFailed (w: Worker, timeoutMs: number): Promise<string | undefined> {
  return new Promise(resolve => {
    const done = (problem: string | undefined): void => {
      clearTimeout(timer)
      w.off('message', onMessage)
      w.off('exit', onExit)
      resolve(problem)
    }
    const onMessage = (m: FromWorker): void => {
      if (m.type === 'ready') done(undefined)
      else if (m.type === 'failed') done(m.error)
    }
    const onExit = (code: number | null, signal: string | null): void => { done(`it exited (${signal ?? `code ${code ?? '?'}`})`) }
    const timer = setTimeout(() => { done(`not ready within ${timeoutMs} ms`) }, timeoutMs)
    w.on('message', onMessage)
    w.on('exit', onExit)
  })
}

/** Sends a request to live workers (default: all) and collects the answers (missing ones after `timeout` are dropped). */
class Gather<T> {
  #next = 0
  readonly #pending = new Map<number, { want: Set<number>, got: T[], done: () => void }>()

  ask (make: (id: number) => ToWorker, timeout: number, workers: Worker[] = liveWorkers()): Promise<T[]> {
    const id = ++this.#next
    return new Promise(resolve => {
      const entry = { want: new Set(workers.map(w => w.id)), got: [] as T[], done: () => { this.#pending.delete(id); resolve(entry.got) } }
      this.#pending.set(id, entry)
      if (entry.want.size === 0) { entry.done(); return }
      for (const w of workers) w.send(make(id))
      setTimeout(() => { if (this.#pending.has(id)) entry.done() }, timeout).unref()
    })
  }

  answer (workerId: number, id: number, value: T): void {
    const e = this.#pending.get(id)
    if (e === undefined || !e.want.delete(workerId)) return
    e.got.push(value)
    if (e.want.size === 0) e.done()
  }

  forget (workerId: number): void {
    for (const e of this.#pending.values()) if (e.want.delete(workerId) && e.want.size === 0) e.done()
  }
}

/** Workers serve traffic; the primary reaches them over IPC. */
export class ClusterServing implements Serving {
  restarts = 0
  #text: string
  #file: string
  #readyCount = 0
  /** A worker failed before any was ready: the edge is stopping with exit 2 (said once, not per worker). */
  #failedStart = false
  readonly #wanted: number
  readonly #starts: number[] = []
  readonly #reloads = new Gather<string | undefined>()
  readonly #statuses = new Gather<EdgeStatus>()
  readonly #metrics = new Gather<object[]>()
  readonly #latencies = new Gather<WindowHistogramJson>()
  /** Workers that reported ready: only they are asked for metrics (one still starting would hold /metrics up). */
  readonly #ready = new Set<number>()
  /** Workers an upgrade is stopping (old ones draining, or a new one that failed): their exit is not a death. */
  readonly #retiring = new Set<number>()
  readonly #control: Control

  constructor (initial: Config, text: string, control: Control) {
    this.#text = text
    this.#file = initial.file
    this.#wanted = initial.server.workers
    this.#control = control
  }

  /** Forks the workers (they report ready, or failed, on their own). */
  async start (): Promise<void> {
    cluster.on('exit', (w, code, signal) => {
      this.#reloads.forget(w.id)
      this.#statuses.forget(w.id)
      this.#metrics.forget(w.id)
      this.#ready.delete(w.id)
      if (this.#retiring.delete(w.id) || this.#control.stopping) return
      this.restarts++
      this.#control.log.warn({ worker: w.process.pid, code, signal, restarts: this.restarts }, 'worker died; starting a new one')
      this.#control.events.push('worker-exit', `worker ${w.process.pid ?? '?'} died (${signal ?? `code ${code}`}); replacing it`)
      const now = Date.now()
      this.#starts.push(now)
      while (this.#starts.length > 0 && (this.#starts[0] as number) < now - 10_000) this.#starts.shift()
      // A crash loop (over 10 deaths in 10 s) backs off instead of spinning.
      setTimeout(() => { this.fork() }, this.#starts.length > 10 ? 1000 : 0)
    })
    for (let i = 0; i < this.#wanted; i++) this.fork()
  }

  private fork (text = this.#text): Worker {
    // A worker runs the primary's config, not whatever the file holds now (it may be bad, or not reloaded yet).
    const w = cluster.fork({ EDGE_PROXY_WORKER: '1', EDGE_PROXY_CONFIG_TEXT: text })
    const control = this.#control
    w.on('message', (m: FromWorker) => {
      switch (m.type) {
        case 'reloaded': this.#reloads.answer(w.id, m.id, m.error); return
        case 'status': this.#statuses.answer(w.id, m.id, m.status); return
        case 'latency': this.#latencies.answer(w.id, m.id, m.latency); return
        case 'metrics': this.#metrics.answer(w.id, m.id, m.metrics); return
        case 'event': control.events.add(m.event); return
        case 'failed':
          control.log.error({ worker: w.process.pid, reason: m.error }, 'worker failed to start')
          // Nothing ever started (e.g. the port is taken): fail as workers = 1 would, do not respawn forever.
          if (this.#readyCount === 0 && !this.#failedStart) {
            this.#failedStart = true
            // As workers = 1 says it: one line on stderr and exit 2 (the JSON log above has the details).
            process.stderr.write(`edge-proxy: ${m.error}\n`)
            void control.shutdown('no worker could start', 2, 0)
          }
          return
        case 'ready': {
          this.#readyCount++
          this.#ready.add(w.id)
          if (this.#readyCount === this.#wanted) control.log.info({ workers: this.#readyCount }, 'all workers ready')
          const snap = control.snapshot()
          for (const v of snap.verdicts) w.send({ type: 'member', ...v } satisfies ToWorker)
          for (const d of snap.drains) w.send({ type: 'member', ...d } satisfies ToWorker)
          // After the verdicts (they name only members the worker has): a registered member comes with its own.
          for (const r of snap.registered) w.send({ type: 'member-add', pool: r.pool, url: r.url, weight: r.weight, healthy: r.healthy, ...(r.source === undefined ? {} : { source: r.source }) } satisfies ToWorker)
        }
      }
    })
    return w
  }

  /**
   * Rolling restart: for each worker running now, one at a time, a new worker is forked (node:cluster starts it
   * from the code now on disk) with `text`; once it is ready (config loaded, listeners accepting: it is in the
   * primary's rotation) the old one is told to stop accepting and drain for up to `drainMs`, and it exits. There is
   * always an accepting worker. A new worker that fails, dies or is not ready within `readyMs` is stopped, the
   * old ones keep serving, and this rejects with the reason (workers replaced before it stay replaced).
   */
  async upgrade (config: Config, text: string, drainMs: number, step: (message: string, fields: Record<string, unknown>) => void): Promise<undefined> {
    const old = liveWorkers()
    let n = 0
    for (const o of old) {
      n++
      const w = this.fork(text)
      // On trial until ready: if it dies first, that is the upgrade failing, not a worker to replace.
      this.#retiring.add(w.id)
      step(`worker ${n}/${old.length}: started new worker ${w.process.pid ?? '?'} to replace ${o.process.pid ?? '?'}`, { old_pid: o.process.pid, new_pid: w.process.pid })
      const problem = await readyOrFailed(w, UPGRADE_READY_MS)
      if (problem !== undefined) {
        if (!w.isDead()) w.process.kill('SIGKILL')
        throw new Error(`new worker ${w.process.pid ?? '?'} did not become ready: ${problem}; worker ${o.process.pid ?? '?'} keeps serving`)
      }
      this.#retiring.delete(w.id)
      step(`worker ${n}/${old.length}: new worker ${w.process.pid ?? '?'} is ready; draining old worker ${o.process.pid ?? '?'} (up to ${drainMs} ms)`, { old_pid: o.process.pid, new_pid: w.process.pid })
      const t0 = Date.now()
      await this.#retire(o, drainMs)
      step(`worker ${n}/${old.length}: old worker ${o.process.pid ?? '?'} exited after ${Date.now() - t0} ms`, { old_pid: o.process.pid, new_pid: w.process.pid })
    }
    this.#text = text
    this.#file = config.file
    return undefined
  }

  /** Stops `w` accepting, lets its in-flight requests finish within `drainMs`, and waits for its exit (SIGKILL past the bound). */
  #retire (w: Worker, drainMs: number): Promise<void> {
    this.#retiring.add(w.id)
    return new Promise<void>(resolve => {
      if (w.isDead()) { this.#retiring.delete(w.id); resolve(); return }
      w.once('exit', () => { resolve() })
      try { w.send({ type: 'shutdown', timeout: drainMs, idleGrace: Math.min(IDLE_GRACE_MS, drainMs) } satisfies ToWorker) } catch { /* already gone */ }
      setTimeout(() => { if (!w.isDead()) w.process.kill('SIGKILL') }, drainMs + 2000).unref()
    })
  }

  #broadcast (m: ToWorker): void {
    for (const w of liveWorkers()) w.send(m)
  }

  async reload (config: Config, text: string): Promise<void> {
    const answers = await this.#reloads.ask(id => ({ type: 'reload', text, file: this.#file, id }), 10_000)
    const errors = answers.filter((e): e is string => e !== undefined)
    if (errors.length > 0) {
      this.#control.log.error({ errors }, 'config reload failed in some workers')
      throw new Error(errors.join('; '))
    }
    this.#text = text
    this.#file = config.file
  }

  setMember (pool: string, url: string, patch: MemberPatch): void {
    this.#broadcast({ type: 'member', pool, url, ...patch })
  }

  addMember (r: Registered, healthy: boolean): void {
    this.#broadcast({ type: 'member-add', pool: r.pool, url: r.url, weight: r.weight, healthy, ...(r.source === undefined ? {} : { source: r.source }) })
  }

  removeMember (pool: string, url: string, drainMs: number): void {
    this.#broadcast({ type: 'member-remove', pool, url, drainMs })
  }

  async status (): Promise<EdgeStatus | undefined> {
    return mergeStatus(await this.#statuses.ask(id => ({ type: 'status', id }), 2000))
  }

  /** Every ready worker's registry, summed (prom-client's aggregation); a worker that does not answer in 2 s is left out. */
  async metrics (): Promise<string> {
    const ready = liveWorkers().filter(w => this.#ready.has(w.id))
    const parts = await this.#metrics.ask(id => ({ type: 'metrics', id }), 2000, ready)
    return await AggregatorRegistry.aggregate(parts).metrics()
  }

  /** A pool's latency merged from every ready worker's histogram (one decision per pool, in this process). */
  async latency (pool: string, windowMs: number): Promise<WindowHistogram> {
    const ready = liveWorkers().filter(w => this.#ready.has(w.id))
    const h = new WindowHistogram()
    for (const part of await this.#latencies.ask(id => ({ type: 'latency', id, pool, windowMs }), 1000, ready)) h.merge(part)
    return h
  }

  workers (): number {
    return liveWorkers().length
  }

  accepting (): boolean {
    return this.#ready.size > 0
  }

  async close (timeout: number): Promise<void> {
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)
    await Promise.all(workers.map(w => new Promise<void>(resolve => {
      if (w.isDead()) { resolve(); return }
      w.once('exit', () => { resolve() })
      try { w.send({ type: 'shutdown', timeout } satisfies ToWorker) } catch { /* already gone */ }
      setTimeout(() => { w.kill('SIGKILL') }, timeout + 2000).unref()
    })))
  }
}
