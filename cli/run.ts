// Running the edge: one process (workers = 1) or a node:cluster primary with N workers sharing the listeners.
// The primary owns the admin listener, signals and config reloads; workers own the HTTP listeners.
import cluster, { type Worker } from 'node:cluster'
import { readFile } from 'node:fs/promises'
import type { Logger } from 'pino'
import type { Config } from '../config/types.js'
import { ConfigError, loadConfigFile, parseConfigText, summarize } from '../config/load.js'
import { formatAddress } from '../config/address.js'
import { Edge } from '../proxy/edge.js'
import { AdminServer } from '../proxy/admin.js'
import { createEventLog } from '../proxy/log.js'
import { startDemoBackends, type DemoBackends } from './demo.js'

export interface RunOptions {
  readonly file: string
  readonly demo: boolean
}

type ToWorker = { type: 'reload', text: string, file: string, id: number } | { type: 'shutdown', timeout: number }
type FromWorker = { type: 'ready' } | { type: 'reloaded', id: number, error?: string } | { type: 'failed', error: string }

function reasonOf (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** Loads the config file again and validates it; the text is what workers parse, so all see the same bytes. */
async function readAndValidate (file: string): Promise<{ text: string, config: Config }> {
  const text = await readFile(file, 'utf8').catch((err: Error) => {
    throw new ConfigError([{ file, path: '', line: undefined, message: `cannot read the file: ${err.message}` }])
  })
  return { text, config: parseConfigText(text, file) }
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
  const edge = new Edge(initial, { log })
  await edge.start()
  let generation = 1
  const reload = async (): Promise<string> => {
    try {
      const { config } = await readAndValidate(initial.file)
      await edge.reload(config)
      generation++
      log.info({ generation }, 'config reloaded')
      return summarize(config)
    } catch (err) {
      log.error({ reason: reasonOf(err) }, 'config reload failed; keeping the running config')
      throw err
    }
  }
  const admin = new AdminServer({ address: initial.admin.address, token: initial.admin.token }, {
    log,
    reload,
    health: () => ({ generation, workers: 1 }),
  })
  await admin.listen()
  log.info({ address: formatAddress({ host: initial.admin.address.host, port: admin.port }) }, 'admin listening')
  let stopping = false
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return
    stopping = true
    log.info({ signal, timeout_ms: edge.config.server.shutdownTimeout }, 'shutting down: finishing in-flight requests')
    await admin.close()
    await edge.close(edge.config.server.shutdownTimeout)
    await demo?.close()
    log.info('stopped')
    log.flush()
    process.exit(0)
  }
  process.on('SIGHUP', () => { reload().catch(() => {}) })
  process.on('SIGTERM', () => { void shutdown('SIGTERM') })
  process.on('SIGINT', () => { void shutdown('SIGINT') })
}

