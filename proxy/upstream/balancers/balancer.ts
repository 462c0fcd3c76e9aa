// One interface for every balancing policy: pick(members, now, key, exclude) -> member | undefined.
import type { Member } from '../member.js'

export interface Balancer {
  /**
   * Picks among `members` those available at `now`, skipping `exclude` (one already tried).
   * `key` is the request's hash key (only the hash policy reads it).
   */
  pick (members: readonly Member[], now: number, key: string, exclude: Member | undefined): Member | undefined
}

export function usable (m: Member, now: number, exclude: Member | undefined): boolean {
  return m !== exclude && m.available(now)
}
