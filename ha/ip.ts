// IP movers: how a node takes and gives up the floating IP, behind one interface, keyed by [ha] ip_mode.
// - "linux": `ip addr add|del FLOATING_IP dev INTERFACE`, then gratuitous ARP (5 `arping -U` a second apart, and
//   5 more after 5 s, so a switch or neighbour that missed the first burst learns the new MAC too);
//   on_promote/on_demote, if set, run after.
// - "command": on_promote/on_demote only (a cloud API call such as a reserved-IP assignment).
// Hooks run through /bin/sh in the config file's directory with HA_NODE, HA_ROLE, HA_REASON and FLOATING_IP.
import { execFile, spawn } from 'node:child_process'
import type { HaConfig } from '../config/ha.js'

export interface MoveContext {
  readonly role: 'active' | 'passive' | 'fault' | 'init'
  readonly reason: string
}

export interface IpMover {
  readonly mode: string
  /** Takes the IP here. Rejects with the reason when it could not. */
  acquire (ctx: MoveContext): Promise<void>
  /** Gives the IP up. Rejects with the reason when it could not (the node logs it and goes on). */
  release (ctx: MoveContext): Promise<void>
  /** Announces again (gratuitous ARP) after a split brain healed; a no-op where the mode has nothing to say. */
  reannounce (): void
  /** At start: a node that is not active must not hold the IP (left over by a crash or a reboot). */
  clearStale (): Promise<void>
  /** Stops pending announcements. */
  close (): void
}

export interface CommandResult { readonly code: number | null, readonly stderr: string }

/** Runs a program (no shell) and resolves with its exit code and stderr; never rejects. */
export function runProgram (file: string, args: readonly string[], timeoutMs = 10_000): Promise<CommandResult> {
  return new Promise(resolve => {
    execFile(file, args, { timeout: timeoutMs }, (err, _stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null
      resolve({ code, stderr: String(stderr).trim() || (err === null ? '' : err.message) })
    })
  })
}

/**
 * This process's environment without what ties a process to its supervisor (the IPC channel, the supervised flag,
 * the config text a restarted child runs): a hook that starts another edge-proxy (replenish) must start a fresh one.
 */
function hookBaseEnv (): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (/^NODE_CHANNEL_|^NODE_UNIQUE_ID$|^EDGE_PROXY_(SUPERVISED|CONFIG_TEXT|RESTARTS)$/.test(k)) continue
    env[k] = v
  }
  return env
}

/** Runs a hook command line through /bin/sh in `cwd` with `env` added; resolves with its exit code. */
export function runHook (command: string, cwd: string, env: Record<string, string>, timeoutMs = 30_000): Promise<CommandResult> {
  return new Promise(resolve => {
    execFile('/bin/sh', ['-c', command], { cwd, env: { ...hookBaseEnv(), ...env }, timeout: timeoutMs }, (err, _stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null
      resolve({ code, stderr: String(stderr).trim() || (err === null ? '' : err.message) })
    })
  })
}

export function hookEnv (config: HaConfig, ctx: MoveContext): Record<string, string> {
  return { HA_NODE: config.nodeId, HA_ROLE: ctx.role, HA_REASON: ctx.reason, FLOATING_IP: config.floatingIp?.cidr ?? '' }
}

async function hook (config: HaConfig, command: string | undefined, ctx: MoveContext): Promise<void> {
  if (command === undefined) return
  const r = await runHook(command, config.hookDir, hookEnv(config, ctx))
  if (r.code !== 0) throw new Error(`hook "${command}" failed (exit ${r.code ?? 'signal'}): ${r.stderr}`)
}

/** Where `ip` and `arping` are; tests may point elsewhere. */
export interface LinuxTools { readonly ip: string, readonly arping: string }
const TOOLS: LinuxTools = { ip: 'ip', arping: 'arping' }

/** Gratuitous ARP: 5 announcements a second apart, then 5 more after 5 s (as `arping -U -c 5`, twice). */
const ARP_BURST = 5
const ARP_SPACING = 1000
const ARP_SECOND_BURST = 5000

export class LinuxIpMover implements IpMover {
  readonly mode = 'linux'
  readonly #timers = new Set<NodeJS.Timeout>()
  readonly #arps = new Set<ReturnType<typeof spawn>>()
  constructor (readonly config: HaConfig, readonly tools: LinuxTools = TOOLS) {}

