// A multiplexed tunnel session over one WebSocket: handshake, stream ids, frame dispatch, receive-side
// flow control (per-stream and session windows, credited back as the application consumes data),
// heartbeats and drain. The sending half (fair data scheduling, ws backpressure) is outbound.ts.
import { EventEmitter } from 'node:events'
import type { WebSocket } from 'ws'
import { TunnelError, ResetCode } from './errors.js'
import { FrameType, decodeFrame, encodeFrame, encodeU32, type Frame } from './frame.js'
import { Outbound } from './outbound.js'
import { Heartbeat } from './heartbeat.js'
import { decodeOpen, encodeOpen, encodeCodeMessage, decodeCodeMessage, type OpenInfo, type Settings } from './payload.js'
import { TunnelStream } from './stream.js'
import { DEFAULT_MAX_CONTROL_BYTES, DEFAULT_STREAM_WINDOW, MAX_WINDOW, MIN_WINDOW, MAX_CREDIT, type SessionOptions, type SessionStats } from './options.js'

export { DEFAULT_STREAM_WINDOW, MAX_WINDOW, MIN_WINDOW, type SessionOptions, type SessionStats } from './options.js'

type Handshake = 'hello' | 'grant'

export class Session extends EventEmitter {
  readonly ws: WebSocket
  readonly role: 'edge' | 'client'
  readonly stats: SessionStats = { bytesIn: 0, bytesOut: 0, streamsOpen: 0, streamsTotal: 0, windowStalls: 0, sessionStalls: 0 }
  readonly streams = new Map<number, TunnelStream>()
  /** Set by the owner (server/client): the token subject, granted names... */
  meta: Record<string, unknown> = {}
  readonly localSettings: Settings
  peerSettings: Settings | undefined
  closed = false
  closeError: Error | undefined
  goingAway = false
  peerGoingAway = false

  private readonly maxStreams: number
  private nextId: number
  private lastPeerId = 0
  private recvSession: number
  private unackedSession = 0
  private readonly out: Outbound
  private readonly heartbeat: Heartbeat
  private expect: Handshake | 'none'

  constructor (ws: WebSocket, opts: SessionOptions) {
    super()
    this.ws = ws
    this.role = opts.role
    const streamWindow = clamp(opts.streamWindow ?? DEFAULT_STREAM_WINDOW, MIN_WINDOW, MAX_WINDOW)
    this.maxStreams = opts.maxStreams ?? 1024
    // By default the session window covers every stream's window: then streams whose readers stopped (each pins
    // its own window here) cannot use up the session window and freeze the others; the stream limit binds first.
    const sessionWindow = clamp(opts.sessionWindow ?? streamWindow * this.maxStreams, streamWindow, 1 << 30)
    this.localSettings = { streamWindow, sessionWindow }
    this.recvSession = sessionWindow
    this.nextId = opts.role === 'edge' ? 1 : 2
    this.expect = opts.role === 'edge' ? 'hello' : 'grant'
    this.out = new Outbound(ws, this.stats, opts.maxBufferedBytes ?? 512 * 1024, opts.maxControlBytes ?? DEFAULT_MAX_CONTROL_BYTES, this.onFlood)
    ws.binaryType = 'nodebuffer'
    ws.on('message', this.onMessage)
    ws.on('close', this.onWsClose)
    ws.on('error', this.onWsError)
    const timeoutMs = opts.pingTimeoutMs ?? 10_000
    this.heartbeat = new Heartbeat(frame => { this.out.send(frame) }, () => {
      this.destroy(new TunnelError('EP_ERR_TUNNEL_TIMEOUT', `no heartbeat answer within ${timeoutMs} ms`))
    }, opts.pingIntervalMs ?? 15_000, timeoutMs)
  }

  get ready (): boolean { return this.peerSettings !== undefined && !this.closed }

  /** Sends a handshake frame (HELLO from the backend, GRANT from the edge) carrying our windows. */
  sendHandshake (type: typeof FrameType.HELLO | typeof FrameType.GRANT, payload: Buffer): void {
    this.out.send(encodeFrame(type, 0, payload))
  }

  /** Applies the peer's windows from its HELLO/GRANT; returns false if they are out of range. */
  applyPeerSettings (s: Settings): boolean {
    if (s.streamWindow < MIN_WINDOW || s.streamWindow > MAX_WINDOW || s.sessionWindow < s.streamWindow || s.sessionWindow > MAX_CREDIT) return false
    this.peerSettings = s
    this.out.sessionWindow = s.sessionWindow
    return true
  }

