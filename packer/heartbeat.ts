// PING every interval; no matching PONG within the timeout means the peer is dead. Both sides run one.
// The payload is 8 random bytes per PING, so only a peer that read the PING can answer it.
import { randomFillSync } from 'node:crypto'
import { FrameType, encodeFrame } from './frame.js'

export class Heartbeat {
  private pingTimer: NodeJS.Timeout | undefined
  private pongTimer: NodeJS.Timeout | undefined
  /** The payload of the outstanding PING (meaningful while pongTimer is set). */
  private readonly expected = Buffer.alloc(8)
  private readonly send: (frame: Buffer) => void
  private readonly dead: () => void
  readonly intervalMs: number
  readonly timeoutMs: number

  constructor (send: (frame: Buffer) => void, dead: () => void, intervalMs: number, timeoutMs: number) {
    this.send = send
    this.dead = dead
    this.intervalMs = intervalMs
    this.timeoutMs = timeoutMs
    this.pingTimer = setTimeout(this.onPingDue, intervalMs).unref()
  }

  /** A PONG arrived: if it echoes our outstanding PING exactly, the next one is due an interval from now. Any other is ignored. */
  pong (payload: Buffer): boolean {
    if (this.pongTimer === undefined || !payload.equals(this.expected)) return false
    clearTimeout(this.pongTimer)
    this.pongTimer = undefined
    this.pingTimer = setTimeout(this.onPingDue, this.intervalMs).unref()
    return true
  }

  stop (): void {
    clearTimeout(this.pingTimer)
    clearTimeout(this.pongTimer)
  }

  private readonly onPingDue = (): void => {
    randomFillSync(this.expected)
    this.send(encodeFrame(FrameType.PING, 0, this.expected)) // copies: expected may change only at the next PING
    this.pongTimer = setTimeout(this.dead, this.timeoutMs).unref()
  }
}
