// Running the edge: one process (workers = 1) or a node:cluster primary with N workers sharing the listeners.
import cluster from 'node:cluster'
import type { Logger } from 'pino'
import type { Config } from '../config/types.js'
import { summarize } from '../config/load.js'
import { formatAddress } from '../config/address.js'
import { Edge } from '../proxy/edge.js'
import { AdminServer } from '../proxy/admin.js'
import { EventLog } from '../proxy/events.js'
import { createEventLog } from '../proxy/log.js'
import { edgeStatus } from '../proxy/status.js'
import { startDemoBackends, type DemoBackends } from './demo.js'
import { applyDrain, onSignals, readAndValidate } from './control.js'
import { reasonOf } from './messages.js'
import { runPrimary } from './primary.js'
import { runWorker } from './worker.js'
import { HealthControl } from './health-control.js'

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
  const events = new EventLog()
  const edge = new Edge(initial, { log, onEvent: (type, message, fields) => { events.push(type, message, fields) } })
  await edge.start()
  const health = new HealthControl(v => { edge.setMemberState(v.pool, v.url, v) }, events, log)
  health.sync(initial)
  let generation = 1
  const reload = async (): Promise<string> => {
    try {
      const { config } = await readAndValidate(initial.file)
      await edge.reload(config)
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
    metrics: () => edge.metrics.text(),
    status: async () => ({ generation, workers: 1, ...edgeStatus(edge) }),
    drain: (pool, backend, draining) => applyDrain(edge.config, events, pool, backend, draining, (pool, url, d) => { edge.setMemberState(pool, url, { draining: d }) }),
  })
  await admin.listen()
  log.info({ address: formatAddress({ host: initial.admin.address.host, port: admin.port }) }, 'admin listening')
  let stopping = false
  onSignals(reload, async (signal) => {
    if (stopping) return
    stopping = true
    log.info({ signal, timeout_ms: edge.config.server.shutdownTimeout }, 'shutting down: finishing in-flight requests')
    await admin.close()
    await health.close()
    await edge.close(edge.config.server.shutdownTimeout)
    await demo?.close()
    log.info('stopped')
    log.flush()
    process.exit(0)
  })
}
