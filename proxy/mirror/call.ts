// One copy of a request sent to a shadow (or secondary) member: an undici dispatch handler, as the Exchange is,
// that reads the answer into a capped buffer and tells its case when it is over. Nothing here reaches the
// client: its answer is read and kept for the comparison only; a timeout aborts it.
import type { Dispatcher } from 'undici'
import type { Member } from '../upstream/member.js'
import { classifyUpstreamError } from '../errors.js'
import { errorKind } from '../ops/metrics.js'

export interface CallOwner {
  callDone (call: ShadowCall): void
}

function onCallTimeout (c: ShadowCall): void {
  c.timedOut()
}

export class ShadowCall implements Dispatcher.DispatchHandler {
  readonly owner: CallOwner
  readonly member: Member
  readonly cap: number
  readonly start = performance.now()
  status = 0
  headers: readonly Buffer[] = []
  chunks: Buffer[] = []
  bytes = 0
  /** The body passed the cap: compared by length only. */
  over = false
  /** Time to the response head, ms (-1: none). */
  ms = -1
  /** connect, timeout, reset, response, other; undefined when it answered in full. */
  error: string | undefined
  done = false
  #abort: ((err?: Error) => void) | null = null
  #timer: NodeJS.Timeout | undefined

  constructor (owner: CallOwner, member: Member, cap: number, timeout: number) {
    this.owner = owner
    this.member = member
    this.cap = cap
    this.#timer = setTimeout(onCallTimeout, timeout, this)
    member.backend.inflight++
  }

  send (opts: Dispatcher.DispatchOptions): void {
    try {
      this.member.backend.dispatcher.dispatch(opts, this)
    } catch (err) {
      this.onError(err as Error)
    }
  }

  onConnect (abort: (err?: Error) => void): void {
    if (this.done) { abort(new Error('shadow call over')); return }
    this.#abort = abort
  }

  onHeaders (statusCode: number, rawHeaders: Buffer[]): boolean {
    if (this.done) return false
    if (statusCode < 200) return true
    this.status = statusCode
    this.headers = rawHeaders
    this.ms = performance.now() - this.start
    return true
  }

  onData (chunk: Buffer): boolean {
    if (this.done) return false
    this.bytes += chunk.byteLength
    if (!this.over) {
      if (this.bytes > this.cap) { this.over = true; this.chunks = [] } else this.chunks.push(chunk)
    }
    return true
  }

  onComplete (): void {
    this.#end(undefined)
  }

  onError (err: Error): void {
    this.#end(errorKind(classifyUpstreamError(err)))
  }

  timedOut (): void {
    this.#timer = undefined
    if (this.done) return
    const abort = this.#abort
    this.#abort = null
    this.#end('timeout')
    abort?.(new Error('shadow timeout'))
  }

  /** Ends the call now (the edge closes). */
  cancel (): void {
    if (this.done) return
    const abort = this.#abort
    this.#abort = null
    this.#end('cancelled')
    abort?.(new Error('shadow cancelled'))
  }

  body (): Buffer | undefined {
    return this.over ? undefined : Buffer.concat(this.chunks)
  }

  #end (error: string | undefined): void {
    if (this.done) return
    this.done = true
    this.#abort = null
    if (this.#timer !== undefined) { clearTimeout(this.#timer); this.#timer = undefined }
    this.member.backend.inflight--
    if (error !== undefined) { this.error = error; this.status = 0; this.chunks = [] }
    this.owner.callDone(this)
  }
}
