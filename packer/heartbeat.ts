// PING every interval; no matching PONG within the timeout means the peer is dead. Both sides run one.
import { FrameType, encodePing } from './frame.js'

export class Heartbeat {
  private pingTimer: NodeJS.Timeout | undefined
  private pongTimer: NodeJS.Timeout | undefined
  private seq = 0n
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

  /** A PONG arrived: if it answers our outstanding PING, the next one is due an interval from now. */
  pong (v: bigint): void {
    if (v !== this.seq || this.pongTimer === undefined) return
    clearTimeout(this.pongTimer)
    this.pongTimer = undefined
    this.pingTimer = setTimeout(this.onPingDue, this.intervalMs).unref()
  }

  stop (): void {
    clearTimeout(this.pingTimer)
    clearTimeout(this.pongTimer)
  }

  private readonly onPingDue = (): void => {
    this.send(encodePing(FrameType.PING, ++this.seq))
    this.pongTimer = setTimeout(this.dead, this.timeoutMs).unref()
  }
}
