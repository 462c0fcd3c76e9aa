// Admin operations shared by the single-process and the cluster modes: they differ only in how a change reaches
// the processes that serve traffic (directly, or broadcast over IPC).
import { readFile } from 'node:fs/promises'
import type { Config } from '../config/types.js'
import { ConfigError, parseConfigText } from '../config/load.js'
import type { EventLog } from '../proxy/ops/events.js'

/** Checks a drain request against the running config and says what it did. */
export function validateDrain (config: Config, pool: string, backend: string): string | undefined {
  const p = config.pools.get(pool)
  if (p === undefined) return `no pool named "${pool}"`
  let url = backend
  try { url = new URL(backend).origin } catch { /* compare as given */ }
  if (!p.backends.some(b => b.url === url)) return `pool "${pool}" has no backend ${backend}`
  return undefined
}

export function normalizeBackend (backend: string): string {
  try { return new URL(backend).origin } catch { return backend }
}

export async function applyDrain (config: Config, events: EventLog, pool: string, backend: string, draining: boolean,
  apply: (pool: string, url: string, draining: boolean) => void): Promise<string> {
  const problem = validateDrain(config, pool, backend)
  if (problem !== undefined) throw new Error(problem)
  const url = normalizeBackend(backend)
  apply(pool, url, draining)
  const message = `${draining ? 'draining' : 'undrained'} ${url} in pool ${pool}`
  events.push(draining ? 'drain' : 'undrain', message, { pool, backend: url })
  return message
}

/** Reads the config file again and validates it; the text is what workers parse, so all see the same bytes. */
export async function readAndValidate (file: string): Promise<{ text: string, config: Config }> {
  const text = await readFile(file, 'utf8').catch((err: Error) => {
    throw new ConfigError([{ file, path: '', line: undefined, message: `cannot read the file: ${err.message}` }])
  })
  return { text, config: parseConfigText(text, file) }
}

export function onSignals (reload: () => Promise<unknown>, shutdown: (signal: string) => Promise<void>): void {
  process.on('SIGHUP', () => { reload().catch(() => {}) })
  process.on('SIGTERM', () => { void shutdown('SIGTERM') })
  process.on('SIGINT', () => { void shutdown('SIGINT') })
}

