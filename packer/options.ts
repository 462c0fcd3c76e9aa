// Session tuning knobs and counters, shared by session.ts and outbound.ts.
import { MAX_DATA } from './frame.js'

export const DEFAULT_STREAM_WINDOW = 256 * 1024
export const MAX_WINDOW = 16 * 1024 * 1024
export const MIN_WINDOW = MAX_DATA
export const MAX_CREDIT = 0x7fffffff
/**
 * Unsent control bytes (PONG, WINDOW_UPDATE, RESET, OPEN, END, GOAWAY) above the data bound that drop the session.
 * A peer that reads gets these flushed as fast as it sends what they answer; 256 KiB is ~12,000 PONGs or ~3,000
 * streams' OPEN + END + RESET stuck behind a full socket. Node holds each queued write at ~20x its size (two write
 * requests per ws frame), so a peer that never reads costs at most ~5 MB before it is dropped.
 */
export const DEFAULT_MAX_CONTROL_BYTES = 256 * 1024

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
  /** Control bytes the peer may leave unread above that (default 256 KiB); past it the session is dropped. */
  maxControlBytes?: number
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
