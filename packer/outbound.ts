// The session's sending half: control frames go straight to the socket; data waits in a round-robin
// ring of ready streams and is framed (at most 64 KiB a frame) only while the ws buffer is under a bound,
// so control frames overtake queued data and the socket buffer stays bounded. Control frames have a bound
// of their own: a peer that keeps asking for answers (PONG, RESET, WINDOW_UPDATE) and never reads them is
// dropped once they pile up, as HTTP/2 stacks do for CVE-2019-9512 ("ping flood").
import type { WebSocket } from 'ws'
import { FrameType, HEADER_SIZE, MAX_DATA, encodeFrame } from './frame.js'
import type { SessionStats } from './options.js'
import type { TunnelStream } from './stream.js'

const SEND_OPTS = { binary: true }

export class Outbound {
  /** Bytes the peer still accepts on the whole session. */
  sessionWindow = 0
  closed = false
  private readonly ws: WebSocket
  private readonly stats: SessionStats
  private readonly maxBuffered: number
  /** ws.bufferedAmount past which one more control frame means the peer is not reading (see constructor). */
  private readonly controlLimit: number
  private readonly onFlood: (buffered: number) => void
  private head: TunnelStream | null = null
  private tail: TunnelStream | null = null
  private pumping = false
  private sessionStalled = false

  constructor (ws: WebSocket, stats: SessionStats, maxBuffered: number, maxControl: number, onFlood: (buffered: number) => void) {
    this.ws = ws
    this.stats = stats
    this.maxBuffered = maxBuffered
    // Data is framed only while the buffer holds less than maxBuffered, so data takes at most that plus one
    // frame of it: anything above is control frames. Past maxControl of those, the peer is not reading.
    this.controlLimit = maxBuffered + MAX_DATA + HEADER_SIZE + 16 + maxControl
    this.onFlood = onFlood
  }

  /** Sends one control frame now, ahead of any data still in the ring; drops the session if the peer does not read. */
  send (frame: Buffer): void {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return
    const buffered = this.ws.bufferedAmount
    if (buffered > this.controlLimit) { this.flood(buffered); return }
    this.ws.send(frame, SEND_OPTS, this.onFlushed)
  }

  /** A stream has a chunk to send: link it into the ring if its window allows, then pump. */
  schedule (s: TunnelStream): void {
    if (s.queued || s.pending === null || this.closed) return
    if (s.sendWindow <= 0) { s.stats.windowStalls++; this.stats.windowStalls++; return }
    s.queued = true
    s.nextReady = null
    if (this.tail === null) this.head = s
    else this.tail.nextReady = s
    this.tail = s
    this.pump()
  }

  addSessionWindow (inc: number): void {
    this.sessionWindow += inc
    this.sessionStalled = false
    this.pump()
  }

  clear (): void {
    this.closed = true
    this.head = this.tail = null
  }

  private flood (buffered: number): void {
    this.clear()
    this.onFlood(buffered)
  }

  private pump (): void {
    if (this.pumping || this.closed) return
    this.pumping = true
    const ws = this.ws
    while (this.head !== null && this.sessionWindow > 0 && ws.bufferedAmount < this.maxBuffered) {
      const s = this.head
      this.head = s.nextReady
      if (this.head === null) this.tail = null
      s.queued = false
      s.nextReady = null
      this.sendData(s)
      if (s.pending !== null) this.schedule(s) // back to the tail: fair round robin
    }
    if (this.head !== null && this.sessionWindow <= 0 && !this.sessionStalled) { this.sessionStalled = true; this.stats.sessionStalls++ }
    this.pumping = false
  }

  private sendData (s: TunnelStream): void {
    const chunk = s.pending
    if (chunk === null || s.destroyed) return
    const off = s.pendingOff
    const n = Math.min(MAX_DATA, chunk.length - off, s.sendWindow, this.sessionWindow)
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(encodeFrame(FrameType.DATA, s.id, chunk, 0, off, off + n), SEND_OPTS, this.onFlushed)
    s.pendingOff = off + n
    s.sendWindow -= n
    this.sessionWindow -= n
    s.stats.bytesOut += n
    this.stats.bytesOut += n
    if (s.pendingOff === chunk.length) {
      const cb = s.pendingCb
      s.pending = null
      s.pendingCb = null
      if (cb !== null) cb() // the Writable may hand us its next chunk right here
    }
  }

  /** Every frame shares this one callback (no per-frame closure): the ws buffer drained, so more data may go. */
  private readonly onFlushed = (): void => {
    if (this.head !== null) this.pump()
  }
}
