// A cluster worker: serves traffic with its own Edge and obeys the primary (reload, backend state, shutdown).
import type { Config } from '../config/types.js'
import { parseConfigText } from '../config/load.js'
import { Edge } from '../proxy/edge.js'
import type { Logger } from 'pino'
import { edgeStatus } from '../proxy/ops/status.js'
import { reasonOf, type FromWorker, type ToWorker } from './messages.js'

function send (m: FromWorker): void {
  process.send?.(m)
}

/** Serves until the primary says stop (or goes away); resolves with the exit code. */
export async function runWorker (initial: Config, log: Logger): Promise<number> {
  let exit!: (code: number) => void
  const stopped = new Promise<number>(resolve => { exit = resolve })
  // The primary orchestrates signals; a terminal's Ctrl-C reaches the whole group, so workers ignore it.
  process.on('SIGINT', () => {})
  process.on('SIGTERM', () => {})
  process.on('SIGHUP', () => {})
  process.on('SIGUSR2', () => {}) // upgrades are the primary's; its default would end this worker
  const edge = new Edge(initial, { log, onEvent: (type, message, fields) => { send({ type: 'event', event: { time: new Date().toISOString(), type, message, ...fields } }) } })
  let closing = false
  const close = async (timeout: number, idleGrace = 0): Promise<void> => {
    if (closing) return
    closing = true
    await edge.close(timeout, idleGrace)
    log.flush()
    exit(0)
  }
  process.on('message', (m: ToWorker) => {
    switch (m.type) {
      case 'shutdown':
        void close(m.timeout, m.idleGrace)
        return
      case 'member': {
        const { type: _t, pool, url, ...patch } = m
        edge.setMemberState(pool, url, patch)
        return
      }
      case 'member-add':
        edge.addMember(m.pool, { url: m.url, weight: m.weight, healthy: m.healthy, ...(m.source === undefined ? {} : { source: m.source }) })
        return
      case 'member-remove':
        void edge.removeMember(m.pool, m.url, m.drainMs)
        return
      case 'latency':
        send({ type: 'latency', id: m.id, latency: edge.poolLatency(m.pool, m.windowMs).toJSON() })
        return
      case 'status':
        edgeStatus(edge).then(status => { send({ type: 'status', id: m.id, status }) }, () => { /* left out of this status */ })
        return
      case 'metrics':
        // The primary's /metrics sums every ready worker's registry.
        edge.metrics.registry.getMetricsAsJSON().then(metrics => { send({ type: 'metrics', id: m.id, metrics }) }, () => { /* left out of this scrape */ })
        return
      case 'reload': {
        let error: string | undefined
        const done = (): void => { if (m.id >= 0) send({ type: 'reloaded', id: m.id, ...(error === undefined ? {} : { error }) }) }
        try {
          const config = parseConfigText(m.text, m.file)
          edge.reload(config).then(done, (err: unknown) => { error = reasonOf(err); done() })
        } catch (err) {
          error = reasonOf(err)
          done()
        }
      }
    }
  })
  // If the primary dies, do not linger as an orphan holding the port.
  process.on('disconnect', () => { void close(initial.server.shutdownTimeout) })
  try {
    await edge.start()
  } catch (err) {
    send({ type: 'failed', error: reasonOf(err) })
    log.error({ reason: reasonOf(err) }, 'worker could not start')
    log.flush()
    return 1
  }
  send({ type: 'ready' })
  return await stopped
}
