// The comparison records of one process, as JSON lines in the pool's `store` directory. One writer per directory
// and process ("shadow-<pid>.jsonl"; with workers > 1 each worker has its own file and the report merges them).
// Lines are queued and written in batches by one async append at a time, each batch whole lines; the file is
// rotated by size (renamed to "shadow-<pid>-<ms>.jsonl", the oldest removed beyond MAX_FILES). A crash can cut
// at most the last line of a batch mid-write: the writer cuts such a tail off when it opens a file again, and
// the reader skips a line without its newline, so readers only ever see whole records.
import { mkdir, open, readdir, rename, stat, truncate, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'

export const ROTATE_BYTES = 16 * 1024 * 1024
export const MAX_FILES = 20
/** Bytes queued before new records are dropped (a disk slower than the traffic must not grow the heap). */
export const MAX_QUEUED = 8 * 1024 * 1024
/** Records are gathered this long before a write: one write per batch, not one per record (a syscall each). */
export const BATCH_MS = 100

function onBatchTimer (s: RecordStore): void {
  s.startDrain()
}

export interface StoreOptions {
  readonly rotateBytes?: number
  readonly maxFiles?: number
  /** Called once per record dropped because the queue was full or the directory unwritable. */
  readonly onDrop?: () => void
}

export class RecordStore {
  readonly dir: string
  readonly file: string
  readonly #rotateBytes: number
  readonly #maxFiles: number
  readonly #onDrop: (() => void) | undefined
  #queue: string[] = []
  #queued = 0
  #handle: FileHandle | undefined
  #size = 0
  #writing: Promise<void> | undefined
  #timer: NodeJS.Timeout | undefined
  #closed = false
  /** The last rotated file's stamp: strictly increasing, so two rotations in one millisecond keep both files. */
  #stamp = 0
  /** Records written (tests, status). */
  written = 0

  constructor (dir: string, opts: StoreOptions = {}) {
    this.dir = dir
    this.file = join(dir, `shadow-${process.pid}.jsonl`)
    this.#rotateBytes = opts.rotateBytes ?? ROTATE_BYTES
    this.#maxFiles = opts.maxFiles ?? MAX_FILES
    this.#onDrop = opts.onDrop
  }

  /** Queues one record; false when it was dropped (queue full, store closed). */
  append (record: unknown): boolean {
    if (this.#closed) return false
    const line = `${JSON.stringify(record)}\n`
    if (this.#queued + line.length > MAX_QUEUED) { this.#onDrop?.(); return false }
    this.#queue.push(line)
    this.#queued += line.length
    if (this.#writing === undefined && this.#timer === undefined) this.#timer = setTimeout(onBatchTimer, BATCH_MS, this).unref()
    return true
  }

  /** @internal the batch timer: writes what gathered. */
  startDrain (): void {
    if (this.#timer !== undefined) { clearTimeout(this.#timer); this.#timer = undefined }
    this.#writing ??= this.#drain()
  }

  /** Resolves once everything queued so far is on disk. */
  async flush (): Promise<void> {
    if (this.#queue.length > 0) this.startDrain()
    while (this.#writing !== undefined) await this.#writing
  }

  async close (): Promise<void> {
    this.#closed = true
    await this.flush()
    await this.#handle?.close()
    this.#handle = undefined
  }

  async #drain (): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue
        this.#queue = []
        this.#queued = 0
        try {
          const h = await this.#open()
          const buf = Buffer.from(batch.join(''))
          let off = 0
          while (off < buf.length) off += (await h.write(buf, off)).bytesWritten
          this.#size += buf.length
          this.written += batch.length
          if (this.#size >= this.#rotateBytes) await this.#rotate()
        } catch {
          for (let i = 0; i < batch.length; i++) this.#onDrop?.()
          await this.#handle?.close().catch(() => {})
          this.#handle = undefined
        }
      }
    } finally {
      this.#writing = undefined
    }
  }

  async #open (): Promise<FileHandle> {
    if (this.#handle !== undefined) return this.#handle
    await mkdir(this.dir, { recursive: true })
    const size = await wholeLines(this.file)
    this.#handle = await open(this.file, 'a')
    this.#size = size
    return this.#handle
  }

  async #rotate (): Promise<void> {
    await this.#handle?.close()
    this.#handle = undefined
    this.#stamp = Math.max(Date.now(), this.#stamp + 1)
    await rename(this.file, join(this.dir, `shadow-${process.pid}-${this.#stamp}.jsonl`))
    this.#size = 0
    const rotated = (await readdir(this.dir)).filter(f => /^shadow-\d+-\d+\.jsonl$/.test(f)).sort((a, b) => stampOf(a) - stampOf(b))
    for (const f of rotated.slice(0, Math.max(0, rotated.length - this.#maxFiles))) await unlink(join(this.dir, f)).catch(() => {})
  }
}

function stampOf (f: string): number {
  return Number(/-(\d+)\.jsonl$/.exec(f)?.[1] ?? 0)
}

/** Cuts a file left by a crash back to its last whole line; resolves with its size (0 when absent). */
async function wholeLines (file: string): Promise<number> {
  let size: number
  try { size = (await stat(file)).size } catch { return 0 }
  if (size === 0) return 0
  const h = await open(file, 'r')
  try {
    const tail = Buffer.alloc(Math.min(size, 64 * 1024))
    let end = size
    for (;;) {
      const start = Math.max(0, end - tail.length)
      const { bytesRead } = await h.read(tail, 0, end - start, start)
      const nl = tail.subarray(0, bytesRead).lastIndexOf(0x0a)
      if (nl !== -1) { end = start + nl + 1; break }
      if (start === 0) { end = 0; break }
      end = start
    }
    if (end === size) return size
    await h.close()
    await truncate(file, end)
    return end
  } finally {
    await h.close().catch(() => {})
  }
}

/** Store files in a directory, oldest first (rotated ones by their stamp, live ones last). */
export async function storeFiles (dir: string): Promise<string[]> {
  const names = (await readdir(dir)).filter(f => /^shadow-\d+(?:-\d+)?\.jsonl$/.test(f))
  const rotated = names.filter(f => /^shadow-\d+-\d+\.jsonl$/.test(f)).sort((a, b) => stampOf(a) - stampOf(b))
  const live = names.filter(f => /^shadow-\d+\.jsonl$/.test(f)).sort()
  return [...rotated, ...live].map(f => join(dir, f))
}
