// Smooth weighted round robin (as nginx): every pick adds each weight to its current weight, picks the
// highest and subtracts the total, so a 1:2 pool goes b a b, b a b rather than a b b.
import { usable, type Balancer } from './balancer.js'
import type { Member } from '../member.js'

export class RoundRobin implements Balancer {
  pick (backends: readonly Member[], now: number, _key: string, exclude: Member | undefined): Member | undefined {
    let best: Member | undefined
    let total = 0
    for (let i = 0; i < backends.length; i++) {
      const b = backends[i] as Member
      if (!usable(b, now, exclude)) continue
      const w = b.weightAt(now)
      b.currentWeight += w
      total += w
      if (best === undefined || b.currentWeight > best.currentWeight) best = b
    }
    if (best !== undefined) best.currentWeight -= total
    return best
  }
}
