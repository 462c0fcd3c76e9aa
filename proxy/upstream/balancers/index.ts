// The registry of balancing policies, keyed by the config's name.
import type { BalanceName } from '../../../config/types.js'
import type { Balancer } from './balancer.js'
import { RoundRobin } from './round-robin.js'
import { LeastConn } from './least-conn.js'
import { PowerOfTwo } from './p2c.js'
import { ConsistentHash } from './hash.js'

export type { Balancer } from './balancer.js'

export const balancers: Record<BalanceName, () => Balancer> = {
  round_robin: () => new RoundRobin(),
  least_conn: () => new LeastConn(),
  p2c: () => new PowerOfTwo(),
  hash: () => new ConsistentHash(),
}
