// The supervisor of a one-process edge (workers = 1): a small parent that runs the serving process as its child and
// starts a new one within a second when it dies, so a bug that ends the process costs the requests it had, never
// the edge. With workers > 1 the cluster primary does the same for its workers. Signals reach the child through it
// (SIGHUP reloads, SIGUSR2 upgrades, SIGTERM/SIGINT drain and exit with the child's code); the child runs the last config it served
// (it reports each reload), not whatever the file holds when it is restarted.
import { fork, type ChildProcess } from 'node:child_process'
import type net from 'node:net'
import type { Logger } from 'pino'

/** Set in the serving child's environment. */
export const SUPERVISED_ENV = 'EDGE_PROXY_SUPERVISED'
/** How many times the supervisor has restarted the serving process (for edge_process_restarts_total). */
export const RESTARTS_ENV = 'EDGE_PROXY_RESTARTS'
/** The config text a restarted child runs. */
export const CONFIG_TEXT_ENV = 'EDGE_PROXY_CONFIG_TEXT'

/** Set in a serving child started by an upgrade: it waits for the listening sockets before it starts. */
export const HANDOVER_ENV = 'EDGE_PROXY_HANDOVER'
/** How long a new serving process has to become ready during a hand-over. */
export const HANDOVER_READY_MS = 15_000

/** Messages from the serving child to its supervisor (`listener` carries a net.Server handle). */
export type ToSupervisor =
  | { type: 'ready' }
  | { type: 'config', text: string }
  /** Hand the edge over to a new serving process running `text` (the old one validated it). */
  | { type: 'upgrade', text: string, state: unknown }
  | { type: 'listener', key: string }
  | { type: 'listeners-done' }
  /** A new process is listening for the sockets (sent before, one would accept connections nobody serves). */
  | { type: 'want-listeners' }

