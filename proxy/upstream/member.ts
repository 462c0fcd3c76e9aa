// A backend as a member of one pool: the pool's weight and verdicts over a shared backend.
import type { Backend } from './backend.js'
import { slowStartFactor } from '../../health/checker.js'
import { LatencyStats } from '../../health/latency.js'
import type { MemberSource } from './members.js'

/**
 * A backend as a member of one pool. The backend (connections, in-flight, EWMA) is shared by every pool naming
 * its URL; weight, health verdict, ejection, drain, latency windows and balancer scratch belong to the pool. Members live in the
 * MemberRegistry (members.ts), so this state survives config reloads; only the registry's setStatus() changes it.
 */
export class Member {
  /** Smooth weighted round robin's current weight. */
  currentWeight = 0
  /** Active health verdict (checks run in the control process and reach every worker). */
  healthy = true
  /** When a down member came back (ms since epoch), for slow start; 0 = no ramp. */
  recoveredAt = 0
  /** Passive outlier ejection: passed over until then. */
  ejectedUntil = 0
  draining = false
  slowStart = 0
  /** 0 = no limit on the shared backend's in-flight requests. */
  maxInflight = 0
  /** Requests and failures through this pool (the backend's own counters add up every pool naming it). */
  requests = 0
  failures = 0
  /**
   * Time to first byte through this pool (p50/p95/p99 windows): two pools sharing a backend each see their own
   * figures. The backend keeps its own EWMA for p2c (what the backend carries over every pool).
   */
  readonly latency = new LatencyStats()
  /** Who added it: the config file, the admin API, a tunnel session... */
  source: MemberSource = 'config'

  constructor (public backend: Backend, public weight: number) {}

  /** Can take a request now: healthy, not ejected or draining, reachable, under its in-flight limit. */
  available (now: number): boolean {
    return this.healthy && !this.draining && this.ejectedUntil <= now && this.backend.unreachableUntil <= now &&
      (this.maxInflight === 0 || this.backend.inflight < this.maxInflight)
  }

  /** Up, but at its in-flight limit (tells 503 overloaded from 503 no backend). */
  full (now: number): boolean {
    return this.maxInflight !== 0 && this.backend.inflight >= this.maxInflight &&
      this.healthy && !this.draining && this.ejectedUntil <= now && this.backend.unreachableUntil <= now
  }

  /** The weight to balance with now: ramps up over slow start after a recovery. */
  weightAt (now: number): number {
    if (this.recoveredAt === 0 || this.slowStart === 0) return this.weight
    return this.weight * slowStartFactor(this.recoveredAt, now, this.slowStart)
  }
}
