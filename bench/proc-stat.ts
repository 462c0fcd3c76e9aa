// Reading CPU time and resident memory of a process tree from /proc (Linux only). A "tree" is a root pid and
// every descendant (found through the ppid field of /proc/*/stat), so edge-proxy with workers = "auto", nginx
// with its workers and Caddy's single process are all measured the same way.
import { readFileSync, readdirSync } from 'node:fs'
import { execFileSync } from 'node:child_process'

let clkTck: number | undefined

/** Clock ticks per second, the unit of utime/stime in /proc/PID/stat. */
export function ticksPerSecond (): number {
  if (clkTck === undefined) {
    try { clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch { clkTck = 100 }
  }
  return clkTck
}

interface Stat { pid: number, ppid: number, utime: number, stime: number, cutime: number, cstime: number }

function readStat (pid: number | 'self'): Stat | undefined {
  let text: string
  try { text = readFileSync(`/proc/${pid}/stat`, 'utf8') } catch { return undefined }
  // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
  const close = text.lastIndexOf(')')
  const f = text.slice(close + 2).split(' ')
  // f[0] is field 3 (state); field N is f[N - 3].
  return {
    pid: Number(text.slice(0, text.indexOf(' '))),
    ppid: Number(f[1]),
    utime: Number(f[11]),
    stime: Number(f[12]),
    cutime: Number(f[13]),
    cstime: Number(f[14]),
  }
}

/** The pid and all its descendants that are alive now. */
export function processTree (root: number): number[] {
  const children = new Map<number, number[]>()
  let entries: string[]
  try { entries = readdirSync('/proc') } catch { return [root] }
  for (const e of entries) {
    const c = e.charCodeAt(0)
    if (c < 48 || c > 57) continue
    const s = readStat(Number(e))
    if (s === undefined) continue
    const list = children.get(s.ppid)
    if (list === undefined) children.set(s.ppid, [s.pid]); else list.push(s.pid)
  }
  const out: number[] = []
  const todo = [root]
  while (todo.length > 0) {
    const pid = todo.pop() as number
    out.push(pid)
    for (const k of children.get(pid) ?? []) todo.push(k)
  }
  return out
}

/** utime + stime of the pids, in ms (processes that are gone count 0). */
export function cpuMs (pids: readonly number[]): number {
  let ticks = 0
  for (const pid of pids) {
    const s = readStat(pid)
    if (s !== undefined) ticks += s.utime + s.stime
  }
  return ticks * 1000 / ticksPerSecond()
}

/** CPU of this process's children that have exited and been reaped (cutime + cstime of /proc/self), in ms. */
export function reapedChildrenCpuMs (): number {
  const s = readStat('self')
  return s === undefined ? 0 : (s.cutime + s.cstime) * 1000 / ticksPerSecond()
}

/** VmRSS of one pid, in KiB (0 when gone). */
export function rssKb (pid: number): number {
  let text: string
  try { text = readFileSync(`/proc/${pid}/status`, 'utf8') } catch { return 0 }
  const m = /^VmRSS:\s+(\d+) kB/m.exec(text)
  return m === null ? 0 : Number(m[1])
}

/** Sum of VmRSS over the pids, in KiB. Shared pages (code, cluster workers' common libraries) count once per process. */
export function treeRssKb (pids: readonly number[]): number {
  let kb = 0
  for (const pid of pids) kb += rssKb(pid)
  return kb
}

/**
 * Samples a process tree (or several: a proxy and the tunnel client that is part of its path) while a load runs:
 * peak RSS every `everyMs`, and CPU at start and stop. The trees are re-read every fifth sample and at stop, so
 * workers that appear late are counted.
 */
export class TreeSampler {
  readonly #roots: readonly number[]
  #pids: number[]
  #cpuStart: number
  #peakKb = 0
  #samples = 0
  #timer: NodeJS.Timeout | undefined

  constructor (root: number | readonly number[], everyMs = 200) {
    this.#roots = typeof root === 'number' ? [root] : root
    this.#pids = this.#list()
    this.#cpuStart = cpuMs(this.#pids)
    this.#sample()
    this.#timer = setInterval(() => { this.#sample() }, everyMs)
  }

  // Listing the tree reads every /proc/N/stat; once a second is enough to catch new workers.
  #sample (rescan = this.#samples++ % 5 === 0): void {
    if (rescan) this.#pids = this.#list()
    const kb = treeRssKb(this.#pids)
    if (kb > this.#peakKb) this.#peakKb = kb
  }

  #list (): number[] {
    return this.#roots.length === 1 ? processTree(this.#roots[0] as number) : this.#roots.flatMap(r => processTree(r))
  }

  /** Stops sampling; returns the CPU used by the tree since the start (ms) and the peak RSS (KiB). */
  stop (): { cpuMs: number, peakRssKb: number } {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
    this.#sample(true)
    return { cpuMs: cpuMs(this.#pids) - this.#cpuStart, peakRssKb: this.#peakKb }
  }
}
