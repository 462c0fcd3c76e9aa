// The cluster primary: forks the workers and replaces those that die, owns the admin listener and the signals,
// validates reloads before any worker sees them, and gathers status and metrics from all workers.
import cluster, { type Worker } from 'node:cluster'
import { readFile } from 'node:fs/promises'
import type { Logger } from 'pino'
import { AggregatorRegistry } from 'prom-client'
import type { Config } from '../config/types.js'
import { summarize } from '../config/load.js'
import { formatAddress } from '../config/address.js'
import { AdminServer } from '../proxy/ops/admin.js'
import { EventLog } from '../proxy/ops/events.js'
import { mergeStatus, type EdgeStatus } from '../proxy/ops/status.js'
import type { DemoBackends } from './demo.js'
import { applyDrain, onSignals, readAndValidate } from './control.js'
import { HealthControl } from './health-control.js'
import { memberOps, Registrations } from './registrations.js'
import { reasonOf, type FromWorker, type ToWorker } from './messages.js'
import { restartsMetric } from './supervisor.js'

function liveWorkers (): Worker[] {
  return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected())
}

/** Sends a request to every live worker and collects the answers (missing ones after `timeout` are dropped). */
class Gather<T> {
  #next = 0
  readonly #pending = new Map<number, { want: Set<number>, got: T[], done: () => void }>()

