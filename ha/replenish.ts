// Replenishing spares: when this node is active and the live passives behind it fall below [ha] min_spares, it
// runs `replenish` (HA_NODE, HA_SPARES, HA_PEERS in its environment) to start a new passive. One run at a time; after
// a run (whatever its exit) it waits for a new passive to be heard, backing off (base, 2x base, ... up to 2 min)
// before trying again; enough spares, or losing the active role, resets it.
import type { CommandResult } from './ip.js'

export interface ReplenishDeps {
  /** Runs the replenish command with these variables added to its environment. */
  run (env: Record<string, string>): Promise<CommandResult>
  /** The first wait after a run before another may start (ms). */
  readonly baseBackoff: number
  readonly maxBackoff?: number
  /** The clock (ms); default Date.now. */
  readonly now?: () => number
  onRun?: (info: { attempt: number, spares: number }) => void
  onDone?: (info: { attempt: number, result: CommandResult }) => void
}

export interface ReplenishStatus {
  readonly state: 'idle' | 'running' | 'waiting'
  /** Runs since the spares last were enough. */
  readonly attempts: number
  readonly runs_total: number
  readonly last_exit: number | null | undefined
  readonly next_in_ms: number | undefined
}

export class Replenisher {
  #running = false
  #attempts = 0
  #runs = 0
  #nextAt = 0
  #lastExit: number | null | undefined
  readonly #min: number
  readonly #deps: ReplenishDeps

  constructor (minSpares: number, deps: ReplenishDeps) {
    this.#min = minSpares
    this.#deps = deps
  }

  /** Called on every tick with the node's role and its live passives' ids. */
  update (now: number, nodeId: string, active: boolean, spares: readonly string[], peers: readonly string[]): void {
    if (this.#min === 0) return
    if (!active || spares.length >= this.#min) {
      this.#attempts = 0
      this.#nextAt = 0
      return
    }
    if (this.#running || now < this.#nextAt) return
    this.#running = true
    this.#attempts++
    this.#runs++
    const attempt = this.#attempts
    this.#deps.onRun?.({ attempt, spares: spares.length })
    const env = { HA_NODE: nodeId, HA_SPARES: String(spares.length), HA_PEERS: peers.join(',') }
    void this.#deps.run(env).then(result => {
      this.#running = false
      this.#lastExit = result.code
      const max = this.#deps.maxBackoff ?? 120_000
      this.#nextAt = (this.#deps.now ?? Date.now)() + Math.min(max, this.#deps.baseBackoff * 2 ** (attempt - 1))
      this.#deps.onDone?.({ attempt, result })
    })
  }

  status (now: number): ReplenishStatus {
    const waiting = !this.#running && this.#nextAt > now
    return {
      state: this.#running ? 'running' : waiting ? 'waiting' : 'idle',
      attempts: this.#attempts,
      runs_total: this.#runs,
      last_exit: this.#lastExit,
      next_in_ms: waiting ? this.#nextAt - now : undefined,
    }
  }
}
