// Frame codec: a 12-byte header then the payload, one frame per WebSocket binary message.
// Every length is checked against a fixed cap before anything is allocated or sliced.
import { TunnelError } from './errors.js'

export const VERSION = 1
export const HEADER_SIZE = 12
export const MAX_DATA = 64 * 1024
/** Control payloads (OPEN, RESET, GOAWAY, HELLO, GRANT...) are small; anything bigger is malformed. */
export const MAX_CONTROL = 16 * 1024
/** The ws maxPayload: ws refuses a larger message from its length field, before buffering it. */
export const MAX_MESSAGE = HEADER_SIZE + MAX_DATA

export const FrameType = {
  HELLO: 1,
  GRANT: 2,
  OPEN: 3,
  DATA: 4,
  END: 5,
  RESET: 6,
  WINDOW_UPDATE: 7,
  PING: 8,
  PONG: 9,
  GOAWAY: 10,
} as const
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType]

/** Fixed payload size per type (-1: variable, bounded by MAX_CONTROL or MAX_DATA). */
const fixedSize: readonly number[] = [-2, -1, -1, -1, -1, 0, -1, 4, 8, 8, -1]
/** Whether the type addresses a stream (id != 0) or the session (id == 0); WINDOW_UPDATE may do both. */
const streamScoped: readonly number[] = [0, 0, 0, 1, 1, 1, 1, 2, 0, 0, 0]

export interface Frame {
  type: FrameTypeValue
  flags: number
  streamId: number
  /** A view into the received message: no copy. */
  payload: Buffer
}

function protocolError (message: string): TunnelError {
  return new TunnelError('EP_ERR_TUNNEL_PROTOCOL', `malformed frame: ${message}`)
}

/** Decodes one message; returns a TunnelError (never throws) when the frame is malformed. */
export function decodeFrame (msg: Buffer): Frame | TunnelError {
  if (msg.length < HEADER_SIZE) return protocolError(`${msg.length} bytes is shorter than the header`)
  const version = msg[0]!
  if (version !== VERSION) return protocolError(`unsupported version ${version}`)
  const type = msg[1]!
  const size = fixedSize[type]
  if (size === undefined || size === -2) return protocolError(`unknown type ${type}`)
  if (msg[3] !== 0) return protocolError('reserved byte is not zero')
  const streamId = msg.readUInt32BE(4)
  const length = msg.readUInt32BE(8)
  const cap = type === FrameType.DATA ? MAX_DATA : MAX_CONTROL
  if (length > cap) return protocolError(`type ${type} payload of ${length} bytes exceeds ${cap}`)
  if (length !== msg.length - HEADER_SIZE) return protocolError(`length ${length} does not match the message (${msg.length - HEADER_SIZE})`)
  if (size >= 0 && length !== size) return protocolError(`type ${type} needs a ${size}-byte payload, got ${length}`)
  const scope = streamScoped[type]!
  if (scope === 1 && streamId === 0) return protocolError(`type ${type} needs a stream id`)
  if (scope === 0 && streamId !== 0) return protocolError(`type ${type} is session-scoped but names stream ${streamId}`)
  return { type: type as FrameTypeValue, flags: msg[2]!, streamId, payload: msg.subarray(HEADER_SIZE) }
}

function writeHeader (buf: Buffer, type: number, flags: number, streamId: number, length: number): void {
  buf[0] = VERSION
  buf[1] = type
  buf[2] = flags
  buf[3] = 0
  buf.writeUInt32BE(streamId, 4)
  buf.writeUInt32BE(length, 8)
}

/** Builds a whole frame in one buffer: the payload is copied once (ws then sends it without copying). */
export function encodeFrame (type: number, streamId: number, payload?: Buffer, flags = 0, start = 0, end = payload?.length ?? 0): Buffer {
  const length = end - start
  const buf = Buffer.allocUnsafe(HEADER_SIZE + length)
  writeHeader(buf, type, flags, streamId, length)
  if (payload !== undefined && length > 0) payload.copy(buf, HEADER_SIZE, start, end)
  return buf
}

/** WINDOW_UPDATE / PING / PONG share a fixed layout, so they need no payload buffer of their own. */
export function encodeU32 (type: number, streamId: number, value: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_SIZE + 4)
  writeHeader(buf, type, 0, streamId, 4)
  buf.writeUInt32BE(value, HEADER_SIZE)
  return buf
}

export function encodePing (type: number, opaque: bigint): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_SIZE + 8)
  writeHeader(buf, type, 0, 0, 8)
  buf.writeBigUInt64BE(opaque, HEADER_SIZE)
  return buf
}