async function runPrimary (initial: Config, log: Logger, demo: DemoBackends | undefined): Promise<void> {
  let current = initial
  let currentText = await readFile(initial.file, 'utf8')
  let generation = 1
  let stopping = false
  let reloadId = 0
  const waiting = new Map<number, { pending: Set<number>, errors: string[], done: () => void }>()
  const starts: number[] = []

  const fork = (): Worker => {
    // A worker runs the primary's config, not whatever the file holds now (it may be bad, or not reloaded yet).
    const w = cluster.fork({ EDGE_PROXY_WORKER: '1', EDGE_PROXY_CONFIG_TEXT: currentText })
    w.on('message', (m: FromWorker) => {
      if (m.type === 'reloaded') {
        const r = waiting.get(m.id)
        if (r === undefined) return
        if (m.error !== undefined) r.errors.push(`worker ${w.process.pid ?? '?'}: ${m.error}`)
        r.pending.delete(w.id)
        if (r.pending.size === 0) r.done()
      } else if (m.type === 'failed') {
        log.error({ worker: w.process.pid, reason: m.error }, 'worker failed to start')
      } else if (m.type === 'ready' && generation > 1) {
        // A worker started after a reload reads the file itself; tell it the text the others run.
        w.send({ type: 'reload', text: currentText, file: current.file, id: -1 } satisfies ToWorker)
      }
    })
    return w
  }

  cluster.on('exit', (w, code, signal) => {
    for (const r of waiting.values()) { r.pending.delete(w.id); if (r.pending.size === 0) r.done() }
    if (stopping) return
    log.warn({ worker: w.process.pid, code, signal }, 'worker died; starting a new one')
    const now = Date.now()
    starts.push(now)
    while (starts.length > 0 && (starts[0] as number) < now - 10_000) starts.shift()
    // A crash loop (over 10 deaths in 10 s) backs off instead of spinning.
    setTimeout(fork, starts.length > 10 ? 1000 : 0)
  })

  for (let i = 0; i < initial.server.workers; i++) fork()

  const reload = async (): Promise<string> => {
    let text: string
    let config: Config
    try {
      ({ text, config } = await readAndValidate(current.file))
    } catch (err) {
      log.error({ reason: reasonOf(err) }, 'config reload failed; keeping the running config')
      throw err
    }
    const id = ++reloadId
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected())
    const errors = await new Promise<string[]>(resolve => {
      const entry = { pending: new Set(workers.map(w => w.id)), errors: [] as string[], done: () => { waiting.delete(id); resolve(entry.errors) } }
      waiting.set(id, entry)
      if (entry.pending.size === 0) { entry.done(); return }
      for (const w of workers) w.send({ type: 'reload', text, file: current.file, id } satisfies ToWorker)
      setTimeout(() => { if (waiting.has(id)) { entry.errors.push('timed out waiting for workers'); entry.done() } }, 10_000).unref()
    })
    if (errors.length > 0) {
      log.error({ errors }, 'config reload failed in some workers')
      throw new Error(errors.join('; '))
    }
    current = config
    currentText = text
    generation++
    log.info({ generation, workers: workers.length }, 'config reloaded')
    return summarize(config)
  }

  const admin = new AdminServer({ address: initial.admin.address, token: initial.admin.token }, {
    log,
    reload,
    health: () => ({ generation, workers: Object.keys(cluster.workers ?? {}).length }),
  })
  await admin.listen()
  log.info({ address: formatAddress({ host: initial.admin.address.host, port: admin.port }) }, 'admin listening')

  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return
    stopping = true
    const timeout = current.server.shutdownTimeout
    log.info({ signal, timeout_ms: timeout }, 'shutting down: finishing in-flight requests')
    await admin.close()
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
  }
  process.on('SIGHUP', () => { reload().catch(() => {}) })
  process.on('SIGTERM', () => { void shutdown('SIGTERM') })
  process.on('SIGINT', () => { void shutdown('SIGINT') })
}

async function runWorker (initial: Config): Promise<void> {
  const log = createEventLog(initial.log.level)
  // The primary orchestrates signals; a terminal's Ctrl-C reaches the whole group, so workers ignore it.
  process.on('SIGINT', () => {})
  process.on('SIGTERM', () => {})
  process.on('SIGHUP', () => {})
  const edge = new Edge(initial, { log })
  let closing = false
  const close = async (timeout: number): Promise<void> => {
    if (closing) return
    closing = true
    await edge.close(timeout)
    log.flush()
    process.exit(0)
  }
  process.on('message', (m: ToWorker) => {
    if (m.type === 'shutdown') { void close(m.timeout); return }
    if (m.type === 'reload') {
      let error: string | undefined
      const done = (): void => { if (m.id >= 0) process.send?.({ type: 'reloaded', id: m.id, ...(error === undefined ? {} : { error }) } satisfies FromWorker) }
      try {
        const config = parseConfigText(m.text, m.file)
        edge.reload(config).then(done, (err: unknown) => { error = reasonOf(err); done() })
      } catch (err) {
        error = reasonOf(err)
        done()
      }
    }
  })
  // If the primary dies, do not linger as an orphan holding the port.
  process.on('disconnect', () => { void close(initial.server.shutdownTimeout) })
  try {
    await edge.start()
  } catch (err) {
    process.send?.({ type: 'failed', error: reasonOf(err) } satisfies FromWorker)
    log.error({ reason: reasonOf(err) }, 'worker could not start')
    log.flush()
    process.exit(1)
  }
  process.send?.({ type: 'ready' } satisfies FromWorker)
}

export { loadConfigFile }
