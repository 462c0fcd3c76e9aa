// Heartbeats: UDP adverts between the nodes of an HA group, HMAC-SHA256 signed with [ha] secret. Each carries the
// sender's node_id, priority, role, config hash and a sequence number under a boot id (the sender's start time), so
// a recorded advert sent again is refused: per sender, the boot id never goes back and the sequence only goes up.
// Unsigned, badly signed, replayed and malformed packets are dropped and counted; they never reach the election.
//
// Wire format: "EPHA" | version (1) | HMAC-SHA256 over the JSON body (32 bytes) | JSON body (UTF-8).
import dgram from 'node:dgram'
import { createHmac, timingSafeEqual } from 'node:crypto'
import { isIP } from 'node:net'
import type { Address } from '../config/address.js'
import type { PeerAdvert, Role } from './election.js'

const MAGIC = Buffer.from('EPHA', 'latin1')
const VERSION = 1
const MAC_BYTES = 32
const HEAD = MAGIC.length + 1 + MAC_BYTES
/** An advert is a few hundred bytes; anything much larger is not one. */
const MAX_PACKET = 4096

const ROLES: ReadonlySet<string> = new Set(['init', 'passive', 'active', 'fault'])

/** The body's JSON keys are short: the packet goes out several times a second to every peer. */
interface Body {
  readonly n: string
  readonly p: number
  readonly r: Role
  readonly e: boolean
  readonly h: string
  readonly l: boolean
  readonly b: number
  readonly s: number
}

export type DropReason = 'unsigned' | 'bad_signature' | 'replay' | 'malformed' | 'self'

export interface HeartbeatCounters {
  sent: number
  send_errors: number
  accepted: number
  dropped: Record<DropReason, number>
}

export interface HeartbeatOptions {
  readonly nodeId: string
  readonly listen: Address
  readonly secret: Buffer
}

export interface HeartbeatDeps {
  /** A signed, fresh advert from another node; `address` is "HOST:PORT" it came from. */
  onAdvert (advert: PeerAdvert, address: string): void
  /** A packet dropped (for logs, rate limited by the caller). */
  onDrop?: (reason: DropReason, address: string) => void
  /** The boot id; tests set it to replay across boots. Default: the time the channel was made. */
  readonly boot?: number
}

export function sign (secret: Buffer, body: Buffer): Buffer {
  return createHmac('sha256', secret).update(body).digest()
}

export function encodeAdvert (secret: Buffer, body: Body): Buffer {
  const json = Buffer.from(JSON.stringify(body), 'utf8')
  return Buffer.concat([MAGIC, Buffer.of(VERSION), sign(secret, json), json])
}

/** The body of a signed packet, or why it was refused (before any sequence check). */
export function decodeAdvert (secret: Buffer, packet: Buffer): Body | 'unsigned' | 'bad_signature' | 'malformed' {
  if (packet.length <= HEAD || packet.length > MAX_PACKET || !packet.subarray(0, MAGIC.length).equals(MAGIC) || packet[MAGIC.length] !== VERSION) return 'unsigned'
  const mac = packet.subarray(MAGIC.length + 1, HEAD)
  const json = packet.subarray(HEAD)
  if (!timingSafeEqual(mac, sign(secret, json))) return 'bad_signature'
  let v: unknown
  try { v = JSON.parse(json.toString('utf8')) } catch { return 'malformed' }
  const b = v as Partial<Body> | null
  if (b === null || typeof b !== 'object' || typeof b.n !== 'string' || b.n === '' || typeof b.p !== 'number' || typeof b.r !== 'string' ||
    !ROLES.has(b.r) || typeof b.e !== 'boolean' || typeof b.h !== 'string' || typeof b.l !== 'boolean' ||
    !Number.isSafeInteger(b.b) || !Number.isSafeInteger(b.s)) return 'malformed'
  return b as Body
}

export class HeartbeatChannel {
  readonly counters: HeartbeatCounters = {
    sent: 0, send_errors: 0, accepted: 0, dropped: { unsigned: 0, bad_signature: 0, replay: 0, malformed: 0, self: 0 },
  }

  readonly boot: number
  #seq = 0
  #socket: dgram.Socket | undefined
  /** Per sender node_id: the newest boot id and sequence accepted. */
  readonly #last = new Map<string, { boot: number, seq: number }>()
  readonly #opts: HeartbeatOptions
  readonly #deps: HeartbeatDeps

  constructor (opts: HeartbeatOptions, deps: HeartbeatDeps) {
    this.#opts = opts
    this.#deps = deps
    this.boot = deps.boot ?? Date.now()
  }

  /** Binds the UDP socket; resolves with the bound port. */
  start (): Promise<number> {
    const family = isIP(this.#opts.listen.host) === 6 ? 'udp6' : 'udp4'
    const socket = dgram.createSocket({ type: family })
    this.#socket = socket
    socket.on('message', (msg, rinfo) => { this.#receive(msg, rinfo.family === 'IPv6' ? `[${rinfo.address}]:${rinfo.port}` : `${rinfo.address}:${rinfo.port}`) })
    return new Promise((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(this.#opts.listen.port, this.#opts.listen.host, () => {
        socket.off('error', reject)
        // A send to a peer that is down can surface as an ICMP error on the socket: counted, never thrown.
        socket.on('error', () => { this.counters.send_errors++ })
        resolve(socket.address().port)
      })
    })
  }

  get port (): number { return this.#socket?.address().port ?? 0 }

  /** Sends one advert (the next sequence number) to each target. */
  send (advert: Omit<PeerAdvert, 'nodeId'>, targets: readonly Address[]): void {
    const socket = this.#socket
    if (socket === undefined) return
    const packet = encodeAdvert(this.#opts.secret, {
      n: this.#opts.nodeId, p: advert.priority, r: advert.role, e: advert.preempt, h: advert.configHash, l: advert.leaving, b: this.boot, s: ++this.#seq,
    })
    for (const t of targets) {
      socket.send(packet, t.port, t.host, err => {
        if (err === null || err === undefined) this.counters.sent++
        else this.counters.send_errors++
      })
    }
  }

  #receive (packet: Buffer, address: string): void {
    const body = decodeAdvert(this.#opts.secret, packet)
    if (typeof body === 'string') { this.#drop(body, address); return }
    if (body.n === this.#opts.nodeId) { this.#drop('self', address); return }
    const last = this.#last.get(body.n)
    if (last !== undefined && (body.b < last.boot || (body.b === last.boot && body.s <= last.seq))) { this.#drop('replay', address); return }
    this.#last.set(body.n, { boot: body.b, seq: body.s })
    this.counters.accepted++
    this.#deps.onAdvert({ nodeId: body.n, priority: body.p, role: body.r, preempt: body.e, configHash: body.h, leaving: body.l }, address)
  }

  #drop (reason: DropReason, address: string): void {
    this.counters.dropped[reason]++
    this.#deps.onDrop?.(reason, address)
  }

  close (): Promise<void> {
    const socket = this.#socket
    this.#socket = undefined
    if (socket === undefined) return Promise.resolve()
    return new Promise(resolve => { socket.close(() => { resolve() }) })
  }
}
