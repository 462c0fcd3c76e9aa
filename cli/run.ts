// Running the edge: one process (workers = 1) or a node:cluster primary with N workers sharing the listeners.
import cluster from 'node:cluster'
import type { Logger } from 'pino'
import type { Config } from '../config/types.js'
import { summarize } from '../config/load.js'
import { formatAddress } from '../config/address.js'
import { Edge } from '../proxy/edge.js'
import { AdminServer } from '../proxy/ops/admin.js'
import { EventLog } from '../proxy/ops/events.js'
import { createEventLog } from '../proxy/ops/log.js'
import { edgeStatus } from '../proxy/ops/status.js'
import { startDemoBackends, type DemoBackends } from './demo.js'
import { applyDrain, onSignals, readAndValidate } from './control.js'
import { reasonOf } from './messages.js'
import { runPrimary } from './primary.js'
import { runWorker } from './worker.js'
import { HealthControl } from './health-control.js'
import { memberOps, Registrations } from './registrations.js'
import { exitOnUncaught, restartsMetric, restartsSoFar, SUPERVISED_ENV, tellSupervisor } from './supervisor.js'

export interface RunOptions {
  readonly file: string
  readonly demo: boolean
}

export async function runEdge (config: Config, opts: RunOptions): Promise<void> {
  if (cluster.isWorker) { await runWorker(config); return }
  const log = createEventLog(config.log.level)
  const demo = opts.demo ? await startDemoBackends(config) : undefined
  if (demo !== undefined && demo.urls.length > 0) log.info({ backends: demo.urls }, 'demo backends started')
  if (config.server.workers <= 1) await runSingle(config, log, demo)
  else await runPrimary(config, log, demo)
}

async function runSingle (initial: Config, log: Logger, demo: DemoBackends | undefined): Promise<void> {
  exitOnUncaught(log)
  const events = new EventLog()
  const edge = new Edge(initial, { log, onEvent: (type, message, fields) => { events.push(type, message, fields) } })
  await edge.start()
  const registrations = new Registrations()
  const health = new HealthControl(v => { edge.setMemberState(v.pool, v.url, v) }, events, log, pool => registrations.urls(pool))
  health.sync(initial)
  let generation = 1
  const reload = async (): Promise<string> => {
    try {
      const { config, text } = await readAndValidate(initial.file)
      await edge.reload(config)
      tellSupervisor({ type: 'config', text })
      registrations.retain(config)
      health.sync(config)
      generation++
      log.info({ generation }, 'config reloaded')
      events.push('reload', `config reloaded (generation ${generation})`)
      return summarize(config)
    } catch (err) {
      log.error({ reason: reasonOf(err) }, 'config reload failed; keeping the running config')
      events.push('reload-failed', reasonOf(err))
      throw err
    }
  }
  const admin = new AdminServer(initial.admin, {
    log,
    events,
    reload,
    health: () => ({ generation, workers: 1 }),
    metrics: async () => `${await edge.metrics.text()}${restartsMetric(restartsSoFar())}`,
    status: async () => ({ generation, workers: 1, ...edgeStatus(edge) }),
    drain: (pool, backend, draining) => applyDrain(edge.config, events, pool, backend, draining, (pool, url, d) => { edge.setMemberState(pool, url, { draining: d }) }),
    members: memberOps({
      config: () => edge.config,
      registrations,
      health,
      events,
      status: async () => edgeStatus(edge),
      apply: {
        add: (r, healthy) => { edge.addMember(r.pool, { url: r.url, weight: r.weight, healthy }) },
        remove: (pool, url, drainMs) => { void edge.removeMember(pool, url, drainMs) },
      },
    }),
  })
  await admin.listen()
  log.info({ address: formatAddress({ host: initial.admin.address.host, port: admin.port }) }, 'admin listening')
  let stopping = false
  const stop = async (signal: string, timeout: number): Promise<void> => {
    if (stopping) return
    stopping = true
    log.info({ signal, timeout_ms: timeout }, 'shutting down: finishing in-flight requests')
    // shutdown_timeout bounds the whole stop: whatever still holds on past it (a close that never settles) is cut.
    setTimeout(() => { log.warn({ timeout_ms: timeout }, 'shutdown overran its bound; exiting now'); log.flush(); process.exit(0) }, timeout + 1000)
    await admin.close()
    await health.close()
    await edge.close(timeout)
    await demo?.close()
    log.info('stopped')
    log.flush()
    process.exit(0)
  }
  onSignals(reload, signal => stop(signal, edge.config.server.shutdownTimeout))
  // The supervisor itself was killed (SIGKILL, say): whoever did it wants the edge down, so do not linger as an
  // orphan holding the ports.
  if (process.env[SUPERVISED_ENV] === '1') {
    process.on('disconnect', () => { void stop('supervisor gone', 0) })
    if (!process.connected) void stop('supervisor gone', 0) // it died while this process was starting
  }
  tellSupervisor({ type: 'ready' })
}
