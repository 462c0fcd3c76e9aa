// The election: a pure state machine over plain data. step(state, event) returns the next state and the effects
// the node must carry out (move the IP, probe the witness); no timers, sockets or clocks in here, so every rule is
// tested on plain values (test/ha-election.test.ts). The rules:
// - precedence: higher priority, then the lower node_id;
// - a starting node (init) listens for a full dead interval before it may claim the IP, so a reboot never makes
//   two actives; hearing an active makes it passive at once;
// - a passive promotes when no live active is heard and it outranks every live passive (init nodes are not yet
//   candidates), after the witness (if any) answered; a witness that does not answer puts it in fault;
// - preempt = false (the default): a returning node stays passive behind the active, whatever its priority;
//   preempt = true: an active yields to a live passive that outranks it and asks to preempt;
// - two actives (a healed partition): the one outranked demotes at once; the other re-announces (gratuitous ARP).

export type Role = 'init' | 'passive' | 'active' | 'fault'

export interface SelfSpec {
  readonly nodeId: string
  readonly priority: number
  readonly preempt: boolean
  /** ms without an advert after which a peer counts as dead (dead_after x advert_interval). */
  readonly deadMs: number
  readonly witness: boolean
}

/** What one advert says about its sender (heartbeat.ts has checked its signature and sequence). */
export interface PeerAdvert {
  readonly nodeId: string
  readonly priority: number
  readonly role: Role
  readonly preempt: boolean
  readonly configHash: string
  /** The sender is stopping: count it dead now rather than after the dead interval. */
  readonly leaving: boolean
}

export interface PeerView extends PeerAdvert {
  /** When the last advert arrived (ms, the node's clock). */
  readonly heardAt: number
  readonly address: string
}

export interface ElectionState {
  readonly self: SelfSpec
  readonly role: Role
  readonly since: number
  readonly startedAt: number
  readonly peers: ReadonlyMap<string, PeerView>
  /** A witness probe was asked for and has not answered yet. */
  readonly witnessPending: boolean
  /** An active (a peer or this node) has been heard since this node started. */
  readonly followed: boolean
  readonly reason: string
}

export type ElectionEvent =
  | { readonly type: 'advert', readonly at: number, readonly advert: PeerAdvert, readonly address: string }
  | { readonly type: 'tick', readonly at: number }
  | { readonly type: 'witness', readonly at: number, readonly ok: boolean, readonly detail?: string }
  /** This node is stopping: it gives up the IP. */
  | { readonly type: 'stop', readonly at: number }

export type Effect =
  | { readonly type: 'transition', readonly from: Role, readonly to: Role, readonly reason: string }
  /** Take the floating IP (add it, gratuitous ARP, on_promote). */
  | { readonly type: 'acquire', readonly reason: string }
  /** Give the floating IP up (remove it, on_demote). */
  | { readonly type: 'release', readonly reason: string }
  /** Already active and another active was heard and outranked: announce again (gratuitous ARP). */
  | { readonly type: 'reannounce', readonly reason: string }
  | { readonly type: 'probe-witness' }

export interface StepResult {
  readonly state: ElectionState
  readonly effects: readonly Effect[]
}

export function initialState (self: SelfSpec, at: number): ElectionState {
  return { self, role: 'init', since: at, startedAt: at, peers: new Map(), witnessPending: false, followed: false, reason: 'starting: listening for a dead interval' }
}

/** Whether a outranks b: higher priority, then the lower node_id. */
export function outranks (a: { nodeId: string, priority: number }, b: { nodeId: string, priority: number }): boolean {
  if (a.priority !== b.priority) return a.priority > b.priority
  return a.nodeId < b.nodeId
}

export function isLive (p: PeerView, at: number, deadMs: number): boolean {
  return !p.leaving && at - p.heardAt <= deadMs
}

/** Peers heard within the dead interval, with what they said last. */
export function livePeers (s: ElectionState, at: number): PeerView[] {
  const out: PeerView[] = []
  for (const p of s.peers.values()) if (isLive(p, at, s.self.deadMs)) out.push(p)
  return out
}

export function step (s: ElectionState, e: ElectionEvent): StepResult {
  const effects: Effect[] = []
  let state = s
  switch (e.type) {
    case 'advert': {
      if (e.advert.nodeId === s.self.nodeId) return { state: s, effects }
      const peers = new Map(s.peers)
      peers.set(e.advert.nodeId, { ...e.advert, heardAt: e.at, address: e.address })
      state = { ...s, peers, followed: s.followed || e.advert.role === 'active' }
      break
    }
    case 'stop':
      if (s.role === 'active') effects.push({ type: 'release', reason: 'stopping' })
      return { state: move(s, 'passive', e.at, 'stopping', effects), effects }
    case 'witness':
      state = { ...s, witnessPending: false }
      if (!e.ok) {
        // Only a node that was about to promote asked; it holds back.
        if (s.role !== 'active' && wantsPromotion(state, e.at)) {
          return { state: move(state, 'fault', e.at, `witness unreachable${e.detail === undefined ? '' : ` (${e.detail})`}: not promoting`, effects), effects }
        }
        return { state, effects }
      }
      if (s.role !== 'active' && wantsPromotion(state, e.at)) {
        const reason = `${promotionReason(state, e.at)}; witness answered`
        effects.push({ type: 'acquire', reason })
        return { state: move(state, 'active', e.at, reason, effects), effects }
      }
      return { state, effects }
    case 'tick':
      break
  }
  return evaluate(state, e.at, effects)
}