  ask (make: (id: number) => ToWorker, timeout: number): Promise<T[]> {
    const id = ++this.#next
    const workers = liveWorkers()
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

export async function runPrimary (initial: Config, log: Logger, demo: DemoBackends | undefined): Promise<void> {
  let current = initial
  let currentText = await readFile(initial.file, 'utf8')
  let generation = 1
  let stopping = false
  let readyCount = 0
  let restarts = 0
  const starts: number[] = []
  const events = new EventLog()
  const reloads = new Gather<string | undefined>()
  const statuses = new Gather<EdgeStatus>()
  /** Drain state set through the admin API, replayed to workers that start later (health verdicts come from `health`). */
  const drained = new Map<string, { pool: string, url: string, draining: boolean }>()
  /** Members registered through the admin API, replayed to workers that start later. */
  const registrations = new Registrations()

  const fork = (): Worker => {
    // A worker runs the primary's config, not whatever the file holds now (it may be bad, or not reloaded yet).
    const w = cluster.fork({ EDGE_PROXY_WORKER: '1', EDGE_PROXY_CONFIG_TEXT: currentText })
    w.on('message', (m: FromWorker) => {
      switch (m.type) {
        case 'reloaded': reloads.answer(w.id, m.id, m.error); return
        case 'status': statuses.answer(w.id, m.id, m.status); return
        case 'event': events.add(m.event); return
        case 'failed':
          log.error({ worker: w.process.pid, reason: m.error }, 'worker failed to start')
          if (readyCount === 0) {
            // Nothing ever started (e.g. the port is taken): fail as workers = 1 would, do not respawn forever.
            stopping = true
            for (const other of Object.values(cluster.workers ?? {})) other?.kill()
            void demo?.close()
            log.flush()
            process.exit(1)
          }
          return
        case 'ready':
          readyCount++
          if (readyCount === initial.server.workers) log.info({ workers: readyCount }, 'all workers ready')
          for (const v of health.verdicts()) w.send({ type: 'member', ...v } satisfies ToWorker)
          for (const d of drained.values()) w.send({ type: 'member', ...d } satisfies ToWorker)
          // After the verdicts (they name only members the worker has): a registered member comes with its own.
          for (const r of registrations.all()) {
            const healthy = health.up(r.pool, r.url) ?? current.pools.get(r.pool)?.healthCheck === undefined
            w.send({ type: 'member-add', pool: r.pool, url: r.url, weight: r.weight, healthy } satisfies ToWorker)
          }
      }
    })
    return w
  }

  cluster.on('exit', (w, code, signal) => {
    reloads.forget(w.id)
    statuses.forget(w.id)
    if (stopping) return
    restarts++
    log.warn({ worker: w.process.pid, code, signal, restarts }, 'worker died; starting a new one')
    events.push('worker-exit', `worker ${w.process.pid ?? '?'} died (${signal ?? `code ${code}`}); replacing it`)
    const now = Date.now()
    starts.push(now)
    while (starts.length > 0 && (starts[0] as number) < now - 10_000) starts.shift()
    // A crash loop (over 10 deaths in 10 s) backs off instead of spinning.
    setTimeout(fork, starts.length > 10 ? 1000 : 0)
  })

  const broadcast = (m: ToWorker): void => { for (const w of liveWorkers()) w.send(m) }
  const health = new HealthControl(v => { broadcast({ type: 'member', ...v }) }, events, log, pool => registrations.urls(pool))
  health.sync(initial)
  for (let i = 0; i < initial.server.workers; i++) fork()
  const aggregator = new AggregatorRegistry()

  const reload = async (): Promise<string> => {
    let text: string
    let config: Config
    try {
      ({ text, config } = await readAndValidate(current.file))
    } catch (err) {
      log.error({ reason: reasonOf(err) }, 'config reload failed; keeping the running config')
      events.push('reload-failed', reasonOf(err))
      throw err
    }
    const answers = await reloads.ask(id => ({ type: 'reload', text, file: current.file, id }), 10_000)
    const errors = answers.filter((e): e is string => e !== undefined)
    if (errors.length > 0) {
      log.error({ errors }, 'config reload failed in some workers')
      events.push('reload-failed', errors.join('; '))
      throw new Error(errors.join('; '))
    }
    current = config
    currentText = text
    registrations.retain(config)
    health.sync(config)
    generation++
    log.info({ generation, workers: answers.length }, 'config reloaded')
    events.push('reload', `config reloaded (generation ${generation}, ${answers.length} workers)`)
    return summarize(config)
  }


  const admin = new AdminServer(initial.admin, {
    log,
    events,
    reload,
    health: () => ({ generation, workers: liveWorkers().length }),
    metrics: async () => `${await aggregator.clusterMetrics()}${restartsMetric(restarts)}`,
    status: async () => {
      const parts = await statuses.ask(id => ({ type: 'status', id }), 2000)
      return { generation, workers: parts.length, ...mergeStatus(parts) }
    },
    drain: (pool, backend, draining) => applyDrain(current, events, pool, backend, draining, (p, url, d) => {
      drained.set(`${p} ${url}`, { pool: p, url, draining: d })
      broadcast({ type: 'member', pool: p, url, draining: d })
    }),
    members: memberOps({
      config: () => current,
      registrations,
      health,
      events,
      status: async () => mergeStatus(await statuses.ask(id => ({ type: 'status', id }), 2000)),
      apply: {
        add: (r, healthy) => { broadcast({ type: 'member-add', pool: r.pool, url: r.url, weight: r.weight, healthy }) },
        remove: (pool, url, drainMs) => { broadcast({ type: 'member-remove', pool, url, drainMs }) },
      },
    }),
  })
  await admin.listen()
  log.info({ address: formatAddress({ host: initial.admin.address.host, port: admin.port }) }, 'admin listening')

  onSignals(reload, async (signal) => {
    if (stopping) return
    stopping = true
    const timeout = current.server.shutdownTimeout
    log.info({ signal, timeout_ms: timeout }, 'shutting down: finishing in-flight requests')
    await admin.close()
    await health.close()
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)
    await Promise.all(workers.map(w => new Promise<void>(resolve => {
      if (w.isDead()) { resolve(); return }
      w.once('exit', () => { resolve() })
      try { w.send({ type: 'shutdown', timeout } satisfies ToWorker) } catch { /* already gone */ }
      setTimeout(() => { w.kill('SIGKILL') }, timeout + 2000).unref()
    })))
    await demo?.close()
    log.info('stopped')
    log.flush()
    process.exit(0)
  })
}
