// Change detection for certificate files: fs.watch on the containing directories (a rename-into-place replaces
// the inode, so watching the file itself would go deaf after the first rotation), debounced, plus a slow
// periodic tick because fs.watch is best effort (network filesystems, some containers, editors that truncate).
import { watch, type FSWatcher } from 'node:fs'
import { basename } from 'node:path'

export interface WatchOptions {
  /** Directories to watch. */
  readonly dirs: readonly string[]
  /** Names inside those dirs that matter; undefined = any name. */
  readonly names: ReadonlySet<string> | undefined
  readonly debounceMs: number
  /** The fallback tick; 0 disables it. */
  readonly pollMs: number
  /** Called after a quiet debounce period following a change, and on every poll tick. */
  readonly onChange: (reason: 'watch' | 'poll') => void
}

export class FileWatcher {
  readonly #opts: WatchOptions
  readonly #watchers: FSWatcher[] = []
  #debounce: NodeJS.Timeout | undefined
  #poll: NodeJS.Timeout | undefined
  #closed = false

  constructor (opts: WatchOptions) {
    this.#opts = opts
  }

  start (): void {
    for (const dir of new Set(this.#opts.dirs)) {
      try {
        const w = watch(dir, { persistent: false }, (_event, name) => { this.#onEvent(name) })
        // A watcher that errors (directory removed, inotify limits) is dropped; the poll tick still runs.
        w.on('error', () => { w.close() })
        this.#watchers.push(w)
      } catch {
        // Unsupported or missing directory: rely on polling.
      }
    }
    if (this.#opts.pollMs > 0) {
      this.#poll = setInterval(() => { this.#opts.onChange('poll') }, this.#opts.pollMs)
      this.#poll.unref()
    }
  }

  #onEvent (name: string | Buffer | null): void {
    if (this.#closed) return
    const names = this.#opts.names
    if (names !== undefined && name !== null && !names.has(basename(name.toString()))) return
    if (this.#debounce !== undefined) clearTimeout(this.#debounce)
    // Tools often write cert and key as separate renames; one reload after both is what we want.
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined
      if (!this.#closed) this.#opts.onChange('watch')
    }, this.#opts.debounceMs)
    this.#debounce.unref()
  }

  close (): void {
    this.#closed = true
    for (const w of this.#watchers) w.close()
    this.#watchers.length = 0
    if (this.#debounce !== undefined) clearTimeout(this.#debounce)
    if (this.#poll !== undefined) clearInterval(this.#poll)
  }
}