function evaluate (s: ElectionState, at: number, effects: Effect[]): StepResult {
  const live = livePeers(s, at)
  const self = s.self
  const actives = live.filter(p => p.role === 'active')
  if (s.role === 'active') {
    const better = actives.find(p => outranks(p, self))
    if (better !== undefined) {
      effects.push({ type: 'release', reason: `${better.nodeId} is active and outranks this node` })
      return { state: move(s, 'passive', at, `two actives: ${better.nodeId} (priority ${better.priority}) outranks this node; demoted`, effects), effects }
    }
    const preempter = live.find(p => p.role === 'passive' && p.preempt && outranks(p, self))
    if (preempter !== undefined) {
      effects.push({ type: 'release', reason: `yielding to ${preempter.nodeId} (preempt)` })
      return { state: move(s, 'passive', at, `${preempter.nodeId} (priority ${preempter.priority}) outranks this node and preempts; yielded`, effects), effects }
    }
    const lesser = actives.find(p => !outranks(p, self))
    // Another active this node outranks will demote on our next advert; announce the IP again meanwhile.
    if (lesser !== undefined && !s.reason.startsWith('two actives')) {
      effects.push({ type: 'reannounce', reason: `${lesser.nodeId} was also active; it is outranked` })
      return { state: { ...s, reason: `two actives: ${lesser.nodeId} is outranked and demotes` }, effects }
    }
    if (lesser === undefined && s.reason.startsWith('two actives')) return { state: { ...s, reason: 'active' }, effects }
    return { state: s, effects }
  }
  if (actives.length > 0) {
    const a = actives[0] as PeerView
    if (s.role === 'passive') return { state: s, effects }
    return { state: move(s, 'passive', at, `${a.nodeId} is active`, effects), effects }
  }
  if (s.role === 'init' && at - s.startedAt < self.deadMs) return { state: s, effects }
  if (!wantsPromotion(s, at)) {
    if (s.role === 'init' || s.role === 'fault') {
      const ahead = live.find(p => p.role !== 'fault' && outranks(p, self))
      return { state: move(s, 'passive', at, `no active; ${ahead?.nodeId ?? 'a peer'} is next in line`, effects), effects }
    }
    return { state: s, effects }
  }
  if (self.witness) {
    if (s.witnessPending) return { state: s, effects }
    effects.push({ type: 'probe-witness' })
    return { state: { ...s, witnessPending: true }, effects }
  }
  const reason = promotionReason(s, at)
  effects.push({ type: 'acquire', reason })
  return { state: move(s, 'active', at, reason, effects), effects }
}

/** No live active, and this node outranks every live candidate (passives; init ones too once its own wait is over). */
function wantsPromotion (s: ElectionState, at: number): boolean {
  if (s.role === 'init' && at - s.startedAt < s.self.deadMs) return false
  const live = livePeers(s, at)
  if (live.some(p => p.role === 'active')) return false
  // A passive that lost its active promotes ahead of nodes still starting (a restarted active among them); when no
  // active was ever heard (a cold start of the whole group) nodes still starting count, so the group elects one.
  const candidates = live.filter(p => p.role === 'passive' || (!s.followed && p.role === 'init'))
  return candidates.every(p => outranks(s.self, p))
}

function promotionReason (s: ElectionState, at: number): string {
  const left = [...s.peers.values()].find(p => p.leaving && at - p.heardAt <= s.self.deadMs)
  if (left !== undefined) return `${left.nodeId} left`
  const dead = [...s.peers.values()].find(p => p.role === 'active' && !isLive(p, at, s.self.deadMs))
  if (dead !== undefined) return `${dead.nodeId} (active) missed its adverts for ${at - dead.heardAt}ms`
  if (s.role === 'init') return 'no active heard during the start-up wait'
  return 'no active peer'
}

function move (s: ElectionState, to: Role, at: number, reason: string, effects: Effect[]): ElectionState {
  if (s.role === to) return { ...s, reason }
  effects.push({ type: 'transition', from: s.role, to, reason })
  return { ...s, role: to, since: at, reason, witnessPending: false, followed: s.followed || to === 'active' }
}
