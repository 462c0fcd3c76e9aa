// Session tuning knobs and counters, shared by session.ts and outbound.ts.
import { MAX_DATA } from './frame.js'

export const DEFAULT_STREAM_WINDOW = 256 * 1024
export const MAX_WINDOW = 16 * 1024 * 1024
export const MIN_WINDOW = MAX_DATA
export const MAX_CREDIT = 0x7fffffff

export interface SessionOptions {
  /** The edge opens odd stream ids, the backend even ones. */
  role: 'edge' | 'client'
  /** Our receive window per stream (default 256 KiB, 64 KiB..16 MiB). */
  streamWindow?: number
  /** Our receive window for the whole session (default maxStreams x the stream window, capped at 1 GiB). */
  sessionWindow?: number
  pingIntervalMs?: number
  pingTimeoutMs?: number
  /** Streams the peer may hold open at once; more are refused with RESET REFUSED. */
  maxStreams?: number
  /** Data is framed only while the ws buffer holds less than this (default 512 KiB). */
  maxBufferedBytes?: number
}

export interface SessionStats {
  bytesIn: number
  bytesOut: number
  streamsOpen: number
  streamsTotal: number
  /** Times a stream with data to send found its window empty / the session window empty. */
  windowStalls: number
  sessionStalls: number
}