  async acquire (ctx: MoveContext): Promise<void> {
    const { cidr, dev } = this.#target()
    const r = await runProgram(this.tools.ip, ['addr', 'add', cidr, 'dev', dev])
    // "File exists": it is already here (a re-promotion), which is what we want.
    if (r.code !== 0 && !/File exists/i.test(r.stderr)) throw new Error(`ip addr add ${cidr} dev ${dev} failed: ${r.stderr}`)
    this.reannounce()
    await hook(this.config, this.config.onPromote, ctx)
  }

  async release (ctx: MoveContext): Promise<void> {
    this.#stopArp()
    await this.#del()
    await hook(this.config, this.config.onDemote, ctx)
  }

  async clearStale (): Promise<void> { await this.#del() }

  async #del (): Promise<void> {
    const { cidr, dev } = this.#target()
    const r = await runProgram(this.tools.ip, ['addr', 'del', cidr, 'dev', dev])
    // "Cannot assign requested address": it was not here.
    if (r.code !== 0 && !/Cannot assign|not found|No such/i.test(r.stderr)) throw new Error(`ip addr del ${cidr} dev ${dev} failed: ${r.stderr}`)
  }

  /**
   * This process paces the announcements itself, one `arping -U -c 1` each, rather than leaving one long arping
   * behind: a node killed outright must not go on announcing its MAC for an IP the new active now holds.
   */
  reannounce (): void {
    this.#stopArp()
    for (let i = 0; i < 2 * ARP_BURST; i++) {
      const at = (i < ARP_BURST ? 0 : ARP_SECOND_BURST) + (i % ARP_BURST) * ARP_SPACING
      if (at === 0) { this.#announce(); continue }
      const timer = setTimeout(() => { this.#timers.delete(timer); this.#announce() }, at)
      timer.unref()
      this.#timers.add(timer)
    }
  }

  #announce (): void {
    const { ip, dev } = this.#target()
    // -S: the floating IP as the sender address (arping would otherwise send the interface's primary one, and
    // neighbours would not learn the new MAC for the floating IP). -w 1: it expects no answer; do not linger.
    const c = spawn(this.tools.arping, ['-q', '-U', '-S', ip, '-c', '1', '-w', '1', '-i', dev, ip], { stdio: 'ignore' })
    this.#arps.add(c)
    c.on('error', () => { this.#arps.delete(c) })
    c.on('exit', () => { this.#arps.delete(c) })
    c.unref()
  }

  #stopArp (): void {
    for (const t of this.#timers) clearTimeout(t)
    this.#timers.clear()
    for (const c of this.#arps) if (c.exitCode === null) c.kill()
    this.#arps.clear()
  }

  #target (): { cidr: string, ip: string, dev: string } {
    const f = this.config.floatingIp
    const dev = this.config.interface
    if (f === undefined || dev === undefined) throw new Error('ip_mode = "linux" needs floating_ip and interface')
    return { cidr: f.cidr, ip: f.ip, dev }
  }

  close (): void { this.#stopArp() }
}

export class CommandIpMover implements IpMover {
  readonly mode = 'command'
  constructor (readonly config: HaConfig) {}
  acquire (ctx: MoveContext): Promise<void> { return hook(this.config, this.config.onPromote, ctx) }
  release (ctx: MoveContext): Promise<void> { return hook(this.config, this.config.onDemote, ctx) }
  reannounce (): void {}
  clearStale (): Promise<void> { return Promise.resolve() }
  close (): void {}
}

/** The movers, keyed by ip_mode. */
export const ipMovers: { readonly [K in HaConfig['ipMode']]: (config: HaConfig) => IpMover } = {
  linux: config => new LinuxIpMover(config),
  command: config => new CommandIpMover(config),
}

export function createIpMover (config: HaConfig): IpMover {
  return ipMovers[config.ipMode](config)
}

/**
 * For the supervisor, when its serving child died without a word: in linux mode the floating IP would stay on
 * the interface of a node that no longer answers adverts, and the peer that takes over would share it. Best effort.
 */
export async function releaseAfterCrash (config: HaConfig): Promise<void> {
  if (config.ipMode !== 'linux') return
  try { await new LinuxIpMover(config).clearStale() } catch { /* logged by the new child's own clearStale */ }
}
