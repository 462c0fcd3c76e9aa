// An HA node: ties the heartbeat channel, the election, the IP mover, the witness probe and the replenisher.
// Every advert interval it advertises and ticks the election; every advert heard steps it at once. The effects the
// election returns are carried out in order, one IP move at a time. cli/control.ts owns the node: transitions reach
// the event log, the status page and the metrics through it.
import { connect } from 'node:net'
import { formatAddress, parseAddress, type Address } from '../config/address.js'
import type { HaConfig } from '../config/ha.js'
import { initialState, isLive, step, type Effect, type ElectionEvent, type ElectionState, type Role } from './election.js'
import { HeartbeatChannel, type DropReason } from './heartbeat.js'
import { createIpMover, runHook, type IpMover } from './ip.js'
import { Replenisher } from './replenish.js'

export interface Transition {
  readonly time: string
  readonly from: Role
  readonly to: Role
  readonly reason: string
}

export interface HaLog {
  info (obj: object, msg: string): void
  warn (obj: object, msg: string): void
  error (obj: object, msg: string): void
}

export interface HaNodeDeps {
  readonly log: HaLog
  /** Every transition, replenish run and IP failure, for the event log (type, message, fields). */
  onEvent (type: string, message: string, fields: Record<string, unknown>): void
  /** This node's config hash, sent in adverts (a mismatch with a peer is a warning). */
  configHash (): string
  /** Tests pass their own mover; default: the one [ha] ip_mode names. */
  readonly mover?: IpMover
}

export interface HaPeerStatus {
  readonly node_id: string
  readonly address: string
  readonly role: Role | 'dead'
  readonly priority: number
  readonly alive: boolean
  readonly last_advert_ms_ago: number
  readonly config_hash: string
  readonly config_mismatch: boolean
}

const TRANSITIONS_KEPT = 50

export class HaNode {
  readonly config: HaConfig
  #state: ElectionState
  readonly #deps: HaNodeDeps
  readonly #channel: HeartbeatChannel
  readonly #mover: IpMover
  readonly #replenish: Replenisher
  readonly #targets = new Map<string, Address>()
  readonly #transitions: Transition[] = []
  #transitionsTotal = 0
  #timer: NodeJS.Timeout | undefined
  /** Fires when the active peer's dead interval ends, so a takeover does not wait for the next tick. */
  #deadline: NodeJS.Timeout | undefined
  /** IP moves run one after another, in the order the election asked for them. */
  #moves: Promise<void> = Promise.resolve()
  #closed = false
  #lastDropLog = 0
  #holdsIp = false
  /** Releases under way: adverts wait for them, so no peer takes the IP while it is still here. */
  #releasing = 0

