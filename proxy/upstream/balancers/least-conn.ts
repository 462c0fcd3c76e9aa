// Least connections: the fewest in-flight requests per unit of weight; ties rotate so idle pools still spread.
import { usable, type Balancer } from './balancer.js'
import type { Member } from '../member.js'

export class LeastConn implements Balancer {
  #offset = 0
  pick (backends: readonly Member[], now: number, _key: string, exclude: Member | undefined): Member | undefined {
    const n = backends.length
    if (n === 0) return undefined
    const start = this.#offset++ % n
    let best: Member | undefined
    let bestLoad = Infinity
    for (let j = 0; j < n; j++) {
      const b = backends[(start + j) % n] as Member
      if (!usable(b, now, exclude)) continue
      const load = b.backend.inflight / b.weightAt(now)
      if (load < bestLoad) { best = b; bestLoad = load }
    }
    return best
  }
}
