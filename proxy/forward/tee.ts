// A bounded request-body tee: copies of the body for observers (the mirror), up to a cap each, that never hold
// the primary request back. Only an Exchange whose observer asked for a copy has one; otherwise the client's body
// goes to undici as it is (Traefik's mirror has maxBodySize for the same reason: a copy must stay bounded).
//
// The tee sits between the client's body and undici, so undici's backpressure still reaches the client. Each copy
// is a Readable fed with push() whatever its buffer holds: bounded by the cap instead of by its reader, so a copy
// nobody reads costs at most `cap` bytes and never a pause. A chunk that would pass the cap abandons that copy
// (its buffer is dropped); the others and the primary go on.
import { Readable, Transform, type TransformCallback } from 'node:stream'

export type BodyCopyOutcome = 'pending' | 'complete' | 'truncated' | 'aborted'

/**
 * One observer's copy of a request body. It ends ('end') only when the whole body fit under the cap; otherwise
 * it is destroyed without an error (so an unread copy can never throw): `outcome` says why, and a reader that
 * iterates or pipes it gets a premature close, never a cut body passed as complete.
 */
export class BodyCopy extends Readable {
  readonly cap: number
  bytes = 0
  outcome: BodyCopyOutcome = 'pending'

  constructor (cap: number) {
    super()
    this.cap = cap
  }

  get truncated (): boolean { return this.outcome === 'truncated' }

  override _read (): void { /* fed by the tee, not pulled */ }

  /** @internal the tee's side */
  offer (chunk: Buffer): void {
    if (this.outcome !== 'pending') return
    if (this.bytes + chunk.byteLength > this.cap) { this.abandon('truncated'); return }
    this.bytes += chunk.byteLength
    // Chunks are kept, not copied: the client's body chunks are fresh buffers that nothing writes to again.
    this.push(chunk)
  }

  /** @internal */
  complete (): void {
    if (this.outcome !== 'pending') return
    this.outcome = 'complete'
    this.push(null)
  }

  /** @internal */
  abandon (why: 'truncated' | 'aborted'): void {
    if (this.outcome !== 'pending') return
    this.outcome = why
    this.emit(why)
    this.destroy()
  }
}

/** The stream undici reads in place of the client's body when some observer asked for a copy. */
export class BodyTee extends Transform {
  readonly copies: BodyCopy[] = []
  readonly #source: Readable
  #released = false

  constructor (source: Readable) {
    super()
    this.#source = source
    source.on('error', onSourceError.bind(this))
    // undici listens for its body's errors only while a try runs: one between tries must not go unhandled.
    this.on('error', noop)
    this.once('close', onTeeClose)
    source.pipe(this)
  }

  get source (): Readable { return this.#source }

  copy (cap: number): BodyCopy {
    const c = new BodyCopy(cap)
    this.copies.push(c)
    return c
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    for (const c of this.copies) c.offer(chunk)
    cb(null, chunk)
  }

  override _flush (cb: TransformCallback): void {
    for (const c of this.copies) c.complete()
    cb()
  }

  /**
   * The exchange is over: copies not complete are abandoned, and a body not read to its end is let go of, so the
   * listener can read and drop the rest (keep-alive) as it does without a tee.
   */
  release (): void {
    if (this.#released) return
    this.#released = true
    if (this.#source.readableEnded) return
    for (const c of this.copies) c.abandon('aborted')
    this.#source.unpipe(this)
    this.destroy()
  }

  /** @internal the tee closed (undici destroys its body on abort, or the exchange released it) */
  afterClose (): void {
    for (const c of this.copies) c.abandon('aborted')
    // undici destroys the body it reads when it aborts: the client's body gets the same, as without a tee.
    if (!this.#released && !this.#source.readableEnded) this.#source.destroy(this.errored ?? undefined)
  }
}

function noop (): void {}

function onSourceError (this: BodyTee, err: Error): void {
  this.destroy(err)
}

function onTeeClose (this: BodyTee): void {
  this.afterClose()
}