  openStream (info: OpenInfo): TunnelStream {
    if (this.closed) throw new TunnelError('EP_ERR_TUNNEL_CLOSED', 'tunnel session is closed', { cause: this.closeError })
    if (this.goingAway || this.peerGoingAway) throw new TunnelError('EP_ERR_TUNNEL_GOAWAY', 'tunnel session is draining')
    if (this.peerSettings === undefined) throw new TunnelError('EP_ERR_TUNNEL_PROTOCOL', 'tunnel session handshake not finished')
    const id = this.nextId
    if (id > MAX_CREDIT - 2) { this.goaway(ResetCode.NO_ERROR, 'stream ids exhausted'); throw new TunnelError('EP_ERR_TUNNEL_GOAWAY', 'stream ids exhausted') }
    this.nextId += 2
    const s = new TunnelStream(this, id, info, this.peerSettings.streamWindow, this.localSettings.streamWindow)
    this.addStream(s)
    this.out.send(encodeFrame(FrameType.OPEN, id, encodeOpen(info)))
    return s
  }

  /** Graceful drain: no new streams either way; the socket closes once the open streams finish. */
  goaway (code: number = ResetCode.NO_ERROR, message = ''): void {
    if (this.closed || this.goingAway) return
    this.goingAway = true
    this.out.send(encodeFrame(FrameType.GOAWAY, 0, encodeCodeMessage(code, message, this.lastPeerId)))
    if (this.streams.size === 0) this.destroy()
  }

  /** Closes the session: open streams error with EP_ERR_TUNNEL_CLOSED (cause: err). Safe to call twice. */
  destroy (err?: Error): void {
    if (this.closed) return
    this.closed = true
    this.closeError = err
    this.heartbeat.stop()
    const ws = this.ws
    if ((err as TunnelError | undefined)?.code === 'EP_ERR_TUNNEL_FLOOD') {
      // The peer reads nothing: a GOAWAY would only queue behind what it already ignores.
      ws.terminate()
    } else if (ws.readyState === ws.OPEN) {
      if (err !== undefined) {
        const c = (err as TunnelError).code
        const code = c === 'EP_ERR_TUNNEL_PROTOCOL' ? ResetCode.PROTOCOL : c === 'EP_ERR_TUNNEL_FLOW_CONTROL' ? ResetCode.FLOW_CONTROL : c === 'EP_ERR_TUNNEL_TIMEOUT' ? ResetCode.TIMEOUT : ResetCode.INTERNAL
        ws.send(encodeFrame(FrameType.GOAWAY, 0, encodeCodeMessage(code, err.message, this.lastPeerId)))
        // The close reason must fit 123 bytes: keep it short and ASCII.
        ws.close(code === ResetCode.PROTOCOL || code === ResetCode.FLOW_CONTROL ? 1002 : 1011, err.message.replace(/[^\x20-\x7e]/g, '?').slice(0, 120))
      } else {
        ws.close(1000)
      }
      // A peer that never answers the close handshake must not hold the socket.
      setTimeout(terminate, 2000, ws).unref()
    } else if (ws.readyState === ws.CONNECTING) {
      ws.terminate()
    }
    const cause = new TunnelError('EP_ERR_TUNNEL_CLOSED', `tunnel session closed${err !== undefined ? `: ${err.message}` : ''}`, { cause: err })
    for (const s of this.streams.values()) { s.silentClose = true; s.destroy(cause) }
    this.streams.clear()
    this.out.clear()
    this.emit('close', err)
  }

  /** @internal */
  schedule (s: TunnelStream): void { this.out.schedule(s) }

  /** @internal */
  sendEnd (s: TunnelStream): void {
    if (s.endSent || s.silentClose) return
    s.endSent = true
    this.out.send(encodeFrame(FrameType.END, s.id))
  }

  // --- receive-side flow control -----------------------------------------------------------------

  /** @internal Returns window for data the application has consumed since the last call. */
  credit (s: TunnelStream): void {
    const consumed = s.recvTotal - s.readableLength - s.heldBytes
    const d = consumed - s.consumed
    if (d <= 0 || this.closed) return
    s.consumed = consumed
    if (!s.endReceived && !s.destroyed) {
      s.unacked += d
      if (s.unacked >= this.localSettings.streamWindow >>> 2) {
        this.out.send(encodeU32(FrameType.WINDOW_UPDATE, s.id, s.unacked))
        s.recvWindow += s.unacked
        s.unacked = 0
      }
    }
    this.creditSession(d)
  }

