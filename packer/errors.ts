// Tunnel failures carry stable codes from the one list in config/errors.ts (the tunnel's are EP_ERR_TUNNEL_* and
// EP_ERR_TOKEN_*); TunnelError is an EdgeError whose code is one of those.
import { EdgeError, errorCodes, type ErrorCode } from '../config/errors.js'

// EP_ERR_TUNNEL_PROTOCOL: the peer sent a malformed or out-of-order frame: that session closes.
// EP_ERR_TUNNEL_FLOW_CONTROL: the peer sent more than the window it was given.
// EP_ERR_TUNNEL_TIMEOUT: no PONG in time: the session is dead.
// EP_ERR_TUNNEL_FLOOD: the peer does not read the control frames it asks for (ping flood): dropped.
// EP_ERR_TUNNEL_CLOSED: the session closed under an open stream.
// EP_ERR_TUNNEL_GOAWAY: the session is draining: no new streams.
// EP_ERR_TUNNEL_STREAM_RESET: the peer reset the stream (resetCode says why).
// EP_ERR_TUNNEL_REFUSED: no route / too many streams / name not granted.
// EP_ERR_TUNNEL_AUTH: the upgrade was refused (401); EP_ERR_TOKEN_*: why the token was; EP_ERR_TUNNEL_SECRET: no key.
export type TunnelErrorCode = Extract<ErrorCode, `EP_ERR_TUNNEL_${string}` | `EP_ERR_TOKEN_${string}`>

function isTunnelCode (c: ErrorCode): c is TunnelErrorCode {
  return c.startsWith('EP_ERR_TUNNEL_') || c.startsWith('EP_ERR_TOKEN_')
}

export const tunnelErrorCodes: readonly TunnelErrorCode[] = errorCodes.filter(isTunnelCode)

export class TunnelError extends EdgeError {
  declare readonly code: TunnelErrorCode
  /** For EP_ERR_TUNNEL_STREAM_RESET: the numeric reset code from the wire (see ResetCode). */
  readonly resetCode: number
  constructor (code: TunnelErrorCode, message: string, options?: { cause?: unknown, resetCode?: number }) {
    super(code, message, options)
    this.name = 'TunnelError'
    this.resetCode = options?.resetCode ?? 0
  }
}

/** Numeric codes carried by RESET and GOAWAY frames. */
export const ResetCode = {
  NO_ERROR: 0,
  PROTOCOL: 1,
  INTERNAL: 2,
  FLOW_CONTROL: 3,
  REFUSED: 4, // no target for this name/service, or stream limit reached
  CANCEL: 5, // the application destroyed the stream
  CONNECT_FAILED: 6, // the backend could not reach its local target
  GOING_AWAY: 7,
  TIMEOUT: 8,
} as const
