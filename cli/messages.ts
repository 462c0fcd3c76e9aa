// IPC between the cluster primary and its workers.
import type { EdgeEvent } from '../proxy/ops/events.js'
import type { EdgeStatus } from '../proxy/ops/status.js'
import type { WindowHistogramJson } from '../health/latency.js'

export type ToWorker =
  | { type: 'reload', text: string, file: string, id: number }
  /** idleGrace: an upgrade retiring the worker (idle keep-alive connections close once idle that long). */
  | { type: 'shutdown', timeout: number, idleGrace?: number }
  | { type: 'member', pool: string, url: string, healthy?: boolean, recoveredAt?: number, draining?: boolean }
  | { type: 'status', id: number }
  | { type: 'metrics', id: number }
  /** Runtime registration: the primary keeps the set and replays it to workers that start later. */
  | { type: 'member-add', pool: string, url: string, weight: number, healthy: boolean, source?: 'api' | 'scale' }
  /** The scaler asks every worker for a pool's latency histogram and merges them. */
  | { type: 'latency', id: number, pool: string, windowMs: number }
  | { type: 'member-remove', pool: string, url: string, drainMs: number }

export type FromWorker =
  | { type: 'ready' }
  | { type: 'reloaded', id: number, error?: string }
  | { type: 'failed', error: string }
  | { type: 'status', id: number, status: EdgeStatus }
  /** The worker's registry as JSON; the primary sums them. */
  | { type: 'metrics', id: number, metrics: object[] }
  | { type: 'event', event: EdgeEvent }
  | { type: 'latency', id: number, latency: WindowHistogramJson }

export function reasonOf (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