  private creditSession (d: number): void {
    this.unackedSession += d
    if (this.unackedSession >= this.localSettings.sessionWindow >>> 2) {
      this.out.send(encodeU32(FrameType.WINDOW_UPDATE, 0, this.unackedSession))
      this.recvSession += this.unackedSession
      this.unackedSession = 0
    }
  }

  private addStream (s: TunnelStream): void {
    this.streams.set(s.id, s)
    this.stats.streamsOpen++
    this.stats.streamsTotal++
  }

  /** @internal Called from the stream's _destroy: reset it on the wire unless it ended cleanly both ways. */
  streamClosed (s: TunnelStream, err: Error | null): void {
    if (this.streams.get(s.id) !== s) return
    this.streams.delete(s.id)
    this.stats.streamsOpen--
    if (!s.silentClose && !(s.endSent && s.endReceived)) {
      const code = err === null ? ResetCode.CANCEL : ((err as { resetCode?: number }).resetCode ?? ResetCode.CANCEL) || ResetCode.CANCEL
      this.out.send(encodeFrame(FrameType.RESET, s.id, encodeCodeMessage(code, err?.message ?? 'stream cancelled')))
    }
    // Bytes the application will never read still occupy the session window: give them back.
    const unread = s.recvTotal - s.consumed
    if (unread > 0 && !this.closed) { s.consumed = s.recvTotal; this.creditSession(unread) }
    if (this.goingAway && this.streams.size === 0) this.destroy()
  }

  // --- frame dispatch ----------------------------------------------------------------------------

  private readonly onMessage = (data: Buffer, isBinary: boolean): void => {
    if (this.closed || this.out.closed) return
    try {
      if (!isBinary) { this.fail('text message on a binary tunnel'); return }
      const frame = decodeFrame(data)
      if (frame instanceof TunnelError) { this.destroy(frame); return }
      this.dispatch(frame)
    } catch (err) {
      // A listener's bug or our own: it ends this session, never the process.
      // A thrown non-Error (a string, a null-prototype object) must not break destroy() itself.
      this.destroy(err instanceof Error ? err : new Error('frame handling threw a non-Error value', { cause: err }))
    }
  }

  /** Outbound found more control frames unsent than the bound: the peer asks for answers it does not read. */
  private readonly onFlood = (buffered: number): void => {
    // Stop reading at once; the session closes on the next tick, outside whatever send got us here.
    this.ws.terminate()
    process.nextTick(() => {
      this.destroy(new TunnelError('EP_ERR_TUNNEL_FLOOD', `peer does not read: ${buffered} bytes unsent, control frames past the bound`))
    })
  }

  private fail (message: string, code: 'EP_ERR_TUNNEL_PROTOCOL' | 'EP_ERR_TUNNEL_FLOW_CONTROL' = 'EP_ERR_TUNNEL_PROTOCOL'): void {
    this.destroy(new TunnelError(code, message))
  }

  private dispatch (f: Frame): void {
    const type = f.type
    if (this.expect !== 'none') {
      if (type === FrameType.PING || type === FrameType.PONG || type === FrameType.GOAWAY) { /* allowed before the handshake */ } else if ((type === FrameType.HELLO && this.expect === 'hello') || (type === FrameType.GRANT && this.expect === 'grant')) {
        this.expect = 'none'
        this.emit(type === FrameType.HELLO ? 'hello' : 'grant', f.payload)
        return
      } else { this.fail(`frame type ${type} before the handshake`); return }
    }
    switch (type) {
      case FrameType.DATA: return this.onData(f)
      case FrameType.OPEN: return this.onOpen(f)
      case FrameType.END: {
        const s = this.lookup(f.streamId)
        if (s === undefined) return
        if (s.endReceived) return this.fail(`second END on stream ${f.streamId}`)
        s.endReceived = true
        s.releaseHeld()
        s.push(null)
        return
      }
      case FrameType.RESET: {
        const m = decodeCodeMessage(f.payload, false)
        if (m === undefined) return this.fail('malformed RESET')
        const s = this.lookup(f.streamId)
        if (s === undefined) return
        s.silentClose = true
        s.destroy(new TunnelError('EP_ERR_TUNNEL_STREAM_RESET', `stream reset by peer (code ${m.code}): ${m.message}`, { resetCode: m.code }))
        return
      }
      case FrameType.WINDOW_UPDATE: return this.onWindowUpdate(f)
      case FrameType.PING: this.out.send(encodeFrame(FrameType.PONG, 0, f.payload)); return
      case FrameType.PONG: this.heartbeat.pong(f.payload); return
      case FrameType.GOAWAY: return this.onGoaway(f)
      default: return this.fail(`unexpected frame type ${type}`)
    }
  }

