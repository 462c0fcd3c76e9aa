// One interface for every balancing policy: pick(members, now, key, exclude) -> member | undefined.
import type { Backend } from '../backend.js'

/** A backend as a member of one pool: the weight and balancer scratch are the pool's, the backend is shared. */
export class Member {
  /** Smooth weighted round robin's current weight. */
  currentWeight = 0
  constructor (readonly backend: Backend, readonly weight: number) {}
}

export interface Balancer {
  /**
   * Picks among `members` those whose backend is available at `now`, skipping `exclude` (one already tried).
   * `key` is the request's hash key (only the hash policy reads it).
   */
  pick (members: readonly Member[], now: number, key: string, exclude: Member | undefined): Member | undefined
}

export function usable (m: Member, now: number, exclude: Member | undefined): boolean {
  return m !== exclude && m.backend.available(now)
}
