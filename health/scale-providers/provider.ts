// One interface for every scale provider (process, command, webhook): a registry keyed by the config's name,
// one file per member, one shared conformance test (test/scale-providers.test.ts).
import type { Logger } from 'pino'
import type { ScaleProviderConfig } from '../../config/scale.js'
import type { ScaleEvent } from '../scaler.js'

export interface ScaleProviderDeps {
  readonly pool: string
  readonly log: Logger
  /** A backend the provider started is up (its port answers): it joins the pool, and takes traffic once healthy. */
  readonly addMember: (url: string) => void
  /** Takes the member out (no new requests); resolves once its in-flight requests finished (at most `drainMs`). */
  readonly removeMember: (url: string, drainMs: number) => Promise<void>
  /** Operational events (a backend exited and is replaced...) for the event log. */
  readonly onEvent: (type: string, message: string, fields: Record<string, unknown>) => void
  /** How long a stopped backend's in-flight requests get to finish. */
  readonly drainMs: number
}

export interface ScaleProvider {
  readonly kind: ScaleProviderConfig['kind']
  start (): Promise<void>
  /**
   * Acts on one decision (every kind but scale.hold reaches here). `own` is how many backends this provider
   * should run for the pool to have `event.to` (the process provider's count; the others pass the event on).
   * Returns at once: starting, stopping, running a command or POSTing happens in the background.
   */
  apply (event: ScaleEvent, own: number): void
  /** Backends it started that have not joined the pool yet (warm-up); 0 for providers that start nothing. */
  starting (): number
  /** URLs of the members it runs (joined the pool, not being stopped). */
  urls (): readonly string[]
  /** Stops what it runs (the process provider's backends) and waits for background work, bounded; safe at any point. */
  close (): Promise<void>
}

export type ScaleProviderFactory = (config: ScaleProviderConfig, deps: ScaleProviderDeps) => ScaleProvider