/** Messages from the supervisor to a serving child (`listener` and `conn` carry a handle). */
export type FromSupervisor =
  | { type: 'send-listeners' }
  | { type: 'listener', key: string }
  /** `state`: what the old process's Control carries over (registrations, drains), as it sent it. */
  | { type: 'listeners-done', state?: unknown }
  /** A connection the supervisor accepted on a socket it was passing on: the old process serves it. */
  | { type: 'conn', key: string }
  | { type: 'upgrade-step', message: string }
  | { type: 'upgrade-done', pid: number }
  | { type: 'upgrade-failed', error: string }

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

  let upgrading = false
  const start = (handover?: { text: string, onReady: () => void, onWant: () => void }): ChildProcess => {
    let ready = false
    const runText = handover?.text ?? (restarts > 0 ? text : undefined)
    const c = fork(process.argv[1] as string, argv, {
      env: { ...process.env, [SUPERVISED_ENV]: '1', [RESTARTS_ENV]: String(restarts), ...(runText === undefined ? {} : { [CONFIG_TEXT_ENV]: runText }), ...(handover === undefined ? {} : { [HANDOVER_ENV]: '1' }) },
      stdio: 'inherit',
    })
    if (handover === undefined) child = c
    c.on('message', (m: ToSupervisor, handle: unknown) => {
      if (m.type === 'ready') {
        ready = true
        everReady = true
        if (handover !== undefined) { child = c; text = handover.text; handover.onReady() }
      } else if (m.type === 'config') {
        text = m.text
      } else if (m.type === 'want-listeners') {
        handover?.onWant()
      } else if (m.type === 'upgrade' && child === c) {
        handOver(c, m.text, m.state)
      } else if (m.type === 'listener' || m.type === 'listeners-done') {
        collecting?.(m, handle as net.Server | undefined)
      }
    })
    c.on('exit', (code, signal) => {
      // A process an upgrade replaced, or a new one that failed its hand-over: the running one is another.
      if (child !== c && (child !== undefined || handover !== undefined)) return
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
      void cleanup.finally(() => { setTimeout(() => { start() }, delay) })
    })
    return c
  }

  let collecting: ((m: ToSupervisor, handle: net.Server | undefined) => void) | undefined
  /**
   * Whole-edge hand-over: gets the old process's listening sockets, starts a new serving process from the code on
   * disk with `newText`, passes it the sockets, and switches to it once it is ready; until then, and for good if it
   * fails, the old process serves (connections this process happens to accept meanwhile are passed back to it).
   */
  const handOver = (old: ChildProcess, newText: string, state: unknown): void => {
    const tell = (m: FromSupervisor, handle?: net.Socket): void => { try { if (handle === undefined) old.send(m); else old.send(m, handle) } catch { /* gone */ } }
    if (upgrading || stopping) { tell({ type: 'upgrade-failed', error: upgrading ? 'an upgrade is already under way' : 'the edge is stopping' }); return }
    upgrading = true
    const handles = new Map<string, net.Server>()
    let passedBack = 0
    collecting = (m, handle) => {
      if (m.type === 'listener' && handle !== undefined) {
        handles.set(m.key, handle)
        // Not read here: bytes this process read from such a connection would be lost when it is passed on.
        ;(handle as net.Server & { pauseOnConnect: boolean }).pauseOnConnect = true
        // Accepted here between receiving and passing on: the old process still serves, so it gets them.
        handle.on('connection', (s: net.Socket) => { passedBack++; tell({ type: 'conn', key: m.key }, s) })
        return
      }
      if (m.type !== 'listeners-done') return
      collecting = undefined
      tell({ type: 'upgrade-step', message: `received ${handles.size} listening socket${handles.size === 1 ? '' : 's'}; starting the new edge process` })
      let settled = false
      const fail = (error: string): void => {
        if (settled) return
        settled = true
        upgrading = false
        clearTimeout(timer)
        if (n.exitCode === null && n.signalCode === null) n.kill('SIGKILL')
        // Not passed on: this process's copies close (the old process keeps its own and serves).
        for (const h of handles.values()) if (h.listening) h.close()
        log.error({ reason: error }, 'upgrade: the new edge process failed; the old one keeps serving')
        tell({ type: 'upgrade-failed', error })
      }
      const n = start({
        text: newText,
        onReady: () => {
          if (settled) return
          settled = true
          upgrading = false
          clearTimeout(timer)
          log.info({ old: old.pid, new: n.pid, passed_back: passedBack }, 'upgrade: the new edge process serves; the old one drains')
          tell({ type: 'upgrade-done', pid: n.pid ?? 0 })
        },
        onWant: () => {
          for (const [key, h] of handles) n.send({ type: 'listener', key } satisfies FromSupervisor, h, () => { h.close() })
          n.send({ type: 'listeners-done', state } satisfies FromSupervisor)
        },
      })
      tell({ type: 'upgrade-step', message: `new edge process ${n.pid ?? '?'} started; passing it the listening sockets` })
      const timer = setTimeout(() => { fail(`the new edge process ${n.pid ?? '?'} was not ready within ${HANDOVER_READY_MS} ms`) }, HANDOVER_READY_MS)
      n.once('exit', (code, signal) => { fail(`the new edge process ${n.pid ?? '?'} exited before it was ready (${signal ?? `code ${code ?? '?'}`})`) })
    }
    tell({ type: 'send-listeners' })
  }

  const forward = (signal: NodeJS.Signals): void => {
    if (signal !== 'SIGHUP' && signal !== 'SIGUSR2') stopping = true
    if (child === undefined) { if (stopping) done(0); return }
    child.kill(signal)
  }
  process.on('SIGHUP', () => { forward('SIGHUP') })
  // The serving child's Control answers it (by default the signal would end the supervisor).
  process.on('SIGUSR2', () => { forward('SIGUSR2') })
  process.on('SIGTERM', () => { forward('SIGTERM') })
  process.on('SIGINT', () => { forward('SIGINT') })
  start()
  return stopped
}
