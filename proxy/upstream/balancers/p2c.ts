// Power of two choices: two random usable backends, keep the one with the lower EWMA latency x (in-flight + 1).
// A backend with no latency sample yet counts as fast, so new backends get traffic and a sample.
import { usable, type Balancer } from './balancer.js'
import type { Member } from '../member.js'

function cost (b: Member, now: number): number {
  return ((b.backend.ewma === 0 ? 1 : b.backend.ewma) * (b.backend.inflight + 1)) / b.weightAt(now)
}

export class PowerOfTwo implements Balancer {
  constructor (private readonly random: () => number = Math.random) {}

  pick (backends: readonly Member[], now: number, _key: string, exclude: Member | undefined): Member | undefined {
    const n = backends.length
    if (n === 0) return undefined
    // Two independent random probes; fall back to a scan when the pool is mostly unusable.
    let a: Member | undefined
    let b: Member | undefined
    for (let tries = 0; tries < 4 && b === undefined; tries++) {
      const c = backends[Math.floor(this.random() * n)] as Member
      if (!usable(c, now, exclude)) continue
      if (a === undefined) a = c
      else if (c !== a) b = c
    }
    if (a === undefined || b === undefined) {
      const live: Member[] = []
      for (const c of backends) if (usable(c, now, exclude)) live.push(c)
      if (live.length === 0) return undefined
      if (live.length === 1) return live[0]
      const i = Math.floor(this.random() * live.length)
      let j = Math.floor(this.random() * (live.length - 1))
      if (j >= i) j++
      a = live[i] as Member
      b = live[j] as Member
    }
    return cost(a, now) <= cost(b, now) ? a : b
  }
}
