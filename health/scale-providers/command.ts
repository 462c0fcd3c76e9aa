// provider = "command": every decision that is not a hold runs `run` (through the shell) with POOL, CURRENT,
// DESIRED, REASON and EVENT_JSON in its environment. Runs are one at a time per pool; while one runs, only the
// newest event waits (an older one is stale). Its output goes to the edge's log, prefixed.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import type { ScaleProviderConfig } from '../../config/scale.js'
import type { ScaleEvent } from '../scaler.js'
import type { ScaleProvider, ScaleProviderDeps } from './provider.js'

/** A run that takes longer is killed. */
export const RUN_TIMEOUT_MS = 60_000

export class CommandProvider implements ScaleProvider {
  readonly kind = 'command'
  #running: Promise<void> | undefined
  #next: ScaleEvent | undefined
  #closed = false
  constructor (private readonly config: Extract<ScaleProviderConfig, { kind: 'command' }>, private readonly deps: ScaleProviderDeps) {}

  async start (): Promise<void> {}
  starting (): number { return 0 }
  urls (): string[] { return [] }

  apply (event: ScaleEvent): void {
    if (this.#closed) return
    this.#next = event
    if (this.#running === undefined) this.#running = this.#drain()
  }

  async #drain (): Promise<void> {
    while (this.#next !== undefined && !this.#closed) {
      const e = this.#next
      this.#next = undefined
      await this.#run(e)
    }
    this.#running = undefined
  }

  #run (e: ScaleEvent): Promise<void> {
    const { pool, log } = this.deps
    return new Promise(resolve => {
      const child = spawn(this.config.run, {
        shell: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, POOL: e.pool, CURRENT: String(e.from), DESIRED: String(e.to), REASON: e.reason, EVENT_JSON: JSON.stringify(e) },
      })
      for (const stream of [child.stdout, child.stderr]) {
        createInterface({ input: stream, crlfDelay: Infinity }).on('line', line => { log.info({ pool }, `[${pool}:scale] ${line}`) })
      }
      const timer = setTimeout(() => { child.kill('SIGKILL') }, RUN_TIMEOUT_MS)
      child.once('error', err => { clearTimeout(timer); log.error({ pool, run: this.config.run, reason: err.message }, 'scale: command could not run'); resolve() })
      child.once('close', (code, signal) => {
        clearTimeout(timer)
        if (code !== 0) log.warn({ pool, run: this.config.run, code, signal }, 'scale: command failed')
        resolve()
      })
    })
  }

  async close (): Promise<void> {
    this.#closed = true
    await this.#running
  }
}
