// The whole-edge hand-over (workers = 1), on the serving processes' side; the supervisor (supervisor.ts) relays
// between them. The old process passes its listening sockets (the edge's listeners and the admin listener) over
// IPC; the new one takes them over instead of binding, so the ports never close and no connection is refused.
import type net from 'node:net'
import type { FromSupervisor } from './supervisor.js'
import { tellSupervisor } from './supervisor.js'

/** The key the admin listener's socket travels under (the edge's listeners go by listen address). */
export const ADMIN_KEY = 'admin'

/** Sockets a new process received, and the connections they accepted before anyone served them. */
export class Inherited {
  readonly sockets = new Map<string, net.Server>()
  /** The old process's Control state (MemberSnapshot), as it was when the hand-over began. */
  state: unknown
  readonly #early = new Map<string, net.Socket[]>()

  /** Asks the supervisor for the old process's sockets and waits for them; rejects after `timeoutMs`. */
  static receive (timeoutMs: number): Promise<Inherited> {
    const got = new Inherited()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { process.off('message', onMessage); reject(new Error(`no listening sockets handed over within ${timeoutMs} ms`)) }, timeoutMs)
      const onMessage = (m: FromSupervisor, handle: unknown): void => {
        if (m.type === 'listener' && handle !== undefined) {
          const server = handle as net.Server
          got.sockets.set(m.key, server)
          const early: net.Socket[] = []
          got.#early.set(m.key, early)
          // Not read until a listener owns it: bytes read into this stream would never reach the parser.
          ;(server as net.Server & { pauseOnConnect: boolean }).pauseOnConnect = true
          // Listening already (that is how a socket arrives): hold what it accepts until a listener takes it over.
          server.on('connection', (s: net.Socket) => { early.push(s) })
        } else if (m.type === 'listeners-done') {
          got.state = m.state
          clearTimeout(timer)
          process.off('message', onMessage)
          resolve(got)
        }
      }
      process.on('message', onMessage)
      // Asked for only now: a socket that arrived before this listener would accept connections nobody serves.
      tellSupervisor({ type: 'want-listeners' })
    })
  }

  /** The listener sockets by listen address (the admin's left out). */
  listeners (): Map<string, net.Server> {
    return new Map([...this.sockets].filter(([k]) => k !== ADMIN_KEY))
  }

  /**
   * Hands the connections accepted before the take-over to the servers that now own each socket; a socket the new
   * config has no listener for is closed (left open it would accept connections nobody serves).
   */
  flush (owners: ReadonlyMap<string, net.Server>): number {
    let n = 0
    for (const [key, early] of this.#early) {
      n += early.length
      const owner = owners.get(key)
      if (owner === undefined) this.sockets.get(key)?.close()
      for (const s of early.splice(0)) {
        if (owner === undefined) s.destroy()
        else owner.emit('connection', s)
      }
    }
    return n
  }
}

/**
 * In the old process: answers the supervisor's hand-over (sends `acceptors()` then 'listeners-done'), serves the
 * connections it passes back, and turns the outcome into `upgrade()`'s promise. Returns upgrade(text, step).
 */
export function handOverSide (acceptors: () => ReadonlyMap<string, net.Server>, state: () => unknown): (text: string, step: (message: string) => void) => Promise<number> {
  let pending: { step: (message: string) => void, resolve: (pid: number) => void, reject: (err: Error) => void } | undefined
  process.on('message', (m: FromSupervisor, handle: unknown) => {
    switch (m.type) {
      case 'send-listeners': {
        for (const [key, server] of acceptors()) process.send?.({ type: 'listener', key }, server)
        tellSupervisor({ type: 'listeners-done' })
        return
      }
      case 'conn': {
        const owner = acceptors().get(m.key)
        if (handle === undefined) return
        if (owner === undefined) (handle as net.Socket).destroy()
        else owner.emit('connection', handle)
        return
      }
      case 'upgrade-step': pending?.step(m.message); return
      case 'upgrade-done': pending?.resolve(m.pid); pending = undefined; return
      case 'upgrade-failed': pending?.reject(new Error(m.error)); pending = undefined
    }
  })
  return (text, step) => new Promise<number>((resolve, reject) => {
    if (pending !== undefined) { reject(new Error('an upgrade is already under way')); return }
    pending = { step, resolve, reject }
    tellSupervisor({ type: 'upgrade', text, state: state() })
  })
}
