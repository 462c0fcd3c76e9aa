// The one control object: reload, admin actions, health checks, signals and shutdown go through it, for one
// process and for a cluster primary alike (and next: HA role changes, upgrades, the scaler). The two modes differ
// only in their Serving side: how a change reaches the processes that serve traffic (the Edge in this process,
// or the workers over IPC). Nothing here exits the process: `stopped` resolves with the exit code, and
// cli/main.ts exits.
import { readFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { parse as parseToml } from 'smol-toml'
import type net from 'node:net'
import type { Logger } from 'pino'
import type { Config, HaConfig } from '../config/types.js'
import { ConfigError, parseConfigText, summarize } from '../config/load.js'
import { formatAddress } from '../config/address.js'
import { AdminServer, type AdminDeps } from '../proxy/ops/admin.js'
import { EventLog } from '../proxy/ops/events.js'
import { StatusHistory } from '../proxy/ops/history.js'
import type { EdgeStatus } from '../proxy/ops/status.js'
import type { MemberPatch } from '../proxy/upstream/members.js'
import type { WindowHistogram } from '../health/latency.js'
import type { DemoBackends } from './demo.js'
import { HealthControl, type MemberVerdict } from './health-control.js'
import { reasonOf } from './messages.js'
import { memberOps, Registrations, type Registered } from './registrations.js'
import { ScaleControl } from './scaling.js'
import { HaNode } from '../ha/node.js'

/** How the control side reaches the processes that serve traffic. */
export interface Serving {
  /** Applies a validated config everywhere; rejects (and changes nothing the caller keeps) when some process refused it. */
  reload (config: Config, text: string): Promise<void>
  setMember (pool: string, url: string, patch: MemberPatch): void
  addMember (r: Registered, healthy: boolean): void
  removeMember (pool: string, url: string, drainMs: number): void
  /** The serving processes' merged status, or undefined when none answered. */
  status (): Promise<EdgeStatus | undefined>
  metrics (): Promise<string>
  /** A pool's latency over the last `windowMs`, merged over its members and every serving process. */
  latency (pool: string, windowMs: number): Promise<WindowHistogram>
  /** Serving processes alive now. */
  workers (): number
  /** Whether some listener accepts connections now (an HA node that cannot serve does not take the IP). */
  accepting? (): boolean
  /** Drains and stops every serving process within `timeoutMs` (`idleGraceMs`: an upgrade's gentler drain). */
  close (timeoutMs: number, idleGraceMs?: number): Promise<void>
  /**
   * Replaces every serving process with one started from the code now on disk, running `config`, one at a time,
   * each old one draining for up to `drainMs`; `step` is told each step. Resolves with the new process's pid when
   * this very process was handed over (it must now drain and exit). Absent: this mode cannot upgrade.
   */
  upgrade? (config: Config, text: string, drainMs: number, step: (message: string, fields: Record<string, unknown>) => void): Promise<{ readonly newPid: number } | undefined>
}

/** What an upgrade did: every step in order, and (when it failed) why the old processes kept serving. */
export interface UpgradeResult {
  readonly ok: boolean
  readonly steps: readonly string[]
  readonly error?: string
  readonly workersOnly: boolean
  readonly generation: number
  /** A whole-edge hand-over: the process that answered (it now drains and exits), the one that serves, the bound. */
  readonly oldPid?: number
  readonly newPid?: number
  readonly drainMs?: number
}

/** What a serving process that starts late needs to catch up with: health verdicts, drains, registrations. */
export interface MemberSnapshot {
  readonly verdicts: readonly MemberVerdict[]
  readonly drains: readonly { pool: string, url: string, draining: boolean }[]
  readonly registered: readonly (Registered & { healthy: boolean })[]
}

export interface ControlOptions {
  readonly log: Logger
  readonly demo?: DemoBackends | undefined
  /** Told each config text that takes effect (the supervisor restarts a serving process with it). */
  readonly onConfigText?: (text: string) => void
  /** Extra Prometheus text appended to /metrics (process restarts). */
  readonly extraMetrics?: () => string
  /** Time between status history samples (default 5 s; tests sample faster). */
  readonly historyIntervalMs?: number
  /** The config file's text as first read: its hash goes in HA adverts (peers warn on a mismatch). */
  readonly configText?: string
}

/**
 * A short hash of a config, compared between HA peers: what the file says, less [ha] (which names the node itself
 * and so differs on every node), independent of key order, comments and layout.
 */
export function configHash (text: string): string {
  let canonical = text
  try {
    const doc = parseToml(text) as Record<string, unknown>
    delete doc.ha
    canonical = stableJson(doc)
  } catch { /* not TOML: hash the text */ }
  return createHash('sha256').update(canonical).digest('hex').slice(0, 12)
}

function stableJson (v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`
  if (v !== null && typeof v === 'object' && !(v instanceof Date)) {
    return `{${Object.keys(v).sort().map(k => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`).join(',')}}`
  }
  return JSON.stringify(v)
}

/**
 * An old process closes an idle keep-alive connection only after this long idle during an upgrade's drain: a
 * client sending on it at that moment would be reset, and a busy one is told Connection: close anyway.
 */
export const IDLE_GRACE_MS = 1000

export class Control {
  readonly events = new EventLog()
  readonly registrations = new Registrations()
  readonly health: HealthControl
  /** Scale decisions per pool ([pools.NAME.scale]), made here from every serving process's latency. */
  readonly scale: ScaleControl
  readonly log: Logger
  /** This node's part in an HA group ([ha]); undefined when standalone. Role changes happen in it, nowhere else. */
  readonly ha: HaNode | undefined
  generation = 1
  /** Resolves with the process's exit code once the edge has stopped. */
  readonly stopped: Promise<number>
  #config: Config
  #serving: Serving | undefined
  #admin: AdminServer | undefined
  /** The status page's last 15 minutes, sampled every 5 s from every serving process (started with the admin). */
  #history: StatusHistory | undefined
  #stopping = false
  #configHash: string
  #upgrading = false
  #resolveStopped!: (code: number) => void
  readonly #opts: ControlOptions
  /** Drain state set through the admin API, replayed to serving processes that start later. */
  readonly #drains = new Map<string, { pool: string, url: string, draining: boolean }>()

  constructor (initial: Config, opts: ControlOptions) {
    this.#config = initial
    this.#opts = opts
    this.log = opts.log
    this.stopped = new Promise(resolve => { this.#resolveStopped = resolve })
    this.health = new HealthControl(v => { this.#serving?.setMember(v.pool, v.url, v) }, this.events, this.log, pool => this.registrations.urls(pool))
    this.scale = new ScaleControl({
      log: this.log,
      events: this.events,
      registrations: this.registrations,
      health: this.health,
      config: () => this.#config,
      serving: () => this.#stopping ? undefined : this.#serving,
    })
    this.#configHash = configHash(opts.configText ?? '')
    this.ha = initial.ha === undefined
      ? undefined
      : new HaNode(initial.ha, {
        log: this.log,
        onEvent: (type, message, fields) => { this.events.push(type, message, fields) },
        configHash: () => this.#configHash,
        ready: () => {
          const s = this.#serving
          return s === undefined ? 'the edge is not serving yet' : s.accepting?.() === false ? 'no listener is accepting' : undefined
        },
      })
  }

  get config (): Config { return this.#config }
  get stopping (): boolean { return this.#stopping }
  /** The admin listener's port (once started). */
  get adminPort (): number | undefined { return this.#admin?.port }
  /** The admin listener's bound server (handed to a new edge process by an upgrade). */
  get adminServer (): net.Server | undefined { return this.#admin?.server }

  /** Starts health checks and the admin listener over `serving` (already started). */
  async start (serving: Serving, adminHandle?: net.Server): Promise<void> {
    this.#serving = serving
    this.health.sync(this.#config)
    this.scale.sync(this.#config)
    this.#history = new StatusHistory({ intervalMs: this.#opts.historyIntervalMs ?? 5000 }, { status: () => serving.status() })
    this.#history.start()
    this.#admin = new AdminServer(this.#config.admin, this.adminDeps(serving))
    await this.#admin.listen(adminHandle)
    this.log.info({ address: formatAddress({ host: this.#config.admin.address.host, port: this.#admin.port }) }, 'admin listening')
    // Last: the node may only claim the floating IP once this process serves (the passive runs warm).
    await this.ha?.start()
  }

  /** Re-reads and validates the config file, applies it everywhere, and says what now runs. */
  async reload (): Promise<string> {
    const serving = this.#serving
    if (serving === undefined || this.#stopping) throw new Error('the edge is not running')
    if (this.#upgrading) throw new Error('an upgrade is under way; reload after it')
    try {
      const { config, text } = await readAndValidate(this.#config.file)
      await serving.reload(config, text)
      this.#config = config
      this.#configHash = configHash(text)
      if (JSON.stringify(haKeys(config.ha)) !== JSON.stringify(haKeys(this.ha?.config))) {
        this.events.push('ha-config', '[ha] changed: it applies when the process restarts')
        this.log.warn('[ha] changed in the reloaded config; the running HA node keeps its settings until a restart')
      }
      this.#opts.onConfigText?.(text)
      this.registrations.retain(config)
      this.health.sync(config)
      this.scale.sync(config)
      this.generation++
      this.log.info({ generation: this.generation, workers: serving.workers() }, 'config reloaded')
      this.events.push('reload', `config reloaded (generation ${this.generation}, ${serving.workers()} worker${serving.workers() === 1 ? '' : 's'})`)
      return summarize(config)
    } catch (err) {
      this.log.error({ reason: reasonOf(err) }, 'config reload failed; keeping the running config')
      this.events.push('reload-failed', reasonOf(err))
      throw err
    }
  }

  /**
   * Upgrade: re-reads and validates the config file (an invalid one refuses the upgrade, nothing is started), then
   * replaces the serving processes with new ones from the code on disk, one at a time, each old one draining for
   * up to [server] upgrade_drain. Every step is an event and a log line. `workersOnly`: only the workers (the
   * rolling restart); without it the whole edge would be handed over, which this version does as the rolling
   * restart of its workers too (the primary stays; said as a step). Resolves with the steps; rejects never.
   */
  async upgrade (workersOnly: boolean): Promise<UpgradeResult> {
    const steps: string[] = []
    const step = (message: string, fields: Record<string, unknown> = {}): void => {
      steps.push(message)
      this.log.info({ ...fields, upgrade: true }, message)
      this.events.push('upgrade', message, fields)
    }
    const fail = (error: string): UpgradeResult => {
      this.log.error({ reason: error }, 'upgrade failed; the running edge keeps serving')
      this.events.push('upgrade-failed', error)
      steps.push(`failed: ${error}`)
      return { ok: false, steps, error, workersOnly, generation: this.generation }
    }
    const serving = this.#serving
    if (serving === undefined || this.#stopping) return fail('the edge is not running')
    if (this.#upgrading) return fail('an upgrade is already under way')
    if (serving.upgrade === undefined) return fail('this edge cannot hand its listeners over: it does not run under its supervisor')
    if (workersOnly && serving.workers() === 1 && this.#config.server.workers <= 1) return fail('--workers-only needs [server] workers > 1; with workers = 1 the whole edge is handed over (leave out --workers-only)')
    this.#upgrading = true
    try {
      step(`upgrade started (${workersOnly ? 'workers only' : 'whole edge'}, ${serving.workers()} worker${serving.workers() === 1 ? '' : 's'}, drain up to ${this.#config.server.upgradeDrain} ms)`)
      let next: { config: Config, text: string }
      try {
        next = await readAndValidate(this.#config.file)
      } catch (err) {
        return fail(`the config file is not valid, nothing was started: ${reasonOf(err)}`)
      }
      step(`config ${next.config.file} validated`)
      const drainMs = this.#config.server.upgradeDrain
      let handed: { readonly newPid: number } | undefined
      try {
        handed = await serving.upgrade(next.config, next.text, drainMs, step)
      } catch (err) {
        return fail(reasonOf(err))
      }
      if (handed !== undefined) {
        step(`new edge process ${handed.newPid} serves; this process (${process.pid}) stops accepting and drains for up to ${drainMs} ms, then exits`, { old_pid: process.pid, new_pid: handed.newPid })
        // After this answer is out: the admin listener closes first when the drain starts.
        setTimeout(() => { void this.shutdown('upgraded: a new edge process serves', 0, drainMs, IDLE_GRACE_MS) }, 200).unref()
        return { ok: true, steps, workersOnly, generation: this.generation, oldPid: process.pid, newPid: handed.newPid, drainMs }
      }
      this.#config = next.config
      this.#opts.onConfigText?.(next.text)
      this.registrations.retain(next.config)
      this.health.sync(next.config)
      this.scale.sync(next.config)
      this.generation++
      if (!workersOnly) step('the main process stays (handing the listeners to a new edge process is not available yet)')
      step(`upgrade done: ${serving.workers()} new worker${serving.workers() === 1 ? '' : 's'} serving, the old ones gone (generation ${this.generation})`)
      return { ok: true, steps, workersOnly, generation: this.generation }
    } finally {
      this.#upgrading = false
    }
  }

  /** Sets or clears draining on a config member in every serving process. */
  drain (pool: string, backend: string, draining: boolean): Promise<string> {
    return applyDrain(this.#config, this.events, pool, backend, draining, (p, url, d) => {
      this.#drains.set(`${p} ${url}`, { pool: p, url, draining: d })
      this.#serving?.setMember(p, url, { draining: d })
    })
  }

  /**
   * Takes over an older edge process's state after a hand-over: members registered through the API and drains
   * set through it (health verdicts come again from this process's own checks).
   */
  adopt (snap: MemberSnapshot): void {
    const serving = this.#serving
    if (serving === undefined) return
    for (const r of snap.registered) {
      if (r.source === 'scale' || this.#config.pools.get(r.pool) === undefined) continue
      this.registrations.set({ pool: r.pool, url: r.url, weight: r.weight })
      serving.addMember({ pool: r.pool, url: r.url, weight: r.weight }, r.healthy)
    }
    for (const d of snap.drains) {
      if (validateDrain(this.#config, d.pool, d.url) !== undefined) continue
      this.#drains.set(`${d.pool} ${d.url}`, d)
      serving.setMember(d.pool, d.url, { draining: d.draining })
    }
    this.health.sync(this.#config)
    this.log.info({ registered: snap.registered.length, drains: snap.drains.length }, 'took over the old edge process\'s registrations and drains')
  }

  /** Member state a serving process that starts now must be told, in order. */
  snapshot (): MemberSnapshot {
    const registered = this.registrations.all().map(r => ({
      ...r,
      healthy: this.health.up(r.pool, r.url) ?? this.#config.pools.get(r.pool)?.healthCheck === undefined,
    }))
    return { verdicts: this.health.verdicts(), drains: [...this.#drains.values()], registered }
  }

  /**
   * Stops the edge: the admin listener and health checks first, then every serving process drains within
   * shutdown_timeout; `stopped` resolves with `code`. The whole stop is bounded: past the timeout (plus a second)
   * it resolves anyway, and main exits with whatever still holds on.
   */
  async shutdown (reason: string, code = 0, timeout = this.#config.server.shutdownTimeout, idleGraceMs = 0): Promise<void> {
    if (this.#stopping) return
    this.#stopping = true
    this.log.info({ reason, timeout_ms: timeout }, 'shutting down: finishing in-flight requests')
    const overrun = setTimeout(() => {
      this.log.warn({ timeout_ms: timeout }, 'shutdown overran its bound; exiting now')
      this.#finish(code)
    }, timeout + 1000)
    try {
      // The floating IP goes first, so a peer takes over while this process drains.
      await this.ha?.close().catch((err: unknown) => { this.log.error({ reason: reasonOf(err) }, 'ha: error while giving up the role') })
      await this.#admin?.close()
      this.#history?.close()
      await this.health.close()
      await this.#serving?.close(timeout, idleGraceMs)
      // After the serving processes drained: the backends the scaler started served their last requests.
      await this.scale.close()
      await this.#opts.demo?.close()
      this.log.info('stopped')
    } catch (err) {
      this.log.error({ reason: reasonOf(err) }, 'error while stopping')
    } finally {
      await this.scale.close().catch(() => {}) // no started backend outlives the edge, whatever failed above
      clearTimeout(overrun)
      this.#finish(code)
    }
  }

  #finish (code: number): void {
    this.log.flush()
    this.#resolveStopped(code)
  }

  /** SIGHUP reloads; SIGUSR2 upgrades; SIGTERM and SIGINT drain and stop. */
  handleSignals (): void {
    process.on('SIGHUP', () => { this.reload().catch(() => {}) })
    process.on('SIGUSR2', () => { void this.upgrade(false) })
    process.on('SIGTERM', () => { void this.shutdown('SIGTERM') })
    process.on('SIGINT', () => { void this.shutdown('SIGINT') })
  }

  private adminDeps (serving: Serving): AdminDeps {
    return {
      log: this.log,
      events: this.events,
      reload: () => this.reload(),
      upgrade: workersOnly => this.upgrade(workersOnly),
      health: () => ({ generation: this.generation, workers: serving.workers() }),
      metrics: async () => `${await serving.metrics()}${this.#opts.extraMetrics?.() ?? ''}${this.scale.metricsText()}${this.ha?.metrics() ?? ''}`,
      status: async () => {
        const st = await serving.status()
        return { generation: this.generation, workers: serving.workers(), ...st, scaling: this.scale.status(), ...(this.ha === undefined ? {} : { ha: this.ha.status() }), history: this.#history?.json() }
      },
      history: () => this.#history?.json(),
      ...(this.ha === undefined ? {} : { ha: () => (this.ha as HaNode).status() }),
      drain: (pool, backend, draining) => this.drain(pool, backend, draining),
      members: memberOps({
        config: () => this.#config,
        registrations: this.registrations,
        health: this.health,
        events: this.events,
        status: () => serving.status(),
        apply: {
          add: (r, healthy) => { serving.addMember(r, healthy) },
          remove: (pool, url, drainMs) => { serving.removeMember(pool, url, drainMs) },
        },
      }),
    }
  }
}

/** [ha] as loaded, to tell whether a reload changed it. */
function haKeys (ha: HaConfig | undefined): unknown {
  return ha === undefined ? null : { ...ha, secret: ha.secret.toString('base64') }
}

/** Checks a drain request against the running config and says what it did. */
export function validateDrain (config: Config, pool: string, backend: string): string | undefined {
  const p = config.pools.get(pool)
  if (p === undefined) return `no pool named "${pool}"`
  const url = normalizeBackend(backend)
  if (!p.backends.some(b => b.url === url)) return `pool "${pool}" has no backend ${backend}`
  return undefined
}

export function normalizeBackend (backend: string): string {
  try { return new URL(backend).origin } catch { return backend }
}

export async function applyDrain (config: Config, events: EventLog, pool: string, backend: string, draining: boolean,
  apply: (pool: string, url: string, draining: boolean) => void): Promise<string> {
  const problem = validateDrain(config, pool, backend)
  if (problem !== undefined) throw new Error(problem)
  const url = normalizeBackend(backend)
  apply(pool, url, draining)
  const message = `${draining ? 'draining' : 'undrained'} ${url} in pool ${pool}`
  events.push(draining ? 'drain' : 'undrain', message, { pool, backend: url })
  return message
}

/** Reads the config file again and validates it; the text is what workers parse, so all see the same bytes. */
export async function readAndValidate (file: string): Promise<{ text: string, config: Config }> {
  const text = await readFile(file, 'utf8').catch((err: Error) => {
    throw new ConfigError([{ file, path: '', line: undefined, message: `cannot read the file: ${err.message}` }])
  })
  return { text, config: parseConfigText(text, file) }
}
