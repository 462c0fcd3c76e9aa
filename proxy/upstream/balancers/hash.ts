// Consistent hashing by weighted rendezvous (highest random weight): each backend scores the key, the highest
// wins. Adding a backend to n moves only the keys the newcomer now wins (about 1/(n+1)); removing one moves only
// its own keys. An unusable backend is skipped, so its keys go to their second choice and come back after.
import { fmix32, hash32 } from '../backend.js'
import { usable, type Balancer } from './balancer.js'
import type { Member } from '../member.js'

const TWO32 = 4294967296

/** Score of `key` (already hashed) on a node with `seed` and `weight`: larger wins. */
export function rendezvousScore (keyHash: number, seed: number, weight: number): number {
  const h = fmix32((keyHash ^ seed) >>> 0)
  // Weighted: -w / ln(u), u in (0,1); comparable across weights. Weight 1 must take this path too: the raw
  // hash is on another scale (up to 2^32) and would beat every weighted score. For all-weight-1 pools pick()
  // compares raw hashes instead, which ranks the same (the score rises with h).
  const u = (h + 0.5) / TWO32
  return -weight / Math.log(u)
}

export class ConsistentHash implements Balancer {
  pick (backends: readonly Member[], now: number, key: string, exclude: Member | undefined): Member | undefined {
    const kh = hash32(key)
    let weighted = false
    for (let i = 0; i < backends.length; i++) if ((backends[i] as Member).weight !== 1) { weighted = true; break }
    let best: Member | undefined
    let bestScore = -Infinity
    for (let i = 0; i < backends.length; i++) {
      const b = backends[i] as Member
      if (!usable(b, now, exclude)) continue
      const s = weighted ? rendezvousScore(kh, b.backend.seed, b.weight) : fmix32((kh ^ b.backend.seed) >>> 0)
      if (s > bestScore) { bestScore = s; best = b }
    }
    return best
  }
}

/** Picks a shard by name for `key`, among all shards regardless of health: a key never moves shard. */
export function pickShard<T extends { readonly seed: number }> (shards: readonly T[], key: string): T | undefined {
  const kh = hash32(key)
  let best: T | undefined
  let bestScore = -1
  for (let i = 0; i < shards.length; i++) {
    const s = shards[i] as T
    const score = fmix32((kh ^ s.seed) >>> 0)
    if (score > bestScore) { bestScore = score; best = s }
  }
  return best
}
