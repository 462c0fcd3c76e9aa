// The supervisor of a one-process edge (workers = 1): a small parent that runs the serving process as its child and
// starts a new one within a second when it dies, so a bug that ends the process costs the requests it had, never
// the edge. With workers > 1 the cluster primary does the same for its workers. Signals reach the child through it
// (SIGHUP reloads, SIGTERM/SIGINT drain and exit with the child's code); the child runs the last config it served
// (it reports each reload), not whatever the file holds when it is restarted.
import { fork, type ChildProcess } from 'node:child_process'
import type { Logger } from 'pino'

/** Set in the serving child's environment. */
export const SUPERVISED_ENV = 'EDGE_PROXY_SUPERVISED'
/** How many times the supervisor has restarted the serving process (for edge_process_restarts_total). */
export const RESTARTS_ENV = 'EDGE_PROXY_RESTARTS'
/** The config text a restarted child runs. */
export const CONFIG_TEXT_ENV = 'EDGE_PROXY_CONFIG_TEXT'

/** Messages from the serving child to its supervisor. */
export type ToSupervisor = { type: 'ready' } | { type: 'config', text: string }

/** Prometheus text for the restarts counter, appended by whichever process owns /metrics. */
export function restartsMetric (n: number): string {
  return `# HELP edge_process_restarts_total Serving processes that died and were started again (the log has each stack)\n# TYPE edge_process_restarts_total counter\nedge_process_restarts_total ${n}\n`
}

/** Restarts so far, as the supervisor told this child (0 when not supervised). */
export function restartsSoFar (): number {
  const n = Number(process.env[RESTARTS_ENV] ?? 0)
  return Number.isFinite(n) ? n : 0
}

/** Tells the supervisor, if any, something about this serving process. */
export function tellSupervisor (m: ToSupervisor): void {
  if (process.env[SUPERVISED_ENV] === '1') process.send?.(m)
}

/**
 * Runs `argv` (this CLI's own arguments) as the serving child and keeps one running. Resolves with the child's
 * exit code once a signal asked it to stop, or if the first child fails before it is ready (a taken port, say:
 * restarting would not help).
 */
export function supervise (argv: readonly string[], configText: string, log: Logger, onDeath?: () => Promise<void>): Promise<number> {
  let done!: (code: number) => void
  const stopped = new Promise<number>(resolve => { done = resolve })
  let text = configText
  let restarts = 0
  let stopping = false
  let everReady = false
  let child: ChildProcess | undefined
  const deaths: number[] = []

  const start = (): void => {
    let ready = false
    const c = fork(process.argv[1] as string, argv, {
      env: { ...process.env, [SUPERVISED_ENV]: '1', [RESTARTS_ENV]: String(restarts), ...(restarts > 0 ? { [CONFIG_TEXT_ENV]: text } : {}) },
      stdio: 'inherit',
    })
    child = c
    c.on('message', (m: ToSupervisor) => {
      if (m.type === 'ready') { ready = true; everReady = true } else if (m.type === 'config') text = m.text
    })
    c.on('exit', (code, signal) => {
      if (child === c) child = undefined
      if (stopping || (code === 0 && signal === null)) { done(code ?? 0); return }
      if (!everReady && !ready) { done(code ?? 1); return } // never served: restarting would not help
      const now = Date.now()
      deaths.push(now)
      while (deaths.length > 0 && (deaths[0] as number) < now - 10_000) deaths.shift()
      // A crash loop (over 5 deaths in 10 s) backs off to one start a second instead of spinning.
      const delay = deaths.length > 5 ? 1000 : 50
      restarts++
      log.error({ child: c.pid, code, signal, restarts, restart_in_ms: delay }, 'the serving process died; starting a new one')
      // What the dead child held outside itself (an HA floating IP) is let go before a new one starts.
      const cleanup = onDeath?.() ?? Promise.resolve()
      void cleanup.finally(() => { setTimeout(start, delay) })
    })
  }

  const forward = (signal: NodeJS.Signals): void => {
    if (signal !== 'SIGHUP') stopping = true
    if (child === undefined) { if (stopping) done(0); return }
    child.kill(signal)
  }
  process.on('SIGHUP', () => { forward('SIGHUP') })
  process.on('SIGTERM', () => { forward('SIGTERM') })
  process.on('SIGINT', () => { forward('SIGINT') })
  start()
  return stopped
}