  /** The stream for an id; undefined (ignore the frame) for a stream that existed and closed. Unknown ids are fatal. */
  private lookup (id: number): TunnelStream | undefined {
    const s = this.streams.get(id)
    if (s !== undefined) return s
    const local = (id & 1) === (this.role === 'edge' ? 1 : 0)
    if (local ? id >= this.nextId : id > this.lastPeerId) this.fail(`frame for stream ${id}, which was never opened`)
    return undefined
  }

  private onData (f: Frame): void {
    const n = f.payload.length
    if (n > this.recvSession) return this.fail(`peer overran the session window by ${n - this.recvSession} bytes`, 'EP_ERR_TUNNEL_FLOW_CONTROL')
    this.recvSession -= n
    this.stats.bytesIn += n
    const s = this.lookup(f.streamId)
    if (s === undefined) { if (!this.closed) this.creditSession(n); return }
    if (s.endReceived) return this.fail(`DATA after END on stream ${s.id}`)
    if (n > s.recvWindow) return this.fail(`peer overran stream ${s.id}'s window by ${n - s.recvWindow} bytes`, 'EP_ERR_TUNNEL_FLOW_CONTROL')
    s.recvWindow -= n
    s.recvTotal += n
    s.stats.bytesIn += n
    s.receive(f.payload)
    this.credit(s)
  }

  private onOpen (f: Frame): void {
    const id = f.streamId
    const peerParity = this.role === 'edge' ? 0 : 1
    if ((id & 1) !== peerParity || id <= this.lastPeerId) return this.fail(`OPEN with stream id ${id} (last ${this.lastPeerId})`)
    const info = decodeOpen(f.payload)
    if (info === undefined) return this.fail('malformed OPEN')
    this.lastPeerId = id
    if (this.goingAway || this.streams.size >= this.maxStreams || this.listenerCount('stream') === 0 || this.peerSettings === undefined) {
      this.out.send(encodeFrame(FrameType.RESET, id, encodeCodeMessage(ResetCode.REFUSED, 'stream refused')))
      return
    }
    const s = new TunnelStream(this, id, info, this.peerSettings.streamWindow, this.localSettings.streamWindow)
    this.addStream(s)
    this.emit('stream', s)
  }

  private onWindowUpdate (f: Frame): void {
    const inc = f.payload.readUInt32BE(0)
    if (inc === 0) return this.fail('WINDOW_UPDATE of 0')
    if (f.streamId === 0) {
      if (this.out.sessionWindow + inc > MAX_CREDIT) return this.fail('session window above 2^31-1', 'EP_ERR_TUNNEL_FLOW_CONTROL')
      this.out.addSessionWindow(inc)
      return
    }
    const s = this.lookup(f.streamId)
    if (s === undefined) return
    if (s.sendWindow + inc > MAX_CREDIT) return this.fail('stream window above 2^31-1', 'EP_ERR_TUNNEL_FLOW_CONTROL')
    s.sendWindow += inc
    this.out.schedule(s)
  }

  private onGoaway (f: Frame): void {
    const m = decodeCodeMessage(f.payload, true)
    if (m === undefined) return this.fail('malformed GOAWAY')
    this.peerGoingAway = true
    // Streams we opened that the peer never saw are refused: safe for the caller to retry elsewhere.
    for (const s of this.streams.values()) {
      if ((s.id & 1) === (this.role === 'edge' ? 1 : 0) && s.id > m.lastStreamId) {
        s.silentClose = true
        s.destroy(new TunnelError('EP_ERR_TUNNEL_GOAWAY', 'stream not processed: peer is going away', { resetCode: ResetCode.GOING_AWAY }))
      }
    }
    this.emit('goaway', m.code, m.message)
  }

  private readonly onWsClose = (code: number): void => {
    if (!this.closed) this.destroy(this.goingAway || this.peerGoingAway ? undefined : new TunnelError('EP_ERR_TUNNEL_CLOSED', `connection closed (${code})`))
  }

  private readonly onWsError = (err: Error): void => { this.destroy(err) }
}

function clamp (v: number, lo: number, hi: number): number { return Math.min(hi, Math.max(lo, Math.floor(v))) }
function terminate (ws: WebSocket): void { if (ws.readyState !== ws.CLOSED) ws.terminate() }
