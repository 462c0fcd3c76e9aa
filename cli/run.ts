// Running the edge: one process (workers = 1, under its supervisor) or a node:cluster primary with N workers
// sharing the listeners. Either way one Control (control.ts) drives it; only the Serving side differs.
import cluster from 'node:cluster'
import type net from 'node:net'
import type { Logger } from 'pino'
import type { Config } from '../config/types.js'
import { Edge } from '../proxy/edge.js'
import { edgeStatus } from '../proxy/ops/status.js'
import { startDemoBackends } from './demo.js'
import { Control, type MemberSnapshot, type Serving } from './control.js'
import { ClusterServing } from './primary.js'
import type { Registered } from './registrations.js'
import type { WindowHistogram } from '../health/latency.js'
import { runWorker } from './worker.js'
import { HANDOVER_ENV, HANDOVER_READY_MS, restartsMetric, restartsSoFar, SUPERVISED_ENV, tellSupervisor } from './supervisor.js'
import { ADMIN_KEY, handOverSide, Inherited } from './handover.js'

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
  const supervised = process.env[SUPERVISED_ENV] === '1'
  // Started by an upgrade: the old process's listening sockets arrive first, and are taken over, not bound.
  const inherited = supervised && process.env[HANDOVER_ENV] === '1' ? await Inherited.receive(HANDOVER_READY_MS) : undefined
  const edge = new Edge(config, { log, onEvent: (type, message, fields) => { control.events.push(type, message, fields) }, ...(inherited === undefined ? {} : { inherited: inherited.listeners() }) })
  await edge.start()
  const handOver = supervised ? handOverSide(() => acceptorsOf(edge, control), () => control.snapshot()) : undefined
  await control.start(new LocalServing(edge, handOver), inherited?.sockets.get(ADMIN_KEY))
  if (inherited?.state !== undefined) control.adopt(inherited.state as MemberSnapshot)
  const early = inherited?.flush(acceptorsOf(edge, control))
  if (inherited !== undefined) log.info({ sockets: inherited.sockets.size, early_connections: early }, 'took over the listening sockets of the old edge process')
  control.handleSignals()
  // The supervisor itself was killed (SIGKILL, say): whoever did it wants the edge down, so do not linger as an
  // orphan holding the ports.
  if (supervised) {
    process.on('disconnect', () => { void control.shutdown('supervisor gone', 0, 0) })
    if (!process.connected) void control.shutdown('supervisor gone', 0, 0) // it died while this process was starting
  }
  tellSupervisor({ type: 'ready' })
  return await control.stopped
}

/** The sockets a hand-over passes on: the edge's listeners by address, and the admin listener. */
function acceptorsOf (edge: Edge, control: Control): Map<string, net.Server> {
  const m = edge.acceptors()
  const admin = control.adminServer
  if (admin !== undefined) m.set(ADMIN_KEY, admin)
  return m
}

/** The Edge in this process serves traffic itself. */
export class LocalServing implements Serving {
  /** `handOver`: the whole-edge hand-over through the supervisor (resolves with the new process's pid). */
  constructor (readonly edge: Edge, readonly handOver?: (text: string, step: (message: string) => void) => Promise<number>) {}
  async upgrade (_config: Config, text: string, _drainMs: number, step: (message: string, fields: Record<string, unknown>) => void): Promise<{ readonly newPid: number } | undefined> {
    if (this.handOver === undefined) throw new Error('this edge cannot hand its listeners over: it does not run under its supervisor')
    return { newPid: await this.handOver(text, m => { step(m, {}) }) }
  }
  reload (config: Config): Promise<void> { return this.edge.reload(config) }
  setMember (pool: string, url: string, patch: Parameters<Edge['setMemberState']>[2]): void { this.edge.setMemberState(pool, url, patch) }
  addMember (r: Registered, healthy: boolean): void { this.edge.addMember(r.pool, { url: r.url, weight: r.weight, healthy, ...(r.source === undefined ? {} : { source: r.source }) }) }
  latency (pool: string, windowMs: number): Promise<WindowHistogram> { return Promise.resolve(this.edge.poolLatency(pool, windowMs)) }
  removeMember (pool: string, url: string, drainMs: number): void { void this.edge.removeMember(pool, url, drainMs) }
  status (): ReturnType<typeof edgeStatus> { return edgeStatus(this.edge) }
  metrics (): Promise<string> { return this.edge.metrics.text() }
  workers (): number { return 1 }
  accepting (): boolean { return this.edge.listeners().length > 0 }
  close (timeoutMs: number, idleGraceMs = 0): Promise<void> { return this.edge.close(timeoutMs, idleGraceMs) }
}
