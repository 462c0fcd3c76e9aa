// Config pieces for [ha]: an active/passive group that moves a floating IP. schema.ts takes `haSchema`, load.ts
// calls resolveHa(); ha/ reads the resolved HaConfig. Raw keys are spelled as the issue (16) spells them.
import { isIP } from 'node:net'
import { z } from 'zod'
import { address, duration } from './primitives.js'
import { formatAddress, type Address } from './address.js'

type PathItem = string | number
type AddProblem = (path: readonly PathItem[], message: string) => void

export const HA_PRIORITY = Object.freeze({ min: 1, max: 255 })

export const haSchema = z.strictObject({
  node_id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, { error: 'node_id is 1-63 letters, digits, "_", "." or "-", e.g. "edge-a"' }),
  listen: address,
  peers: z.array(address).default([]),
  secret: z.string().min(1, { error: 'an HA secret is needed: "env:NAME", "file:PATH" or the key itself' }),
  priority: z.number().int().min(HA_PRIORITY.min).max(HA_PRIORITY.max).default(100),
  preempt: z.boolean().default(false),
  advert_interval: duration.default(1000),
  dead_after: z.number().int().min(2).max(100).default(3),
  witness: address.optional(),
  floating_ip: z.string().min(1).optional(),
  interface: z.string().regex(/^[A-Za-z0-9_.:@-]{1,15}$/, { error: 'interface is a network interface name such as "eth0"' }).optional(),
  ip_mode: z.enum(['linux', 'command'], { error: 'ip_mode is "linux" (ip addr + gratuitous ARP) or "command" (on_promote/on_demote only)' }).default('linux'),
  on_promote: z.string().min(1).optional(),
  on_demote: z.string().min(1).optional(),
  min_spares: z.number().int().min(0).max(16).default(0),
  replenish: z.string().min(1).optional(),
})

export type RawHa = z.infer<typeof haSchema>

export type IpMode = 'linux' | 'command'

export interface FloatingIp {
  /** The address alone, e.g. "198.18.0.100". */
  readonly ip: string
  readonly prefix: number
  /** As written for `ip addr`: "198.18.0.100/24". */
  readonly cidr: string
  readonly family: 4 | 6
}

export interface HaConfig {
  readonly nodeId: string
  readonly listen: Address
  readonly peers: readonly Address[]
  /** The HMAC-SHA256 key, resolved from "env:NAME", "file:PATH" or the literal. */
  readonly secret: Buffer
  readonly priority: number
  readonly preempt: boolean
  readonly advertInterval: number
  /** Missed adverts after which a peer counts as dead. */
  readonly deadAfter: number
  readonly witness: Address | undefined
  /** Required in linux mode; in command mode only handed to the hooks as FLOATING_IP. */
  readonly floatingIp: FloatingIp | undefined
  readonly interface: string | undefined
  readonly ipMode: IpMode
  /** Shell commands, run with the config file's directory as working directory. */
  readonly onPromote: string | undefined
  readonly onDemote: string | undefined
  readonly minSpares: number
  readonly replenish: string | undefined
  /** Where hooks run (the config file's directory). */
  readonly hookDir: string
}

export function parseFloatingIp (text: string): FloatingIp | undefined {
  const m = /^([^/\s]+)\/(\d{1,3})$/.exec(text.trim())
  if (m === null) return undefined
  const ip = m[1] as string
  const prefix = Number(m[2])
  const family = isIP(ip)
  if (family === 0 || prefix > (family === 4 ? 32 : 128)) return undefined
  return { ip, prefix, cidr: `${ip}/${prefix}`, family: family === 4 ? 4 : 6 }
}

/**
 * Resolves [ha]; `secret` resolves the "env:NAME" / "file:PATH" spec (the tunnel's resolver), `hookDir` is the
 * config file's directory. Problems go to `add` with their key path.
 */
export function resolveHa (raw: RawHa, hookDir: string, secretOf: (spec: string) => Buffer, add: AddProblem): HaConfig {
  let secret: Buffer = Buffer.alloc(0)
  try { secret = secretOf(raw.secret) } catch (err) { add(['ha', 'secret'], (err as Error).message) }
  if (secret.length > 0 && secret.length < 16) add(['ha', 'secret'], `an HA secret is at least 16 bytes (got ${secret.length})`)
  let floatingIp: FloatingIp | undefined
  if (raw.floating_ip !== undefined) {
    floatingIp = parseFloatingIp(raw.floating_ip)
    if (floatingIp === undefined) add(['ha', 'floating_ip'], `"${raw.floating_ip}" is not an address with a prefix length, e.g. "198.18.0.100/24"`)
  }
  if (raw.ip_mode === 'linux') {
    if (raw.floating_ip === undefined) add(['ha', 'floating_ip'], 'ip_mode = "linux" needs floating_ip, e.g. "198.18.0.100/24"')
    if (raw.interface === undefined) add(['ha', 'interface'], 'ip_mode = "linux" needs interface, the device that carries the floating IP')
  } else if (raw.on_promote === undefined) {
    add(['ha', 'on_promote'], 'ip_mode = "command" needs on_promote, the command that moves the IP here')
  }
  const self = formatAddress(raw.listen)
  raw.peers.forEach((p, i) => {
    if (formatAddress(p) === self) add(['ha', 'peers', i], `${self} is this node's own listen address`)
    if (p.port === 0 || p.host === '0.0.0.0' || p.host === '::') add(['ha', 'peers', i], `${formatAddress(p)}: a peer is a reachable HOST:PORT`)
  })
  if (raw.advert_interval < 20) add(['ha', 'advert_interval'], 'advert_interval is at least 20ms')
  if (raw.min_spares > 0 && raw.replenish === undefined) add(['ha', 'replenish'], `min_spares = ${raw.min_spares} needs replenish, the command that starts a new passive`)
  return {
    nodeId: raw.node_id,
    listen: raw.listen,
    peers: raw.peers,
    secret,
    priority: raw.priority,
    preempt: raw.preempt,
    advertInterval: raw.advert_interval,
    deadAfter: raw.dead_after,
    witness: raw.witness,
    floatingIp,
    interface: raw.interface,
    ipMode: raw.ip_mode,
    onPromote: raw.on_promote,
    onDemote: raw.on_demote,
    minSpares: raw.min_spares,
    replenish: raw.replenish,
    hookDir,
  }
}
