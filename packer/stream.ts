// One multiplexed stream as a Node Duplex. The session owns the wire; the stream holds the per-stream
// state the session's scheduler and flow control read: its send window, the one chunk being framed,
// and how much received data the application has consumed (which is what earns the peer more window).
import { Duplex } from 'node:stream'
import type { OpenInfo } from './payload.js'
import { MAX_DATA } from './frame.js'

/**
 * DATA payloads below this that arrive while earlier data is still unread are copied into a shared slab instead of
 * queued one by one: the window bounds bytes, not chunks, and a queued chunk costs ~130 bytes of heap (a 1-byte DATA
 * frame per byte made a 256 KiB window hold ~34 MB). Above it the per-chunk cost is under 7%.
 */
const SMALL = 2048
const SLAB = 16 * 1024

/** What a stream asks of the session that owns the wire (the Session implements it). */
export interface StreamOwner {
  /** The stream has data to send: frame it when the scheduler and the windows allow. */
  schedule (s: TunnelStream): void
  /** The stream's writable side ended: send its END once queued data is out. */
  sendEnd (s: TunnelStream): void
  /** The application consumed received data: credit the peer's send window. */
  credit (s: TunnelStream): void
  streamClosed (s: TunnelStream, err: Error | null): void
}

export interface StreamStats {
  bytesIn: number
  bytesOut: number
  /** Times the stream had data to send but its send window was empty. */
  windowStalls: number
}

export class TunnelStream extends Duplex {
  readonly id: number
  readonly info: OpenInfo
  readonly stats: StreamStats = { bytesIn: 0, bytesOut: 0, windowStalls: 0 }
  /** @internal */ readonly session: StreamOwner

  // --- send side (owned by the session's scheduler) ---
  /** @internal Bytes the peer still accepts on this stream. */ sendWindow: number
  /** @internal The chunk being framed, its offset, and the write callback released when it is all sent. */
  pending: Buffer | null = null
  /** @internal */ pendingOff = 0
  /** @internal */ pendingCb: ((err?: Error | null) => void) | null = null
  /** @internal Linked into the session's round-robin ring of streams ready to send. */
  queued = false
  /** @internal */ nextReady: TunnelStream | null = null
  /** @internal */ endSent = false

  // --- receive side ---
  /** @internal Bytes the peer may still send before our next WINDOW_UPDATE. */ recvWindow: number
  /** @internal Total DATA bytes received, and how many the application has consumed so far. */
  recvTotal = 0
  /** @internal */ consumed = 0
  /** @internal Consumed bytes not yet returned to the peer as window. */ unacked = 0
  /** @internal */ endReceived = false
  /** @internal Set when the peer reset the stream or the session died: no RESET goes back. */
  silentClose = false
  /** Small payloads received while the reader is behind, not yet handed to the readable buffer: slab[start, end). */
  private slab: Buffer | null = null
  private slabStart = 0
  private slabEnd = 0

  constructor (session: StreamOwner, id: number, info: OpenInfo, sendWindow: number, recvWindow: number) {
    // The readable buffer can never exceed the receive window (the peer would be violating it),
    // so push()'s return value is not needed for backpressure: the window is the backpressure.
    super({ readableHighWaterMark: recvWindow, writableHighWaterMark: MAX_DATA, allowHalfOpen: true })
    this.session = session
    this.id = id
    this.info = info
    this.sendWindow = sendWindow
    this.recvWindow = recvWindow
  }

  /** Bytes accepted from the application and not yet handed to the socket. */
  get queuedBytes (): number { return this.writableLength }

  /** Bytes received and not yet consumed by the application. */
  get bufferedBytes (): number { return this.recvTotal - this.consumed }

  /** @internal Received bytes held back for coalescing (not yet in readableLength, not consumed either). */
  get heldBytes (): number { return this.slabEnd - this.slabStart }

  /** @internal Hands received DATA to the reader: zero-copy while it keeps up, coalesced while it is behind. */
  receive (payload: Buffer): void {
    const n = payload.length
    if (n >= SMALL || (this.readableLength === 0 && this.slabEnd === this.slabStart)) {
      this.releaseHeld()
      this.push(payload)
      return
    }
    if (this.slab === null || this.slabEnd + n > this.slab.length) {
      this.releaseHeld()
      this.slab = Buffer.allocUnsafe(SLAB)
      this.slabStart = this.slabEnd = 0
    }
    payload.copy(this.slab, this.slabEnd)
    this.slabEnd += n
  }

  /** @internal Pushes the held bytes (before END, and whenever the reader asks for more). */
  releaseHeld (): void {
    if (this.slabEnd === this.slabStart || this.slab === null) return
    const chunk = this.slab.subarray(this.slabStart, this.slabEnd)
    this.slabStart = this.slabEnd
    this.push(chunk)
  }

  override _write (chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (chunk.length === 0) { cb(); return }
    this.pending = chunk
    this.pendingOff = 0
    this.pendingCb = cb
    this.session.schedule(this)
  }

  override _final (cb: (err?: Error | null) => void): void {
    // Writable calls _final only once every write callback has run, so all data is already framed.
    this.session.sendEnd(this)
    cb()
  }

  override _read (): void {
    this.session.credit(this)
  }

  /** Reading is consumption: every path that drains the buffer (data events, pipe, async iteration) goes through read(). */
  override read (size?: number): unknown {
    // Held bytes come after everything in the buffer, so the reader sees them in order, and never waits on them.
    if (this.slabEnd !== this.slabStart) this.releaseHeld()
    const chunk = super.read(size) as unknown
    if (this.recvTotal !== this.consumed) this.session.credit(this)
    return chunk
  }

  override _destroy (err: Error | null, cb: (err?: Error | null) => void): void {
    this.pending = null
    this.pendingCb = null
    this.slab = null
    this.slabStart = this.slabEnd = 0
    this.session.streamClosed(this, err)
    cb(err)
  }
}