  constructor (config: HaConfig, deps: HaNodeDeps) {
    this.config = config
    this.#deps = deps
    this.#state = initialState(this.#spec(), Date.now())
    for (const p of config.peers) this.#targets.set(formatAddress(p), p)
    this.#mover = deps.mover ?? createIpMover(config)
    this.#channel = new HeartbeatChannel({ nodeId: config.nodeId, listen: config.listen, secret: config.secret }, {
      onAdvert: (advert, address) => {
        if (!this.#targets.has(address)) {
          const a = parseAddress(address)
          if (a !== undefined) this.#targets.set(address, a) // a node not in `peers` (a replenished spare) is answered too
        }
        this.#apply({ type: 'advert', at: Date.now(), advert, address })
        if (advert.role === 'active') this.#armDeadline()
      },
      onDrop: (reason, address) => { this.#dropped(reason, address) },
    })
    this.#replenish = new Replenisher(config.minSpares, {
      baseBackoff: Math.max(10_000, 5 * config.deadAfter * config.advertInterval),
      run: env => runHook(config.replenish ?? 'true', config.hookDir, env, 60_000),
      onRun: ({ attempt, spares }) => {
        this.#deps.log.info({ attempt, spares, min_spares: config.minSpares }, 'ha: too few spares; running replenish')
        this.#deps.onEvent('ha-replenish', `${spares} spare(s) of ${config.minSpares}: starting a new passive (attempt ${attempt})`, { attempt, spares })
      },
      onDone: ({ attempt, result }) => {
        if (result.code !== 0) {
          this.#deps.log.warn({ attempt, exit: result.code, stderr: result.stderr }, 'ha: replenish failed')
          this.#deps.onEvent('ha-replenish-failed', `replenish exited ${result.code ?? 'on a signal'}: ${result.stderr}`, { attempt })
        }
      },
    })
  }

  get role (): Role { return this.#state.role }
  get port (): number { return this.#channel.port }

  #spec (): ElectionState['self'] {
    const c = this.config
    return { nodeId: c.nodeId, priority: c.priority, preempt: c.preempt, deadMs: c.deadAfter * c.advertInterval, witness: c.witness !== undefined }
  }

  /** Clears a floating IP left here, binds the heartbeat socket and starts advertising (as init). */
  async start (): Promise<void> {
    try {
      await this.#mover.clearStale()
    } catch (err) {
      this.#deps.log.warn({ reason: (err as Error).message }, 'ha: could not clear a leftover floating IP')
    }
    await this.#channel.start()
    this.#state = initialState(this.#spec(), Date.now())
    this.#deps.log.info({ node: this.config.nodeId, listen: formatAddress(this.config.listen), priority: this.config.priority }, 'ha: listening for adverts before claiming the IP')
    this.#advertise()
    this.#timer = setInterval(() => { this.#tick() }, this.config.advertInterval)
  }

  #armDeadline (): void {
    clearTimeout(this.#deadline)
    this.#deadline = setTimeout(() => { this.#apply({ type: 'tick', at: Date.now() }) }, this.#state.self.deadMs + 1)
  }

  #tick (): void {
    const now = Date.now()
    this.#apply({ type: 'tick', at: now })
    this.#advertise()
    const live = [...this.#state.peers.values()].filter(p => isLive(p, now, this.#state.self.deadMs))
    // Only a node that has a group to keep up replenishes: a lone node at its first start has never heard a peer.
    const group = this.#state.role === 'active' && this.#state.peers.size > 0
    // A node still starting (init) is a spare in the making: it will be passive once its wait is over.
    this.#replenish.update(now, this.config.nodeId, group, live.filter(p => p.role === 'passive' || p.role === 'init').map(p => p.nodeId), [...this.#state.peers.keys()])
  }

  #advertise (leaving = false): void {
    if (this.#releasing > 0 && !leaving) return
    this.#channel.send({
      priority: this.config.priority, role: this.#state.role, preempt: this.config.preempt, configHash: this.#deps.configHash(), leaving,
    }, [...this.#targets.values()])
  }

  #apply (e: ElectionEvent): void {
    if (this.#closed) return
    const before = this.#state.role
    const r = step(this.#state, e)
    this.#state = r.state
    for (const effect of r.effects) this.#effect(effect)
    // Peers learn a new role now, not at the next interval (a yield or a takeover hands over in one round trip).
    if (this.#state.role !== before) this.#advertise()
  }

  #effect (effect: Effect): void {
    switch (effect.type) {
      case 'transition': {
        const t: Transition = { time: new Date().toISOString(), from: effect.from, to: effect.to, reason: effect.reason }
        this.#transitions.push(t)
        if (this.#transitions.length > TRANSITIONS_KEPT) this.#transitions.shift()
        this.#transitionsTotal++
        const level = effect.to === 'fault' || effect.from === 'active' ? 'warn' : 'info'
        this.#deps.log[level]({ node: this.config.nodeId, from: effect.from, to: effect.to, reason: effect.reason }, `ha: ${effect.from} -> ${effect.to}`)
        this.#deps.onEvent(`ha-${effect.to}`, `${effect.from} -> ${effect.to}: ${effect.reason}`, { from: effect.from, to: effect.to, reason: effect.reason })
        return
      }
      case 'acquire':
        this.#move('acquire', effect.reason)
        return
      case 'release':
        this.#move('release', effect.reason)
        return
      case 'reannounce':
        this.#deps.log.warn({ reason: effect.reason }, 'ha: another active was heard; announcing the floating IP again')
        this.#deps.onEvent('ha-reannounce', effect.reason, {})
        this.#mover.reannounce()
        return
      case 'probe-witness':
        this.#probeWitness()
    }
  }

  #move (kind: 'acquire' | 'release', reason: string): void {
    const ctx = { role: kind === 'acquire' ? 'active' as const : this.#state.role, reason }
    if (kind === 'release') this.#releasing++
    this.#moves = this.#moves.then(async () => {
      try {
        await this.#mover[kind](ctx)
        this.#holdsIp = kind === 'acquire'
      } catch (err) {
        const message = (err as Error).message
        this.#deps.log.error({ reason: message }, `ha: ${kind} of the floating IP failed`)
        this.#deps.onEvent('ha-ip-failed', `${kind} failed: ${message}`, {})
      } finally {
        if (kind === 'release') {
          this.#releasing--
          // The IP is gone: now the peers may hear that this node is no longer active.
          if (this.#releasing === 0 && !this.#closed) this.#advertise()
        }
      }
    })
  }

  #probeWitness (): void {
    const w = this.config.witness
    if (w === undefined) return
    const timeout = Math.min(2000, Math.max(100, this.config.advertInterval * 2))
    const socket = connect({ host: w.host, port: w.port })
    let done = false
    const finish = (ok: boolean, detail?: string): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      this.#apply({ type: 'witness', at: Date.now(), ok, ...(detail === undefined ? {} : { detail }) })
    }
    const timer = setTimeout(() => { finish(false, `no answer in ${timeout}ms`) }, timeout)
    socket.once('connect', () => { finish(true) })
    socket.once('error', (err: NodeJS.ErrnoException) => { finish(false, err.code ?? err.message) })
  }

  #dropped (reason: DropReason, address: string): void {
    const now = Date.now()
    if (reason === 'self' || now - this.#lastDropLog < 10_000) return
    this.#lastDropLog = now
    this.#deps.log.warn({ reason, from: address, dropped: this.#channel.counters.dropped }, 'ha: dropped a heartbeat that is not a signed, fresh advert')
  }

  /** The node for the status page, `edge-proxy ha status` and GET /api/ha. */
  status (): Record<string, unknown> {
    const now = Date.now()
    const s = this.#state
    const hash = this.#deps.configHash()
    const peers: HaPeerStatus[] = [...s.peers.values()].map(p => {
      const alive = isLive(p, now, s.self.deadMs)
      return {
        node_id: p.nodeId,
        address: p.address,
        role: alive ? p.role : 'dead',
        priority: p.priority,
        alive,
        last_advert_ms_ago: now - p.heardAt,
        config_hash: p.configHash,
        config_mismatch: p.configHash !== hash,
      }
    })
    const activePeer = peers.find(p => p.alive && p.role === 'active')
    return {
      role: s.role,
      node_id: this.config.nodeId,
      priority: this.config.priority,
      preempt: this.config.preempt,
      since: new Date(s.since).toISOString(),
      reason: s.reason,
      ip_mode: this.config.ipMode,
      floating_ip: this.config.floatingIp?.cidr,
      interface: this.config.interface,
      holder: s.role === 'active' ? this.config.nodeId : activePeer?.node_id,
      holds_ip: this.#holdsIp,
      config_hash: hash,
      config_mismatch: peers.filter(p => p.alive && p.config_mismatch).map(p => p.node_id),
      advert_interval_ms: this.config.advertInterval,
      dead_after: this.config.deadAfter,
      peers,
      transitions: [...this.#transitions].reverse(),
      transitions_total: this.#transitionsTotal,
      heartbeats: this.#channel.counters,
      replenish: this.config.minSpares === 0 ? undefined : { min_spares: this.config.minSpares, spares: peers.filter(p => p.alive && (p.role === 'passive' || p.role === 'init')).length, ...this.#replenish.status(now) },
    }
  }

  /** Prometheus text for /metrics. */
  metrics (): string {
    const now = Date.now()
    const s = this.#state
    const hash = this.#deps.configHash()
    const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
    const lines: string[] = [
      '# HELP edge_ha_role This node\'s HA role (1 for the current one)',
      '# TYPE edge_ha_role gauge',
    ]
    for (const r of ['init', 'passive', 'active', 'fault'] as const) lines.push(`edge_ha_role{node="${esc(this.config.nodeId)}",role="${r}"} ${s.role === r ? 1 : 0}`)
    lines.push('# HELP edge_ha_transitions_total Role transitions of this node', '# TYPE edge_ha_transitions_total counter', `edge_ha_transitions_total ${this.#transitionsTotal}`)
    const c = this.#channel.counters
    lines.push('# HELP edge_ha_adverts_received_total Heartbeats received, by result', '# TYPE edge_ha_adverts_received_total counter', `edge_ha_adverts_received_total{result="accepted"} ${c.accepted}`)
    for (const [k, v] of Object.entries(c.dropped)) lines.push(`edge_ha_adverts_received_total{result="${k}"} ${v}`)
    lines.push('# HELP edge_ha_adverts_sent_total Heartbeats sent', '# TYPE edge_ha_adverts_sent_total counter', `edge_ha_adverts_sent_total ${c.sent}`)
    lines.push('# HELP edge_ha_peer_up Whether a peer was heard within the dead interval', '# TYPE edge_ha_peer_up gauge')
    for (const p of s.peers.values()) lines.push(`edge_ha_peer_up{peer="${esc(p.nodeId)}"} ${isLive(p, now, s.self.deadMs) ? 1 : 0}`)
    lines.push('# HELP edge_ha_peer_last_advert_seconds Seconds since a peer\'s last advert', '# TYPE edge_ha_peer_last_advert_seconds gauge')
    for (const p of s.peers.values()) lines.push(`edge_ha_peer_last_advert_seconds{peer="${esc(p.nodeId)}"} ${((now - p.heardAt) / 1000).toFixed(3)}`)
    lines.push('# HELP edge_ha_config_mismatch Whether a live peer advertises another config hash', '# TYPE edge_ha_config_mismatch gauge')
    for (const p of s.peers.values()) lines.push(`edge_ha_config_mismatch{peer="${esc(p.nodeId)}"} ${isLive(p, now, s.self.deadMs) && p.configHash !== hash ? 1 : 0}`)
    if (this.config.minSpares > 0) {
      lines.push('# HELP edge_ha_replenish_runs_total Runs of the replenish command', '# TYPE edge_ha_replenish_runs_total counter', `edge_ha_replenish_runs_total ${this.#replenish.status(now).runs_total}`)
    }
    return `${lines.join('\n')}\n`
  }

  /** Gives up the IP (if held), tells the peers it is leaving, and closes the socket. Safe at any point. */
  async close (): Promise<void> {
    if (this.#closed) return
    clearInterval(this.#timer)
    clearTimeout(this.#deadline)
    const r = step(this.#state, { type: 'stop', at: Date.now() })
    this.#state = r.state
    for (const effect of r.effects) this.#effect(effect)
    this.#closed = true
    // The IP is gone before the peers hear that this node leaves, so they never share it.
    await this.#moves
    this.#advertise(true)
    await new Promise(resolve => setTimeout(resolve, 20)) // let the leaving advert leave before the socket closes
    this.#mover.close()
    await this.#channel.close()
  }
}
