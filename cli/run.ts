// Running the edge: one process (workers = 1, under its supervisor) or a node:cluster primary with N workers
// sharing the listeners. Either way one Control (control.ts) drives it; only the Serving side differs.
import cluster from 'node:cluster'
import type { Logger } from 'pino'
import type { Config } from '../config/types.js'
import { Edge } from '../proxy/edge.js'
import { edgeStatus } from '../proxy/ops/status.js'
import { startDemoBackends } from './demo.js'
import { Control, type Serving } from './control.js'
import { ClusterServing } from './primary.js'
import type { Registered } from './registrations.js'
import type { WindowHistogram } from '../health/latency.js'
import { runWorker } from './worker.js'
import { restartsMetric, restartsSoFar, SUPERVISED_ENV, tellSupervisor } from './supervisor.js'

export interface RunOptions {
  readonly file: string
  readonly demo: boolean
  /** The config file's text as it was read (what workers and restarted processes run). */
  readonly text: string
  readonly log: Logger
}

/** Runs the edge until it is stopped; resolves with the process's exit code. */
export async function runEdge (config: Config, opts: RunOptions): Promise<number> {
  const log = opts.log
  if (cluster.isWorker) return await runWorker(config, log)
  const demo = opts.demo ? await startDemoBackends(config) : undefined
  if (demo !== undefined && demo.urls.length > 0) log.info({ backends: demo.urls }, 'demo backends started')
  if (config.server.workers > 1) {
    const control = new Control(config, { log, demo, configText: opts.text, extraMetrics: () => restartsMetric(serving.restarts) })
    const serving: ClusterServing = new ClusterServing(config, opts.text, control)
    control.handleSignals()
    try {
      await serving.start()
    } catch (err) {
      await control.shutdown('no worker could start', 1, 0)
      throw err
    }
    await control.start(serving)
    return await control.stopped
  }
  const control = new Control(config, {
    log,
    demo,
    configText: opts.text,
    onConfigText: text => { tellSupervisor({ type: 'config', text }) },
    extraMetrics: () => restartsMetric(restartsSoFar()),
  })
  const edge = new Edge(config, { log, onEvent: (type, message, fields) => { control.events.push(type, message, fields) } })
  await edge.start()
  await control.start(new LocalServing(edge))
  control.handleSignals()
  // The supervisor itself was killed (SIGKILL, say): whoever did it wants the edge down, so do not linger as an
  // orphan holding the ports.
  if (process.env[SUPERVISED_ENV] === '1') {
    process.on('disconnect', () => { void control.shutdown('supervisor gone', 0, 0) })
    if (!process.connected) void control.shutdown('supervisor gone', 0, 0) // it died while this process was starting
  }
  tellSupervisor({ type: 'ready' })
  return await control.stopped
}

/** The Edge in this process serves traffic itself. */
export class LocalServing implements Serving {
  constructor (readonly edge: Edge) {}
  reload (config: Config): Promise<void> { return this.edge.reload(config) }
  setMember (pool: string, url: string, patch: Parameters<Edge['setMemberState']>[2]): void { this.edge.setMemberState(pool, url, patch) }
  addMember (r: Registered, healthy: boolean): void { this.edge.addMember(r.pool, { url: r.url, weight: r.weight, healthy, ...(r.source === undefined ? {} : { source: r.source }) }) }
  latency (pool: string, windowMs: number): Promise<WindowHistogram> { return Promise.resolve(this.edge.poolLatency(pool, windowMs)) }
  removeMember (pool: string, url: string, drainMs: number): void { void this.edge.removeMember(pool, url, drainMs) }
  status (): ReturnType<typeof edgeStatus> { return edgeStatus(this.edge) }
  metrics (): Promise<string> { return this.edge.metrics.text() }
  workers (): number { return 1 }
  close (timeoutMs: number): Promise<void> { return this.edge.close(timeoutMs) }
}
